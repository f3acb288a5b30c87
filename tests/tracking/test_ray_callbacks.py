"""The Ray Tune callbacks in a real PBT run: Ray on 2 CPUs, trial storage on moto S3, a real mlflow server.

This is the case that stops Ray's own ``MLflowLoggerCallback`` (a trial restarting with a mutated config
re-logs a changed param): here the run must finish, with the changed values on the ``hp/*`` curves and
the final ones as params.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from autolfads import storage
from autolfads.tracking.mlflow_tracking import RunTracker
from tests.services import list_keys

ITERATIONS = 6


def _trainable(config: dict[str, Any]) -> None:
    from ray import tune

    state = {"epoch": 0, "loss": 10.0}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = json.loads((Path(directory) / "state.json").read_text())
    while state["epoch"] < ITERATIONS:
        state["loss"] *= 1.0 - config["lr"]
        time.sleep(0.2)
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.json").write_text(json.dumps(state))
            metrics = {"epoch": state["epoch"], "valid/recon_smth": state["loss"], "hp/lr": config["lr"]}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        state["epoch"] += 1


def test_callbacks_pickle_as_their_key_and_reattach_to_the_live_objects(tmp_path: Path) -> None:
    """What ``Tuner.restore`` does: unpickle old callbacks while the new driver built new live objects."""
    import pickle

    from autolfads.tracking.ray_callbacks import MLflowTrialCallback

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    key = str(tmp_path / "run")
    blob = pickle.dumps(MLflowTrialCallback(RunTracker(uri), key=key))
    assert len(blob) < 1000

    live_tracker = RunTracker(uri)
    MLflowTrialCallback(live_tracker, key=key)
    restored = pickle.loads(blob)

    assert restored.tracker is live_tracker
    assert MLflowTrialCallback(RunTracker(uri), key="other").tracker is not live_tracker


@pytest.fixture
def ray_on_s3(s3_bucket: str):  # type: ignore[no-untyped-def]
    """Ray started after the S3 env is set, so its workers see the endpoint and credentials."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield s3_bucket
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_pbt_run_with_callbacks_logs_every_trial_and_survives_exploits(
    ray_on_s3: str, mlflow_server: str, moto_server: str, tmp_path: Path
) -> None:
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from autolfads.tracking.ray_callbacks import MLflowTrialCallback

    bucket = ray_on_s3
    tracker = RunTracker(mlflow_server, experiment=f"ray-{uuid.uuid4().hex[:8]}")
    tracker.start("ray-pbt", {"pbt": {"population": 2}})
    storage_path, filesystem = storage.ray_storage(f"s3://{bucket}/runs/demo/trials")
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=2,
        hyperparam_mutations={"lr": tune.uniform(0.01, 0.5)},
        quantile_fraction=0.5,
    )
    tuner = tune.Tuner(
        tune.with_resources(_trainable, {"cpu": 1}),
        param_space={"lr": tune.grid_search([0.02, 0.3])},
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="valid/recon_smth", mode="min"),
        run_config=tune.RunConfig(
            name="pbt",
            storage_path=storage_path,
            storage_filesystem=filesystem,
            callbacks=[MLflowTrialCallback(tracker, key=str(tmp_path))],
            verbose=0,
        ),
    )
    results = tuner.fit()
    lost = tracker.finish()

    assert results.errors == []
    assert lost == []
    # MLflow: a parent with two children; every trial's epochs; the exploited trial's lr as a curve.
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    children = client.search_runs(
        [client.get_run(tracker.parent_run_id or "").info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'",
    )
    assert len(children) == 2
    curves = []
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(client.get_metric_history(child.info.run_id, "valid/recon_smth")) >= ITERATIONS
        lr = sorted(client.get_metric_history(child.info.run_id, "hp/lr"), key=lambda m: m.step)
        # the final value; params are logged to 6 significant digits (mlflow_tracking), curves in full
        assert float(child.data.params["lr"]) == pytest.approx(lr[-1].value, rel=1e-5)
        curves.append({m.value for m in lr})
    assert max(len(c) for c in curves) >= 2, curves  # the worse trial cloned the better one with a new lr
    # Trial storage went to the bucket through the pyarrow filesystem.
    keys = list_keys(moto_server, bucket, "runs/demo/trials/pbt/")
    assert any(k.endswith("state.json") for k in keys)
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server
