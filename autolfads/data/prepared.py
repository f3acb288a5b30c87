"""The files ``autolfads prepare`` writes: ``DATA.h5`` (the data contract) and ``DATA.prepare.json``.

The record (every option, every choice made, the source file's identity and checksum) goes into
``DATA.prepare.json`` beside the data file and, as a JSON string dataset ``prepare_json``, into
``DATA.h5`` itself: posterior sampling copies the input file into ``lfads_output_sess0.h5``, so
``autolfads merge`` finds the chop layout and the source NWB file in the output alone.

``DATA.prepare.json`` is named after the data file (not a bare ``prepare.json``) so that several sessions
can be prepared into one directory. Both files are written atomically, the data file only after it passed
the contract check (``inspect_data_file``, Poisson support), and neither is overwritten without ``force``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from autolfads.data.contract import inspect_data_file
from autolfads.data.nwb import read_nwb
from autolfads.data.prepare import (
    RECORD_FORMAT,
    RECORD_KEY,
    Prepared,
    PrepareOptions,
    prepare_recording,
    record_json,
)
from autolfads.errors import AutoLFADSError, DataError
from autolfads.outputs.atomic import atomic_path, atomic_write_text


def record_path(data_path: str | os.PathLike[str]) -> Path:
    """``session.h5`` → ``session.prepare.json`` (beside it)."""
    path = Path(data_path)
    return path.with_name(f"{path.stem if path.suffix else path.name}.prepare.json")


def refuse_existing(paths: list[Path], force: bool) -> None:
    """One line when an output is a directory, or already exists and ``force`` was not given."""
    for path in paths:
        if path.is_dir():
            raise AutoLFADSError(f"{path} is a directory; --out must name a file")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise AutoLFADSError(f"{' and '.join(existing)} already {verb}; pass --force to overwrite")


def prepare_nwb(
    nwb_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: PrepareOptions,
    force: bool = False,
) -> tuple[Prepared, Path, Path]:
    """Read ``nwb_path``, prepare it as ``options`` say, write ``out`` and its record; return all three."""
    from autolfads.data.prepare import check_options

    out = Path(out)
    record_file = record_path(out)
    source = Path(nwb_path)
    for written in (out, record_file):
        if source.exists() and written.exists() and written.resolve() == source.resolve():
            raise AutoLFADSError(
                f"--out {out} would overwrite the source NWB file {source}; choose another name"
            )
    refuse_existing([out, record_file], force)
    check_options(options)  # before reading a multi-GB file
    recording = read_nwb(source, options.ext_input)
    prepared = prepare_recording(recording, options)
    write_prepared(prepared, out, record_file)
    return prepared, out, record_file


def write_prepared(prepared: Prepared, out: Path, record_file: Path) -> None:
    """The data file (checked against the contract before it becomes visible), then the record."""
    text = record_json(prepared.record)
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in prepared.arrays.items():
                f.create_dataset(key, data=value, compression="gzip", compression_opts=4, shuffle=True)
            f.create_dataset(RECORD_KEY, data=text)
        inspect_data_file(tmp, "Poisson")
    atomic_write_text(record_file, text)


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The prepare record from a ``.prepare.json`` file or from an HDF5 file that carries ``prepare_json``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if RECORD_KEY not in f:
                    raise DataError(
                        f"{path}: has no '{RECORD_KEY}' record (was its data file made by autolfads "
                        "prepare?); give the DATA.prepare.json with --record"
                    )
                raw = f[RECORD_KEY][()]
                text = raw.decode() if isinstance(raw, bytes) else str(np.asarray(raw).item())
        else:
            text = path.read_text()
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the prepare record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise DataError(f'{path}: is not an autolfads prepare record (no "format": "{RECORD_FORMAT}")')
    return record


__all__ = ["prepare_nwb", "read_record", "record_path", "refuse_existing", "write_prepared"]
