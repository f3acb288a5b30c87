"""MLflow with authentication: labs provisioned by ``mlflow_admin``, and what each lab's user can reach.

A real ``mlflow server --app-name basic-auth`` (``tests.services.mlflow_auth_server``: users in sqlite,
``default_permission = NO_PERMISSIONS``, artifacts proxied to moto's S3). Two labs, A and B, are
provisioned once per module through the real CLI; each test then logs in as one of them (or as nobody)
with ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, as a run on the cluster does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient

from autolfads.errors import TrackingError
from autolfads.tracking import mlflow_admin
from autolfads.tracking.mlflow_tracking import RunTracker
from tests.services import MLFLOW_ADMIN, AuthServer, start_mlflow_auth_server

Login = Callable[[str | None, str | None], None]


@dataclass(frozen=True)
class Lab:
    name: str
    username: str
    password: str
    experiment: str


@dataclass(frozen=True)
class Labs:
    a: Lab
    b: Lab
    file: Path
    first_output: str


def new_lab(name: str) -> Lab:
    tag = uuid.uuid4().hex[:6]
    return Lab(f"{name}-{tag}", f"user-{name}-{tag}", f"pw-{uuid.uuid4().hex}", f"exp-{name}-{tag}")


def write_labs_file(directory: Path, labs: list[Lab]) -> Path:
    entries = []
    for lab in labs:
        secret = directory / f"{lab.name}.password"
        secret.write_text(lab.password)
        entries.append(
            {
                "lab": lab.name,
                "experiment": lab.experiment,
                "username": lab.username,
                "passwordFile": str(secret),
            }
        )
    path = directory / f"labs-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def provision_cli(server: AuthServer, labs_file: Path) -> subprocess.CompletedProcess[str]:
    """The provisioning Job's command, in its own process, with the admin's environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({**server.admin_env, "MLFLOW_DISABLE_TELEMETRY": "true"})
    command = [sys.executable, "-m", "autolfads.tracking.mlflow_admin", "provision", str(labs_file)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def provision_in_process(server: AuthServer, labs_file: Path, **env: str) -> tuple[int, str, str]:
    """The same command through click's runner (no interpreter start-up): exit code, stdout, stderr."""
    result = CliRunner().invoke(
        mlflow_admin.main,
        ["provision", str(labs_file)],
        env={**server.admin_env, **env},
        catch_exceptions=False,
    )
    return result.exit_code, result.stdout, result.stderr


def admin_view(server: AuthServer) -> dict[str, list[tuple[str, str, str]]]:
    """Every user's grants, as the admin sees them: user -> [(resource type, resource, permission)]."""
    response = requests.get(
        f"{server.url}/api/2.0/mlflow/users/list", auth=(MLFLOW_ADMIN, server.admin_password), timeout=10
    )
    response.raise_for_status()
    return {
        user["username"]: sorted(
            (grant["resource_type"], grant["resource_pattern"], grant["permission"])
            for role in user["roles"]
            for grant in role["permissions"]
        )
        for user in response.json()["users"]
    }


def experiment_id(server: AuthServer, name: str) -> str:
    response = requests.get(
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        auth=(MLFLOW_ADMIN, server.admin_password),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["experiment"]["experiment_id"])


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def labs(mlflow_auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Labs:
    a, b = new_lab("a"), new_lab("b")
    labs_file = write_labs_file(tmp_path_factory.mktemp("labs"), [a, b])
    done = provision_cli(mlflow_auth_server, labs_file)
    assert done.returncode == 0, done.stderr
    return Labs(a, b, labs_file, done.stdout)


# --- provisioning -----------------------------------------------------------------------------------------


def test_provision_gives_each_lab_its_user_and_experiment_with_manage_and_nothing_else(
    mlflow_auth_server: AuthServer, labs: Labs
) -> None:
    grants = admin_view(mlflow_auth_server)
    for lab in (labs.a, labs.b):
        assert grants[lab.username] == [
            ("experiment", experiment_id(mlflow_auth_server, lab.experiment), "MANAGE")
        ]
        assert f"lab {lab.name}: created user '{lab.username}'" in labs.first_output
        assert f"lab {lab.name}: created experiment '{lab.experiment}'" in labs.first_output
    assert "2 of 2 labs provisioned" in labs.first_output
    for lab in (labs.a, labs.b):
        assert lab.password not in labs.first_output


def test_provision_twice_changes_nothing_the_second_time(mlflow_auth_server: AuthServer, labs: Labs) -> None:
    before = admin_view(mlflow_auth_server)

    code, out, err = provision_in_process(mlflow_auth_server, labs.file)

    assert code == 0, err
    assert "2 of 2 labs provisioned; nothing to change" in out
    assert "lab " not in out  # no change lines
    assert admin_view(mlflow_auth_server) == before


def test_a_changed_password_file_updates_the_password_and_only_that(
    mlflow_auth_server: AuthServer, tmp_path: Path
) -> None:
    lab = new_lab("rotate")
    labs_file = write_labs_file(tmp_path, [lab])
    assert provision_in_process(mlflow_auth_server, labs_file)[0] == 0
    grants = admin_view(mlflow_auth_server)[lab.username]
    rotated = f"pw-{uuid.uuid4().hex}"
    (tmp_path / f"{lab.name}.password").write_text(rotated)

    code, out, _ = provision_in_process(mlflow_auth_server, labs_file)

    assert code == 0
    assert f"lab {lab.name}: updated the password of user '{lab.username}'" in out
    assert "1 changes" in out and rotated not in out
    current = f"{mlflow_auth_server.url}/api/2.0/mlflow/users/current"
    assert requests.get(current, auth=(lab.username, lab.password), timeout=10).status_code == 401
    assert requests.get(current, auth=(lab.username, rotated), timeout=10).status_code == 200
    assert admin_view(mlflow_auth_server)[lab.username] == grants


def test_an_experiment_another_user_created_first_is_not_handed_to_a_lab(
    mlflow_auth_server: AuthServer, labs: Labs, tmp_path: Path, mlflow_login: Login
) -> None:
    squatted = new_lab("late")
    mlflow_login(labs.b.username, labs.b.password)
    MlflowClient(mlflow_auth_server.url).create_experiment(squatted.experiment)  # lab B gets there first
    labs_file = write_labs_file(tmp_path, [squatted])

    code, out, err = provision_in_process(mlflow_auth_server, labs_file)

    assert code == 1
    assert f"is also open to '{labs.b.username}' (MANAGE)" in err
    assert len(err.strip().splitlines()) == 1
    assert "0 of 1 labs provisioned" in out
    assert admin_view(mlflow_auth_server)[squatted.username] == []  # the user exists, with no grant


def test_provision_needs_an_admin_login(mlflow_auth_server: AuthServer, labs: Labs) -> None:
    code, _, err = provision_in_process(
        mlflow_auth_server,
        labs.file,
        MLFLOW_TRACKING_USERNAME=labs.a.username,
        MLFLOW_TRACKING_PASSWORD=labs.a.password,
    )
    assert code == 1
    assert err.strip() == (
        f"Error: MLflow at {mlflow_auth_server.url}: user '{labs.a.username}' is not an admin; provisioning "
        "needs the admin's credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
    )

    code, _, err = provision_in_process(
        mlflow_auth_server, labs.file, MLFLOW_TRACKING_PASSWORD="wrong-password"
    )
    assert code == 1
    assert "refused the admin login as user 'admin' (401)" in err
    assert "wrong-password" not in err


def test_provision_refuses_a_server_where_everyone_reads_everything(moto_server: str, tmp_path: Path) -> None:
    (tmp_path / "server").mkdir()
    open_server = start_mlflow_auth_server(moto_server, tmp_path / "server", default_permission="READ")
    try:
        labs_file = write_labs_file(tmp_path, [new_lab("x")])
        code, _, err = provision_in_process(open_server, labs_file)
    finally:
        open_server.server.stop()
    assert code == 1
    assert "gives every user READ on experiments no one granted them" in err
    assert "default_permission = NO_PERMISSIONS" in err


def test_provision_against_a_server_without_authentication_is_one_line(
    mlflow_server: str, labs: Labs, tmp_path: Path
) -> None:
    plain = AuthServer(url=mlflow_server, admin_password="unused-password", server=None)  # type: ignore[arg-type]
    code, _, err = provision_in_process(plain, labs.file)
    assert code == 1
    assert err.strip() == (
        f"Error: MLflow at {mlflow_server} has no authentication: start it with "
        "`mlflow server --app-name basic-auth` (see docs/security.md)"
    )


# --- what each lab can reach --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_a_run(mlflow_auth_server: AuthServer, labs: Labs, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A parent run with a trial and a zip, logged by lab A's user through ``RunTracker``."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        labs.a.username,
        labs.a.password,
    )
    try:
        tracker = RunTracker(mlflow_auth_server.url, experiment=labs.a.experiment)
        run_id = tracker.start("lab-a-run", {"model": {"gen_dim": 8}})
        tracker.start_trial("t0", {"lr_init": 0.01})
        tracker.log_trial_result("t0", {"epoch": 0, "valid/recon_smth": 0.5})
        archive = tmp_path_factory.mktemp("zip") / "autolfads.zip"
        archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
        tracker.log_artifact(archive)
        assert tracker.finish() == []
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert run_id is not None
    return run_id


def test_lab_a_sees_its_run_its_metrics_and_its_zip(
    mlflow_auth_server: AuthServer, labs: Labs, lab_a_run: str, mlflow_login: Login, tmp_path: Path
) -> None:
    mlflow_login(labs.a.username, labs.a.password)
    client = MlflowClient(mlflow_auth_server.url)
    assert client.get_run(lab_a_run).data.params["model.gen_dim"] == "8"
    children = client.search_runs(
        [experiment_id(mlflow_auth_server, labs.a.experiment)],
        filter_string=f"tags.`mlflow.parentRunId` = '{lab_a_run}'",
    )
    assert [m.value for m in client.get_metric_history(children[0].info.run_id, "valid/recon_smth")] == [0.5]
    assert (Path(client.download_artifacts(lab_a_run, "autolfads.zip", str(tmp_path)))).read_bytes()[
        :2
    ] == b"PK"


@pytest.mark.parametrize("who", ["lab B", "anonymous"])
def test_another_lab_or_nobody_can_neither_read_nor_delete_lab_as_run(
    who: str, mlflow_auth_server: AuthServer, labs: Labs, lab_a_run: str, mlflow_login: Login
) -> None:
    url = mlflow_auth_server.url
    experiment = experiment_id(mlflow_auth_server, labs.a.experiment)
    auth = (labs.b.username, labs.b.password) if who == "lab B" else None
    expected = 403 if who == "lab B" else 401
    artifact = f"{experiment}/{lab_a_run}/artifacts/autolfads.zip"
    reads = {
        "run": ("GET", f"/api/2.0/mlflow/runs/get?run_id={lab_a_run}"),
        "experiment": ("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment}"),
        "metrics": ("GET", f"/api/2.0/mlflow/metrics/get-history?run_id={lab_a_run}&metric_key=best"),
        "artifact list": ("GET", f"/api/2.0/mlflow/artifacts/list?run_id={lab_a_run}"),
        "proxied artifact download": ("GET", f"/api/2.0/mlflow-artifacts/artifacts/{artifact}"),
        "proxied artifact listing": (
            "GET",
            f"/api/2.0/mlflow-artifacts/artifacts?path={experiment}/{lab_a_run}",
        ),
        "UI artifact download": ("GET", f"/get-artifact?path=autolfads.zip&run_uuid={lab_a_run}"),
        "proxied artifact delete": ("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/{artifact}"),
        "proxied artifact overwrite": ("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{artifact}"),
    }
    answers = {
        name: requests.request(
            method, url + path, auth=auth, data=b"x" if method == "PUT" else None, timeout=10
        )
        for name, (method, path) in reads.items()
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(reads, expected)
    deleted = requests.post(
        f"{url}/api/2.0/mlflow/runs/delete", json={"run_id": lab_a_run}, auth=auth, timeout=10
    )
    assert deleted.status_code == expected
    if who == "lab B":  # searching shows nothing of lab A, rather than refusing
        mlflow_login(labs.b.username, labs.b.password)
        client = MlflowClient(url)
        assert client.search_runs([experiment]) == []
        assert labs.a.experiment not in {e.name for e in client.search_experiments()}
    mlflow_login(labs.a.username, labs.a.password)  # and the run is intact
    run = MlflowClient(url).get_run(lab_a_run)
    assert run.info.lifecycle_stage == "active"
    assert {a.path for a in MlflowClient(url).list_artifacts(lab_a_run)} == {"autolfads.zip"}


# --- a run that cannot log says so before it trains ---------------------------------------------------------


def test_a_wrong_password_is_one_tracking_error_naming_server_and_user(
    mlflow_auth_server: AuthServer, labs: Labs, mlflow_login: Login
) -> None:
    mlflow_login(labs.a.username, "not-the-password")
    tracker = RunTracker(mlflow_auth_server.url, experiment=labs.a.experiment)
    with pytest.raises(TrackingError) as refused:
        tracker.start("wrong-password", {"a": 1})
    message = str(refused.value)
    assert message == (
        f"MLflow at {mlflow_auth_server.url} refused the login of user '{labs.a.username}' "
        "(401 UNAUTHENTICATED: wrong username or password) while trying to read experiment "
        f"'{labs.a.experiment}': check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
    )
    assert "not-the-password" not in message


def test_no_login_at_all_is_one_tracking_error(mlflow_auth_server: AuthServer, mlflow_login: Login) -> None:
    mlflow_login(None, None)
    with pytest.raises(TrackingError, match=r"requires a login \(401 UNAUTHENTICATED\) and none was given"):
        RunTracker(mlflow_auth_server.url, experiment="anything").start("anonymous")


def test_another_labs_experiment_is_one_tracking_error(
    mlflow_auth_server: AuthServer, labs: Labs, mlflow_login: Login
) -> None:
    mlflow_login(labs.b.username, labs.b.password)
    tracker = RunTracker(mlflow_auth_server.url, experiment=labs.a.experiment)
    with pytest.raises(TrackingError) as refused:
        tracker.start("into-lab-a", {"a": 1})
    assert str(refused.value).startswith(
        f"MLflow at {mlflow_auth_server.url}: user '{labs.b.username}' may not read experiment "
        f"'{labs.a.experiment}' (403 PERMISSION_DENIED)"
    )


def test_a_login_refused_mid_run_is_one_warning_and_counted_and_training_goes_on(
    mlflow_auth_server: AuthServer, labs: Labs, mlflow_login: Login, caplog: pytest.LogCaptureFixture
) -> None:
    mlflow_login(labs.a.username, labs.a.password)
    tracker = RunTracker(mlflow_auth_server.url, experiment=labs.a.experiment)
    tracker.start("rotated-mid-run", {"a": 1})
    tracker.start_trial("t0", {"lr_init": 0.01})
    mlflow_login(labs.a.username, "rotated-away")  # e.g. the Secret changed under a running job
    caplog.set_level(logging.WARNING, logger="autolfads.tracking")

    for epoch in range(5):
        tracker.log_trial_result("t0", {"epoch": epoch, "valid/recon_smth": 1.0})
    lost = tracker.finish()

    refused = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(refused) == 1
    assert f"user '{labs.a.username}'" in refused[0] and "training continues" in refused[0]
    assert f"5 metric values refused by MLflow at {mlflow_auth_server.url}" in lost
    assert not [r for r in caplog.records if "rotated-away" in r.getMessage()]


def test_the_cli_prints_a_refused_login_as_one_line_and_trains_nothing(
    mlflow_auth_server: AuthServer, labs: Labs, tmp_path: Path
) -> None:
    from tests.tune.tiny import tiny_config, tiny_data

    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "config.yaml", num_samples=2, max_epochs=2, interval=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "RAY_"))}
    env.update(
        {
            "RAY_AUTH_MODE": "disabled",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_TRACKING_USERNAME": labs.a.username,
            "MLFLOW_TRACKING_PASSWORD": "a-wrong-password",
        }
    )
    command = [sys.executable, "-m", "autolfads.cli", "run", str(data), "--config", str(config)]
    command += ["--out", str(tmp_path / "out"), "--mlflow-uri", mlflow_auth_server.url]
    command += ["--mlflow-experiment", labs.a.experiment]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"Error: MLflow at {mlflow_auth_server.url} refused the login of user '{labs.a.username}'"
        )
    )
    assert "Traceback" not in done.stderr and "a-wrong-password" not in done.stderr + done.stdout
    assert not (tmp_path / "out" / "trials").exists()
