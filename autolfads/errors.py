"""The one exception tree of the package.

::

    AutoLFADSError            anything the user can fix; the CLI prints its message as one line
    ├── DataError             the HDF5 file: missing keys, bad shapes, values outside a likelihood's support
    ├── ConfigError           the YAML config or an override: unknown keys, contradicting dims, bad ranges
    ├── StorageError          a URI that cannot be read or written (missing bucket, credentials, endpoint)
    ├── CheckpointError       a checkpoint that is not ours or would need more than weights-only loading
    ├── TrackingError         the MLflow tracking server refused or never answered
    └── RunInterrupted        a population stopped before its end (Ctrl-C, SIGTERM); --resume continues it

Messages name the file, key or field, what was expected and what was found, in one line, so that
``autolfads`` can print them without a traceback.
"""


class AutoLFADSError(Exception):
    """Base class for errors a user can act on; the message is the whole explanation."""


class DataError(AutoLFADSError):
    """The data file does not meet the HDF5 contract (DESIGN.md §3)."""


class ConfigError(AutoLFADSError):
    """The config (file or dotted override) cannot produce a working model or run."""


class StorageError(AutoLFADSError):
    """A local path or object-storage URI cannot be read or written."""


class CheckpointError(AutoLFADSError):
    """A checkpoint file cannot be loaded as plain data (docs/security.md): corrupt, or not ours."""


class TrackingError(AutoLFADSError):
    """The experiment-tracking backend is unusable."""


def find_user_error(error: BaseException) -> AutoLFADSError | None:
    """The project's own error inside a chain of wrappers (Hydra's InstantiationException, Lightning's,
    Ray's), so that it is shown as its one line rather than as the wrapper's traceback."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, AutoLFADSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class RunInterrupted(AutoLFADSError):
    """The population stopped before finishing (Ctrl-C, SIGTERM); ``--resume`` continues it.

    ``unfinished`` of ``total`` trials had not reached their last epoch. It lives here, not beside the
    driver, so that the CLI can catch it without importing Ray."""

    def __init__(self, message: str, unfinished: int = 0, total: int = 0) -> None:
        super().__init__(message)
        self.unfinished, self.total = unfinished, total


def clipped(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters for a one-line error (an untrusted value may be megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}..."


__all__ = [
    "AutoLFADSError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "RunInterrupted",
    "StorageError",
    "TrackingError",
    "clipped",
    "find_user_error",
]
