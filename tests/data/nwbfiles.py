"""NWB files built with pynwb itself, with spikes drawn from known rates (not a test module).

``lorenz_rates`` gives smooth firing rates over a whole session (Lorenz-driven log-rates, as in
``autolfads.data.synthetic``); ``write_session`` draws Poisson spikes from them at 1 ms resolution and
writes an NWB file with a units table (a ``quality`` column), optionally a trials table (with a
``move_onset_time`` and an NLB-style ``split`` column) and a ``hand_vel`` behaviour TimeSeries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autolfads.data.synthetic import integrate_lorenz

FINE_S = 0.001  # spikes are drawn on a 1 ms grid


@dataclass
class Session:
    path: Path
    spike_times: list[np.ndarray]  # per unit, as written
    rates_hz: np.ndarray  # (n_fine, U) true rates on the 1 ms grid from t=0
    unit_ids: list[int]
    trials: list[dict[str, Any]]  # rows as written
    hand_vel: np.ndarray | None  # (n, 2) at 100 Hz from t=0


def lorenz_rates(duration_s: float, n_units: int, seed: int = 0, mean_hz: float = 20.0) -> np.ndarray:
    """``(duration / 1 ms, n_units)`` smooth rates in Hz, driven by a 3-D Lorenz trajectory."""
    rng = np.random.default_rng(seed)
    n_coarse = round(duration_s / 0.01) + 1
    latent = integrate_lorenz(np.array([1.0, 1.0, 25.0]) + rng.normal(size=3), n_coarse + 200, 0.01)[200:]
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


def write_session(
    path: Path,
    *,
    duration_s: float = 20.0,
    n_units: int = 10,
    n_trials: int = 0,
    seed: int = 0,
    behaviour: bool = True,
    silent_units: Sequence[int] = (),
    rates_hz: np.ndarray | None = None,
    edit: Callable[[Any], None] | None = None,
) -> Session:
    """An NWB session of units with known rates; ``n_trials`` back-to-back trials (0: continuous).

    Trial ``k`` lasts 0.8–1.2 s with ``move_onset_time`` 0.3–0.5 s after its start; every 5th trial is
    ``val`` in the ``split`` column, the rest ``train``. ``silent_units`` get no spikes at all. ``edit``
    can change the NWBFile object before it is written (for bad-input tests).
    """
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries

    rng = np.random.default_rng(seed)
    rates = lorenz_rates(duration_s, n_units, seed) if rates_hz is None else rates_hz
    spikes = draw_spikes(rates, seed)
    for unit in silent_units:
        spikes[unit] = np.array([])
    nwbfile = NWBFile(
        session_description="synthetic session for autolfads tests",
        identifier=f"autolfads-test-{seed}",
        session_start_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    nwbfile.add_unit_column("quality", "sorting quality")
    unit_ids = [100 + u for u in range(n_units)]
    for unit in range(n_units):
        nwbfile.add_unit(
            spike_times=spikes[unit],
            quality="good" if unit % 4 else "mua",
            obs_intervals=[[0.0, duration_s]],
            id=unit_ids[unit],
        )
    trials = []
    if n_trials:
        nwbfile.add_trial_column("move_onset_time", "movement onset (s)")
        nwbfile.add_trial_column("split", "NLB-style split")
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
            trials.append(row)
            start += length
        if start > duration_s:
            raise ValueError(f"{n_trials} trials need {start:.1f} s, more than duration_s {duration_s}")
    hand_vel = None
    if behaviour:
        t = np.arange(int(duration_s * 100)) / 100.0
        hand_vel = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t)], axis=1)
        module = nwbfile.create_processing_module("behavior", "hand kinematics")
        module.add(TimeSeries(name="hand_vel", data=hand_vel, unit="m/s", rate=100.0, starting_time=0.0))
    if edit is not None:
        edit(nwbfile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pynwb's advice on optional metadata is not what these tests check
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return Session(path, spikes, rates, unit_ids, trials, hand_vel)
