"""Ray token authentication, for real: a lab's cluster, its job API, and ``autolfads run`` on it.

One Ray head started with ``RAY_AUTH_MODE=token`` (``tests.services.start_ray_head``: free ports, its own
temp dir and HOME, stopped by its process group) plays a lab's cluster: like the lab's pods, its
environment holds the lab's MLflow login, so every driver and trial on it inherits that. Clients run as
separate processes with their own environment (Ray reads the auth mode once per process):

- the job API (``ray job submit``, what KubeRay's submitter runs) refuses a missing or wrong token and
  accepts the cluster's;
- ``autolfads run`` submitted as a Ray job connects through ``RAY_ADDRESS`` with the token from its
  environment, trains a tiny population and logs parent, children and zip to an authenticated MLflow as
  lab A, where lab B cannot see them; no password appears in what the run wrote or printed;
- ``autolfads run --address`` with a wrong or missing token is one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from tests.services import AuthServer, RayHead, clean_env, ray_token_env, start_ray_head
from tests.tracking.test_mlflow_auth import Lab, new_lab, provision_in_process, write_labs_file
from tests.tune.tiny import tiny_config, tiny_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab_logins(mlflow_auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Lab, Lab]:
    a, b = new_lab("ray-a"), new_lab("ray-b")
    code, _, err = provision_in_process(
        mlflow_auth_server, write_labs_file(tmp_path_factory.mktemp("labs"), [a, b])
    )
    assert code == 0, err
    return a, b


@pytest.fixture(scope="module")
def cluster(lab_logins: tuple[Lab, Lab], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """Lab A's cluster: token auth on, lab A's MLflow login in every process's environment."""
    a, _ = lab_logins
    head = start_ray_head(
        tmp_path_factory.mktemp("lab-a-cluster"),
        env={"MLFLOW_TRACKING_USERNAME": a.username, "MLFLOW_TRACKING_PASSWORD": a.password},
    )
    try:
        yield head
    finally:
        head.stop()


def ray_job(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("ray")), "job", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def submitted_entrypoints(cluster: RayHead) -> list[str]:
    """Every job the cluster has, read from its job API with the cluster's token."""
    response = requests.get(
        f"{cluster.dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {cluster.token}"}, timeout=10
    )
    response.raise_for_status()
    return [job["entrypoint"] for job in response.json()]


@pytest.mark.parametrize(
    ("token", "answer"),
    [(None, "Missing authentication token"), ("not-the-token", "Invalid authentication token")],
)
def test_the_job_api_refuses_a_missing_or_wrong_token(
    token: str | None, answer: str, cluster: RayHead, tmp_path: Path
) -> None:
    env = ray_token_env(token, tmp_path) if token else clean_env(HOME=str(tmp_path), RAY_AUTH_MODE="disabled")
    marker = f"print('{uuid.uuid4().hex}')"

    done = ray_job(env, "submit", "--address", cluster.dashboard_url, "--", "python", "-c", marker)

    assert done.returncode != 0
    assert answer in done.stdout + done.stderr
    assert not [e for e in submitted_entrypoints(cluster) if marker in e]  # no job was created
    assert not (tmp_path / ".ray" / "auth_token").exists()  # a client never writes a token of its own


@pytest.fixture(scope="module")
def run_job(
    cluster: RayHead,
    mlflow_auth_server: AuthServer,
    lab_logins: tuple[Lab, Lab],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``autolfads run`` of a tiny population, submitted to lab A's cluster as a Ray job."""
    a, _ = lab_logins
    root = tmp_path_factory.mktemp("job")
    data = tiny_data(root / "data.h5")
    config = tiny_config(root / "config.yaml", num_samples=2, max_epochs=2, interval=1)
    out = root / "out"
    entrypoint = [
        "autolfads",
        "run",
        str(data),
        "--config",
        str(config),
        "--out",
        str(out),
        "--name",
        "lab-a-job",
        "--mlflow-uri",
        mlflow_auth_server.url,
        "--mlflow-experiment",
        a.experiment,
    ]
    done = ray_job(
        ray_token_env(cluster.token, root), "submit", "--address", cluster.dashboard_url, "--", *entrypoint
    )
    return done, out


def test_autolfads_run_as_a_job_with_the_clusters_token_trains_and_writes_its_bundle(
    run_job: tuple[subprocess.CompletedProcess[str], Path], cluster: RayHead
) -> None:
    done, out = run_job
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout
    assert [e for e in submitted_entrypoints(cluster) if "lab-a-job" in e]  # accepted by the job API
    assert "Ray: connected to the existing cluster at" in done.stdout  # the job's RAY_ADDRESS, not a new Ray
    with zipfile.ZipFile(out / "autolfads.zip") as bundle:
        assert {"fitlog.csv", "lfads_output_sess0.h5", "model.ckpt"} <= set(bundle.namelist())
    assert json.loads((out / "progress.json").read_text())["phase"] == "succeeded"


def test_the_job_logged_parent_children_and_zip_as_lab_a_and_lab_b_sees_none_of_it(
    run_job: tuple[subprocess.CompletedProcess[str], Path],
    mlflow_auth_server: AuthServer,
    lab_logins: tuple[Lab, Lab],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done, out = run_job
    assert done.returncode == 0
    a, b = lab_logins
    parent_id = json.loads((out / "progress.json").read_text())["mlflow_run_id"]
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", a.username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", a.password)
    client = MlflowClient(mlflow_auth_server.url)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )
    assert len(children) == 2
    for child in children:
        history = client.get_metric_history(child.info.run_id, "valid/recon_smth")
        assert {m.step for m in history} == {0, 1}
    assert {"autolfads.zip", "pbt_history.csv"} <= {f.path for f in client.list_artifacts(parent_id)}

    b_login = (b.username, b.password)
    for run_id in [parent_id, *(c.info.run_id for c in children)]:
        response = requests.get(
            f"{mlflow_auth_server.url}/api/2.0/mlflow/runs/get",
            params={"run_id": run_id},
            auth=b_login,
            timeout=10,
        )
        assert response.status_code == 403
    artifacts = f"{mlflow_auth_server.url}/api/2.0/mlflow-artifacts/artifacts"
    zip_url = f"{artifacts}/{parent.info.experiment_id}/{parent_id}/artifacts/autolfads.zip"
    assert requests.get(zip_url, auth=b_login, timeout=10).status_code == 403
    assert requests.get(zip_url, auth=(a.username, a.password), timeout=10).content[:2] == b"PK"

    # The password is nowhere: not in params or tags, not in what the run printed or wrote.
    every_value = [*parent.data.params.values(), *parent.data.tags.values()]
    every_value += [v for c in children for v in (*c.data.params.values(), *c.data.tags.values())]
    assert not [v for v in every_value if a.password in v]
    assert a.password not in done.stdout + done.stderr
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert a.password.encode() not in path.read_bytes(), path
    with zipfile.ZipFile(out / "autolfads.zip") as bundle:
        assert not [n for n in bundle.namelist() if a.password.encode() in bundle.read(n)]


WRONG_TOKEN = (
    "the Ray cluster there refused the token from RAY_AUTH_TOKEN: it is not this cluster's token "
    "(on Kubernetes, the lab cluster's token Secret)"
)
NO_TOKEN = (
    "the Ray cluster there requires token authentication and no token was sent (RAY_AUTH_MODE is "
    "disabled): set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token"
)


@pytest.mark.parametrize(("token", "expected"), [("not-the-token", WRONG_TOKEN), (None, NO_TOKEN)])
def test_autolfads_run_with_a_wrong_or_missing_token_is_one_line(
    token: str | None, expected: str, cluster: RayHead, tmp_path: Path
) -> None:
    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "config.yaml", num_samples=2, max_epochs=2, interval=1)
    env = ray_token_env(token, tmp_path) if token else clean_env(HOME=str(tmp_path), RAY_AUTH_MODE="disabled")
    command = [sys.executable, "-m", "autolfads.cli", "run", str(data), "--config", str(config)]
    command += ["--out", str(tmp_path / "out"), "--no-mlflow", "--address", cluster.gcs_address]

    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"Error: --address {cluster.gcs_address}: {expected}"
    assert "Traceback" not in done.stderr
    assert cluster.token not in done.stdout + done.stderr
    assert not (tmp_path / "out" / "trials").exists()
