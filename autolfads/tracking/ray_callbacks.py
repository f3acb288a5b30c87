"""Ray Tune callbacks that feed MLflow (:class:`RunTracker`) and Prometheus (:class:`RunMetrics`).

Thin adapters: they turn Tune's trial events into the tracker's and the metrics' calls, so the logic is
tested without Ray and the adapters with a real Tune run. Pass them to ``tune.RunConfig(callbacks=[…])``.
Ray's own ``MLflowLoggerCallback`` is not used: it re-logs params when PBT restarts a trial with new
hyperparameters, which MLflow refuses, and the refusal stops ``Tuner.fit()`` (k8s-notes §6.5).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from autolfads.tracking.metrics import RunMetrics
from autolfads.tracking.mlflow_tracking import RunTracker, step_of

if TYPE_CHECKING:
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

log = logging.getLogger("autolfads.tracking")


class MLflowTrialCallback(Callback):
    """One MLflow child run per trial; every result as per-epoch metrics; changed HPs as metric points."""

    def __init__(self, tracker: RunTracker) -> None:
        self.tracker = tracker
        self._last_step: dict[str, int] = {}

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.tracker.start_trial(
            trial.trial_id,
            trial.config,
            tags={"autolfads.trial_name": str(trial)},
            step=self._last_step.get(trial.trial_id, 0),
        )

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # A restore after a crash or an exploit may bring a new config: same path as a start.
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        step = step_of(result)
        self._last_step[trial.trial_id] = step
        self.tracker.log_trial_result(trial.trial_id, result, step=step)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.tracker.end_trial(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.tracker.end_trial(trial.trial_id, "FAILED")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.tracker.flush()


class PrometheusCallback(Callback):
    """Trial states, epochs, epoch durations and checkpoint bytes into :class:`RunMetrics`."""

    def __init__(self, metrics: RunMetrics, metric: str = "valid/recon_smth") -> None:
        self.metrics = metrics
        self.metric = metric

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.metrics.set_trial_states(Counter(str(t.status).lower() for t in trials))

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        duration = result.get("time_this_iter_s")
        self.metrics.observe_epoch(float(duration) if isinstance(duration, int | float) else None)
        value = result.get(self.metric)
        if isinstance(value, int | float):
            self.metrics.observe_best(float(value))

    def on_checkpoint(
        self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Checkpoint, **info: Any
    ) -> None:
        self.metrics.add_checkpoint_bytes(checkpoint_bytes(checkpoint))


def checkpoint_bytes(checkpoint: Checkpoint) -> int:
    """Total size of a checkpoint's files, on whatever filesystem holds it (0 if it cannot be listed)."""
    from pyarrow import fs as pafs

    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(checkpoint.path, recursive=True))
    except Exception as exc:  # a metric must never break the run
        log.debug("cannot size checkpoint %s: %s", checkpoint.path, exc)
        return 0
    return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)


__all__ = ["MLflowTrialCallback", "PrometheusCallback", "checkpoint_bytes"]
