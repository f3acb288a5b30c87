"""The MLflow progress listener follows ``progress.json`` records and the scheduler's exploit log."""

from __future__ import annotations

import uuid
from pathlib import Path

from mlflow import MlflowClient

from autolfads.tracking.mlflow_tracking import RunTracker
from autolfads.tracking.progress_listeners import MlflowProgressListener, read_exploit_lines
from autolfads.tune.history import HISTORY_JSONL, ExploitRecord, append_record


def _record(generation: int, loser_trial: str, winner_trial: str) -> ExploitRecord:
    return ExploitRecord(
        generation=generation,
        epoch=4 * (generation + 1),
        loser=1,
        winner=0,
        loser_trial=loser_trial,
        winner_trial=winner_trial,
        loser_score=2.0,
        winner_score=1.0,
        old={"lr_init": 0.02},
        winner_hps={"lr_init": 0.01},
        new={"lr_init": 0.008},
        operations={"lr_init": "* 0.8"},
    )


def test_a_half_written_line_waits_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_JSONL
    append_record(path, _record(0, "t1", "t0"))
    with path.open("a") as handle:
        handle.write('{"generation": 1, "lo')

    records, offset = read_exploit_lines(path)
    assert [r["loser_trial"] for r in records] == ["t1"]
    assert read_exploit_lines(path, offset) == ([], offset)


def test_exploits_and_progress_reach_the_parent_and_the_losers_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = RunTracker(uri, experiment=f"e-{uuid.uuid4().hex[:8]}")
    tracker.start("listened")
    tracker.start_trial("worker000", {"lr_init": 0.01})  # members' runs are keyed by worker id
    tracker.start_trial("worker001", {"lr_init": 0.02})
    listener = MlflowProgressListener(tracker, tmp_path)

    listener({"generation": 0, "epoch": 3, "best_metric": 1.5, "best_trial": 0, "exploits": 0})
    append_record(tmp_path / HISTORY_JSONL, _record(0, "t1", "t0"))
    listener({"generation": 1, "epoch": 4, "best_metric": 1.0, "best_trial": 0, "exploits": 1})
    append_record(tmp_path / HISTORY_JSONL, _record(0, "t1", "t0"))  # a resumed run replays it
    listener({"generation": 1, "epoch": 5, "best_metric": 1.0, "best_trial": 0, "exploits": 1})
    assert tracker.finish() == []

    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_run_id or "")
    best = client.get_metric_history(parent.info.run_id, "best/valid/recon_smth")
    assert [(m.step, m.value) for m in best] == [(3, 1.5), (4, 1.0)]
    assert parent.data.metrics["generation"] == 1
    assert parent.data.tags["best_worker"] == "0"
    loser = client.get_run(tracker.trial_run_ids["worker001"])
    assert loser.data.tags["pbt.exploit.gen0"] == "cloned from worker000: lr_init 0.02 -> 0.008"
    assert [m.step for m in client.get_metric_history(loser.info.run_id, "pbt/exploited")] == [4]
    assert "pbt.exploit.gen0" not in client.get_run(tracker.trial_run_ids["worker000"]).data.tags
    assert set(tracker.trial_run_ids) == {"worker000", "worker001"}  # no run for a Ray trial id
