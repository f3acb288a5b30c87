"""Synthetic spiking data with known rates: Poisson spikes from Lorenz-driven log-rates.

The classic LFADS benchmark. Each condition starts the Lorenz system from its own point on the attractor;
the 3-D trajectory (RK4) is z-scored, projected through random loadings to log-rates, and every trial of a
condition draws Poisson counts from the same rates, so the only trial-to-trial variability is spiking noise.
The file follows the data contract (docs/data.md) and carries the truth (``*_truth`` in Hz with
``conversion_factor = 1 / bin_width``), so recovery can be scored.

The defaults are sized for a CPU: 400 trials of 30 neurons x 50 bins at about 15 spikes/s mean over 10 ms bins
with a wide dynamic range, which a small LFADS fits to rate R² ≥ 0.85 in a few minutes while Gaussian
smoothing of single trials stays far below.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from autolfads.errors import ConfigError

_SIGMA, _RHO, _BETA = 10.0, 28.0, 8.0 / 3.0


def lorenz_derivative(state: np.ndarray) -> np.ndarray:
    """dx/dt of the Lorenz system for states ``(..., 3)`` (sigma 10, rho 28, beta 8/3)."""
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack([_SIGMA * (y - x), x * (_RHO - z) - y, x * y - _BETA * z], axis=-1)


def integrate_lorenz(initial: np.ndarray, n_steps: int, dt: float, substeps: int = 4) -> np.ndarray:
    """RK4 trajectories ``(..., n_steps, 3)`` sampled every ``dt``, starting at ``initial`` ``(..., 3)``."""
    h = dt / substeps
    state = np.asarray(initial, dtype=np.float64)
    out = np.empty((*state.shape[:-1], n_steps, 3))
    for step in range(n_steps):
        out[..., step, :] = state
        for _ in range(substeps):
            k1 = lorenz_derivative(state)
            k2 = lorenz_derivative(state + 0.5 * h * k1)
            k3 = lorenz_derivative(state + 0.5 * h * k2)
            k4 = lorenz_derivative(state + h * k3)
            state = state + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return out


def write_lorenz(
    path: str | Path,
    *,
    seed: int = 0,
    n_conditions: int = 20,
    n_trials: int = 400,
    n_neurons: int = 30,
    held_in: int | None = None,
    encod_seq_len: int = 50,
    recon_seq_len: int | None = None,
    bin_width: float = 0.01,
    dt: float = 0.02,
    mean_rate: float = 25.0,
    loading_scale: float = 1.25,
    valid_fraction: float = 0.2,
) -> Path:
    """Write a Lorenz dataset to ``path`` (HDF5) and return the path. Same seed, same file contents.

    - ``n_trials`` trials in total, trial i belongs to condition ``i % n_conditions``;
    - ``n_neurons`` recon channels, of which the first ``held_in`` (default: all) are encod channels;
    - ``encod_seq_len`` observed bins, ``recon_seq_len`` (default: the same) bins in recon_data, the extra
      ones being forward-prediction steps;
    - ``dt`` Lorenz time units per bin, ``bin_width`` seconds per bin, ``mean_rate`` spikes/s averaged over
      neurons and time, ``loading_scale`` the std of the log-rate modulation (larger = wider dynamic range);
    - ``valid_fraction`` of the trials, picked at random, form the valid split.

    Besides the contract keys it writes ``{train,valid}_cond_idx`` (condition of each trial) and
    ``{train,valid}_latents`` (the z-scored Lorenz state per bin).
    """
    recon_seq_len = encod_seq_len if recon_seq_len is None else recon_seq_len
    held_in = n_neurons if held_in is None else held_in
    _check(
        n_conditions, n_trials, n_neurons, held_in, encod_seq_len, recon_seq_len, valid_fraction, bin_width
    )
    rng = np.random.default_rng(seed)

    # Condition start points: random points on the attractor (after a burn-in from near the origin).
    starts = rng.normal(0.0, 1.0, size=(n_conditions, 3)) + np.array([0.0, 0.0, 25.0])
    burn_in = rng.integers(100, 400, size=n_conditions)
    settled = integrate_lorenz(starts, int(burn_in.max()) + 1, dt)
    initial = settled[np.arange(n_conditions), burn_in]
    latents = integrate_lorenz(initial, recon_seq_len, dt)  # (C, T, 3)
    latents = (latents - latents.mean(axis=(0, 1))) / latents.std(axis=(0, 1))

    # Each neuron reads a random direction of the latent space, so its log-rate has std ~ loading_scale;
    # its offset sets its own mean rate to mean_rate (spikes/s) over conditions and time.
    loadings = rng.normal(size=(3, n_neurons))
    loadings *= loading_scale / np.linalg.norm(loadings, axis=0)
    log_rates = latents @ loadings  # (C, T, N)
    log_rates += math.log(mean_rate * bin_width) - np.log(np.exp(log_rates).mean(axis=(0, 1)))
    rates = np.exp(log_rates)  # spikes per bin

    cond_idx = np.arange(n_trials) % n_conditions
    trial_rates = rates[cond_idx]
    spikes = rng.poisson(trial_rates).astype(np.float32)

    n_valid = max(1, round(valid_fraction * n_trials))
    order = rng.permutation(n_trials)
    inds = {"valid": np.sort(order[:n_valid]), "train": np.sort(order[n_valid:])}
    conversion_factor = 1.0 / bin_width  # truth is stored in spikes/s

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for split, idx in inds.items():
            f.create_dataset(f"{split}_encod_data", data=spikes[idx, :encod_seq_len, :held_in])
            f.create_dataset(f"{split}_recon_data", data=spikes[idx])
            f.create_dataset(f"{split}_truth", data=(trial_rates[idx] * conversion_factor).astype(np.float32))
            f.create_dataset(f"{split}_inds", data=idx)
            f.create_dataset(f"{split}_cond_idx", data=cond_idx[idx])
            f.create_dataset(f"{split}_latents", data=latents[cond_idx[idx]].astype(np.float32))
        f.create_dataset("conversion_factor", data=conversion_factor)
        f.attrs.update(
            {
                "generator": "autolfads.data.synthetic.write_lorenz",
                "seed": seed,
                "n_conditions": n_conditions,
                "bin_width": bin_width,
                "dt": dt,
                "mean_rate": mean_rate,
                "loading_scale": loading_scale,
            }
        )
    return path


def _check(
    n_conditions: int,
    n_trials: int,
    n_neurons: int,
    held_in: int,
    encod_seq_len: int,
    recon_seq_len: int,
    valid_fraction: float,
    bin_width: float,
) -> None:
    if n_conditions < 1 or n_trials < 2:
        raise ConfigError(f"lorenz: need n_conditions >= 1 and n_trials >= 2, got {n_conditions}, {n_trials}")
    if not 1 <= held_in <= n_neurons:
        raise ConfigError(f"lorenz: held_in must be in 1..n_neurons={n_neurons}, got {held_in}")
    if not 1 <= encod_seq_len <= recon_seq_len:
        raise ConfigError(
            f"lorenz: need 1 <= encod_seq_len <= recon_seq_len, got {encod_seq_len} and {recon_seq_len}"
        )
    if not 0 < valid_fraction < 1 or round(valid_fraction * n_trials) >= n_trials:
        raise ConfigError(f"lorenz: valid_fraction must leave trials in both splits, got {valid_fraction}")
    if bin_width <= 0:
        raise ConfigError(f"lorenz: bin_width must be positive, got {bin_width}")
