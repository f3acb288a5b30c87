"""The whole platform on one machine, for the end-to-end tests: what an admin installs, what a user applies.

- the Kubernetes API: the emulator of ``tests/operator`` with our CRD and KubeRay's RayJob and RayCluster
  CRDs applied;
- object storage: the session's moto S3 server (buckets ``e2e-data`` and ``e2e-results``, the lab's prefixes);
- MLflow: a real ``mlflow server`` with MLflow's basic-auth app as the chart runs it (``NO_PERMISSIONS`` by
  default, an admin bootstrapped from the environment), the lab's user and experiment provisioned the way the
  chart's provisioning Job does it (``autolfads.tracking.mlflow_admin provision``), with the password the
  chart rendered into the lab's Secret;
- the chart: ``helm template`` of ``helm/autolfads`` with ``tests/e2e/lab-values.yaml``; the lab's RayCluster
  and Secrets are applied to the API, the operator's labs file is the chart's ConfigMap;
- the operator: ``kopf run -m operators.main`` in its own process, as the Deployment starts it;
- KubeRay: :mod:`tests.e2e.kuberay`, real Ray processes.

Cluster DNS is the one thing rewritten: the chart's in-cluster URLs (MLflow's Service) become the loopback
URLs of the test's servers, in the labs file and in the pods' environment alike (``services``).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kuberay import KubeRayStandIn
from tests.operator.cluster import ApiServer, Kube
from tests.services import DUMMY_AWS_ENV, Server, _boto_s3, _mlflow_env, _wait_http, free_port

REPO = Path(__file__).resolve().parents[2]
VALUES = Path(__file__).with_name("lab-values.yaml")
RELEASE, RELEASE_NS = "autolfads", "autolfads"
LAB, LAB_NS, LAB_CLUSTER = "e2e", "lab-e2e", "e2e-ray"
STORAGE_SECRET = "e2e-s3"
DATA_BUCKET, RESULTS_BUCKET = "e2e-data", "e2e-results"
MLFLOW_SERVICE = f"http://{RELEASE}-mlflow.{RELEASE_NS}.svc:5000"
TERMINAL = ("Succeeded", "Failed")


def render_chart(helm: Path, home: Path, moto: str) -> list[dict[str, Any]]:
    """``helm template`` of the chart with the e2e values; storage pointed at ``moto``."""
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    args = [str(helm), "template", RELEASE, str(REPO / "helm" / "autolfads"), "--namespace", RELEASE_NS,
            "--kube-version", "1.30.0", "--api-versions", "ray.io/v1", "-f", str(VALUES),
            "--set", f"storage.endpointUrl={moto}"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"helm template failed: {proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def secret_values(doc: Mapping[str, Any]) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    values.update({k: str(v) for k, v in (doc.get("stringData") or {}).items()})
    return values


def resolve_services(text: str, services: Mapping[str, str]) -> str:
    for url, local in services.items():
        text = text.replace(url, local)
    return text


# --------------------------------------------------------------------------------------------- MLflow
@dataclass
class Mlflow:
    url: str
    admin: tuple[str, str]
    server: Server

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             auth: tuple[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        user, password = auth or self.admin
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read().decode() or "{}")

    def wait(self) -> None:
        _wait_http(self.server.url, self.server.proc, 180, self.server.log)

    def provision(self, docs: list[dict[str, Any]], workdir: Path) -> str:
        """What the chart's provisioning Job runs (``autolfads.tracking.mlflow_admin provision``), with the
        chart's rendered labs list and the lab's password from the rendered Secret. Returns the lab's
        experiment id."""
        labs = yaml.safe_load(find(docs, "ConfigMap", f"{RELEASE}-mlflow-labs")["data"]["mlflow-labs.yaml"])
        for entry in labs:
            secret = secret_values(find(docs, "Secret", f"{RELEASE}-mlflow-lab-{entry['lab']}"))
            password = workdir / "lab-secrets" / entry["lab"] / "password"
            password.parent.mkdir(parents=True, exist_ok=True)
            password.write_text(secret["password"])
            entry["passwordFile"] = str(password)
        listing = workdir / "mlflow-labs.yaml"
        listing.write_text(yaml.safe_dump(labs))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        env.update(MLFLOW_TRACKING_URI=self.url, MLFLOW_TRACKING_USERNAME=self.admin[0],
                   MLFLOW_TRACKING_PASSWORD=self.admin[1], MLFLOW_DISABLE_TELEMETRY="true")  # fmt: skip
        command = [sys.executable, "-m", "autolfads.tracking.mlflow_admin", "provision", str(listing)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        found = self.call("GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={LAB}")
        return str(found["experiment"]["experiment_id"])

    def runs(self, experiment_id: str) -> list[dict[str, Any]]:
        found = self.call("POST", "/api/2.0/mlflow/runs/search",
                          {"experiment_ids": [experiment_id], "max_results": 1000})  # fmt: skip
        return found.get("runs", [])


def start_mlflow(moto: str, workdir: Path) -> Mlflow:
    """``mlflow server --app-name basic-auth`` as the chart configures it (basic_auth.ini, admin from env);
    returns at once (the server takes a while to start): :meth:`Mlflow.wait` before using it."""
    with contextlib.suppress(Exception):
        _boto_s3(moto).create_bucket(Bucket="mlflow-artifacts")
    admin = ("admin", uuid.uuid4().hex)
    ini = workdir / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{workdir / 'basic_auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    port = free_port()
    env = {
        **_mlflow_env(moto),
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
    }
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    log = workdir / "mlflow-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
             "--artifacts-destination", "s3://mlflow-artifacts/", "--serve-artifacts", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--app-name", "basic-auth"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return Mlflow(url, admin, Server(f"{url}/health", process, log, env))


# ------------------------------------------------------------------------------------------- operator
@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log: Path
    liveness: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_operator(
    kubeconfig: Path, labs_file: Path, workdir: Path, extra_env: Mapping[str, str] = ()
) -> Operator:
    """``kopf run --standalone --all-namespaces -m operators.main``, as the Deployment runs it."""
    liveness = free_port()
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(workdir),
        KUBECONFIG=str(kubeconfig),
        AUTOLFADS_LABS_FILE=str(labs_file),
        AUTOLFADS_METRICS_PORT=str(free_port()),
        AUTOLFADS_PROGRESS_INTERVAL="2",
        AUTOLFADS_REF_RETRY_DELAY="1",
        **dict(extra_env),
    )
    log = workdir / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
             f"--liveness=http://127.0.0.1:{liveness}/healthz", "-m", "operators.main"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited: {log.read_text()[-3000:]}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return Operator(process, log, liveness)
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the operator did not become live: {log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------------------- platform
@dataclass
class Platform:
    """Everything one session shares; tests use :meth:`submit`, :meth:`wait_phase` and the S3 helpers."""

    apiserver: ApiServer
    moto: str
    mlflow: Mlflow
    experiment_id: str
    operator: Operator
    standin: KubeRayStandIn
    docs: list[dict[str, Any]]
    workdir: Path
    data_uri: str
    config_map: str
    kube: Kube = field(init=False)
    timeline: list[tuple[float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kube = Kube(self.apiserver.client(), LAB_NS)

    # --- the user ------------------------------------------------------------------------------------
    def job_spec(self, **changes: Any) -> dict[str, Any]:
        """Population 4, half a GPU per trial, the config from the lab's ConfigMap; data and outputs in S3."""
        spec: dict[str, Any] = {
            "dataURI": self.data_uri,
            "outputURI": f"s3://{RESULTS_BUCKET}/runs",
            "configMapRef": {"name": self.config_map},
            "population": 4,
            "gpusPerTrial": 0.5,
            "cpusPerTrial": 1,
        }
        spec.update(changes)
        return spec

    def apply_job(self, name: str, spec: Mapping[str, Any]) -> float:
        """``kubectl apply`` of an AutoLFADSJob in the lab's namespace; returns when it was applied."""
        doc = {"apiVersion": "autolfads.io/v1alpha1", "kind": "AutoLFADSJob",
               "metadata": {"name": name, "namespace": LAB_NS}, "spec": dict(spec)}  # fmt: skip
        path = self.workdir / f"job-{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        applied_at = time.time()
        result = self.apiserver.kubectl("apply", "--validate=false", "-f", str(path))
        assert result.returncode == 0, result.stderr
        return applied_at

    def status(self, name: str) -> dict[str, Any]:
        return self.kube.status(name)

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 420,
                   seen: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
        """Poll the job until its phase is one of ``phases``; record every phase seen in ``seen``."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.status(name)
            phase = status.get("phase")
            if seen is not None and phase and (not seen or seen[-1] != phase):
                seen.append(phase)
            if phase in phases:
                return status
            if phase in TERMINAL and not set(phases) & set(TERMINAL):
                raise AssertionError(f"{name} ended {phase}: {status.get('message')}\n{self.diagnose(name)}")
            time.sleep(0.25)
        raise AssertionError(
            f"{name} did not reach {phases} in {timeout:.0f} s: {status}\n{self.diagnose(name)}"
        )

    def rayjob(self, name: str) -> dict[str, Any]:
        rayjob_name = self.status(name).get("rayJobName")
        found = [r for r in self.kube.rayjobs() if r["metadata"]["name"] == rayjob_name]
        return found[0] if found else {}

    def diagnose(self, name: str) -> str:
        """What to read when a scenario fails: the RayJob, the submitter's, operator's and stand-in's logs."""
        rayjob = self.rayjob(name)
        rayjob_name = rayjob.get("metadata", {}).get("name", "")
        parts = [
            f"RayJob status: {json.dumps(rayjob.get('status'), indent=1)[-3000:]}",
            f"submitter log: {self.standin.submitter_log(LAB_NS, rayjob_name)[-6000:]}",
            f"operator log: {self.operator.log.read_text(errors='replace')[-3000:]}",
            f"stand-in errors: {self.standin.errors[-5:]}",
        ]
        return "\n".join(parts)

    def delete_job(self, name: str) -> None:
        self.apiserver.kubectl("delete", "autolfadsjob", name, "-n", LAB_NS, "--wait=false")

    # --- storage --------------------------------------------------------------------------------------
    def s3(self) -> Any:
        return _boto_s3(self.moto)

    def run_prefix(self, name: str) -> str:
        return f"runs/{LAB_NS}/{name}"

    def read(self, key: str, bucket: str = RESULTS_BUCKET) -> bytes:
        return self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, prefix: str, bucket: str = RESULTS_BUCKET) -> list[str]:
        from tests.services import list_keys

        return list_keys(self.moto, bucket, prefix)

    def zip_names(self, uri: str) -> list[str]:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return zipfile.ZipFile(io.BytesIO(self.read(key, bucket))).namelist()

    def trial_rows(self, name: str) -> list[dict[str, Any]]:
        text = self.read(f"{self.run_prefix(name)}/trial_results.jsonl").decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def platform_session(helm: Path, crd_dir: Path, moto: str, workdir: Path,
                     api: Callable[[Path], contextlib.AbstractContextManager[ApiServer]],
                     config_text: str, data: bytes) -> Iterator[Platform]:  # fmt: skip
    """Start everything (see the module docstring), yield the :class:`Platform`, stop everything."""
    s3 = _boto_s3(moto)
    for bucket in (DATA_BUCKET, RESULTS_BUCKET):
        with contextlib.suppress(Exception):
            s3.create_bucket(Bucket=bucket)
    data_key = f"sessions/{uuid.uuid4().hex[:8]}/lorenz.h5"
    s3.put_object(Bucket=DATA_BUCKET, Key=data_key, Body=data)
    docs = render_chart(helm, workdir / "helm", moto)
    with contextlib.ExitStack() as stack:
        mlflow = start_mlflow(moto, workdir)
        stack.callback(mlflow.server.stop)
        services = {MLFLOW_SERVICE: mlflow.url}
        (workdir / "api").mkdir(exist_ok=True)
        server = stack.enter_context(api(workdir / "api"))
        applied = server.kubectl("apply", "--validate=false", "-f", str(crd_dir / "ray.io_rayclusters.yaml"))
        assert applied.returncode == 0, applied.stderr
        labs = yaml.safe_load(find(docs, "ConfigMap", f"{RELEASE}-labs")["data"]["labs.yaml"])
        labs_file = workdir / "labs.yaml"
        labs_file.write_text(resolve_services(yaml.safe_dump(labs), services))
        lab_objects = [find(docs, "Secret", f"{RELEASE}-mlflow"), _storage_secret(moto)]
        _apply(server, workdir / "lab-secrets.yaml", lab_objects)
        config_map = "e2e-config"
        _apply(server, workdir / "config-map.yaml", [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": config_map, "namespace": LAB_NS}, "data": {"config.yaml": config_text},
        }])  # fmt: skip
        operator = start_operator(server.kubeconfig, labs_file, workdir,
                                  {"AUTOLFADS_ALLOWED_STORAGE_ENDPOINTS": moto})  # fmt: skip
        stack.callback(operator.stop)
        pods = Path(tempfile.mkdtemp(prefix="e2e-"))  # short: Ray's socket paths are limited to 107 bytes
        stack.callback(shutil.rmtree, pods, True)
        standin = KubeRayStandIn(server.client(), pods, image_env(), services, ttl_factor=0.05)
        stack.enter_context(standin)
        mlflow.wait()  # started first, it was starting meanwhile
        experiment_id = mlflow.provision(docs, workdir)
        yield Platform(server, moto, mlflow, experiment_id, operator, standin, docs, workdir,
                       f"s3://{DATA_BUCKET}/{data_key}", config_map)  # fmt: skip


def start_lab_cluster(platform: Platform) -> None:
    """Apply the chart's RayCluster for the lab and wait until the stand-in has it running."""
    _apply(
        platform.apiserver,
        platform.workdir / "lab-raycluster.yaml",
        [find(platform.docs, "RayCluster", LAB_CLUSTER)],
    )
    platform.standin.wait_ready(LAB_NS, LAB_CLUSTER, timeout=240)


def image_env() -> dict[str, str]:
    """The environment the image gives every container (the Dockerfile's ENV), with this Python as the
    image's. Left out: ``AUTOLFADS_METRICS_PORT=9090`` (every "pod" shares this machine's ports, and other
    people's processes run here). Added: a 12 s lease TTL (``AUTOLFADS_LEASE_TTL_S``, 120 s by default), so
    that a retry after a killed driver waits seconds, not two minutes, for the dead driver's lease."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "AUTOLFADS_LEASE_TTL_S": "12",
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def _storage_secret(moto: str) -> dict[str, Any]:
    """The lab's storage Secret, as the admin creates and marks it (k8s/examples/storage-secret.yaml)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": STORAGE_SECRET,
            "namespace": LAB_NS,
            "labels": {"autolfads.io/storage-secret": "true"},
        },
        "type": "Opaque",
        "stringData": {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": moto},
    }


def _apply(server: ApiServer, path: Path, docs: list[Mapping[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all([dict(d) for d in docs]))
    result = server.kubectl("apply", "--validate=false", "-f", str(path))
    assert result.returncode == 0, result.stderr
