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
    tracker.start_trial("t0", {"lr_init": 0.01}, tags={"worker_id": 0})
    tracker.start_trial("t1", {"lr_init": 0.02}, tags={"worker_id": 1})
    listener = MlflowProgressListener(tracker, tmp_path)

    listener({"generation": 0, "epoch": None, "best_metric": None})  # starting: nothing to log
    listener({"generation": 0, "epoch": 3, "best_metric": 1.5})
    listener({"generation": 0, "epoch": 3, "best_metric": 1.4})  # same epoch: replaces the held point
    append_record(tmp_path / HISTORY_JSONL, _record(0, "t1", "t0"))
    listener({"generation": 1, "epoch": 4, "best_metric": 1.0, "exploits": 1})
    append_record(tmp_path / HISTORY_JSONL, _record(0, "t1", "t0"))  # a resumed run replays it
    listener({"generation": 1, "epoch": 5, "best_metric": 1.1, "exploits": 1})
    listener({"generation": 1, "epoch": 5, "best_metric": 0.9, "exploits": 1})
    listener.finish(best=0.95, epochs=5)  # the selected member's value ends the series
    assert tracker.finish() == []

    client = MlflowClient(uri)
    parent = client.get_run(tracker.parent_run_id or "")
    best = client.get_metric_history(parent.info.run_id, "best/valid/recon_smth")
    assert [(m.step, m.value) for m in best] == [(2, 1.4), (3, 1.0), (4, 0.95)]  # 0-based epochs
    assert set(parent.data.metrics) == {"best/valid/recon_smth"}
    loser = client.get_run(tracker.trial_run_ids["t1"])
    assert (loser.data.tags["exploit/from"], loser.data.tags["exploit/generation"]) == ("worker-00", "0")
    assert "exploit/from" not in client.get_run(tracker.trial_run_ids["t0"]).data.tags
