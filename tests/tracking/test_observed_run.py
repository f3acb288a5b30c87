"""A whole ``autolfads run`` (tiny LFADS, population 4, real Ray) observed through ``run_observed``.

Real everything: Ray on 2 CPUs, the mlflow server (artifacts in moto's S3), ``/metrics`` scraped while
the population trains.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest

from autolfads.tracking.session import TrackingOptions, run_observed
from tests.services import MLFLOW_ARTIFACT_BUCKET, free_port, list_keys
from tests.tracking.test_metrics import scrape
from tests.tune.tiny import tiny_config, tiny_data

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_local(s3_env: str):  # type: ignore[no-untyped-def]
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_pbt_run_logs_parent_and_four_children_with_curves_and_serves_metrics(
    ray_local: None, mlflow_server: str, moto_server: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from autolfads.tune.driver import run_autolfads

    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "config.yaml", num_samples=4, max_epochs=6, interval=2)
    out = tmp_path / "run"
    port = free_port()
    options = TrackingOptions(
        mlflow_uri=mlflow_server, experiment="e2e", metrics_port=port, metrics_addr="127.0.0.1"
    )
    generations: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                generations.append(scrape(port)["autolfads_generation"])
            stop.wait(0.5)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = run_observed(
            run_autolfads, [str(data)], config, str(out), name="e2e", options=options, live=False
        )
    finally:
        stop.set()
        poller.join(timeout=5)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("e2e")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.data_uri != ''")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["pbt.num_samples"] == "4"
    assert parent.data.tags["best_trial"] == str(result.best_worker)
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 4
    for child in children:
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "valid/recon_smth")}
        assert steps == set(range(6)), steps
        hp_keys = [k for k in child.data.metrics if k.startswith("hp/")]
        assert hp_keys
        assert len(client.get_metric_history(child.info.run_id, hp_keys[0])) >= 6
    # Every exploit in pbt_history.csv is an event on the loser's run.
    exploits = len(pd.read_csv(out / "pbt_history.csv"))
    tagged = sum(1 for c in children for t in c.data.tags if t.startswith("pbt.exploit.gen"))
    assert tagged == exploits
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"autolfads.zip", "pbt_history.csv", "plots"} <= artifacts
    keys = list_keys(moto_server, MLFLOW_ARTIFACT_BUCKET)
    assert any(k.endswith(f"{parent.info.run_id}/artifacts/autolfads.zip") for k in keys)
    assert (out / "plots" / "recon.png").is_file()
    assert max(generations, default=0) >= 1
    assert generations == sorted(generations)


def test_run_into_object_storage_interrupted_then_resumed_on_a_fresh_machine(
    ray_local: None,
    s3_bucket: str,
    mlflow_server: str,
    moto_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The RayJob-retry case: the driver is stopped mid-run, a new pod with an empty disk resumes."""
    from mlflow import MlflowClient

    from autolfads.errors import AutoLFADSError
    from autolfads.tune.driver import run_autolfads

    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "config.yaml", num_samples=2, max_epochs=6, interval=2)
    out = f"s3://{s3_bucket}/runs/demo"
    options = TrackingOptions(mlflow_uri=mlflow_server, experiment="e2e-s3")
    monkeypatch.setenv("AUTOLFADS_CACHE_DIR", str(tmp_path / "machine-1"))
    interrupted: list[int] = []

    def interrupt_after_first_generation(progress: dict) -> None:
        if not interrupted and (progress.get("generation") or 0) >= 1:
            interrupted.append(progress["generation"])
            os.kill(os.getpid(), signal.SIGINT)  # what Ray Tune sees when the pod is told to stop

    with pytest.raises(AutoLFADSError, match="--resume"):
        run_observed(
            run_autolfads,
            [str(data)],
            config,
            out,
            name="s3run",
            options=options,
            live=False,
            listeners=[interrupt_after_first_generation],
        )

    keys = set(list_keys(moto_server, s3_bucket, "runs/demo/"))
    assert {"runs/demo/progress.json", "runs/demo/config.yaml"} <= keys
    assert any(k.startswith("runs/demo/trials/") for k in keys)
    assert "runs/demo/autolfads.zip" not in keys

    monkeypatch.setenv("AUTOLFADS_CACHE_DIR", str(tmp_path / "machine-2"))  # a new pod: empty disk
    result = run_observed(
        run_autolfads, [str(data)], config, out, name="s3run", options=options, resume=True, live=False
    )

    keys = set(list_keys(moto_server, s3_bucket, "runs/demo/"))
    for name in (
        "autolfads.zip",
        "fitlog.csv",
        "model.ckpt",
        "lfads_output_sess0.h5",
        "pbt_history.csv",
        "progress.json",
        "config.yaml",
        "plots/recon.png",
    ):
        assert f"runs/demo/{name}" in keys, name
    assert not any("/.tmp-" in k for k in keys)
    assert result.best_metric > 0
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("e2e-s3")
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.data_uri != ''")
    assert len(parents) == 1  # the resume reopened the same parent run
    assert parents[0].info.status == "FINISHED"
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
    )
    assert len(children) == 2
    for child in children:
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "valid/recon_smth")}
        assert max(steps) == 5


def test_mlflow_server_dying_mid_run_costs_a_warning_not_the_run(
    ray_local: None, mlflow_server_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from autolfads.tune.driver import run_autolfads

    server = mlflow_server_factory()
    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "config.yaml", num_samples=2, max_epochs=4, interval=2)
    caplog.set_level(logging.WARNING, logger="autolfads.tracking")

    def kill_server_after_first_generation(progress: dict) -> None:
        if (progress.get("generation") or 0) >= 1:
            server.stop()

    result = run_observed(
        run_autolfads,
        [str(data)],
        config,
        str(tmp_path / "run"),
        name="dies",
        options=TrackingOptions(mlflow_uri=server.url, experiment="dies"),
        live=False,
        listeners=[kill_server_after_first_generation],
    )

    assert result.zip_path.is_file()
    assert (tmp_path / "run" / "plots" / "recon.png").is_file()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is not answering" in m for m in messages) == 1
    assert any("not logged (MLflow at " + server.url in m for m in messages), messages
