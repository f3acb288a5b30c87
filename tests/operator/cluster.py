"""Test-side helpers around the emulated API server: start it, kubectl, clients, polling, the operator."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import yaml
from kopf.testing import KopfRunner

from tests.k8s.conftest import REPO, kuberay_crd_dir
from tests.services import free_port

T = TypeVar("T")
GROUP, VERSION, PLURAL = "autolfads.io", "v1alpha1", "autolfadsjobs"
OUR_CRD = REPO / "k8s" / "crds" / "autolfadsjobs.autolfads.io.yaml"


@dataclass
class ApiServer:
    url: str
    kubeconfig: Path
    process: subprocess.Popen[str]

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    def client(self) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))


@contextlib.contextmanager
def api_server(workdir: Path, kuberay_dir: Path | None = None) -> Iterator[ApiServer]:
    """The emulator in a subprocess on a free loopback port, with KubeRay's and our CRDs applied."""
    kuberay_dir = kuberay_dir or kuberay_crd_dir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.operator.apiserver", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"API emulator did not start: {line!r}")
        url = line.split()[1]
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emu",
                    "clusters": [{"name": "emu", "cluster": {"server": url}}],
                    "users": [{"name": "tester", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "emu",
                            "context": {"cluster": "emu", "user": "tester", "namespace": "default"},
                        }
                    ],
                }
            )
        )
        server = ApiServer(url, kubeconfig, proc)
        applied = server.kubectl(
            "apply",
            "--validate=false",
            "-f",
            str(OUR_CRD),
            "-f",
            str(kuberay_dir / "ray.io_rayjobs.yaml"),
        )
        if applied.returncode != 0:
            raise RuntimeError(f"kubectl apply of the CRDs failed: {applied.stderr}")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_for(fn: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``fn`` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def operator(liveness_port: int) -> KopfRunner:
    """The operator as ``kopf run`` starts it (handlers module, standalone, all namespaces, liveness)."""
    return KopfRunner(
        [
            "run",
            "--standalone",
            "--all-namespaces",
            f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
            "-m",
            "operators.main",
        ],
        timeout=30,
    )


TEST_IMAGE = "registry.test/autolfads:test"
EXAMPLE_IMAGE = "ghcr.io/autolfads/autolfads:0.1.0"  # named by k8s/examples/dedicated-cluster-job.yaml


class LabsFile:
    """The operator's labs file (``$AUTOLFADS_LABS_FILE``) for a test: its namespace is a lab.

    The operator re-reads the file when it changes, so a test may :meth:`write` other labs before (or
    while) the operator runs.
    """

    def __init__(self, path: Path, namespace: str, outputs: Path) -> None:
        self.path = path
        self.namespace = namespace
        self.outputs = outputs
        self.write()

    def lab(self, namespace: str | None = None, secrets: list[str] = (), **changes: Any) -> dict[str, Any]:
        """A lab entry: shared cluster ``autolfads-ray``, the test's prefixes, the storage ``secrets``."""
        ns = namespace or self.namespace
        lab: dict[str, Any] = {
            "name": f"lab-{ns}",
            "namespace": ns,
            "rayCluster": "autolfads-ray",
            "storage": {
                "secrets": list(secrets),
                "allowedPrefixes": [
                    "s3://lab-data/",
                    "s3://lab-results/",
                    f"s3://runs-{ns}/",
                    f"file://{self.outputs}/",
                ],
            },
            "jobs": {"queueName": "lab-queue"},  # used only where Kueue's API exists
        }
        lab.update(changes)
        return lab

    def write(self, labs: list[dict[str, Any]] | None = None, **top: Any) -> None:
        doc = {
            "images": {"default": TEST_IMAGE, "allowed": [EXAMPLE_IMAGE]},
            "labs": labs if labs is not None else [self.lab()],
            **top,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc))
        tmp.replace(self.path)


class Kube:
    """The handful of API calls the tests make, on one explicit client (no global config)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def create_job(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AutoLFADSJob",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def job(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_secret(self, name: str, data: dict[str, str], marked: bool = True) -> None:
        """A storage Secret; ``marked``: with the label by which the admin marks it for AutoLFADS."""
        labels = {"autolfads.io/storage-secret": "true"} if marked else {}
        body = {"metadata": {"name": name, "labels": labels}, "stringData": data}
        self.core.create_namespaced_secret(self.ns, body)

    def status(self, name: str) -> dict[str, Any]:
        return (self.job(name) or {}).get("status") or {}

    def rayjobs(self) -> list[dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object("ray.io", "v1", self.ns, "rayjobs")["items"]
        return [i for i in items if i["metadata"].get("namespace") == self.ns]

    def network_policies(self) -> list[dict[str, Any]]:
        api = kubernetes.client.NetworkingV1Api(self.core.api_client)
        items = api.list_namespaced_network_policy(self.ns).items
        mine = [i for i in items if i.metadata.namespace == self.ns]
        return [api.api_client.sanitize_for_serialization(i) for i in mine]

    def config_maps(self) -> list[Any]:
        return [
            c for c in self.core.list_namespaced_config_map(self.ns).items if c.metadata.namespace == self.ns
        ]

    def patch_rayjob_status(self, name: str, status: dict[str, Any]) -> None:
        """Play KubeRay: write the RayJob's status through the /status subresource."""
        self.custom.patch_namespaced_custom_object_status(
            "ray.io", "v1", self.ns, "rayjobs", name, {"status": status}
        )

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events about the AutoLFADSJob ``name``."""
        items = self.core.list_namespaced_event(self.ns).items
        return [
            (e.type, e.reason, e.message)
            for e in items
            if e.metadata.namespace == self.ns
            and e.involved_object.name == name
            and e.involved_object.kind == "AutoLFADSJob"
        ]

    def reasons(self, name: str) -> set[str]:
        return {reason for _, reason, _ in self.events(name)}
