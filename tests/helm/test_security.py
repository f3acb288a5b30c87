"""Shared-cluster manners on every Pod the chart renders, for every ci values file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.helm.chart import CI_VALUES, MONITORING_API, RAY_API, REPO, by_kind, pod_specs, template_args

SHARED_RBAC = REPO / "k8s" / "rbac"


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda p: p.name)
def pods(request, helm_run) -> list[tuple[str, dict[str, Any]]]:
    values = ["minio.enabled=true"]  # MinIO's Deployment and Job are Pods too: always include them here.
    result = helm_run(
        *template_args(
            values_files=[request.param], set_values=values, api_versions=[RAY_API, MONITORING_API]
        )
    )
    assert result.returncode == 0, result.stderr
    found = [p for doc in result.documents for p in pod_specs(doc)]
    assert len(found) >= 5  # operator, MLflow, MinIO, MinIO buckets Job, Ray head, Ray workers
    return found


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_every_pod_runs_as_non_root(pods) -> None:
    for name, pod in pods:
        ctx = pod.get("securityContext", {})
        assert ctx.get("runAsNonRoot") is True, name
        assert ctx.get("runAsUser", 0) != 0, name
        assert ctx.get("seccompProfile", {}).get("type") == "RuntimeDefault", name


def test_no_container_can_escalate_or_keep_capabilities(pods) -> None:
    for name, pod in pods:
        for c in containers(pod):
            ctx = c.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False, f"{name}/{c['name']}"
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{c['name']}"
            assert not ctx.get("privileged", False), f"{name}/{c['name']}"
            assert ctx.get("readOnlyRootFilesystem") is True, f"{name}/{c['name']}"


def test_read_only_containers_get_a_writable_tmp(pods) -> None:
    for name, pod in pods:
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers(pod):
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}/{c['name']}"


def test_every_container_sets_requests_and_limits(pods) -> None:
    for name, pod in pods:
        for c in containers(pod):
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{name}/{c['name']} {kind}"


def test_no_secret_values_in_pod_specs(pods) -> None:
    """Credentials reach Pods only as secretKeyRef, never as literal env values."""
    for name, pod in pods:
        for c in containers(pod):
            for env in c.get("env", []):
                if any(
                    word in env["name"] for word in ("SECRET", "PASSWORD", "ACCESS_KEY", "BACKEND_STORE_URI")
                ):
                    assert "valueFrom" in env and "value" not in env, f"{name}/{c['name']} {env['name']}"


def test_ray_autoscaler_sidecar_is_restricted_too(helm_run) -> None:
    result = helm_run(*template_args(api_versions=[RAY_API]))
    (cluster,) = by_kind(result.documents, "RayCluster")
    options = cluster["spec"]["autoscalerOptions"]
    assert options["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(options["resources"])


def shared_rules(filename: str) -> list[dict[str, Any]]:
    return yaml.safe_load((SHARED_RBAC / filename).read_text())["rules"]


@pytest.mark.parametrize(
    ("rendered_name", "shared_file"),
    [
        ("autolfads-operator", "operator-clusterrole.yaml"),
        ("autolfads-jobs-edit", "aggregate-edit-clusterrole.yaml"),
        ("autolfads-jobs-view", "aggregate-view-clusterrole.yaml"),
    ],
)
def test_cluster_roles_grant_exactly_the_k8s_rbac_rules(
    helm_run, rendered_name: str, shared_file: str
) -> None:
    result = helm_run(*template_args(api_versions=[RAY_API]))
    roles = {d["metadata"]["name"]: d for d in by_kind(result.documents, "ClusterRole")}
    assert roles[rendered_name]["rules"] == shared_rules(shared_file)
    shared_labels = yaml.safe_load((SHARED_RBAC / shared_file).read_text())["metadata"].get("labels", {})
    for key, value in shared_labels.items():
        if key.startswith("rbac.authorization.k8s.io/"):
            assert roles[rendered_name]["metadata"]["labels"][key] == value


def test_operator_binding_names_the_operator_service_account(helm_run) -> None:
    docs = helm_run(*template_args(api_versions=[RAY_API])).documents
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    (account,) = by_kind(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == "autolfads-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "autolfads"}
    ]
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "autolfads-operator")
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
