"""Fixtures for the operator tests: schema validators (pure tests) and the emulated API server (slow)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.conftest import alj_validator, rayjob_validator
from tests.operator.cluster import ApiServer, Kube, LabsFile, api_server
from tests.services import free_port

__all__ = ["alj_validator", "rayjob_validator"]


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    if shutil.which("kubectl") is None:
        message = "kubectl is not on PATH: run `make tools` and source .ci/test-env.sh (or install kubectl)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with api_server(tmp_path_factory.mktemp("apiserver")) as server:
        yield server


@pytest.fixture
def kube(apiserver: ApiServer) -> Kube:
    """A client in a fresh namespace of its own (tests share one emulator)."""
    return Kube(apiserver.client(), f"t-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def labs(kube: Kube, tmp_path: Path, outputs: Path) -> LabsFile:
    """The labs file: the test's namespace is a lab (its outputs, s3://lab-data/, s3://lab-results/)."""
    return LabsFile(tmp_path / "labs.yaml", kube.ns, outputs)


@pytest.fixture
def operator_env(apiserver: ApiServer, labs: LabsFile, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """What the operator's Deployment sets, pointed at the emulator; fast progress/retry intervals."""
    ports = {"metrics": free_port(), "liveness": free_port()}
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig))
    monkeypatch.setenv("AUTOLFADS_LABS_FILE", str(labs.path))
    monkeypatch.setenv("AUTOLFADS_METRICS_PORT", str(ports["metrics"]))
    monkeypatch.setenv("AUTOLFADS_PROGRESS_INTERVAL", "0.5")
    monkeypatch.setenv("AUTOLFADS_REF_RETRY_DELAY", "0.5")
    monkeypatch.setenv("AUTOLFADS_IMAGE", "registry.test/autolfads:test")
    return ports


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    out.mkdir()
    return out
