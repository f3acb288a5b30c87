"""`helm template` output for each scenario: what renders, and that every document is valid.

Built-in kinds are checked with kubernetes-validate (strict) for the oldest and newest Kubernetes we
support; the RayCluster against KubeRay's CRD schema (strict); our CRD's examples against our CRD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.helm.chart import (
    CHART,
    CI_VALUES,
    KUBE_VERSIONS,
    MONITORING_API,
    RAY_API,
    REPO,
    by_kind,
    crd_errors,
    template_args,
)

SHARED_CRD = REPO / "k8s" / "crds" / "autolfadsjobs.autolfads.io.yaml"
CHART_CRD = CHART / "crds" / "autolfadsjobs.autolfads.io.yaml"
CUSTOM_KINDS = {"RayCluster", "ServiceMonitor", "PodMonitor"}


def render(
    helm_run, values: Path | None = None, apis=(RAY_API, MONITORING_API), sets=()
) -> list[dict[str, Any]]:
    result = helm_run(
        *template_args(values_files=[values] if values else [], api_versions=apis, set_values=sets)
    )
    assert result.returncode == 0, result.stderr
    return result.documents


# Switches the ci values files leave at their defaults; each combination must render valid objects too.
TOGGLES = [
    ("operator.enabled=false",),
    ("rayCluster.enabled=false", "mlflow.enabled=false"),
    ("rayCluster.enableInTreeAutoscaling=false", "rayCluster.gpuWorkers.replicas=2"),
    (
        "labs[0].name=solo",
        "labs[0].storage.secrets={lab-s3}",
        "labs[0].groups={lab-members}",
        "allowedImages={reg.example/a:1}",
    ),
    ("operator.serviceAccount.create=false", "operator.serviceAccount.name=existing-sa"),
    ("operator.watchNamespaces={autolfads-lab,other}", "operator.logLevel=verbose"),
    ("minio.enabled=true", "minio.existingSecret=minio-root", "storage.existingSecret=s3"),
    ("mlflow.backendStore.sqlite.existingClaim=old-mlflow", "monitoring.grafanaDashboard.enabled=false"),
    (
        "labDefaults.createNamespace=false",
        "labDefaults.quota.enabled=false",
        "labDefaults.limitRange.enabled=false",
    ),
]


@pytest.fixture(
    scope="module",
    params=[(f, ()) for f in CI_VALUES] + [(None, t) for t in TOGGLES],
    ids=[f.name for f in CI_VALUES] + [",".join(t) for t in TOGGLES],
)
def scenario(request, helm_run) -> list[dict[str, Any]]:
    values, sets = request.param
    return render(helm_run, values, sets=sets)


def test_chart_crd_is_the_operators_crd_by_symlink() -> None:
    assert CHART_CRD.is_symlink()
    assert CHART_CRD.resolve() == SHARED_CRD.resolve()


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_built_in_kinds_validate_strictly(scenario, kube_version: str) -> None:
    problems = []
    for doc in scenario:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.path}: {err.message}")
    assert not problems, "\n".join(problems)


def test_ray_cluster_validates_against_kuberay_crd(scenario, kuberay_crd_dir: Path) -> None:
    for cluster in by_kind(scenario, "RayCluster"):
        assert crd_errors(cluster, kuberay_crd_dir / "ray.io_rayclusters.yaml") == []


def test_every_kind_is_known(scenario) -> None:
    # A kind we cannot validate would slip through the tests above unchecked.
    unknown = {d["kind"] for d in scenario} - CUSTOM_KINDS
    for kind in unknown:
        assert kind[0].isupper()
    for doc in scenario:
        if doc["kind"] in ("ServiceMonitor", "PodMonitor"):
            assert doc["apiVersion"] == MONITORING_API


def test_crd_is_shipped_and_valid(helm_run) -> None:
    result = helm_run(*template_args(api_versions=[RAY_API]), "--include-crds")
    assert result.returncode == 0, result.stderr
    (crd,) = by_kind(result.documents, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "autolfadsjobs.autolfads.io"
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)
    # Never templated (k8s-notes §1): plain `helm template` leaves it out.
    assert not by_kind(render(helm_run), "CustomResourceDefinition")


EXAMPLES = sorted((REPO / "k8s" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_against_the_chart_crd(example: Path) -> None:
    import yaml

    jobs = [d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "AutoLFADSJob"]
    for job in jobs:
        assert crd_errors(job, CHART_CRD) == [], example.name


def test_without_kuberay_the_chart_refuses_with_install_hint(helm_run) -> None:
    result = helm_run(*template_args(api_versions=[]))
    assert result.returncode != 0
    assert "no ray.io/v1 API: install the KubeRay operator first" in result.stderr


def test_without_kuberay_renders_when_ray_cluster_is_off(helm_run) -> None:
    docs = render(helm_run, apis=(), sets=["rayCluster.enabled=false"])
    assert not by_kind(docs, "RayCluster")
    assert by_kind(docs, "Deployment")


def test_monitors_render_only_with_the_prometheus_operator_api(helm_run) -> None:
    with_api = render(helm_run)
    without_api = render(helm_run, apis=(RAY_API,))
    assert {d["metadata"]["name"] for d in by_kind(with_api, "ServiceMonitor")} == {
        "autolfads-operator",
        "autolfads-ray-head",
    }
    assert len(by_kind(with_api, "PodMonitor")) == 1
    assert not by_kind(without_api, "ServiceMonitor") and not by_kind(without_api, "PodMonitor")


def test_operator_service_monitor_selects_the_operator_service(helm_run) -> None:
    docs = render(helm_run)
    monitor = next(
        d for d in by_kind(docs, "ServiceMonitor") if d["metadata"]["name"] == "autolfads-operator"
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in by_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == ["autolfads-operator"]
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in services[0]["spec"]["ports"]}


def test_default_ray_cluster_keeps_trials_off_the_head_and_one_gpu_per_worker(helm_run) -> None:
    (cluster,) = by_kind(render(helm_run), "RayCluster")  # the default lab's
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert spec["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    (workers,) = spec["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert (workers["minReplicas"], workers["maxReplicas"]) == (0, 4)
    assert spec["enableInTreeAutoscaling"] is True
    # One lab by default: its own namespace and cluster ("<lab>-ray")
    where = (cluster["metadata"]["namespace"], cluster["metadata"]["name"])
    assert where == ("autolfads-lab", "autolfads-lab-ray")


def test_gpu_cluster_values_reach_the_worker_pods(helm_run) -> None:
    (cluster,) = by_kind(render(helm_run, CHART / "ci" / "gpu-cluster-values.yaml"), "RayCluster")
    pod = cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["image"] == "registry.lab.example.org/mirror/autolfads:0.1.0"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "dedicated"}
    assert cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 8


def test_operator_reads_the_labs_file_the_chart_renders(helm_run) -> None:
    from operators.labs import parse_policy

    docs = render(helm_run)
    (cluster,) = by_kind(docs, "RayCluster")
    operator = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "autolfads-operator")
    pod = operator["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "labs")
    volume = next(v for v in pod["volumes"] if v["name"] == "labs")
    assert env["AUTOLFADS_LABS_FILE"] == f"{mount['mountPath']}/labs.yaml" and mount["readOnly"] is True
    wanted = volume["configMap"]["name"]
    (labs_cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == wanted]
    policy = parse_policy(labs_cm["data"]["labs.yaml"])  # the operator's own parser accepts it
    lab = policy.lab_for("autolfads-lab")
    assert lab is not None and lab.ray_cluster == cluster["metadata"]["name"] and lab.driver_slots == 4
    assert policy.default_image == "ghcr.io/autolfads/autolfads:0.1.0"
    assert policy.mlflow_uri == "http://autolfads-mlflow.autolfads.svc:5000"


def mlflow_deployment(docs) -> dict[str, Any]:
    return next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "autolfads-mlflow")


def mlflow_container(docs) -> dict[str, Any]:
    return mlflow_deployment(docs)["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_sqlite_default_uses_a_kept_pvc_and_in_cluster_hosts(helm_run) -> None:
    docs = render(helm_run)
    args = mlflow_container(docs)["args"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in args
    assert "--artifacts-destination=s3://mlflow-artifacts/" in args
    hosts = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert "autolfads-mlflow.autolfads.svc:*" in hosts and "autolfads-mlflow:*" in hosts
    env = {e["name"]: e for e in mlflow_container(docs)["env"]}
    assert env["MLFLOW_DISABLE_TELEMETRY"]["value"] == "true"
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_mlflow_external_db_uri_comes_only_from_the_secret(helm_run) -> None:
    docs = render(helm_run, CHART / "ci" / "external-db-values.yaml")
    container = mlflow_container(docs)
    assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {
        "name": "autolfads-mlflow-db",
        "key": "uri",
    }
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "autolfads-s3"
    assert not by_kind(docs, "PersistentVolumeClaim")
    # The chart creates only MLflow's own credentials, never storage or database ones.
    assert {s["metadata"]["name"] for s in by_kind(docs, "Secret")} == {
        "autolfads-mlflow-admin",
        "autolfads-mlflow-lab-autolfads-lab",
        "autolfads-mlflow",
    }
    init = mlflow_deployment(docs)["spec"]["template"]["spec"]["initContainers"][0]
    (auth_db,) = init["env"]
    assert auth_db["valueFrom"]["secretKeyRef"] == {"name": "autolfads-mlflow-db", "key": "uri"}


def test_minio_on_points_storage_at_minio_and_creates_buckets(helm_run) -> None:
    docs = render(helm_run, CHART / "ci" / "minio-on-values.yaml")
    env = {e["name"]: e for e in mlflow_container(docs)["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://autolfads-minio.autolfads.svc:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "autolfads-minio",
        "key": "rootPassword",
    }
    job = next(j for j in by_kind(docs, "Job") if j["metadata"]["name"] == "autolfads-minio-buckets")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert 'mc mb --ignore-existing "store/mlflow-artifacts"' in script


def test_quota_and_limits_land_in_the_labs_namespace(helm_run) -> None:
    docs = render(helm_run, CHART / "ci" / "gpu-cluster-values.yaml")
    (quota,) = by_kind(docs, "ResourceQuota")
    (limits,) = by_kind(docs, "LimitRange")
    assert quota["metadata"]["namespace"] == limits["metadata"]["namespace"] == "neuro-lab"
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "8"
    assert by_kind(docs, "Namespace")[0]["metadata"]["name"] == "neuro-lab"


def test_grafana_dashboard_configmap_is_labelled_and_holds_json(helm_run) -> None:
    import json

    configmaps = by_kind(render(helm_run), "ConfigMap")
    (cm,) = [c for c in configmaps if "grafana_dashboard" in c["metadata"]["labels"]]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["autolfads.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert "autolfads_best_valid_recon_smth" in exprs and "autolfads_operator_jobs" in exprs


def test_names_stay_within_63_characters_for_long_release_names(helm_run) -> None:
    result = helm_run(*template_args(api_versions=[RAY_API], release="a" * 53))
    assert result.returncode == 0, result.stderr
    for doc in result.documents:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
    (cluster,) = by_kind(result.documents, "RayCluster")
    assert len(cluster["metadata"]["name"]) <= 47


def test_kubernetes_older_than_1_30_is_refused(helm_run) -> None:
    args = template_args()
    args[args.index("--kube-version") + 1] = "1.29.0"
    result = helm_run(*args)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr
