"""Atomic local writes: a reader sees the old file or the complete new one, never a half-written file.

A run can be killed at any moment (a pre-empted pod, Ctrl-C, PBT stopping a trial), and the operator and
the user read outputs while a run is alive. So every output is written to a temporary file in the same
directory (same filesystem, so the final rename is atomic), flushed to disk, then ``os.replace``-d into
place. OBS extends the same two helpers to object-storage URIs in ``autolfads/storage.py``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform lets a directory be opened, so best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on a clean exit it replaces ``final`` atomically.

    The caller writes the whole file to the yielded path (with any library: h5py, pandas, torch). If the
    block raises, the temporary file is removed and ``final`` is left as it was.

    >>> with atomic_path("out/fitlog.csv") as tmp:  # doctest: +SKIP
    ...     frame.to_csv(tmp, index=False)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically and return the final path."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``final`` atomically and return the final path."""
    return atomic_write_bytes(final, text.encode("utf-8"))


def atomic_copy(source: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Copy ``source`` to ``final`` atomically (a reader never sees a partial copy)."""
    import shutil

    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
    return Path(final)


__all__ = ["atomic_copy", "atomic_path", "atomic_write_bytes", "atomic_write_text"]
