"""The Ray Tune callback that gives each PBT member its MLflow child run (:class:`RunTracker`).

A thin adapter: it turns Tune's trial events into the tracker's calls, so the logic is tested without Ray
and the adapter with a real Tune run. Ray's own ``MLflowLoggerCallback`` is not used: it re-logs params
when PBT restarts a trial with new hyperparameters, which MLflow refuses, and the refusal stops
``Tuner.fit()`` (k8s-notes §6.5). (Prometheus needs no callback: its series come from ``progress.json``.)

Resume: ``Tuner`` pickles its ``RunConfig`` (callbacks included) and ``Tuner.restore`` brings back those
pickled callbacks, not new ones. A tracker (HTTP sessions, locks) cannot travel that way, so the callback
pickles only its ``key`` and finds the live tracker at call time in a per-process registry. Build it
with the same ``key`` (the run directory) on a fresh start and on a resume.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from autolfads.constants import GENERATION, HP_PREFIX, WORKER_ID
from autolfads.tracking.mlflow_tracking import RunTracker, step_of, worker_run_name

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

log = logging.getLogger("autolfads.tracking")

_LIVE: dict[str, Any] = {}  # key -> the live RunTracker of this process


def searched_hps(config: dict[str, Any]) -> set[str]:
    """``hp/<name>`` metric names of the hyperparameters PBT searches (the trial config's other keys)."""
    return {f"{HP_PREFIX}{key.rsplit('.', 1)[-1]}" for key in config if key != WORKER_ID}


class MLflowTrialCallback(Callback):
    """One MLflow child run per member; model metrics and searched ``hp/*`` per epoch; final HPs as params."""

    def __init__(self, tracker: RunTracker, key: str = "default") -> None:
        self.key = key
        _LIVE[key] = tracker

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key = state["key"]

    @property
    def tracker(self) -> RunTracker | None:
        return _LIVE.get(self.key)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is None:
            return
        worker = trial.config.get(WORKER_ID)
        tags = {} if worker is None else {"worker_id": worker}
        tracker.start_trial(
            trial.trial_id,
            {k: v for k, v in trial.config.items() if k != WORKER_ID},
            tags=tags,
            step=tracker.last_step(trial.trial_id),
            run_name=worker_run_name(worker) if worker is not None else None,
        )

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # A restore after a crash or an exploit may bring a new config: same path as a start.
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if (tracker := self.tracker) is None:
            return
        searched = searched_hps(trial.config)
        kept = {k: v for k, v in result.items() if not k.startswith(HP_PREFIX) or k in searched}
        tags = {"generation": result[GENERATION]} if GENERATION in result else {}
        tracker.log_trial_result(trial.trial_id, kept, step=step_of(result), tags=tags)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.end_trial(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.end_trial(trial.trial_id, "FAILED")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.flush()


__all__ = ["MLflowTrialCallback", "searched_hps", "worker_run_name"]
