"""A whole ``autolfads run`` (tiny LFADS, population 4, real Ray) observed through ``run_observed``.

Real everything: Ray on 2 CPUs, the mlflow server (artifacts in moto's S3), ``/metrics`` scraped while
the population trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from autolfads.config.pbt import parse_pbt_block
from autolfads.tracking.session import TrackingOptions, run_observed
from tests.services import MLFLOW_ARTIFACT_BUCKET, free_port, list_keys
from tests.tracking.test_metrics import parse
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


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return parse(response.read().decode())


# A process with only what mlflow-skinny brings (plus our own dependencies): the full mlflow package's
# server-side dependencies cannot be imported there.
SKINNY_CLIENT = """
import sys
for absent in ("sqlalchemy", "alembic", "flask", "gunicorn", "sklearn", "docker", "graphene"):
    sys.modules[absent] = None  # import fails and importlib.util.find_spec says None: as if not installed
import json, tempfile, mlflow, mlflow.pytorch, torch
from autolfads.model.lfads import LFADS
from autolfads.outputs.posterior import sample_batch
from autolfads.train import build_datamodule
from omegaconf import OmegaConf
uri, run_id, ckpt, config = sys.argv[1:5]
mlflow.set_tracking_uri(uri)
logged = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
reference = LFADS.load_from_checkpoint(ckpt, map_location="cpu")
datamodule = build_datamodule(OmegaConf.load(config))
datamodule.setup("predict")
batch = next(iter(datamodule.predict_dataloader()[0]["valid"]))
logged.eval(); reference.eval()
with torch.no_grad():
    got = logged.predict_step({0: batch}, 0, sample_posteriors=False)[0].output_params
    want = reference.predict_step({0: batch}, 0, sample_posteriors=False)[0].output_params
mlflow.pytorch.save_model(logged, tempfile.mkdtemp() + "/again", serialization_format="pickle")
print(json.dumps({"shape": list(got.shape), "max_diff": float((got - want).abs().max())}))
"""


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
        mlflow_uri=mlflow_server,
        experiment="e2e",
        metrics_port=port,
        metrics_addr="127.0.0.1",
        register_model="lorenz-e2e",
    )
    generations: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                generations.append(scrape(port)["autolfads_job_generation{job=e2e,namespace=}"])
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
    assert parent.data.tags["population"] == "4"
    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_name = {c.info.run_name: c for c in children}
    assert sorted(by_name) == ["worker-00", "worker-01", "worker-02", "worker-03"]

    # The winner: tagged best=true, named by the parent (run id and worker).
    best = [c for c in children if c.data.tags.get("best") == "true"]
    assert len(best) == 1
    assert best[0].info.run_name == f"worker-{result.best_worker:02d}" == parent.data.tags["best/worker"]
    assert parent.data.tags["best/run_id"] == best[0].info.run_id

    # The best series: one point per step, steps strictly increasing, ending at the selected value.
    series = sorted(
        client.get_metric_history(parent.info.run_id, "best/valid/recon_smth"), key=lambda m: m.timestamp
    )
    steps = [m.step for m in series]
    assert len(series) >= 3 and steps == sorted(set(steps)), steps
    assert series[-1].value == pytest.approx(result.best_metric)

    fitlog = pd.read_csv(out / "fitlog.csv")
    history = pd.read_csv(out / "pbt_history.csv")
    searched = parse_pbt_block(OmegaConf.load(out / "config.yaml").pbt).space
    for child in children:
        worker = int(child.data.tags["worker_id"])
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "valid/recon_smth")}
        assert steps == set(range(6)), steps
        assert child.data.tags["generation"] == "2"
        # only what someone reads: searched hps, no config/* copies, no placeholders
        metrics = set(child.data.metrics)
        assert not {m for m in metrics if m.startswith("config/") or m in ("hp_metric", "cur_epoch")}
        assert {m for m in metrics if m.startswith("hp/")} == {
            f"hp/{hp.short_name}" for hp in searched.values()
        }
        # the final hyperparameters are its params (what the compare view plots)
        last = fitlog[fitlog["worker_id"] == worker].sort_values("epoch").iloc[-1]
        for key, hp in searched.items():
            assert float(child.data.params[key]) == pytest.approx(last[f"hp/{hp.short_name}"], rel=1e-5)
        # its last exploit, short and structured
        mine = history[history["loser"] == worker]
        if len(mine):
            latest = mine.sort_values("generation").iloc[-1]
            assert child.data.tags["exploit/from"] == f"worker-{int(latest['winner']):02d}"
            assert child.data.tags["exploit/generation"] == str(int(latest["generation"]))
        else:
            assert "exploit/from" not in child.data.tags
        # its own fitlog rows
        local = Path(client.download_artifacts(child.info.run_id, "fitlog.csv", str(tmp_path)))
        assert pd.read_csv(local)["worker_id"].unique().tolist() == [worker]
    assert all(len(v) <= 40 for c in children for k, v in c.data.tags.items() if k.startswith("exploit/"))

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"autolfads.zip", "pbt_history.csv", "plots", "model"} <= artifacts
    keys = list_keys(moto_server, MLFLOW_ARTIFACT_BUCKET)
    assert any(k.endswith(f"{parent.info.run_id}/artifacts/autolfads.zip") for k in keys)
    assert (out / "plots" / "recon.png").is_file()
    assert max(generations, default=0) >= 1
    assert generations == sorted(generations)

    # The best model: registered, and it loads and predicts in a client with only mlflow-skinny.
    (version,) = client.search_model_versions("name = 'lorenz-e2e'")
    assert version.run_id == parent.info.run_id
    checked = subprocess.run(
        [
            sys.executable,
            "-c",
            SKINNY_CLIENT,
            mlflow_server,
            parent.info.run_id,
            str(out / "model.ckpt"),
            str(out / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert checked.returncode == 0, checked.stderr[-3000:]
    predicted = json.loads(checked.stdout.strip().splitlines()[-1])
    assert predicted["shape"][0] > 0 and predicted["max_diff"] < 1e-5


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
    assert sorted(c.info.run_name for c in children) == ["worker-00", "worker-01"]
    for child in children:
        steps = {m.step for m in client.get_metric_history(child.info.run_id, "valid/recon_smth")}
        assert max(steps) == 5
    # the resumed attempt continued the best series instead of logging its replayed epochs again
    series = client.get_metric_history(parents[0].info.run_id, "best/valid/recon_smth")
    steps = [m.step for m in sorted(series, key=lambda m: m.timestamp)]
    assert steps == sorted(set(steps)), steps


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
