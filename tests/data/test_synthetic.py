"""The Lorenz generator: deterministic, meets the data contract, and its truth is what the spikes follow."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from autolfads.data.contract import inspect_data_file
from autolfads.data.synthetic import integrate_lorenz, lorenz_derivative, write_lorenz
from autolfads.errors import ConfigError


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f}


def test_same_seed_gives_the_same_file_and_another_seed_does_not(tmp_path: Path) -> None:
    kwargs = {"n_conditions": 4, "n_trials": 20, "n_neurons": 6, "encod_seq_len": 12}
    first = read(write_lorenz(tmp_path / "a.h5", seed=3, **kwargs))
    again = read(write_lorenz(tmp_path / "b.h5", seed=3, **kwargs))
    other = read(write_lorenz(tmp_path / "c.h5", seed=4, **kwargs))
    assert first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["train_truth"], other["train_truth"])


def test_file_meets_the_contract_with_held_out_neurons_and_forward_steps(tmp_path: Path) -> None:
    path = write_lorenz(
        tmp_path / "l.h5",
        n_conditions=5,
        n_trials=50,
        n_neurons=10,
        held_in=7,
        encod_seq_len=15,
        recon_seq_len=20,
    )
    summary = inspect_data_file(path, "Poisson")  # integer counts, finite, truth with conversion_factor
    assert (summary.n_train, summary.n_valid) == (40, 10)
    assert (summary.encod_data_dim, summary.recon_data_dim) == (7, 10)
    assert (summary.encod_seq_len, summary.recon_seq_len) == (15, 20)
    assert summary.has_truth and summary.conversion_factor == pytest.approx(100.0)
    data = read(path)
    assert np.array_equal(data["train_encod_data"], data["train_recon_data"][:, :15, :7])
    assert sorted([*data["train_inds"], *data["valid_inds"]]) == list(range(50))
    assert np.array_equal(data["valid_cond_idx"], data["valid_inds"] % 5)


def test_defaults_are_sized_for_a_cpu_fit(tmp_path: Path) -> None:
    summary = inspect_data_file(write_lorenz(tmp_path / "l.h5"), "Poisson")
    assert (summary.n_train + summary.n_valid, summary.recon_data_dim, summary.recon_seq_len) == (400, 30, 50)


def test_spikes_follow_the_truth_rates(tmp_path: Path) -> None:
    data = read(write_lorenz(tmp_path / "l.h5", mean_rate=30.0, n_trials=400))
    rates = data["train_truth"] / data["conversion_factor"]  # spikes per bin
    assert rates.mean() == pytest.approx(30.0 * 0.01, rel=0.05)
    spikes = data["train_recon_data"]
    assert spikes.mean() == pytest.approx(rates.mean(), rel=0.05)
    # trials of one condition share their rates exactly: only spiking noise differs
    cond = data["train_cond_idx"]
    same = np.flatnonzero(cond == cond[0])
    assert np.allclose(rates[same[0]], rates[same[1]])
    assert rates.max() / rates.min() > 20  # a wide dynamic range, so the rates are worth recovering


def test_fixed_point_of_the_lorenz_system_stays_put() -> None:
    c = math.sqrt(8.0 / 3.0 * 27.0)
    fixed = np.array([c, c, 27.0])
    assert np.allclose(lorenz_derivative(fixed), 0.0, atol=1e-12)
    assert np.allclose(integrate_lorenz(fixed, 50, dt=0.02)[-1], fixed, atol=1e-9)


def test_lorenz_derivative_matches_the_equations() -> None:
    x, y, z = 1.0, 2.0, 3.0
    assert np.allclose(
        lorenz_derivative(np.array([x, y, z])), [10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"held_in": 31}, "held_in must be in 1..n_neurons=30"),
        ({"encod_seq_len": 20, "recon_seq_len": 10}, "encod_seq_len <= recon_seq_len"),
        ({"valid_fraction": 1.0}, "valid_fraction must leave trials in both splits"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        write_lorenz(tmp_path / "l.h5", **kwargs)
