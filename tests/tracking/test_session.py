"""TrackingSession: what ``autolfads run`` opens and closes, on the embedded store (no server)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from autolfads.tracking.ray_callbacks import MLflowTrialCallback
from autolfads.tracking.session import TrackingOptions, TrackingSession
from tests.outputs.test_plots import _write_fitlog, _write_history
from tests.services import free_port


def test_default_session_logs_to_a_store_in_the_output_dir_with_files_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("model:\n  gen_dim: 64\npbt:\n  num_samples: 4\n")
    with TrackingSession(
        out, "demo", TrackingOptions(metrics_port=0), data_uri="data.h5", population=4
    ) as obs:
        assert [type(c) for c in obs.callbacks] == [MLflowTrialCallback]
        port = obs.metrics_server.port if obs.metrics_server else 0
        for listener in obs.listeners:
            listener(
                {
                    "phase": "training",
                    "generation": 1,
                    "epoch": 4,
                    "best_metric": 0.5,
                    "best_trial": 2,
                    "trials_running": 4,
                    "trials_total": 4,
                    "exploits": 2,
                }
            )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert 'autolfads_job_generation{job="demo",namespace=""} 1.0' in response.read().decode()
        _write_fitlog(out)
        _write_history(out)
        (out / "autolfads.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
        obs.set_best(2, 0.5)
        run_id = obs.mlflow_run_id

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    parent = client.get_run(run_id or "")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["data_uri"] == "data.h5"
    assert parent.data.params["model.gen_dim"] == "64"
    assert parent.data.tags["best/worker"] == "worker-02"
    assert parent.data.tags["population"] == "4"
    assert parent.data.metrics["best/valid/recon_smth"] == 0.5
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"autolfads.zip", "pbt_history.csv", "fitlog.csv", "plots"} <= artifacts
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {
        "plots/recon.png",
        "plots/hp_trajectories.png",
    }
    assert list((out / "mlartifacts").rglob("recon.png"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_resume_reopens_the_parent_run_named_in_progress_json(tmp_path: Path) -> None:
    first = TrackingSession(tmp_path, "demo")
    first.finish("KILLED")
    (tmp_path / "progress.json").write_text(json.dumps({"mlflow_run_id": first.mlflow_run_id}))

    second = TrackingSession(tmp_path, "demo", resume=True)
    second.finish()

    assert second.mlflow_run_id == first.mlflow_run_id
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(second.mlflow_run_id or "")
    assert run.info.status == "FINISHED"


def test_no_mlflow_leaves_only_prometheus(tmp_path: Path) -> None:
    obs = TrackingSession(tmp_path, "demo", TrackingOptions(mlflow=False))

    assert obs.mlflow_run_id is None
    assert obs.callbacks == []
    assert obs.listeners == [obs.metrics.update_from_progress]
    assert obs.finish() == []
    assert not (tmp_path / "mlflow.db").exists()


def test_a_busy_metrics_port_is_a_warning_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    holder = TrackingSession(
        tmp_path, "a", TrackingOptions(mlflow=False, metrics_port=port, metrics_addr="127.0.0.1")
    )
    try:
        second = TrackingSession(
            tmp_path, "b", TrackingOptions(mlflow=False, metrics_port=port, metrics_addr="127.0.0.1")
        )
        assert second.metrics_server is None
        assert f"--metrics-port {port}: cannot serve /metrics" in caplog.text
        assert second.finish() == []
    finally:
        holder.finish()
