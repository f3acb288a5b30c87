"""Ray Tune callbacks that feed MLflow (:class:`RunTracker`) and Prometheus (:class:`RunMetrics`).

Thin adapters: they turn Tune's trial events into the tracker's and the metrics' calls, so the logic is
tested without Ray and the adapters with a real Tune run. Pass them to ``tune.RunConfig(callbacks=[…])``.
Ray's own ``MLflowLoggerCallback`` is not used: it re-logs params when PBT restarts a trial with new
hyperparameters, which MLflow refuses, and the refusal stops ``Tuner.fit()`` (k8s-notes §6.5).

Pickling: ``Tuner`` pickles its ``RunConfig`` (callbacks included) into the experiment. A tracker (HTTP
sessions, locks) or a metrics registry cannot travel that way, so a callback pickles only its ``key`` and
finds the live object at call time in a per-process registry (the driver, which never restores a pickled
Tuner, also wraps its callbacks so nothing live is pickled).

Resume: Ray's trial ids change when ``--resume`` builds a fresh Tuner; a population member's MLflow child
run is therefore keyed by its worker id (:func:`trial_key`), so a resumed member continues its own run.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from autolfads.constants import PBT_METRIC, WORKER_ID
from autolfads.tracking.metrics import RunMetrics
from autolfads.tracking.mlflow_tracking import RunTracker, member_key, step_of

if TYPE_CHECKING:
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

log = logging.getLogger("autolfads.tracking")

_LIVE: dict[str, Any] = {}  # key -> the live RunTracker / RunMetrics of this process


class _Attached(Callback):
    """A callback bound to a live object through ``key``; pickles as the key alone."""

    def __init__(self, target: Any, key: str) -> None:
        self.key = key
        _LIVE[f"{type(self).__name__}:{key}"] = target

    def _target(self) -> Any:
        return _LIVE.get(f"{type(self).__name__}:{self.key}")

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key = state["key"]


def trial_key(trial: Trial) -> str:
    """The MLflow key of a trial: its member's (``worker003``, stable across a resume), else Ray's id."""
    worker = (trial.config or {}).get(WORKER_ID)
    return member_key(worker) if worker is not None else trial.trial_id


class MLflowTrialCallback(_Attached):
    """One MLflow child run per member; every result as per-epoch metrics; changed HPs as metric points."""

    def __init__(self, tracker: RunTracker, key: str = "default") -> None:
        super().__init__(tracker, key)

    @property
    def tracker(self) -> RunTracker | None:
        return self._target()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is None:
            return
        tags = {"autolfads.trial_name": str(trial)}
        if WORKER_ID in trial.config:
            tags["autolfads.worker_id"] = trial.config[WORKER_ID]
        key = trial_key(trial)
        tracker.start_trial(key, trial.config, tags=tags, step=tracker.last_step(key))

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # A restore after a crash or an exploit may bring a new config: same path as a start.
        self.on_trial_start(iteration, trials, trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if (tracker := self.tracker) is not None:
            tracker.log_trial_result(trial_key(trial), result, step=step_of(result))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.end_trial(trial_key(trial), "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.end_trial(trial_key(trial), "FAILED")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if (tracker := self.tracker) is not None:
            tracker.flush()


class PrometheusCallback(_Attached):
    """Trial states, epochs, epoch durations and checkpoint bytes into :class:`RunMetrics`."""

    def __init__(self, metrics: RunMetrics, key: str = "default", metric: str = PBT_METRIC) -> None:
        super().__init__(metrics, key)
        self.metric = metric

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key, "metric": self.metric}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key, self.metric = state["key"], state["metric"]

    @property
    def metrics(self) -> RunMetrics | None:
        return self._target()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if (metrics := self.metrics) is not None:
            metrics.set_trial_states(Counter(str(t.status).lower() for t in trials))

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        if (metrics := self.metrics) is None:
            return
        duration = result.get("time_this_iter_s")
        metrics.observe_epoch(float(duration) if isinstance(duration, int | float) else None)
        value = result.get(self.metric)
        if isinstance(value, int | float):
            metrics.observe_best(float(value))

    def on_checkpoint(
        self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Checkpoint, **info: Any
    ) -> None:
        if (metrics := self.metrics) is not None:
            metrics.add_checkpoint_bytes(checkpoint_bytes(checkpoint))


def checkpoint_bytes(checkpoint: Checkpoint) -> int:
    """Total size of a checkpoint's files, on whatever filesystem holds it (0 if it cannot be listed)."""
    from pyarrow import fs as pafs

    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(checkpoint.path, recursive=True))
    except Exception as exc:  # a metric must never break the run
        log.debug("cannot size checkpoint %s: %s", checkpoint.path, exc)
        return 0
    return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)


__all__ = ["MLflowTrialCallback", "PrometheusCallback", "checkpoint_bytes", "trial_key"]
