"""Spike times → counts in bins, and a sampled signal → values at bin centres (numpy only).

Bins are half-open, ``[t, t + bin)``: a spike exactly on an edge belongs to the later bin. Window ``w`` of
``n_bins`` bins starts at ``starts[w]`` and its edges are ``starts[w] + k · bin_s`` for ``k = 0..n_bins``,
so every window's bins are computed from its own start (no drift from adding bins up).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bin_edges(starts: np.ndarray, n_bins: int, bin_s: float) -> np.ndarray:
    """Edges ``(W, n_bins + 1)`` of ``n_bins`` bins of ``bin_s`` seconds from each window start."""
    return np.asarray(starts, dtype=np.float64)[:, None] + np.arange(n_bins + 1) * bin_s


def bin_centres(starts: np.ndarray, n_bins: int, bin_s: float) -> np.ndarray:
    """Bin centres ``(W, n_bins)``: where a bin's value is located in time."""
    return np.asarray(starts, dtype=np.float64)[:, None] + (np.arange(n_bins) + 0.5) * bin_s


def bin_spikes(
    spike_times: Sequence[np.ndarray], starts: np.ndarray, n_bins: int, bin_s: float
) -> np.ndarray:
    """Counts ``(W, n_bins, U)`` of each unit's spikes in each bin of each window.

    ``spike_times[u]`` must be sorted (the NWB reader sorts them). Counting is two binary searches per edge,
    so a long recording with millions of spikes bins in seconds.
    """
    edges = bin_edges(starts, n_bins, bin_s)  # (W, T+1)
    counts = np.empty((edges.shape[0], n_bins, len(spike_times)), dtype=np.int64)
    for unit, times in enumerate(spike_times):
        positions = np.searchsorted(times, edges.ravel(), side="left").reshape(edges.shape)
        counts[:, :, unit] = np.diff(positions, axis=1)
    return counts


def resample_at(timestamps: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``values`` ``(n, C)`` sampled at increasing ``timestamps``, linearly interpolated at ``times``.

    Returns ``(*times.shape, C)``. Callers check that ``times`` lie within the sampled span first:
    ``np.interp`` would silently hold the end values.
    """
    flat = np.asarray(times, dtype=np.float64).ravel()
    columns = [np.interp(flat, timestamps, values[:, c]) for c in range(values.shape[1])]
    return np.stack(columns, axis=-1).reshape(*np.shape(times), values.shape[1])


__all__ = ["bin_centres", "bin_edges", "bin_spikes", "resample_at"]
