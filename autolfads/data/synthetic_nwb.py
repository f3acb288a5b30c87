"""A synthetic NWB session with known firing rates, written with pynwb (``autolfads synth nwb``).

For trying ``autolfads prepare`` / ``merge`` before one's own recording, and for the tests. Rates are
smooth and Lorenz-driven over the whole session (as in :mod:`autolfads.data.synthetic`: the z-scored
3-D trajectory through random loadings to log-rates, 1 Lorenz time unit per second); spikes are Poisson
draws on a 1 ms grid, each placed uniformly inside its millisecond. The file has:

- a units table (ids 100, 101, ...; a ``quality`` column, ``good`` except every 4th unit ``mua``;
  ``obs_intervals`` spanning the session);
- with ``n_trials``: back-to-back trials from 0.2 s, each 0.8–1.2 s long, a ``move_onset_time`` 0.3–0.5 s
  after the start and an NLB-style ``split`` column (every 5th trial ``val``, the rest ``train``);
- with ``behaviour``: ``processing/behavior/hand_vel``, two sinusoids (0.5 Hz sine, 0.3 Hz cosine) at 100 Hz.

The true rates are returned, not written: an NWB recording carries none, and ``prepare`` must not need them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autolfads.data.nwb import import_pynwb
from autolfads.data.synthetic import integrate_lorenz
from autolfads.outputs.atomic import atomic_path

FINE_S = 0.001  # spikes are drawn on a 1 ms grid
FIRST_UNIT_ID = 100


@dataclass
class SyntheticSession:
    """What was written, and the truth behind it."""

    nwbfile: Any  # the pynwb NWBFile (edit it before ``write`` to make a bad file)
    spike_times: list[np.ndarray]  # per unit, as written
    rates_hz: np.ndarray  # (n_ms, U) true rates on the 1 ms grid from t = 0
    unit_ids: list[int]
    trials: list[dict[str, Any]] = field(default_factory=list)  # rows as written
    hand_vel: np.ndarray | None = None  # (n, 2) at 100 Hz from t = 0
    path: Path | None = None

    def write(self, path: str | Path) -> Path:
        """Write the NWB file (pynwb's advice on optional metadata is silenced) and return its path."""
        pynwb = import_pynwb()
        self.path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pynwb.NWBHDF5IO(str(self.path), "w") as io:
                io.write(self.nwbfile)
        return self.path


def lorenz_rates(duration_s: float, n_units: int, seed: int = 0, mean_hz: float = 20.0) -> np.ndarray:
    """``(duration / 1 ms, n_units)`` smooth rates in Hz, driven by a 3-D Lorenz trajectory."""
    rng = np.random.default_rng(seed)
    n_coarse = round(duration_s / 0.01) + 1
    start = np.array([1.0, 1.0, 25.0]) + rng.normal(size=3)
    latent = integrate_lorenz(start, n_coarse + 200, 0.01)[200:]  # the first 2 s settle onto the attractor
    latent = (latent - latent.mean(0)) / latent.std(0)
    fine_t = np.arange(round(duration_s / FINE_S)) * FINE_S
    coarse_t = np.arange(n_coarse) * 0.01
    z = np.stack([np.interp(fine_t, coarse_t, latent[:, k]) for k in range(3)], axis=1)
    weights = rng.normal(size=(3, n_units)) * 0.6
    return mean_hz * np.exp(z @ weights - 0.5 * (weights**2).sum(0))


def draw_spikes(rates_hz: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Poisson spikes from rates on the 1 ms grid, each placed uniformly inside its millisecond."""
    rng = np.random.default_rng(seed + 1000)
    counts = rng.poisson(rates_hz * FINE_S)
    spikes = []
    for unit in range(rates_hz.shape[1]):
        steps = np.repeat(np.arange(counts.shape[0]), counts[:, unit])
        spikes.append(np.sort((steps + rng.uniform(size=len(steps))) * FINE_S))
    return spikes


def synthetic_session(
    *,
    duration_s: float = 60.0,
    n_units: int = 20,
    n_trials: int = 0,
    seed: int = 0,
    behaviour: bool = True,
    silent_units: Sequence[int] = (),
) -> SyntheticSession:
    """Build (not write) a session; ``n_trials`` 0 makes a continuous recording without a trials table."""
    pynwb = import_pynwb()
    rng = np.random.default_rng(seed)
    rates = lorenz_rates(duration_s, n_units, seed)
    spikes = draw_spikes(rates, seed)
    for unit in silent_units:
        spikes[unit] = np.array([])
    nwbfile = pynwb.NWBFile(
        session_description="synthetic: Poisson spikes from Lorenz-driven rates (autolfads synth nwb)",
        identifier=f"autolfads-synthetic-{seed}",
        session_start_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    nwbfile.add_unit_column("quality", "sorting quality")
    unit_ids = [FIRST_UNIT_ID + u for u in range(n_units)]
    for unit in range(n_units):
        nwbfile.add_unit(
            spike_times=spikes[unit],
            quality="good" if unit % 4 else "mua",
            obs_intervals=[[0.0, duration_s]],
            id=unit_ids[unit],
        )
    session = SyntheticSession(nwbfile, spikes, rates, unit_ids)
    if n_trials:
        nwbfile.add_trial_column("move_onset_time", "movement onset (s)")
        nwbfile.add_trial_column("split", "NLB-style split: train or val")
        start = 0.2
        for k in range(n_trials):
            length = rng.uniform(0.8, 1.2)
            row = {
                "start_time": start,
                "stop_time": start + length,
                "move_onset_time": start + rng.uniform(0.3, 0.5),
                "split": "val" if k % 5 == 4 else "train",
            }
            nwbfile.add_trial(**row)
            session.trials.append(row)
            start += length
        if start > duration_s:
            raise ValueError(f"{n_trials} trials need {start:.1f} s, more than the {duration_s:g} s session")
    if behaviour:
        t = np.arange(int(duration_s * 100)) / 100.0
        session.hand_vel = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
        module = nwbfile.create_processing_module("behavior", "hand kinematics")
        module.add(
            pynwb.TimeSeries(
                name="hand_vel", data=session.hand_vel, unit="m/s", rate=100.0, starting_time=0.0
            )
        )
    return session


def write_synthetic_nwb(path: str | Path, **options: Any) -> SyntheticSession:
    """``synthetic_session(**options)`` written to ``path`` atomically (complete, or not at all)."""
    session = synthetic_session(**options)
    with atomic_path(path) as tmp:
        session.write(tmp)
    session.path = Path(path)
    return session


__all__ = ["SyntheticSession", "draw_spikes", "lorenz_rates", "synthetic_session", "write_synthetic_nwb"]
