"""What a running population looks like from outside: ``progress.json``, the console, listeners.

One :class:`RunProgress` per run is the only writer of ``progress.json`` (interface 5); the Ray callback
(:class:`ProgressCallback`) feeds it trial events while the population trains, and the driver feeds it the
phases after training (posterior sampling, writing the outputs). Every change is written atomically (at
most about once a second; a new phase or generation at once), shown by the console view
(:class:`autolfads.tune.console.PopulationView`) and passed to ``listeners`` (MLflow, Prometheus, the
object-storage mirror), so all of them read the same numbers.

``progress.json`` fields (the Kubernetes operator copies them into the job's status and its metrics)::

    phase              starting | training | sampling | writing | succeeded | failed | interrupted
    phase_done         units of the current phase finished (sampling: trials), null while training
    phase_total        units in the current phase, null when unknown
    phase_unit         what phase_done counts ("trials" while sampling)
    generation         generations completed (0 while the first trains)
    generations_total  generations planned by trainer.max_epochs (the stopping rule may end sooner)
    epoch              epochs completed by the slowest member (null before the first report)
    max_epochs         trainer.max_epochs
    epochs_done        epochs completed by all members together
    epochs_total       members x max_epochs
    epoch_seconds      mean wall time of one member's epoch (last 20 epochs reported)
    checkpoint_bytes   bytes of trial checkpoints written so far (this attempt)
    started_at         when this attempt started (ISO 8601, UTC)
    elapsed_s          seconds since then
    eta_s              estimated seconds left in the current phase (null when unknown)
    best_metric        best valid/recon_smth so far; best_trial: its worker id
    trials_running, trials_paused, trials_errored, trials_done, trials_total
    exploits           exploits so far
    mlflow_run_id      the MLflow parent run
    updated_at         when this record was written (ISO 8601, UTC)
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from autolfads.config.pbt import PBTSettings
from autolfads.constants import CUR_EPOCH, WORKER_ID
from autolfads.tracking.series import PHASES
from autolfads.tune.history import HISTORY_JSONL, read_records

if TYPE_CHECKING:
    from ray.tune import Checkpoint

    from autolfads.tune.console import PopulationView

PROGRESS_FILE = "progress.json"
ProgressListener = Callable[[dict[str, Any]], None]
logger = logging.getLogger("autolfads.tune")

DONE_PHASES = ("succeeded", "failed", "interrupted")
_EPOCH_WINDOW = 20  # epochs averaged for epoch_seconds


def write_progress(run_dir: str | os.PathLike[str], progress: dict[str, Any]) -> dict[str, Any]:
    """Atomically replace ``run_dir/progress.json``; NaN/Inf become null (strict JSON for the operator)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in progress.items()}
    clean["updated_at"] = _now_iso()
    path = Path(run_dir) / PROGRESS_FILE
    tmp = path.with_name(f".{PROGRESS_FILE}.tmp")
    tmp.write_text(json.dumps(clean, indent=1))
    os.replace(tmp, path)
    return clean


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def generations_planned(settings: PBTSettings, max_epochs: int) -> int:
    """Generations that ``max_epochs`` epochs make (the last one may be shorter than the interval)."""
    return settings.generation_of(max(max_epochs, 1) - 1) + 1


class RunProgress:
    """The run's progress: state, the one writer of ``progress.json``, the console view and listeners."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        settings: PBTSettings,
        max_epochs: int,
        *,
        mlflow_run_id: str | None = None,
        listeners: Sequence[ProgressListener] = (),
        view: PopulationView | None = None,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.max_epochs = int(max_epochs)
        self.mlflow_run_id = mlflow_run_id
        self.listeners = list(listeners)
        self.view = view
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._started_at = _now_iso()
        self.phase = "starting"
        self._phase_started = self._started
        self._phase_done: int | None = None
        self._phase_total: int | None = None
        self._phase_unit: str | None = None
        self._epochs: dict[int, int] = {}  # worker -> epochs completed
        self._scores: dict[int, float] = {}  # worker -> last metric
        self._epoch_seconds: deque[float] = deque(maxlen=_EPOCH_WINDOW)
        self._first_result: float | None = None  # when this attempt's first epoch was reported
        self._trained = 0  # member-epochs reported by this attempt (a resume's members start mid-run)
        self._counts = {"running": 0, "paused": 0, "errored": 0, "done": 0}
        self._trials_total = settings.num_samples
        self._checkpoint_bytes = 0
        self._exploits = 0
        self._history_size = -1
        self._final: dict[str, Any] = {}
        self._last_write = -math.inf
        self._last: dict[str, Any] = {}

    # --- events ---------------------------------------------------------------------------------------
    def resume_at(self, epochs: Mapping[int, int], scores: Mapping[int, float] | None = None) -> None:
        """A resumed run (``autolfads run --resume``): these members stand at these epochs, with these
        metrics, until they report again; the others start over from 0. ``epochs_done``, the generation and
        the ETA count from there (only this attempt's reports make the rate)."""
        for worker, done in epochs.items():
            self._epochs[int(worker)] = max(self._epochs.get(int(worker), 0), int(done))
        for worker, score in (scores or {}).items():
            self._scores.setdefault(int(worker), float(score))

    def trial_result(self, worker: int, result: dict[str, Any]) -> None:
        """A member reported an epoch: its epoch count, metric and epoch time."""
        if CUR_EPOCH in result:
            self._epochs[worker] = max(self._epochs.get(worker, 0), int(result[CUR_EPOCH]) + 1)
            self._trained += 1
            if self._first_result is None:
                self._first_result = self._clock()
        metric = result.get(self.settings.metric)
        if isinstance(metric, int | float):
            self._scores[worker] = float(metric)
        seconds = result.get("epoch_s")
        if isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0:
            self._epoch_seconds.append(float(seconds))
        if self.phase == "starting":
            self.phase = "training"
            self._phase_started = self._clock()

    def trial_counts(self, trials: Sequence[Any]) -> None:
        statuses = [t.status for t in trials]
        self._counts = {
            "running": statuses.count(Trial.RUNNING),
            "paused": statuses.count(Trial.PAUSED) + statuses.count(Trial.PENDING),
            "errored": statuses.count(Trial.ERROR),
            "done": statuses.count(Trial.TERMINATED),
        }
        if trials:
            self._trials_total = len(trials)

    def add_checkpoint_bytes(self, count: int) -> None:
        self._checkpoint_bytes += max(int(count), 0)

    def set_phase(
        self, phase: str, *, total: int | None = None, unit: str | None = None, **final: Any
    ) -> None:
        """Enter ``phase`` (written at once); ``final`` overrides fields (the best member) at the end."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
        self.phase = phase
        self._phase_started = self._clock()
        self._phase_done = 0 if total is not None or unit is not None else None
        self._phase_total, self._phase_unit = total, unit
        self._final.update(final)
        if phase in DONE_PHASES:
            self._counts["running"] = 0
        self.update(force=True)

    def step(self, done: int, total: int | None, unit: str = "batches") -> None:
        """Progress inside a phase (:class:`autolfads.outputs.phases.PhaseProgress`)."""
        self._phase_done, self._phase_total, self._phase_unit = int(done), total, unit
        self.update(force=total is not None and done >= total)

    # --- state --------------------------------------------------------------------------------------------
    @property
    def epochs_done(self) -> int:
        return sum(self._epochs.values())

    def _exploit_count(self) -> int:
        path = self.run_dir / HISTORY_JSONL
        size = path.stat().st_size if path.is_file() else 0
        if size != self._history_size:  # re-read only when the scheduler appended
            self._history_size = size
            self._exploits = len(read_records(path))
        return self._exploits

    def _eta(self, now: float) -> float | None:
        if self.phase == "training" and self._first_result is not None:
            # member-epochs per second since the first report (that one's time is unknown: not counted)
            rate = (self._trained - 1) / max(now - self._first_result, 1e-9)
            left = self.settings.num_samples * self.max_epochs - self.epochs_done
            return left / rate if rate > 0 else None
        if self._phase_total and self._phase_done:
            per_unit = (now - self._phase_started) / self._phase_done
            return per_unit * max(self._phase_total - self._phase_done, 0)
        return None

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        # members that have not reported yet count as 0 epochs
        slowest = (
            min(self._epochs.get(w, 0) for w in range(self.settings.num_samples)) if self._epochs else None
        )
        finite = {w: s for w, s in self._scores.items() if math.isfinite(s)}
        pick = min if self.settings.mode == "min" else max
        best = pick(finite, key=finite.__getitem__) if finite else None
        total_generations = generations_planned(self.settings, self.max_epochs)
        # the slowest member trains epoch ``slowest`` (0-based): its generation is the number completed
        generation = self.settings.generation_of(slowest) if slowest is not None else 0
        eta = self._eta(now)
        progress = {
            "phase": self.phase,
            "phase_done": self._phase_done,
            "phase_total": self._phase_total,
            "phase_unit": self._phase_unit,
            "generation": min(generation, total_generations),
            "generations_total": total_generations,
            "epoch": slowest,
            "max_epochs": self.max_epochs,
            "epochs_done": self.epochs_done,
            "epochs_total": self.settings.num_samples * self.max_epochs,
            "epoch_seconds": (
                round(sum(self._epoch_seconds) / len(self._epoch_seconds), 3) if self._epoch_seconds else None
            ),
            "checkpoint_bytes": self._checkpoint_bytes,
            "started_at": self._started_at,
            "elapsed_s": round(now - self._started, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "best_metric": finite[best] if best is not None else None,
            "best_trial": best,
            "trials_running": self._counts["running"],
            "trials_paused": self._counts["paused"],
            "trials_errored": self._counts["errored"],
            "trials_done": self._counts["done"],
            "trials_total": self._trials_total,
            "exploits": self._exploit_count(),
            "mlflow_run_id": self.mlflow_run_id,
        }
        progress.update(self._final)
        return progress

    def update(self, force: bool = False) -> dict[str, Any] | None:
        """Write, show and pass on the current state (throttled unless ``force``); the record written."""
        now = self._clock()
        progress = self.snapshot()
        # a new phase or generation (or the first epoch of one) is always news: a plain log shows each,
        # however fast the epochs are
        milestone = _milestone(progress) != _milestone(self._last)
        if not force and not milestone and now - self._last_write < self.min_interval_s:
            return None
        # elapsed/eta/updated_at change every call: only a change elsewhere (or force) is news
        steady = {k: v for k, v in progress.items() if k not in ("elapsed_s", "eta_s")}
        if steady == self._last and not force and now - self._last_write < 10 * self.min_interval_s:
            return None
        self._last_write, self._last = now, steady
        written = write_progress(self.run_dir, progress)
        for listener in self.listeners:
            try:
                listener(written)
            except Exception as exc:  # a listener (MLflow, a mirror) must never stop the run
                logger.warning("progress listener %r failed: %s", listener, exc)
        if self.view is not None:
            self.view.show(written, self.settings.metric)
        return written

    def close(self) -> None:
        """Stop the console view (its last state stays on the screen)."""
        if self.view is not None:
            self.view.stop()


def _milestone(progress: dict[str, Any]) -> tuple[Any, ...]:
    return progress.get("phase"), progress.get("generation"), progress.get("epoch") is None


class ProgressCallback(Callback):
    """Ray Tune callback (runs in the driver) that feeds a :class:`RunProgress` with trial events."""

    def __init__(self, progress: RunProgress) -> None:
        self.progress = progress

    def setup(self, **_: Any) -> None:
        if self.progress.phase == "starting":
            self.progress.update(force=True)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **_: Any
    ) -> None:
        worker = int(result.get(WORKER_ID, trial.config.get(WORKER_ID, -1)))
        self.progress.trial_result(worker, result)
        self.progress.trial_counts(trials)
        self.progress.update()

    def on_checkpoint(
        self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Checkpoint, **_: Any
    ) -> None:
        self.progress.add_checkpoint_bytes(checkpoint_bytes(checkpoint))

    def on_step_end(self, iteration: int, trials: list[Trial], **_: Any) -> None:
        self.progress.trial_counts(trials)
        self.progress.update()

    def on_experiment_end(self, trials: list[Trial], **_: Any) -> None:
        self.progress.trial_counts(trials)
        self.progress.update(force=True)


def checkpoint_bytes(checkpoint: Checkpoint) -> int:
    """Total size of a checkpoint's files, on whatever filesystem holds it (0 if it cannot be listed)."""
    from pyarrow import fs as pafs

    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(checkpoint.path, recursive=True))
    except Exception as exc:  # a number on a dashboard must never break the run
        logger.debug("cannot size checkpoint %s: %s", checkpoint.path, exc)
        return 0
    return sum(info.size or 0 for info in infos if info.type == pafs.FileType.File)


__all__ = [
    "DONE_PHASES",
    "PHASES",
    "PROGRESS_FILE",
    "ProgressCallback",
    "ProgressListener",
    "RunProgress",
    "checkpoint_bytes",
    "generations_planned",
    "read_progress",
    "write_progress",
]
