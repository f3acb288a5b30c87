"""``DONE.json``: written last, so a finished run can be told from a partial set of outputs.

A run killed at any point leaves whatever it had written (each file atomically), but never ``DONE.json``,
which is written after every output and lists them with their checksums::

    {"version": 1, "command": "autolfads run", "finished_at": "2026-05-01T10:00:00Z",
     "autolfads_version": "0.1.0", "fingerprint_sha256": "…",   # of fingerprint.json's canonical JSON
     "files": {"autolfads.zip": {"size": 15433720, "sha256": "…"}, "model.ckpt": {…}, …}}

A new attempt (``--resume``, ``--force``) removes it before it writes anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from autolfads.rundir.fingerprint import file_digest
from autolfads.rundir.layout import DONE_NAME
from autolfads.storage import atomic_write_bytes, exists, filesystem, join_uri, open_uri

DONE_VERSION = 1


def done_record(
    local_dir: Path, names: Iterable[str], command: str, fingerprint: dict[str, Any]
) -> dict[str, Any]:
    """The record for the files ``names`` of ``local_dir`` (missing names are left out)."""
    files = {}
    for name in sorted(set(names)):
        path = local_dir / name
        if path.is_file():
            size, sha = file_digest(path)
            files[name] = {"size": size, "sha256": sha}
    try:
        version = metadata.version("autolfads")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout without install
        version = "unknown"
    return {
        "version": DONE_VERSION,
        "command": command,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "autolfads_version": version,
        "fingerprint_sha256": hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest(),
        "files": files,
    }


def write_done(target: str, record: dict[str, Any]) -> None:
    """Write ``DONE.json`` into ``target`` (a directory or ``s3://`` prefix), atomically."""
    atomic_write_bytes(json.dumps(record, indent=1).encode(), join_uri(target, DONE_NAME))


def read_done(target: str) -> dict[str, Any] | None:
    """The completion record in ``target``, or None when the run there did not finish."""
    return read_json_object(join_uri(target, DONE_NAME))


def read_json_object(uri: str) -> dict[str, Any] | None:
    """The JSON object at ``uri``; None when it is missing, not JSON or not an object (a record of ours
    that a crash cut short reads as absent)."""
    if not exists(uri):
        return None
    try:
        with open_uri(uri) as handle:
            value = json.loads(handle.read())
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def remove_done(target: str) -> None:
    """Mark ``target`` as not finished (a new attempt is about to write there)."""
    fs, path = filesystem(join_uri(target, DONE_NAME))
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


__all__ = ["DONE_VERSION", "done_record", "read_done", "remove_done", "write_done"]
