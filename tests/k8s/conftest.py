"""Schemas the manifest tests validate against: our CRD (in the repo) and KubeRay's (outside it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import external_tool
from tests.k8s.crd_schemas import CRDValidator, load_yaml_documents

REPO = Path(__file__).resolve().parents[2]
OUR_CRD = REPO / "k8s" / "crds" / "autolfadsjobs.autolfads.io.yaml"


def kuberay_crd_dir() -> Path:
    return external_tool("KUBERAY_CRD_DIR", "point it at KubeRay v1.7.0 ray-operator/config/crd/bases")


@pytest.fixture(scope="session")
def alj_validator() -> CRDValidator:
    return CRDValidator(load_yaml_documents(OUR_CRD), strict=True)


@pytest.fixture(scope="session")
def rayjob_validator() -> CRDValidator:
    return CRDValidator(load_yaml_documents(kuberay_crd_dir() / "ray.io_rayjobs.yaml"), strict=True)
