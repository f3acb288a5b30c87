"""How close a run's rates are to the ground truth, when the data file has ``*_truth`` (synthetic data).

The same R² the model logs as ``{split}/r2`` (lfads-spec §2.10: per channel 1 − SS_res/SS_tot over all
trials and time bins, averaged over channels), but on the 50-sample posterior means of the output file
rather than on one sample per validation batch. ``autolfads train`` prints it; tests and benchmarks use it.
"""

from __future__ import annotations

import os

import h5py
import numpy as np


def r2_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over channels (last axis) of 1 − SS_res/SS_tot, all other axes flattened."""
    pred = pred.reshape(-1, pred.shape[-1]).astype(np.float64)
    truth = truth.reshape(-1, truth.shape[-1]).astype(np.float64)
    ss_res = ((truth - pred) ** 2).sum(axis=0)
    ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1.0 - ss_res / ss_tot))


def rate_r2(output_file: str | os.PathLike[str], split: str = "valid") -> float | None:
    """R² of ``{split}_output_params`` against ``{split}_truth / conversion_factor``; None without truth."""
    with h5py.File(output_file, "r") as f:
        keys = (f"{split}_truth", f"{split}_output_params", "conversion_factor")
        if not all(key in f for key in keys):
            return None
        truth = f[keys[0]][()] / float(f["conversion_factor"][()])
        rates = f[keys[1]][()]
    if truth.shape != rates.shape:
        return None
    return r2_score(rates, truth)


__all__ = ["r2_score", "rate_r2"]
