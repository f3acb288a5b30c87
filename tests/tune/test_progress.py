"""progress.json (interface 5), the console view and the exploit history, without running Ray."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
from ray.tune.experiment import Trial

from autolfads.tune.history import (
    HISTORY_JSONL,
    ExploitRecord,
    append_record,
    read_records,
    write_history_csv,
)
from autolfads.tune.progress import PROGRESS_FILE, ProgressCallback, read_progress, write_progress
from tests.tune.toy import toy_settings

KEYS = {
    "phase",
    "generation",
    "epoch",
    "best_metric",
    "best_trial",
    "trials_running",
    "trials_total",
    "exploits",
    "updated_at",
    "mlflow_run_id",
}


class _Trial:
    """Just the two attributes the callback reads from a Ray trial."""

    def __init__(self, status: str, worker: int) -> None:
        self.status = status
        self.config = {"worker_id": worker}


def _record(generation: int, loser: int, new_lr: float) -> ExploitRecord:
    key = "model.lr_init"
    return ExploitRecord(
        generation,
        2 * (generation + 1),
        loser,
        1 - loser,
        f"t{loser}",
        f"t{1 - loser}",
        2.0,
        1.0,
        {key: 0.004},
        {key: 0.005},
        {key: new_lr},
        {key: "* 0.8"},
    )


def test_progress_file_is_strict_json_with_the_contract_keys(tmp_path):
    written = write_progress(tmp_path, {k: None for k in KEYS - {"updated_at"}} | {"best_metric": math.nan})
    text = (tmp_path / PROGRESS_FILE).read_text()
    assert "NaN" not in text
    assert set(json.loads(text)) == KEYS and written["best_metric"] is None
    assert read_progress(tmp_path)["updated_at"].endswith("+00:00")


def test_callback_reports_generation_best_worker_counts_and_exploits(tmp_path):
    settings = toy_settings(num_samples=3, interval=2, burn_in=2)
    seen = []
    callback = ProgressCallback(
        tmp_path, settings, mlflow_run_id="abc", listeners=[seen.append], live=False, min_interval_s=0.0
    )
    append_record(tmp_path / HISTORY_JSONL, _record(0, 0, 0.0032))
    trials = [_Trial(Trial.RUNNING, 0), _Trial(Trial.PAUSED, 1), _Trial(Trial.ERROR, 2)]
    callback.on_trial_result(0, trials, trials[0], {"cur_epoch": 3, "valid/recon_smth": 0.9, "worker_id": 0})
    callback.on_trial_result(0, trials, trials[1], {"cur_epoch": 2, "valid/recon_smth": 0.7, "worker_id": 1})
    progress = read_progress(tmp_path)
    assert set(progress) >= KEYS
    assert progress["generation"] == 1 and progress["epoch"] == 2
    assert progress["best_metric"] == 0.7 and progress["best_trial"] == 1
    assert (
        progress["trials_running"] == 1 and progress["trials_errored"] == 1 and progress["trials_total"] == 3
    )
    assert progress["exploits"] == 1 and progress["mlflow_run_id"] == "abc"
    assert seen[-1] == progress


def test_live_view_renders_a_table(tmp_path):
    from rich.console import Console

    settings = toy_settings()
    callback = ProgressCallback(tmp_path, settings, live=True, min_interval_s=0.0)
    records = [_record(0, 0, 0.0032)]
    console = Console(file=io.StringIO(), width=100)
    console.print(callback._table({"generation": 1, "best_metric": 0.5, "best_trial": 2}, records))
    text = console.file.getvalue()
    assert "generation" in text and "worker 0" in text and "0.5" in text


def test_history_keeps_the_last_record_per_generation_and_loser(tmp_path):
    path = tmp_path / HISTORY_JSONL
    append_record(path, _record(0, 0, 0.0032))
    append_record(path, _record(0, 0, 0.0036))  # the same tournament replayed after a resume
    append_record(path, _record(1, 1, 0.0040))
    with open(path, "a") as handle:
        handle.write('{"generation": 2, "los')  # a line cut by a kill
    records = read_records(path)
    assert [(r.generation, r.loser) for r in records] == [(0, 0), (1, 1)]
    assert records[0].new["model.lr_init"] == 0.0036
    frame = pd.read_csv(write_history_csv(records, tmp_path / "pbt_history.csv"))
    assert list(frame.columns[:8]) == [
        "generation",
        "epoch",
        "loser",
        "loser_trial",
        "winner",
        "winner_trial",
        "loser_score",
        "winner_score",
    ]
    assert frame["new/model.lr_init"].tolist() == [0.0036, 0.0040]
    assert frame["op/model.lr_init"].tolist() == ["* 0.8", "* 0.8"]


def test_empty_history_writes_a_header_only_csv(tmp_path):
    frame = pd.read_csv(write_history_csv([], tmp_path / "pbt_history.csv"))
    assert frame.empty and "loser" in frame.columns
