"""Spike binning and resampling at bin centres (autolfads/data/binning.py), on hand values."""

from __future__ import annotations

import numpy as np

from autolfads.data.binning import bin_centres, bin_spikes, resample_at


def test_bins_are_half_open_and_windows_independent() -> None:
    spikes = [np.array([0.0, 0.004, 0.01, 0.0199, 0.02, 0.5]), np.array([0.015])]
    counts = bin_spikes(spikes, np.array([0.0, 0.01]), n_bins=2, bin_s=0.01)
    # window 0: [0, .01) [.01, .02); window 1: [.01, .02) [.02, .03); a spike on an edge goes to the later bin
    np.testing.assert_array_equal(counts[0, :, 0], [2, 2])
    np.testing.assert_array_equal(counts[1, :, 0], [2, 1])
    np.testing.assert_array_equal(counts[:, :, 1], [[0, 1], [1, 0]])


def test_a_unit_without_spikes_counts_zero() -> None:
    counts = bin_spikes([np.array([])], np.array([0.0]), n_bins=3, bin_s=0.1)
    assert counts.shape == (1, 3, 1) and counts.sum() == 0


def test_resample_interpolates_at_bin_centres() -> None:
    timestamps = np.array([0.0, 1.0, 2.0])
    values = np.array([[0.0, 10.0], [1.0, 20.0], [4.0, 30.0]])
    centres = bin_centres(np.array([0.0, 1.0]), n_bins=2, bin_s=0.5)  # .25 .75 | 1.25 1.75
    np.testing.assert_allclose(centres, [[0.25, 0.75], [1.25, 1.75]])
    out = resample_at(timestamps, values, centres)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose(out[..., 0], [[0.25, 0.75], [1.75, 3.25]])
    np.testing.assert_allclose(out[..., 1], [[12.5, 17.5], [22.5, 27.5]])
