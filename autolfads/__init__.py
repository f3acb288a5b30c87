"""AutoLFADS: LFADS models of neural population dynamics, tuned by population-based training.

The package is layered (see DESIGN.md §2): ``cli`` → ``tune`` → ``train`` → ``model`` / ``data``;
``outputs``, ``tracking`` and ``storage`` serve ``train``/``tune`` and import nothing above them.
Importing ``autolfads`` is cheap: torch, Lightning and Ray load only in the modules that need them.
"""

from importlib.metadata import PackageNotFoundError, version

from autolfads.errors import AutoLFADSError, ConfigError, DataError, StorageError

try:
    __version__ = version("autolfads")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["AutoLFADSError", "ConfigError", "DataError", "StorageError", "__version__"]
