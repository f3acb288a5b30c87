"""Progress listeners: follow a run through its ``progress.json`` records and ``pbt_history.jsonl``.

The run's ``RunProgress`` calls every listener with each new record. :class:`MlflowProgressListener`
turns that into the parent run's ``best/<metric>`` series and each new exploit line of
``pbt_history.jsonl`` into the loser's ``exploit/*`` tags (:meth:`RunTracker.record_exploit`).
Only files are read here, never ``autolfads.tune`` (tracking sits below tune).

The best series is what a user looks at first, so it must read as a curve: one point per epoch, steps
strictly increasing, the population's best at that epoch (step = the slowest member's last completed
epoch, 0-based like the children's metrics). A point is held back until the run moves past
its epoch (later records of the same epoch replace it) and :meth:`MlflowProgressListener.finish` ends the
series on the selected member's value; nothing is ever logged twice at one step or again at step 0.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autolfads.constants import PBT_METRIC
from autolfads.tracking.mlflow_tracking import RunTracker, worker_run_name

log = logging.getLogger("autolfads.tracking")
HISTORY_JSONL = "pbt_history.jsonl"  # written by autolfads.tune.history (one JSON object per exploit)


def read_exploit_lines(path: str | os.PathLike[str], start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of ``path`` from byte ``start``; returns them and the offset to resume from.

    A trailing line without its newline (being written right now) is left for the next call.
    """
    path = Path(path)
    if not path.is_file():
        return [], start
    with path.open("rb") as handle:
        handle.seek(start)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records, start + end


class MlflowProgressListener:
    """Call with each progress dict; logs the parent's best series and exploit events to MLflow."""

    def __init__(
        self, tracker: RunTracker, run_dir: str | os.PathLike[str], metric: str = PBT_METRIC
    ) -> None:
        self.tracker = tracker
        self.history = Path(run_dir) / HISTORY_JSONL
        self.metric = metric
        self._offset = 0
        self._seen: set[tuple[int, str]] = set()
        self._pending: tuple[int, float] | None = None  # (step, best) not logged yet
        self._logged_step = -1
        self._last_step = -1

    @property
    def series(self) -> str:
        return f"best/{self.metric}"

    def __call__(self, progress: Mapping[str, Any]) -> None:
        epochs, best = progress.get("epoch"), progress.get("best_metric")
        if _finite(epochs) and epochs >= 1 and _finite(best):
            step = _step(epochs)
            self._last_step = max(self._last_step, step)
            if self._pending is not None and step > self._pending[0]:
                self._log(*self._pending)
            if step > self._logged_step:
                self._pending = (step, float(best))
        self.poll_exploits()

    def _log(self, step: int, value: float) -> None:
        self.tracker.log_series_point(self.series, value, step)
        self._logged_step, self._pending = step, None

    def finish(self, best: float | None = None, epochs: int | None = None) -> None:
        """End the series: the held-back point, with the selected member's ``best`` value when given
        (``epochs``: the epochs completed then, as ``progress.json`` says)."""
        if best is not None and _finite(best):
            at = (
                self._pending[0] if self._pending is not None else max(self._last_step, self._logged_step + 1)
            )
            if epochs is not None and epochs >= 1:
                at = max(at, _step(epochs))
            if at <= self._logged_step:
                at = self._logged_step + 1
            self._pending = (at, float(best))
        if self._pending is not None:
            self._log(*self._pending)
        self.poll_exploits()

    def poll_exploits(self) -> int:
        """Log exploit records appended since the last call; returns how many were new."""
        records, self._offset = read_exploit_lines(self.history, self._offset)
        new = 0
        for record in records:
            try:
                key = (int(record["generation"]), str(record["loser_trial"]))
                if key in self._seen:
                    continue  # a resumed run replays its last generation
                self.tracker.record_exploit(
                    key[1], generation=key[0], cloned_from=worker_run_name(record["winner"])
                )
            except (KeyError, TypeError, ValueError) as exc:
                log.debug("skipping malformed exploit record %r: %s", record, exc)
                continue
            self._seen.add(key)
            new += 1
        return new


def _step(epochs_completed: Any) -> int:
    """The MLflow step of a point after ``epochs_completed`` epochs: the 0-based epoch, as the children's
    per-epoch metrics use, so the parent's series lines up with theirs."""
    return int(epochs_completed) - 1


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["HISTORY_JSONL", "MlflowProgressListener", "read_exploit_lines"]
