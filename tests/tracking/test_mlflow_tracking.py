"""RunTracker against real MLflow backends: an embedded sqlite store, and a ``mlflow server`` on 127.0.0.1.

The PBT loop here is Ray-free on purpose (the Ray callback is a thin adapter over these calls): trials
start, report epochs, get exploited with new hyperparameters and restart, exactly as the driver sees it.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from autolfads.tracking.mlflow_tracking import (
    PARAM_VALUE_MAX,
    RunTracker,
    flatten_params,
    numeric_items,
    resolve_tracking_uri,
    step_of,
)
from autolfads.tracking.outbox import Call
from tests.services import MLFLOW_ARTIFACT_BUCKET, list_keys

# --- pure helpers ---------------------------------------------------------------------------------------


def test_config_is_flattened_to_dotted_string_params_within_mlflow_limits() -> None:
    config = {
        "model": {"lr_init": 0.004, "readin": [{"_target_": "x.Y", "in_features": 3}]},
        "tags": [],
        "long": "v" * 10_000,
        "odd key!": None,
    }
    params = flatten_params(config)
    assert params["model.lr_init"] == "0.004"
    assert params["model.readin.0._target_"] == "x.Y"
    assert params["model.readin.0.in_features"] == "3"
    assert params["tags"] == "[]"
    assert len(params["long"]) == PARAM_VALUE_MAX
    assert params["odd key_"] == "None"


def test_results_keep_numeric_metrics_and_drop_ray_bookkeeping() -> None:
    result = {
        "valid/recon_smth": 0.5,
        "hp/lr_init": 0.01,
        "lr-AdamW": 0.01,
        "epoch": 7,
        "done": False,
        "pid": 123,
        "config": {"lr": 1.0},
        "trial_id": "abc",
        "time_this_iter_s": 0.2,
        "setup_s": 0.3,  # the trials' timing bookkeeping for bench_pbt
        "report_s": 0.01,
        "reported_at": 1.8e9,
        "hp_metric": 0.6,  # Lightning's TensorBoard placeholder
        "cur_epoch": 7,
        "generation": 3,  # a tag of the child run
        "epoch_s": 0.4,
    }
    assert numeric_items(result) == {
        "valid/recon_smth": 0.5,
        "hp/lr_init": 0.01,
        "lr-AdamW": 0.01,
    }
    assert step_of(result) == 7
    assert step_of({"training_iteration": 3}) == 3


def test_tracking_uri_prefers_flag_then_env_then_a_store_in_the_output_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_tracking_uri(None, tmp_path / "run") == f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None, "s3://bucket/run") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://mlflow:5000"
    assert resolve_tracking_uri("http://flag:1", tmp_path) == "http://flag:1"


# --- a Ray-free PBT loop --------------------------------------------------------------------------------


def _pbt_loop(tracker: RunTracker, epochs: int = 4) -> None:
    """Two trials; at epoch 2 trial ``t1`` (worker 1) clones ``t0`` (worker 0) with a new lr and restarts."""
    tracker.start("demo", {"model": {"lr_init": 0.01}, "pbt": {"population": 2}}, tags={"data_uri": "x.h5"})
    configs = {"t0": {"lr_init": 0.01, "dropout_rate": 0.1}, "t1": {"lr_init": 0.02, "dropout_rate": 0.2}}
    for worker, (trial_id, config) in enumerate(configs.items()):
        tracker.start_trial(trial_id, config, tags={"worker_id": worker}, run_name=f"worker-{worker:02d}")
    for epoch in range(epochs):
        if epoch == 2:
            configs["t1"] = {"lr_init": 0.008, "dropout_rate": 0.1}
            tracker.record_exploit("t1", generation=0, cloned_from="worker-00")
            tracker.start_trial("t1", configs["t1"], tags={"worker_id": 1}, step=epoch)
        for trial_id, config in configs.items():
            tracker.log_trial_result(
                trial_id,
                {
                    "epoch": epoch,
                    "cur_epoch": epoch,
                    "valid/recon_smth": 1.0 / (epoch + 1),
                    "hp/lr_init": config["lr_init"],
                    "lr-AdamW": config["lr_init"],
                    "hp_metric": 1.0,
                    "generation": epoch // 2,
                },
                tags={"generation": epoch // 2},
            )
    for trial_id in configs:
        tracker.end_trial(trial_id)


def _assert_pbt_runs(client: MlflowClient, tracker: RunTracker) -> None:
    parent = client.get_run(tracker.parent_run_id or "")
    assert parent.info.run_name == "demo"
    assert parent.data.params["pbt.population"] == "2"
    assert parent.data.tags["data_uri"] == "x.h5"
    # MLflow 3's UI opens a model-training experiment on its runs table
    kind = client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"]
    assert kind == "custom_model_development"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == ["worker-00", "worker-01"]
    assert sorted(r.data.tags["autolfads.trial_id"] for r in children) == ["t0", "t1"]
    t1 = client.get_run(tracker.trial_run_ids["t1"])
    assert t1.data.params == {"lr_init": "0.008", "dropout_rate": "0.1"}  # the final values, logged once
    assert (t1.data.tags["worker_id"], t1.data.tags["generation"]) == ("1", "1")
    assert (t1.data.tags["exploit/from"], t1.data.tags["exploit/generation"]) == ("worker-00", "0")
    history = client.get_metric_history(t1.info.run_id, "valid/recon_smth")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1, 2, 3]
    hp = sorted(client.get_metric_history(t1.info.run_id, "hp/lr_init"), key=lambda m: m.step)
    assert [m.value for m in hp] == [0.02, 0.02, 0.008, 0.008]
    assert set(t1.data.metrics) == {"valid/recon_smth", "hp/lr_init", "lr-AdamW"}  # no bookkeeping, no noise
    assert len(client.get_metric_history(t1.info.run_id, "lr-AdamW")) == 4
    assert "exploit/from" not in client.get_run(tracker.trial_run_ids["t0"]).data.tags


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-embedded') / 'mlflow.db'}"


def test_pbt_loop_logs_parent_children_epochs_and_exploits_without_changing_params(sqlite_uri: str) -> None:
    tracker = RunTracker(sqlite_uri, experiment=f"e-{uuid.uuid4().hex[:8]}")

    _pbt_loop(tracker)
    lost = tracker.finish()

    assert lost == []
    client = MlflowClient(sqlite_uri)
    _assert_pbt_runs(client, tracker)
    assert client.get_run(tracker.parent_run_id or "").info.status == "FINISHED"


def test_embedded_store_keeps_artifacts_next_to_the_database(sqlite_uri: str, tmp_path: Path) -> None:
    tracker = RunTracker(sqlite_uri, experiment=f"e-{uuid.uuid4().hex[:8]}")
    tracker.start("artifacts")
    (tmp_path / "pbt_history.csv").write_text("generation\n1\n")

    tracker.log_artifact(tmp_path / "pbt_history.csv")
    tracker.finish()

    db_dir = Path(sqlite_uri.removeprefix("sqlite:///")).parent
    stored = list((db_dir / "mlartifacts").rglob("pbt_history.csv"))
    assert len(stored) == 1
    assert stored[0].read_text() == "generation\n1\n"


def test_resumed_run_reuses_parent_and_trial_runs(sqlite_uri: str) -> None:
    experiment = f"e-{uuid.uuid4().hex[:8]}"
    first = RunTracker(sqlite_uri, experiment=experiment)
    first.start("resumable", {"a": 1})
    first.start_trial("t0", {"lr_init": 0.01})
    first.log_trial_result("t0", {"epoch": 0, "valid/recon_smth": 1.0})
    first.finish(status="KILLED")

    second = RunTracker(sqlite_uri, experiment=experiment)
    second.start("resumable", {"a": 1, "b": 2}, run_id=first.parent_run_id)
    second.start_trial("t0", {"lr_init": 0.005})
    second.log_trial_result("t0", {"epoch": 1, "valid/recon_smth": 0.5})
    assert second.finish() == []

    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 2
    assert second.trial_run_ids == first.trial_run_ids
    trial = client.get_run(second.trial_run_ids["t0"])
    assert trial.data.params["lr_init"] == "0.005"  # the value it finished with (a killed run logs none)
    assert [m.step for m in client.get_metric_history(trial.info.run_id, "valid/recon_smth")] == [0, 1]
    assert client.get_run(second.parent_run_id or "").data.params["b"] == "2"


def test_a_call_the_server_refuses_is_dropped_and_reported(sqlite_uri: str) -> None:
    tracker = RunTracker(sqlite_uri, experiment=f"e-{uuid.uuid4().hex[:8]}")
    run_id = tracker.start("refusals", {"lr": 1}) or ""

    tracker.outbox.submit(Call("changed params", lambda: tracker.client.log_param(run_id, "lr", "2")))
    tracker.log_metrics({"after": 1.0})
    lost = tracker.finish()

    assert lost == [f"1 changed params refused by MLflow at {sqlite_uri}"]
    assert tracker.client.get_run(run_id).data.metrics["after"] == 1.0


# --- a real tracking server with artifacts in S3 (slow) -------------------------------------------------


@pytest.mark.slow
def test_server_receives_runs_and_artifacts_land_in_the_s3_bucket(
    mlflow_server: str, moto_server: str, tmp_path: Path
) -> None:
    tracker = RunTracker(mlflow_server, experiment=f"e-{uuid.uuid4().hex[:8]}")
    _pbt_loop(tracker)
    zip_path = tmp_path / "autolfads.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    tracker.log_artifact(zip_path)
    tracker.set_best(0, "valid/recon_smth", 0.25)
    for step, value in ((0, 1.0), (2, 0.5), (2, 0.4), (1, 0.3), (3, 0.25)):
        tracker.log_series_point("best/valid/recon_smth", value, step)

    assert tracker.finish() == []

    client = MlflowClient(mlflow_server)
    _assert_pbt_runs(client, tracker)
    parent = client.get_run(tracker.parent_run_id or "")
    assert parent.data.tags["best/worker"] == "worker-00"
    assert parent.data.tags["best/run_id"] == tracker.trial_run_ids["t0"]
    assert client.get_run(tracker.trial_run_ids["t0"]).data.tags["best"] == "true"
    assert "best" not in client.get_run(tracker.trial_run_ids["t1"]).data.tags
    series = client.get_metric_history(parent.info.run_id, "best/valid/recon_smth")
    assert [(m.step, m.value) for m in series] == [(0, 1.0), (2, 0.5), (3, 0.25)]
    keys = list_keys(moto_server, MLFLOW_ARTIFACT_BUCKET)
    assert any(k.endswith(f"{tracker.parent_run_id}/artifacts/autolfads.zip") for k in keys), keys


@pytest.mark.slow
def test_server_stopped_mid_run_warns_once_and_training_goes_on(
    mlflow_server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    server = mlflow_server_factory()
    tracker = RunTracker(server.url, experiment="crash", cooldown_s=3600)
    tracker.start("server-dies", {"a": 1})
    tracker.start_trial("t0", {"lr_init": 0.01})
    tracker.log_trial_result("t0", {"epoch": 0, "valid/recon_smth": 1.0})

    server.stop()
    caplog.set_level(logging.WARNING, logger="autolfads.tracking")
    epochs_done = 0
    for epoch in range(1, 21):
        tracker.log_trial_result("t0", {"epoch": epoch, "valid/recon_smth": 1.0 / epoch, "hp/lr_init": 0.01})
        epochs_done += 1
    lost = tracker.finish()

    assert epochs_done == 20
    down = [r for r in caplog.records if "is not answering" in r.getMessage()]
    assert len(down) == 1
    assert server.url in down[0].getMessage()
    assert "40 metric values not logged" in lost[0]
    assert any("not logged" in r.getMessage() for r in caplog.records)
