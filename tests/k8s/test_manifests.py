"""Every manifest in k8s/ is valid for Kubernetes 1.30 and 1.37 (strict), and every example job is valid
against our CRD's schema — the checks ``kubectl apply --validate=strict`` would do on a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from tests.k8s.conftest import OUR_CRD, REPO
from tests.k8s.crd_schemas import CRDValidator, load_yaml_documents

MANIFESTS = sorted(p for p in (REPO / "k8s").rglob("*.yaml") if p.name != "kustomization.yaml")
EXAMPLES = sorted((REPO / "k8s" / "examples").glob("*.yaml"))
BUILTIN = [
    (p, i, doc)
    for p in MANIFESTS
    for i, doc in enumerate(load_yaml_documents(p))
    if not doc["apiVersion"].startswith("autolfads.io/")
]


@pytest.mark.parametrize("version", ["1.30", "1.37"])
@pytest.mark.parametrize(
    ("path", "index", "doc"), BUILTIN, ids=[f"{p.parent.name}/{p.name}#{i}" for p, i, _ in BUILTIN]
)
def test_builtin_manifest_is_valid_in_strict_mode(path: Path, index: int, doc: dict, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_kubernetes_validate_cli_accepts_every_manifest(version: str) -> None:
    cli = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(cli), "--strict", "-k", version, *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_jobs_validate_against_our_crd(path: Path, alj_validator: CRDValidator) -> None:
    jobs = [d for d in load_yaml_documents(path) if d["kind"] == "AutoLFADSJob"]
    for job in jobs:
        assert alj_validator.errors(job) == []


def test_examples_cover_minimal_configmap_and_dedicated_jobs() -> None:
    jobs = [d for p in EXAMPLES for d in load_yaml_documents(p) if d["kind"] == "AutoLFADSJob"]
    assert any(set(j["spec"]) <= {"dataURI", "outputURI", "storageSecretRef"} for j in jobs)
    assert any("configMapRef" in j["spec"] for j in jobs)
    assert any("dedicatedCluster" in j["spec"] for j in jobs)


def test_crd_is_a_single_document_with_the_agreed_names() -> None:
    (crd,) = load_yaml_documents(OUR_CRD)
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == (
        "autolfads.io",
        "AutoLFADSJob",
        "autolfadsjobs",
        ["alj"],
    )
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Generation", "Best valid recon", "Trials", "Age"]


BAD_SPECS = [
    ({"population": 1}, "spec.population"),
    ({"gpusPerTrial": 0}, "spec.gpusPerTrial"),
    ({"gpusPerTrial": 1.5}, "spec.gpusPerTrial"),
    ({"dataURI": "bucket/data.h5"}, "spec.dataURI"),
    ({"outputURI": "/local/path"}, "spec.outputURI"),
    ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    ({"popluation": 8}, "spec"),
    ({"overrides": ["not an override"]}, "spec.overrides.0"),
    ({"mlflow": {"trackingURI": "mlflow:5000"}}, "spec.mlflow.trackingURI"),
]


@pytest.mark.parametrize(("change", "field"), BAD_SPECS, ids=[f for _, f in BAD_SPECS])
def test_schema_rejects_bad_spec_naming_the_field(
    change: dict, field: str, alj_validator: CRDValidator
) -> None:
    job = {
        "apiVersion": "autolfads.io/v1alpha1",
        "kind": "AutoLFADSJob",
        "metadata": {"name": "j"},
        "spec": {"dataURI": "s3://b/d.h5", "outputURI": "s3://b/out", **change},
    }
    errors = alj_validator.errors(job)
    assert errors and errors[0].startswith(f"{field}:")


def test_schema_requires_data_and_output(alj_validator: CRDValidator) -> None:
    job = {"apiVersion": "autolfads.io/v1alpha1", "kind": "AutoLFADSJob", "metadata": {}, "spec": {}}
    errors = " ".join(alj_validator.errors(job))
    assert "'dataURI' is a required property" in errors and "'outputURI' is a required property" in errors


@pytest.mark.parametrize("name", ["operator-clusterrole.yaml", "operator-lab-role.yaml"])
def test_operator_roles_grant_no_wildcards_or_deletes(name: str) -> None:
    (role,) = load_yaml_documents(REPO / "k8s" / "rbac" / name)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "delete" not in rule["verbs"] and "deletecollection" not in rule["verbs"]


def test_operator_reads_secrets_only_in_a_lab_and_only_by_name() -> None:
    (cluster_role,) = load_yaml_documents(REPO / "k8s" / "rbac" / "operator-clusterrole.yaml")
    assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]]  # nothing cluster-wide
    (lab_role,) = load_yaml_documents(REPO / "k8s" / "rbac" / "operator-lab-role.yaml")
    (secrets,) = [r for r in lab_role["rules"] if "secrets" in r["resources"]]
    assert secrets == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["lab-storage"],
        "verbs": ["get"],
    }


def test_plain_manifests_declare_their_example_lab_consistently() -> None:
    from operators.labs import parse_policy

    (labs_cm,) = load_yaml_documents(REPO / "k8s" / "operator" / "labs-configmap.yaml")
    (lab,) = parse_policy(labs_cm["data"]["labs.yaml"]).labs.values()
    (role,) = load_yaml_documents(REPO / "k8s" / "rbac" / "operator-lab-role.yaml")
    (namespace,) = load_yaml_documents(REPO / "k8s" / "lab" / "namespace.yaml")
    assert lab.namespace == role["metadata"]["namespace"] == namespace["metadata"]["name"]
    (secrets,) = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert list(lab.storage_secrets) == secrets["resourceNames"]
    (deployment,) = load_yaml_documents(REPO / "k8s" / "operator" / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "labs", "configMap": {"name": labs_cm["metadata"]["name"]}} in pod["volumes"]


def test_aggregated_roles_extend_edit_and_view() -> None:
    labels = {}
    for name in ("aggregate-edit-clusterrole.yaml", "aggregate-view-clusterrole.yaml"):
        (role,) = load_yaml_documents(REPO / "k8s" / "rbac" / name)
        labels.update(role["metadata"]["labels"])
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


def test_operator_deployment_runs_locked_down() -> None:
    docs = load_yaml_documents(REPO / "k8s" / "operator" / "deployment.yaml")
    pod = docs[0]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] and container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kustomization_installs_every_manifest_but_the_examples() -> None:
    (kustomization,) = load_yaml_documents(REPO / "k8s" / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {str(p.relative_to(REPO / "k8s")) for p in MANIFESTS if p.parent.name != "examples"}
    assert listed == on_disk
