"""Small HDF5 files that meet (or, edited, break) the data contract, for the data and config tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np


def contract_arrays(
    n_train: int = 12,
    n_valid: int = 4,
    n_enc: int = 5,
    n_rec: int = 7,
    t_enc: int = 8,
    t_rec: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Poisson counts with held-out channels and forward steps; trials numbered in channel 0 of step 0."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for split, n in (("train", n_train), ("valid", n_valid)):
        recon = rng.poisson(2.0, size=(n, t_rec, n_rec)).astype(np.float32)
        recon[:, 0, 0] = np.arange(n)  # lets tests follow trials through loaders
        out[f"{split}_recon_data"] = recon
        encod = rng.poisson(2.0, size=(n, t_enc, n_enc)).astype(np.float32)
        t, c = min(t_enc, t_rec), min(n_enc, n_rec)
        encod[:, :t, :c] = recon[:, :t, :c]  # held-in channels and observed steps come first in recon
        out[f"{split}_encod_data"] = encod
    return out


def write_h5(path: Path, arrays: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    """Write ``arrays`` (minus ``drop``) as datasets of a new HDF5 file."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key not in drop:
                f.create_dataset(key, data=value)
    return path


def write_contract_file(path: Path, drop: tuple[str, ...] = (), **edits: Any) -> Path:
    """A valid file, with keys in ``edits`` replaced/added and keys in ``drop`` left out."""
    arrays = contract_arrays()
    arrays.update(edits)
    return write_h5(path, arrays, drop)
