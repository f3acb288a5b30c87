"""What an output location (``--out``: a local directory or an ``s3://`` prefix) holds, and its housekeeping.

A run's results are a fixed set of names at the top of OUT (:data:`RESULT_FILES`, :data:`RESULT_PATTERNS`,
:data:`RESULT_DIRS`); nothing else in OUT is ever deleted or replaced (a user's own files, the data, a
``--config`` kept there, the embedded MLflow store ``mlflow.db``/``mlartifacts``). Works through
``autolfads.storage`` so local and ``s3://`` locations behave alike.
"""

from __future__ import annotations

import contextlib
import fnmatch
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autolfads.storage import TMP_PREFIX, filesystem, is_remote, join_uri

LEASE_NAME = ".autolfads-lease.json"
FINGERPRINT_NAME = "fingerprint.json"
DONE_NAME = "DONE.json"
STAGING_PREFIX = ".staging-"
RESULT_FILES = (
    "autolfads.zip",
    "model.ckpt",
    "fitlog.csv",
    "config.yaml",
    "pbt_history.csv",
    "progress.json",
    "trial_results.jsonl",
    "pbt_history.jsonl",
    "pbt_state.json",
    "stopper_state.json",
    FINGERPRINT_NAME,
    DONE_NAME,
)
RESULT_PATTERNS = ("lfads_output_sess*.h5",)
RESULT_DIRS = ("trials", "plots", ".lightning")
# Temporary names our writers use (storage's ".tmp-<id>-name", outputs.atomic's ".name.<id>.tmp").
_TMP_GLOBS = (f"{TMP_PREFIX}*", ".*.tmp")


def is_result_name(name: str) -> bool:
    """Whether a top-level entry of OUT belongs to a run's results."""
    return (
        name in RESULT_FILES
        or name in RESULT_DIRS
        or any(fnmatch.fnmatch(name, pattern) for pattern in RESULT_PATTERNS)
    )


@dataclass(frozen=True)
class OutState:
    """The top level of OUT: which result names exist."""

    uri: str
    names: tuple[str, ...]

    @property
    def results(self) -> list[str]:
        return sorted(n for n in self.names if is_result_name(n))

    @property
    def holds_run(self) -> bool:
        """Results of a run (a lone ``fingerprint.json`` is a run that stopped before it began)."""
        return any(is_result_name(n) and n != FINGERPRINT_NAME for n in self.names)

    @property
    def finished(self) -> bool:
        return DONE_NAME in self.names


def top_level_names(uri: str) -> list[str]:
    """Names directly under OUT (files and directories/prefixes); [] when OUT does not exist."""
    if not is_remote(uri):
        path = Path(filesystem(uri)[1])
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    fs, root = filesystem(uri)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return []
    return sorted({str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries})


def inspect_out(uri: str) -> OutState:
    return OutState(uri, tuple(top_level_names(uri)))


def clean_stale_temporaries(uri: str) -> list[str]:
    """Remove temporaries a killed run left behind (half-written files, staging folders of ``--force``).

    Called only by the holder of OUT's lease, so no live writer owns them. ``trials/`` is Ray's and
    ``mlartifacts/`` MLflow's: left alone. Returns what was removed.
    """
    removed: list[str] = []
    fs, root = filesystem(uri)
    for name in top_level_names(uri):
        if name.startswith(STAGING_PREFIX):
            _remove(uri, name)
            removed.append(name)
    for path in _walk(uri):
        rel = path[len(root) :].lstrip("/")
        if rel.split("/", 1)[0] in ("trials", "mlartifacts"):
            continue
        if any(fnmatch.fnmatch(rel.rsplit("/", 1)[-1], glob) for glob in _TMP_GLOBS):
            with contextlib.suppress(FileNotFoundError):
                fs.rm_file(path)
            removed.append(rel)
    return removed


def remove_results(uri: str, names: Iterable[str]) -> None:
    """Delete the named top-level result entries of OUT (never anything that is not a result name)."""
    for name in names:
        if is_result_name(name):
            _remove(uri, name)


def _remove(uri: str, name: str) -> None:
    target = join_uri(uri, name)
    if not is_remote(uri):
        path = Path(filesystem(target)[1])
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    fs, path = filesystem(target)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


def _walk(uri: str) -> list[str]:
    """Every file under OUT except inside ``trials/`` and ``mlartifacts/`` (Ray's and MLflow's)."""
    fs, _ = filesystem(uri)
    out: list[str] = []
    for name in top_level_names(uri):
        if name in ("trials", "mlartifacts"):
            continue
        _, path = filesystem(join_uri(uri, name))
        if fs.isdir(path):
            with contextlib.suppress(FileNotFoundError):
                out += [str(p) for p in fs.find(path)]
        else:
            out.append(path)
    return out


__all__ = [
    "DONE_NAME",
    "FINGERPRINT_NAME",
    "LEASE_NAME",
    "RESULT_DIRS",
    "RESULT_FILES",
    "RESULT_PATTERNS",
    "STAGING_PREFIX",
    "OutState",
    "clean_stale_temporaries",
    "inspect_out",
    "is_result_name",
    "remove_results",
    "top_level_names",
]
