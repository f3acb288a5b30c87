"""Fixtures for the chart tests: the real helm v4 CLI and KubeRay's CRD schemas (from .ci/test-env.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import external_tool
from tests.helm.chart import HelmResult, run_helm


@pytest.fixture(scope="session")
def helm() -> Path:
    return external_tool("HELM", "run `make tools` (or put helm v4 on PATH) and source .ci/test-env.sh")


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="session")
def helm_run(helm: Path, helm_home: Path):
    """``helm_run(*args) -> HelmResult``: helm with a private home."""

    def run(*args: str) -> HelmResult:
        return run_helm(helm, *args, home=helm_home)

    return run


@pytest.fixture(scope="session")
def kuberay_crd_dir() -> Path:
    return external_tool("KUBERAY_CRD_DIR", "point it at KubeRay's ray-operator/config/crd/bases (v1.7.0)")
