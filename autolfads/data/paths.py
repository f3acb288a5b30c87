"""Which files make up a run's sessions: a ``data_paths`` list, a ``datafile_pattern`` glob, or both.

Kept apart from the datamodule (and free of torch/Lightning) because the config loader needs the same answer
to infer dimensions before anything heavy is imported.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from autolfads.errors import ConfigError, DataError
from autolfads.storage import download_to_local, is_remote, local_path


def resolve_data_paths(
    data_paths: str | Path | Sequence[str | Path] | None = None, datafile_pattern: str | None = None
) -> list[Path]:
    """The session files, sorted by path (the session index is the position in this list)."""
    if isinstance(data_paths, str | Path):
        data_paths = [data_paths]
    # h5py reads local files: an s3:// session is staged into the local cache first (each Ray node stages
    # its own copy, so no shared disk is needed).
    paths = [download_to_local(p) if is_remote(p) else local_path(p) for p in (data_paths or ())]
    if datafile_pattern:
        matched = sorted(glob.glob(str(datafile_pattern)))
        if not matched:
            raise DataError(f"datamodule.datafile_pattern '{datafile_pattern}' matches no files")
        paths.extend(Path(p) for p in matched)
    if not paths:
        raise ConfigError("datamodule: no data files; give data_paths (a list) or datafile_pattern (a glob)")
    resolved = sorted(paths, key=str)
    duplicates = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if duplicates:
        raise ConfigError(f"datamodule.data_paths lists a file twice: {', '.join(duplicates)}")
    return resolved
