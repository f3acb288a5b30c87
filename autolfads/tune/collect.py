"""Every trial result as it arrives, then the fitlog, the best member and checkpoint pruning.

Why not read Ray's per-trial ``result.json``: Ray's JSON logger re-downloads that file from storage at each
trial (re)start, so rows reported just before an exploit can be lost (seen with PBT pauses). The driver
sees every result first-hand, so ``ResultRecorder`` appends each one to ``OUT/trial_results.jsonl``
(flushed per line; a resumed run appends). Checkpoint pruning goes through the ``pyarrow`` filesystem
Ray gives each result, so it works the same for a local ``trials/`` directory and for object storage.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow import fs as pafs
from ray.tune import Callback, Result

from autolfads.constants import CUR_EPOCH, GENERATION, WORKER_ID
from autolfads.outputs.fitlog import fitlog_frame
from autolfads.tune.devices import REPORT_KEYS

RESULTS_JSONL = "trial_results.jsonl"
# Keys Ray Tune adds to every result; the fitlog keeps only what the trial itself reported.
RAY_KEYS = frozenset(
    {
        "config",
        "trial_id",
        "date",
        "timestamp",
        "time_this_iter_s",
        "time_total_s",
        "hostname",
        "node_ip",
        "time_since_restore",
        "iterations_since_restore",
        "training_iteration",
        "done",
        "checkpoint_dir_name",
        "should_checkpoint",
        "experiment_tag",
    }
)

# Recorded in trial_results.jsonl but not in fitlog: trial id, process id (the fault tests find trial
# processes by it), the timings bench/bench_pbt.py breaks the run's wall time into, and where the trial
# ran (Ray node, device; autolfads.tune.devices).
_BOOKKEEPING = ("trial_id", "pid", "epoch_s", "setup_s", "report_s", "reported_at", *REPORT_KEYS)


class ResultRecorder(Callback):
    """Ray Tune callback (driver side): append every trial result to ``run_dir/trial_results.jsonl``."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = str(run_dir)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **_: Any) -> None:
        row = {k: v for k, v in result.items() if k not in RAY_KEYS and not isinstance(v, dict)}
        row.setdefault(WORKER_ID, trial.config.get(WORKER_ID))
        row["trial_id"] = trial.trial_id
        with open(Path(self.run_dir) / RESULTS_JSONL, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, allow_nan=True) + "\n")
            handle.flush()


def read_result_rows(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every recorded result (all trials, generations, restarts), in arrival order."""
    path = Path(run_dir) / RESULTS_JSONL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a killed driver
    return rows


def population_fitlog(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per (worker, epoch); an epoch reported twice (restart, resume) keeps its last report."""
    rows = [
        {**{k: v for k, v in row.items() if k not in _BOOKKEEPING}, "epoch": row.get("epoch", row[CUR_EPOCH])}
        for row in read_result_rows(run_dir)
        if CUR_EPOCH in row
    ]
    if not rows:
        return pd.DataFrame(columns=["epoch", WORKER_ID, GENERATION])
    return fitlog_frame(pd.DataFrame(rows))


@dataclass(frozen=True)
class BestMember:
    worker_id: int
    metric: float
    epoch: int
    result: Result


def best_member(
    results: Iterable[Result], fitlog: pd.DataFrame, metric: str, mode: str = "min"
) -> BestMember | None:
    """The member with the lowest (``mode`` max: highest) **last reported** ``metric`` (spec 5.9)."""
    sign = 1.0 if mode == "min" else -1.0
    by_worker = {int((r.config or {}).get(WORKER_ID, -1)): r for r in results}
    best: BestMember | None = None
    if metric not in fitlog.columns:
        return None
    for worker, rows in fitlog.groupby(WORKER_ID):
        rows = rows.dropna(subset=[metric]).sort_values("epoch")
        if rows.empty or int(worker) not in by_worker:
            continue
        last = rows.iloc[-1]
        value = float(last[metric])
        if not math.isfinite(value) or by_worker[int(worker)].checkpoint is None:
            continue
        if best is None or sign * value < sign * best.metric:
            best = BestMember(int(worker), value, int(last["epoch"]), by_worker[int(worker)])
    return best


def prune_checkpoints(results: Iterable[Result], earlier_attempts: bool = False) -> int:
    """Delete every trial checkpoint but its latest (all kept during the run); returns how many.

    ``earlier_attempts``: also every checkpoint of the experiment's other trial directories — the trials
    of an interrupted attempt, whose boundary checkpoints a ``--resume`` started from.
    """
    results = list(results)
    removed = 0
    if earlier_attempts and results:
        removed += _prune_other_trials(results)
    for result in results:
        keep = result.checkpoint.path.rstrip("/") if result.checkpoint else None
        filesystem = result.filesystem or pafs.LocalFileSystem()
        try:
            entries = filesystem.get_file_info(pafs.FileSelector(result.path, allow_not_found=True))
        except (FileNotFoundError, OSError):
            continue
        for entry in entries:
            name = entry.path.rstrip("/").rsplit("/", 1)[-1]
            if (
                entry.type == pafs.FileType.Directory
                and name.startswith("checkpoint_")
                and entry.path != keep
            ):
                filesystem.delete_dir(entry.path)
                removed += 1
    return removed


def _prune_other_trials(results: list[Result]) -> int:
    current = {r.path.rstrip("/") for r in results}
    filesystem = results[0].filesystem or pafs.LocalFileSystem()
    experiment = results[0].path.rstrip("/").rsplit("/", 1)[0]
    removed = 0
    try:
        trials = filesystem.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
    except OSError:
        return 0
    for trial in trials:
        if trial.type != pafs.FileType.Directory or trial.path.rstrip("/") in current:
            continue
        try:
            entries = filesystem.get_file_info(pafs.FileSelector(trial.path, allow_not_found=True))
        except OSError:
            continue
        for entry in entries:
            if entry.type == pafs.FileType.Directory and entry.base_name.startswith("checkpoint_"):
                filesystem.delete_dir(entry.path)
                removed += 1
    return removed


__all__ = [
    "RESULTS_JSONL",
    "BestMember",
    "ResultRecorder",
    "best_member",
    "population_fitlog",
    "prune_checkpoints",
    "read_result_rows",
]
