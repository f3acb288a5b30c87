"""Sampling and the multiplicative explore rule of AutoLFADS (lfads-spec §5.5, §5.6).

Pure functions with an explicit ``numpy.random.Generator`` so every draw is reproducible and testable
without Ray. ``perturb`` runs for a tournament loser, starting from its **winner's** config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from autolfads.config.pbt import HyperParam

MAX_TRIES = 100  # redraws before clipping (spec 5.6 step 3: "after more than 99 tries")
_LOW_FRACTION = 0.002  # the multiplier never lands within 0.002·w of 1


def sample(hp: HyperParam, rng: np.random.Generator) -> float:
    """One draw from the HP's sampler (spec 5.5): 10^U(log10 min, log10 max), U(min, max) or an integer."""
    if hp.sample_fn == "loguniform":
        return float(10 ** rng.uniform(np.log10(hp.min_samp), np.log10(hp.max_samp)))
    if hp.sample_fn == "randint":
        return float(rng.integers(int(hp.min_samp), int(hp.max_samp)))
    return float(rng.uniform(hp.min_samp, hp.max_samp))


def initial_value(hp: HyperParam, rng: np.random.Generator, member: int = 0) -> float:
    """The constant ``init`` when one is given (``init[member % len]`` for a list), else a sample."""
    if isinstance(hp.init, tuple):
        return float(hp.init[member % len(hp.init)])
    return float(hp.init) if hp.init is not None else sample(hp, rng)


def initial_config(
    space: Mapping[str, HyperParam], rng: np.random.Generator, member: int = 0
) -> dict[str, float]:
    """A starting point for population member ``member``, HPs in block order."""
    return {key: initial_value(hp, rng, member) for key, hp in space.items()}


def perturb_value(value: float, hp: HyperParam, rng: np.random.Generator) -> tuple[float, float]:
    """Explore one value; returns ``(new_value, multiplier)``.

    p ~ U(0.002·w, w) or U(−w, −0.002·w) with equal odds; candidate = (1 + p)·value; redraw while it is
    outside the bounds, and clip after ``MAX_TRIES`` draws. The rule is multiplicative for every
    ``sample_fn``: a log-uniform HP moves by a factor just like a uniform one (spec 5.6 has no log-space
    step), so it is "log-space" only in the sense that steps are relative to the value.
    """
    low, high = hp.bounds
    w = hp.explore_wt
    candidate = value
    factor = 1.0
    for _ in range(MAX_TRIES):
        magnitude = rng.uniform(_LOW_FRACTION * w, w)
        factor = 1.0 + (magnitude if rng.random() < 0.5 else -magnitude)
        candidate = factor * value
        if low <= candidate <= high:
            return float(candidate), float(factor)
    return float(min(max(candidate, low), high)), float(factor)


def perturb(
    config: Mapping[str, Any], space: Mapping[str, HyperParam], rng: np.random.Generator
) -> tuple[dict[str, Any], dict[str, str]]:
    """Perturb **every** HP of ``space`` in ``config`` (a winner's config); returns (new config, operations).

    ``operations`` maps each key to a short text such as ``"* 0.8"`` or ``"* 1.3, clipped"``, used in the
    exploit log line ``lr_init : 0.004 --- (* 0.8) --> 0.0032``. Keys outside the space are copied.
    """
    new = dict(config)
    operations: dict[str, str] = {}
    for key, hp in space.items():
        old = float(config[key])
        value, factor = perturb_value(old, hp, rng)
        new[key] = value
        clipped = not np.isclose(value, factor * old, rtol=1e-12, atol=0.0)
        operations[key] = f"* {factor:.4g}" + (", clipped" if clipped else "")
    return new, operations


def describe_change(key: str, old: float, new: float, operation: str) -> str:
    """One human log line, Ray's style: ``lr_init : 0.004 --- (* 0.8) --> 0.0032``."""
    return f"{key} : {old:.6g} --- ({operation}) --> {new:.6g}"


__all__ = [
    "MAX_TRIES",
    "describe_change",
    "initial_config",
    "initial_value",
    "perturb",
    "perturb_value",
    "sample",
]
