"""After the population ran: fitlog rows from Ray's storage, the best member, checkpoint pruning.

Everything here reads through the ``pyarrow`` filesystem Ray Tune gives each result, so it works the same
for a local ``trials/`` directory and for object storage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyarrow import fs as pafs
from ray.tune import Result

from autolfads.constants import CUR_EPOCH, GENERATION, WORKER_ID
from autolfads.outputs.fitlog import fitlog_frame

RESULT_FILE = "result.json"
# Keys Ray Tune adds to every result; the fitlog keeps only what the trial itself reported.
RAY_KEYS = frozenset(
    {
        "config",
        "trial_id",
        "date",
        "timestamp",
        "time_this_iter_s",
        "time_total_s",
        "pid",
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


def read_result_rows(result: Result) -> list[dict[str, Any]]:
    """Every result line one trial reported (all generations, restarts included), Ray's keys removed."""
    filesystem = result.filesystem or pafs.LocalFileSystem()
    path = f"{result.path.rstrip('/')}/{RESULT_FILE}"
    try:
        with filesystem.open_input_stream(path) as stream:
            text = stream.read().decode("utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed writer
        rows.append({k: v for k, v in raw.items() if k not in RAY_KEYS and not isinstance(v, dict)})
    return rows


def population_fitlog(results: Iterable[Result]) -> pd.DataFrame:
    """One row per (worker, epoch); an epoch reported twice (restart, resume) keeps its last report."""
    rows: list[dict[str, Any]] = []
    for result in results:
        worker = (result.config or {}).get(WORKER_ID)
        for row in read_result_rows(result):
            if CUR_EPOCH not in row:
                continue
            row.setdefault(WORKER_ID, worker)
            row.setdefault("epoch", row[CUR_EPOCH])
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["epoch", WORKER_ID, GENERATION])
    return fitlog_frame(pd.DataFrame(rows))


@dataclass(frozen=True)
class BestMember:
    worker_id: int
    metric: float
    epoch: int
    result: Result


def best_member(results: Iterable[Result], fitlog: pd.DataFrame, metric: str) -> BestMember | None:
    """The member with the lowest **last reported** ``metric`` (Ray's scope "last", spec 5.9)."""
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
        if best is None or value < best.metric:
            best = BestMember(int(worker), value, int(last["epoch"]), by_worker[int(worker)])
    return best


def prune_checkpoints(results: Iterable[Result]) -> int:
    """Delete every trial checkpoint but its latest (all kept during the run); returns how many."""
    removed = 0
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


__all__ = ["BestMember", "best_member", "population_fitlog", "prune_checkpoints", "read_result_rows"]
