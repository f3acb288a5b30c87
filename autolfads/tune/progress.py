"""What a running population looks like from outside: ``progress.json``, a console view, listeners.

``progress.json`` (interface 5) is rewritten atomically on every change, at most about once a second:
``{"phase", "generation", "epoch", "best_metric", "best_trial", "trials_running", "trials_total",
"exploits", "updated_at", "mlflow_run_id"}``; the Kubernetes operator copies it into the job's status.
On a TTY a ``rich`` live table shows generation, epoch, trials running/paused/errored, the best metric and
its trial, and the last exploits; otherwise one log line per generation. ``listeners`` (callables taking
the progress dict) let tracking code (MLflow, Prometheus) follow the run without touching Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from autolfads.config.pbt import PBTSettings
from autolfads.constants import CUR_EPOCH, WORKER_ID
from autolfads.tune.history import HISTORY_JSONL, read_records

PROGRESS_FILE = "progress.json"
ProgressListener = Callable[[dict[str, Any]], None]
logger = logging.getLogger("autolfads.tune")


def write_progress(run_dir: str | os.PathLike[str], progress: dict[str, Any]) -> dict[str, Any]:
    """Atomically replace ``run_dir/progress.json``; NaN/Inf become null (strict JSON for the operator)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in progress.items()}
    clean["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = Path(run_dir) / PROGRESS_FILE
    tmp = path.with_name(f".{PROGRESS_FILE}.tmp")
    tmp.write_text(json.dumps(clean, indent=1))
    os.replace(tmp, path)
    return clean


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class ProgressCallback(Callback):
    """Ray Tune callback (runs in the driver) that keeps progress.json, the console and listeners current."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        settings: PBTSettings,
        mlflow_run_id: str | None = None,
        listeners: Sequence[ProgressListener] = (),
        live: bool | None = None,
        min_interval_s: float = 1.0,
    ) -> None:
        self.run_dir = str(run_dir)
        self.settings = settings
        self.mlflow_run_id = mlflow_run_id
        self.listeners = list(listeners)
        self.live = sys.stdout.isatty() if live is None else live
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._last: dict[str, Any] = {}
        self._scores: dict[int, float] = {}
        self._epochs: dict[int, int] = {}
        self._logged_generation = -1
        self._view: Any = None

    # ------------------------------------------------------------------------------------- Ray hooks
    def setup(self, **_: Any) -> None:
        if self.live:
            from rich.live import Live

            self._view = Live(self._table({}, []), refresh_per_second=2, transient=False)
            self._view.start()

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **_: Any
    ) -> None:
        worker = int(result.get(WORKER_ID, trial.config.get(WORKER_ID, -1)))
        if CUR_EPOCH in result:
            self._epochs[worker] = int(result[CUR_EPOCH])
        metric = result.get(self.settings.metric)
        if metric is not None:
            self._scores[worker] = float(metric)
        self._update(trials)

    def on_step_end(self, iteration: int, trials: list[Trial], **_: Any) -> None:
        self._update(trials)

    def on_experiment_end(self, trials: list[Trial], **_: Any) -> None:
        self._update(trials, force=True)
        if self._view is not None:
            self._view.stop()
            self._view = None

    # ------------------------------------------------------------------------------------------ state
    def snapshot(self, trials: Sequence[Trial]) -> dict[str, Any]:
        epoch = min(self._epochs.values()) if self._epochs else None
        finite = {w: s for w, s in self._scores.items() if math.isfinite(s)}
        best_trial = min(finite, key=finite.__getitem__) if finite else None
        statuses = [t.status for t in trials]
        return {
            "phase": "running",
            "generation": self.settings.generation_of(epoch) if epoch is not None else 0,
            "epoch": epoch,
            "best_metric": finite[best_trial] if best_trial is not None else None,
            "best_trial": best_trial,
            "trials_running": statuses.count(Trial.RUNNING),
            "trials_paused": statuses.count(Trial.PAUSED) + statuses.count(Trial.PENDING),
            "trials_errored": statuses.count(Trial.ERROR),
            "trials_total": len(trials),
            "exploits": len(read_records(Path(self.run_dir) / HISTORY_JSONL)),
            "mlflow_run_id": self.mlflow_run_id,
        }

    def _update(self, trials: Sequence[Trial], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s:
            return
        self._last_write = now
        progress = self.snapshot(trials)
        if progress == self._last and not force:
            return
        self._last = progress
        written = write_progress(self.run_dir, progress)
        for listener in self.listeners:
            listener(written)
        if self._view is not None:
            records = read_records(Path(self.run_dir) / HISTORY_JSONL)[-4:]
            self._view.update(self._table(progress, records))
        elif progress["generation"] != self._logged_generation and progress["epoch"] is not None:
            self._logged_generation = progress["generation"]
            logger.info(
                "generation %s, epoch %s: %s running, %s paused, %s errored; best %s %s (worker %s); "
                "%s exploits",
                progress["generation"],
                progress["epoch"],
                progress["trials_running"],
                progress["trials_paused"],
                progress["trials_errored"],
                self.settings.metric,
                _fmt(progress["best_metric"]),
                progress["best_trial"],
                progress["exploits"],
            )

    def _table(self, progress: dict[str, Any], records: list[Any]) -> Any:
        from rich.table import Table

        table = Table(title="AutoLFADS population", show_header=False, box=None)
        for label, key in (
            ("generation", "generation"),
            ("epoch", "epoch"),
            ("running", "trials_running"),
            ("paused", "trials_paused"),
            ("errored", "trials_errored"),
            ("best worker", "best_trial"),
        ):
            table.add_row(label, str(progress.get(key, "")))
        table.add_row(f"best {self.settings.metric}", _fmt(progress.get("best_metric")))
        for record in records:
            table.add_row(
                "exploit",
                f"gen {record.generation}: worker {record.loser} ({_fmt(record.loser_score)}) ← worker "
                f"{record.winner} ({_fmt(record.winner_score)})",
            )
        return table


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


__all__ = ["PROGRESS_FILE", "ProgressCallback", "ProgressListener", "read_progress", "write_progress"]
