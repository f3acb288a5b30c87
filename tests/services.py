"""Real services for tests, started on 127.0.0.1 as session fixtures (moto S3, mlflow server).

Registered from the root ``conftest.py`` (``pytest_plugins = ["tests.services"]``), so every test directory
sees these fixtures. Each server is started once per session, on a free port, and killed at the end:

- ``moto_server``: moto's S3 server (``moto_server -H 127.0.0.1 -p PORT``); yields the endpoint URL.
- ``s3_bucket``: a fresh bucket per test on that server; sets dummy ``AWS_*`` credentials and
  ``AWS_ENDPOINT_URL`` through ``monkeypatch``; yields the bucket name.
- ``s3_auth_enforced``: for the duration of a test, the moto server checks credentials (any key it
  does not know is refused), so "wrong credentials" is a real server answer.
- ``mlflow_server``: ``mlflow server`` with a sqlite backend in a temp dir and artifacts proxied to
  ``s3://mlflow-artifacts/`` on the moto server; yields the tracking URI. ``mlflow_server_factory`` starts
  a separate one a test may stop (the "server died mid-run" case).
- ``start_ray_head``: a real Ray head (``ray start --head --block``) with token authentication, every
  port free-picked, its own temp dir and HOME; stopped by killing its process group (never ``ray stop``,
  which would stop every Ray on the machine).
- ``mlflow_auth_server``: the same with MLflow's authentication (``--app-name basic-auth``): its users in
  a second sqlite file, ``default_permission = NO_PERMISSIONS`` (what a multi-lab install needs), an admin
  whose credentials the fixture holds (:class:`AuthServer`). Clients log in with
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``; ``mlflow_login`` sets them for a test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
MLFLOW_ARTIFACT_BUCKET = "mlflow-artifacts"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    """The console script next to this interpreter (the venv's), else on PATH."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install 'autolfads[test]'")
    return found


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log if it dies or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server for {url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    _stop(proc)
    pytest.fail(f"server for {url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server and everything it spawned (it runs in its own process group)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Server:
    """A server subprocess a test may stop early (``stop`` is idempotent)."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        _stop(self.proc)


def _start(cmd: list[str], env: dict[str, str], health_url: str, log: Path, timeout_s: float) -> Server:
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    _wait_http(health_url, proc, timeout_s, log)
    return Server(url=health_url, proc=proc, log=log, env=env)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server on 127.0.0.1, shared by the whole session."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, **DUMMY_AWS_ENV}
    server = _start(
        [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env,
        f"{endpoint}/moto-api/",
        log,
        timeout_s=60,
    )
    try:
        yield endpoint
    finally:
        server.stop()


def _boto_s3(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_AWS_ENV["AWS_DEFAULT_REGION"],
    )


def list_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` (under ``prefix``), read with boto3 directly: the ground truth."""
    s3 = _boto_s3(endpoint)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


@pytest.fixture
def s3_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy AWS credentials and ``AWS_ENDPOINT_URL`` pointing at the moto server; yields the endpoint."""
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    return moto_server


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket on the session's moto server (env set as in ``s3_env``)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    _boto_s3(s3_env).create_bucket(Bucket=name)
    return name


@contextlib.contextmanager
def moto_auth_enforced(endpoint: str) -> Iterator[None]:
    """While open, the moto server checks credentials: access keys it does not know are refused."""

    def set_count(value: str) -> None:
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=value.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},  # a form type would hide the body from moto
        )
        with urllib.request.urlopen(request, timeout=10):
            pass

    set_count("0")
    try:
        yield
    finally:
        set_count("inf")


@pytest.fixture
def s3_auth_enforced(moto_server: str) -> Iterator[None]:
    """For the duration of one test, the moto server refuses unknown credentials (``moto_auth_enforced``)."""
    with moto_auth_enforced(moto_server):
        yield


def _mlflow_env(moto_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update(DUMMY_AWS_ENV)
    env.update(
        {
            "MLFLOW_S3_ENDPOINT_URL": moto_endpoint,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    return env


def start_mlflow_server(
    moto_endpoint: str,
    workdir: Path,
    bucket: str = MLFLOW_ARTIFACT_BUCKET,
    *,
    app: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``mlflow server`` on a free port: sqlite in ``workdir``, artifacts proxied to ``s3://bucket/``.

    ``app``/``extra_env``: more server flags (``--app-name basic-auth``) and environment.
    """
    with contextlib.suppress(Exception):
        _boto_s3(moto_endpoint).create_bucket(Bucket=bucket)
    port = free_port()
    server = _start(
        [
            _bin("mlflow"),
            "server",
            *(app or []),
            "--backend-store-uri",
            f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination",
            f"s3://{bucket}/",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {**_mlflow_env(moto_endpoint), **(extra_env or {})},
        f"http://127.0.0.1:{port}/health",
        workdir / "mlflow-server.log",
        timeout_s=120,
    )
    server.url = f"http://127.0.0.1:{port}"
    return server


@pytest.fixture(scope="session")
def mlflow_server(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URI of an ``mlflow server`` shared by the session (artifacts in moto's S3)."""
    server = start_mlflow_server(moto_server, tmp_path_factory.mktemp("mlflow"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def mlflow_server_factory(
    moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], Server]]:
    """Start private mlflow servers (a test may ``stop()`` one mid-run); all are stopped afterwards."""
    started: list[Server] = []

    def start() -> Server:
        server = start_mlflow_server(moto_server, tmp_path_factory.mktemp("mlflow-private"))
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


# --- MLflow with authentication -------------------------------------------------------------------------

MLFLOW_ADMIN = "admin"


@dataclass
class AuthServer:
    """An ``mlflow server --app-name basic-auth``: its URL and its admin's credentials."""

    url: str
    admin_password: str
    server: Server

    @property
    def admin_env(self) -> dict[str, str]:
        """What a client process needs to act as the admin."""
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
            "MLFLOW_TRACKING_PASSWORD": self.admin_password,
        }


def start_mlflow_auth_server(
    moto_endpoint: str, workdir: Path, default_permission: str = "NO_PERMISSIONS"
) -> AuthServer:
    """``mlflow server --app-name basic-auth`` with its user store in ``workdir`` and a fresh admin password.

    ``default_permission`` is what a user holds on experiments no one granted them: ``NO_PERMISSIONS``
    is what labs sharing a server need (MLflow's own default, ``READ``, lets everyone read everything).
    """
    admin_password = f"admin-{uuid.uuid4().hex}"
    config = workdir / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each request otherwise re-hashes the password (scrypt, ~0.1 s on a busy CI core); with one
        # worker, a password change through the API still takes effect at once.
        "auth_cache_ttl_seconds = 60\n"
    )
    server = start_mlflow_server(
        moto_endpoint,
        workdir,
        app=["--app-name", "basic-auth"],
        extra_env={
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,  # read once, when the user store is created
            "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
        },
    )
    return AuthServer(url=server.url, admin_password=admin_password, server=server)


@pytest.fixture(scope="session")
def mlflow_auth_server(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """An authenticated MLflow server shared by the session (users and grants persist across tests)."""
    server = start_mlflow_auth_server(moto_server, tmp_path_factory.mktemp("mlflow-auth"))
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture
def mlflow_login(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None, str | None], None]:
    """``mlflow_login(user, password)`` sets (or with None, clears) MLflow's login variables for a test."""

    def login(user: str | None, password: str | None) -> None:
        for name, value in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    return login


# --- a Ray head with token authentication ---------------------------------------------------------------


@dataclass
class RayHead:
    """A ``ray start --head`` in its own process group: addresses, its token, the environment it runs in."""

    gcs_address: str
    dashboard_url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    temp_dir: Path

    def stop(self) -> None:
        """Stop the head and everything it started: its process group, and its workers, which Ray puts
        in process groups of their own (found by walking the process tree before anything dies)."""
        family = _descendants(self.proc.pid)  # pid -> start time, so a reused pid is never hit
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # a test cluster needs no graceful shutdown
        while time.monotonic() < deadline and any(_running(p, t) for p, t in family.items()):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid, started in family.items():
            if _running(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _proc_stat(pid: int) -> list[str] | None:
    """``state, ppid, pgrp, …, starttime (index 19), …`` of a process from /proc (None once gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _running(pid: int, started: str) -> bool:
    """Still the same process (same start time) and not a zombie waiting to be reaped."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z" and stat[19] == started


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root`` in the process tree (by parent links), with its start time."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append((int(entry.name), stat[19]))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child, started in children.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything pointing at a real cluster, bucket or server, plus ``extra``."""
    isolated = ("AWS_", "MLFLOW_", "RAY_", "KUBECONFIG", "AUTOLFADS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(isolated)}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's tools first
    return {**env, **extra}


def ray_token_env(token: str | None, home: Path, **extra: str) -> dict[str, str]:
    """A client's environment for a token-auth cluster: ``RAY_AUTH_MODE=token`` and the token (or none)."""
    env = clean_env(HOME=str(home), RAY_AUTH_MODE="token", **extra)
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    return env


def start_ray_head(workdir: Path, num_cpus: int = 2, env: dict[str, str] | None = None) -> RayHead:
    """A Ray head with ``RAY_AUTH_MODE=token`` and a fresh token, on free ports, HOME in ``workdir``.

    ``env`` is added to the head's environment: every driver and worker of the cluster inherits it, as
    pods of a lab's cluster inherit the lab's Secrets. The temp dir is short (Ray's socket paths must fit
    in 107 bytes), under /tmp.
    """
    import tempfile

    token = uuid.uuid4().hex + uuid.uuid4().hex
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(tempfile.mkdtemp(prefix="rayh-", dir="/tmp"))
    gcs, dashboard = free_port(), free_port()
    ports = {
        "--port": gcs,
        "--dashboard-port": dashboard,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    command = [_bin("ray"), "start", "--head", "--block", "--disable-usage-stats"]
    command += ["--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--include-dashboard=true"]
    command += ["--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}"]
    command += [f"{flag}={port}" for flag, port in ports.items()]
    head_env = ray_token_env(token, home, **(env or {}))
    log = workdir / "ray-head.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command, env=head_env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    head = RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", token, proc, log, temp_dir)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the job API answers once the head is up
        if proc.poll() is not None:
            head.stop()
            pytest.fail(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        request = urllib.request.Request(
            f"{head.dashboard_url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return head
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    head.stop()
    pytest.fail(f"the Ray head's job API did not answer within 180 s:\n{log.read_text()[-3000:]}")
