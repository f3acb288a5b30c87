"""Progress listeners: follow a run through its ``progress.json`` records and ``pbt_history.jsonl``.

TUNE's progress callback calls every listener with the progress dict (contracts §5) each time it
changes. :class:`MlflowProgressListener` turns that into parent-run metrics (generation, best metric,
exploits, step = epoch) and turns each new exploit line of ``pbt_history.jsonl`` into an exploit event on
the loser's child run (:meth:`RunTracker.record_exploit`). :meth:`RunMetrics.update_from_progress` is
the Prometheus listener. Only files are read here, never ``autolfads.tune`` (tracking sits below tune).
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
from autolfads.tracking.mlflow_tracking import RunTracker, member_key

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
    """Call with each progress dict; logs run-level curves and exploit events to MLflow."""

    def __init__(
        self, tracker: RunTracker, run_dir: str | os.PathLike[str], metric: str = PBT_METRIC
    ) -> None:
        self.tracker = tracker
        self.history = Path(run_dir) / HISTORY_JSONL
        self.metric = metric
        self._offset = 0
        self._seen: set[tuple[int, str]] = set()
        self._last: dict[str, float] = {}

    def __call__(self, progress: Mapping[str, Any]) -> None:
        step = progress.get("epoch")
        step = int(step) if isinstance(step, int | float) else 0
        values = {
            "generation": progress.get("generation"),
            f"best/{self.metric}": progress.get("best_metric"),
            "pbt/exploits": progress.get("exploits"),
            "trials/running": progress.get("trials_running"),
        }
        finite = {
            k: float(v)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        changed = {k: v for k, v in finite.items() if self._last.get(k) != v}
        if changed:
            self._last.update(changed)
            self.tracker.log_metrics(changed, step=step)
        if progress.get("best_trial") is not None:
            self.tracker.set_tags({"best_worker": progress["best_trial"]})
        self.poll_exploits()

    def poll_exploits(self) -> int:
        """Log exploit records appended since the last call; returns how many were new."""
        records, self._offset = read_exploit_lines(self.history, self._offset)
        new = 0
        for record in records:
            try:
                # members by worker id (their child runs' keys): Ray's trial ids change on a resume
                key = (int(record["generation"]), member_key(record["loser"]))
                if key in self._seen:
                    continue  # a resumed run replays its last generation
                old, now = record.get("old", {}), record.get("new", {})
                changes = {k: (float(old.get(k, math.nan)), float(v)) for k, v in now.items()}
                self.tracker.record_exploit(
                    key[1],
                    generation=key[0],
                    cloned_from=member_key(record["winner"]),
                    changes=changes,
                    step=int(record.get("epoch", 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                log.debug("skipping malformed exploit record %r: %s", record, exc)
                continue
            self._seen.add(key)
            new += 1
        return new


__all__ = ["HISTORY_JSONL", "MlflowProgressListener", "read_exploit_lines"]
