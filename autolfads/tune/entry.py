"""The function Ray Tune runs for each member, importable without torch or Lightning.

The driver hands Tune this function, which Tune pickles by reference; each trial process imports
:mod:`autolfads.tune.trainable` (torch, Lightning, their ≈ 21 CPU-seconds on a 2-core machine) when it
first calls it. The driver itself needs neither to start the population, so it starts the trials as soon
as Ray is up and imports torch for the end of the run (best member, posterior sampling) while the trials
train (docs/pbt.md, "Start-up").
"""

from __future__ import annotations

from typing import Any


def lfads_trial(config: dict[str, Any], **kwargs: Any) -> None:
    """One member's training: :func:`autolfads.tune.trainable.lfads_trial` with the same arguments
    (``run_config``, ``settings``, ``resume_from``), imported in the trial process."""
    from autolfads.tune.trainable import lfads_trial as train_member

    train_member(config, **kwargs)


__all__ = ["lfads_trial"]
