"""spec + metadata → RayJob: names, entrypoint, config delivery, cluster placement; and every rendering is
valid against KubeRay's RayJob CRD schema in strict mode (unknown fields rejected)."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from typing import Any

import pytest
import yaml

from operators import render
from operators.spec import parse_spec
from tests.k8s.crd_schemas import CRDValidator

META = {"name": "mc-maze", "uid": "0b4e1a58-5a6f-4a0e-9a53-1c1a3f7b9e01", "namespace": "lab"}
BASE = {"dataURI": "s3://data/mc_maze.h5", "outputURI": "s3://results/runs"}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

SPECS: dict[str, dict[str, Any]] = {
    "minimal": BASE,
    "inline-config": {**BASE, "config": {"model": {"gen_dim": 64}}, "maxEpochs": 50},
    "configmap": {
        **BASE,
        "configMapRef": {"name": "cfg", "key": "lorenz.yaml"},
        "storageSecretRef": {"name": "s"},
    },
    "mlflow+overrides": {
        **BASE,
        "mlflow": {"trackingURI": "http://mlflow:5000", "experiment": "lab"},
        "overrides": ["model.dropout_rate=0.3", "pbt.num_samples=4"],
        "activeDeadlineSeconds": 3600,
        "rayClusterName": "gpu-pool",
    },
    "dedicated": {
        **BASE,
        "population": 20,
        "gpusPerTrial": 0.5,
        "cpusPerTrial": 3,
        "image": "registry.example/autolfads:1",
        "imagePullPolicy": "Always",
        "storageSecretRef": {"name": "s"},
        "dedicatedCluster": {
            "rayVersion": "2.60.0",
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
            ],
            "workerResources": {"limits": {"cpu": "6", "memory": "24Gi"}},
        },
        "backoffLimit": 2,
        "suspend": True,
    },
}


def rendered(spec: dict[str, Any], meta: dict[str, Any] = META) -> dict[str, Any]:
    return render.render_rayjob(parse_spec(spec, env={}), meta)


@pytest.mark.parametrize("case", SPECS)
def test_rendered_rayjob_is_valid_against_kuberay_schema_strictly(
    case: str, rayjob_validator: CRDValidator
) -> None:
    assert rayjob_validator.errors(rendered(SPECS[case])) == []


def test_strict_kuberay_schema_rejects_an_unknown_field(rayjob_validator: CRDValidator) -> None:
    job = rendered(BASE)
    job["spec"]["entrypointt"] = "typo"
    assert any("entrypointt" in e for e in rayjob_validator.errors(job))


@pytest.mark.parametrize(
    "name", ["a", "mc-maze", "x" * 253, "9lives", "lab.session-1.run", "---", "UPPER-case"]
)
def test_rayjob_name_is_dns1035_and_within_kuberay_limit(name: str) -> None:
    out = render.rayjob_name(name, "uid-1")
    assert len(out) <= render.RAYJOB_NAME_MAX and DNS_1035.match(out), out


def test_rayjob_name_is_stable_for_one_object_and_differs_for_a_recreated_one() -> None:
    assert render.rayjob_name("mc-maze", "uid-1") == render.rayjob_name("mc-maze", "uid-1")
    assert render.rayjob_name("mc-maze", "uid-1") != render.rayjob_name("mc-maze", "uid-2")


def test_long_names_sharing_a_prefix_get_distinct_rayjobs() -> None:
    assert render.rayjob_name("a" * 60 + "1", "u1") != render.rayjob_name("a" * 60 + "2", "u2")


def test_entrypoint_runs_autolfads_with_resolved_args_and_resume() -> None:
    args = shlex.split(rendered(SPECS["mlflow+overrides"])["spec"]["entrypoint"])
    assert args[:3] == ["autolfads", "run", "s3://data/mc_maze.h5"]
    assert args[args.index("--out") + 1] == "s3://results/runs/lab/mc-maze"  # the job's own directory
    assert args[args.index("--name") + 1] == "mc-maze"
    assert "--resume" in args
    assert args[args.index("--mlflow-uri") + 1] == "http://mlflow:5000"
    assert args[args.index("--mlflow-experiment") + 1] == "lab"
    assert "--config" not in args  # no config given: the shipped defaults
    # sizing first, the user's overrides last so they win
    assert args[-2:] == ["model.dropout_rate=0.3", "pbt.num_samples=4"]
    assert {"pbt.num_samples=16", "pbt.resources_per_trial.gpu=0.5", "pbt.resources_per_trial.cpu=2"} <= set(
        args
    )


def test_entrypoint_quotes_uris_with_shell_characters() -> None:
    job = rendered({**BASE, "dataURI": "s3://data/session*.h5", "outputURI": "s3://out/a b;rm"})
    args = shlex.split(job["spec"]["entrypoint"])
    assert "s3://data/session*.h5" in args and "s3://out/a b;rm/lab/mc-maze" in args


def test_inline_config_goes_to_an_owned_configmap_mounted_as_the_working_dir() -> None:
    spec = parse_spec(SPECS["inline-config"], env={})
    cm = render.render_config_map(spec, META["name"], META["uid"])
    assert cm is not None and yaml.safe_load(cm["data"]["config.yaml"]) == {"model": {"gen_dim": 64}}
    job = render.render_rayjob(spec, META)["spec"]
    (volume,) = job["submitterPodTemplate"]["spec"]["volumes"]
    assert volume["configMap"] == {
        "name": cm["metadata"]["name"],
        "items": [{"key": "config.yaml", "path": "config.yaml"}],
    }
    assert yaml.safe_load(job["runtimeEnvYAML"]) == {"working_dir": render.CONFIG_MOUNT}
    args = shlex.split(job["entrypoint"])
    assert args[args.index("--config") + 1] == "config.yaml" and "trainer.max_epochs=50" in args


def test_configmap_config_mounts_the_users_key_and_creates_no_configmap() -> None:
    spec = parse_spec(SPECS["configmap"], env={})
    assert render.render_config_map(spec, META["name"], META["uid"]) is None
    pod = render.render_rayjob(spec, META)["spec"]["submitterPodTemplate"]["spec"]
    assert pod["volumes"][0]["configMap"] == {
        "name": "cfg",
        "items": [{"key": "lorenz.yaml", "path": "config.yaml"}],
    }
    assert "envFrom" not in pod["containers"][0]  # the submitter only submits: no credentials
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False


def test_shared_cluster_is_selected_by_name_and_never_retried_or_suspended() -> None:
    job = rendered(SPECS["mlflow+overrides"])["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "gpu-pool"}
    assert "rayClusterSpec" not in job and "backoffLimit" not in job and "suspend" not in job
    assert job["activeDeadlineSeconds"] == 3600


def test_shared_cluster_name_defaults_to_the_operators_setting() -> None:
    spec = parse_spec(BASE, env={"AUTOLFADS_RAY_CLUSTER": "chart-ray", "AUTOLFADS_IMAGE": "img:9"})
    job = render.render_rayjob(spec, META)["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "chart-ray"}
    assert job["submitterPodTemplate"]["spec"]["containers"][0]["image"] == "img:9"


@pytest.mark.parametrize(
    ("population", "gpus", "pods"),
    [(20, 0.5, 10), (16, 0.5, 8), (5, 0.5, 3), (4, 1, 4), (10, 0.3, 3), (2, 0.1, 1)],
)
def test_dedicated_cluster_has_ceil_population_times_gpus_worker_pods(
    population: int, gpus: float, pods: int
) -> None:
    spec = {**SPECS["dedicated"], "population": population, "gpusPerTrial": gpus}
    (group,) = rendered(spec)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == pods


def test_dedicated_cluster_workers_get_one_gpu_placement_and_credentials() -> None:
    job = rendered(SPECS["dedicated"])["spec"]
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] == 2 and job["suspend"] is True
    cluster = job["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    pod = group["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["resources"]["limits"] == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": 1}
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert worker["image"] == "registry.example/autolfads:1" and worker["imagePullPolicy"] == "Always"
    assert worker["envFrom"] == [{"secretRef": {"name": "s"}}]
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["template"]["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s"}}]


def test_default_worker_resources_fit_the_trials_sharing_a_gpu() -> None:
    spec = {**BASE, "gpusPerTrial": 0.5, "cpusPerTrial": 3, "dedicatedCluster": {}}
    (group,) = rendered(spec)["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["cpu"] == "6" and limits["nvidia.com/gpu"] == 1


def test_children_are_labelled_with_their_job() -> None:
    job = rendered(BASE)
    assert job["metadata"]["labels"][render.JOB_LABEL] == "mc-maze"
    assert job["metadata"]["name"] == render.rayjob_name("mc-maze", META["uid"])


def _pod_templates(job: dict[str, Any]) -> list[dict[str, Any]]:
    spec = job["spec"]
    pods = [spec["submitterPodTemplate"]["spec"]] if "submitterPodTemplate" in spec else []
    cluster = spec.get("rayClusterSpec")
    if cluster:
        pods.append(cluster["headGroupSpec"]["template"]["spec"])
        pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    return pods


@pytest.mark.parametrize("case", SPECS)
def test_every_pod_runs_non_root_without_privilege_escalation(case: str) -> None:
    pods = _pod_templates(rendered(SPECS[case]))
    assert pods, "the RayJob describes no Pod"
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


LAB = {"mlflow_secret": "lab-mlflow", "mlflow_tracking_uri": "http://mlflow:5000", "mlflow_experiment": "lab"}


def with_lab(spec: dict[str, Any], **settings: Any) -> Any:
    """The typed spec as ``operators.admission.job_spec`` hands it over: the lab's settings applied."""
    return dataclasses.replace(parse_spec(spec, env={}), **{**LAB, **settings})


@pytest.mark.parametrize(
    "settings",
    [{"queue_name": "lab-queue"}, {"driver_resource": "autolfads_driver"}, {}],
    ids=["kueue", "driver-slots", "plain"],
)
@pytest.mark.parametrize("case", ["minimal", "dedicated"])
def test_lab_settings_render_valid_rayjobs(case: str, settings: dict, rayjob_validator: CRDValidator) -> None:
    job = render.render_rayjob(with_lab(SPECS[case], **settings), META)
    assert rayjob_validator.errors(job) == []


def test_every_dedicated_cluster_has_ray_token_auth_and_no_trials_on_its_head() -> None:
    cluster = rendered(SPECS["dedicated"])["spec"]["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    for pod in _pod_templates(rendered(SPECS["dedicated"])):
        for container in pod["containers"]:
            assert "RAY_AUTH_MODE" not in {e["name"] for e in container.get("env", [])}  # KubeRay sets it


def test_credentials_go_only_where_they_are_used() -> None:
    job = render.render_rayjob(with_lab(SPECS["dedicated"]), META)["spec"]
    cluster = job["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    submitter = job["submitterPodTemplate"]["spec"]["containers"][0]
    # the driver (head) logs to MLflow and reads/writes storage; trials (workers) only storage
    assert head["envFrom"] == [{"secretRef": {"name": "s"}}, {"secretRef": {"name": "lab-mlflow"}}]
    assert worker["envFrom"] == [{"secretRef": {"name": "s"}}]
    assert "envFrom" not in submitter and "env" not in submitter
    for pod in _pod_templates({"spec": job}):
        assert pod["automountServiceAccountToken"] is False


def test_kueue_queues_a_dedicated_job_suspended_under_the_labs_local_queue() -> None:
    job = render.render_rayjob(with_lab(SPECS["minimal"] | {"dedicatedCluster": {}}, queue_name="q"), META)
    assert job["metadata"]["labels"][render.KUEUE_QUEUE_LABEL] == "q"
    assert job["spec"]["suspend"] is True and job["spec"]["shutdownAfterJobFinishes"] is True
    plain = render.render_rayjob(with_lab(SPECS["minimal"] | {"dedicatedCluster": {}}), META)
    assert render.KUEUE_QUEUE_LABEL not in plain["metadata"]["labels"] and plain["spec"]["suspend"] is False


def test_drivers_on_the_labs_cluster_take_one_driver_slot_of_its_head() -> None:
    job = render.render_rayjob(with_lab(BASE, driver_resource="autolfads_driver"), META)["spec"]
    assert json.loads(job["entrypointResources"]) == {"autolfads_driver": 1}
    assert "entrypointResources" not in rendered(BASE)["spec"]


def test_submitter_and_dedicated_pods_carry_the_labels_their_network_policy_selects() -> None:
    job = rendered(SPECS["dedicated"])
    name = job["metadata"]["name"]
    submitter = job["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    assert submitter[render.COMPONENT_LABEL] == render.SUBMITTER_COMPONENT
    assert submitter[render.RAYJOB_LABEL] == name
    cluster = job["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]]:
        assert template["metadata"]["labels"][render.COMPONENT_LABEL] == render.RAY_COMPONENT
        assert template["metadata"]["labels"][render.RAYJOB_LABEL] == name


KUBERAY = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kuberay-system"}}}]
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_dedicated_cluster_gets_network_policies_fencing_its_ray_ports() -> None:
    spec = parse_spec(SPECS["dedicated"], env={})
    cluster, head = render.render_network_policies(spec, META, KUBERAY, PROMETHEUS)
    name = render.rayjob_name(META["name"], META["uid"])
    own = {render.RAYJOB_LABEL: name, render.COMPONENT_LABEL: render.RAY_COMPONENT}
    assert cluster["spec"]["podSelector"] == {"matchLabels": own}
    assert cluster["spec"]["policyTypes"] == head["spec"]["policyTypes"] == ["Ingress"]
    everything, metrics = cluster["spec"]["ingress"]
    assert everything == {"from": [{"podSelector": {"matchLabels": own}}]}  # the cluster's own pods only
    assert metrics == {"from": PROMETHEUS, "ports": [{"port": 8080, "protocol": "TCP"}]}
    assert head["spec"]["podSelector"] == {"matchLabels": {**own, "ray.io/node-type": "head"}}
    submitter = {render.RAYJOB_LABEL: name, render.COMPONENT_LABEL: render.SUBMITTER_COMPONENT}
    assert head["spec"]["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": submitter}}, *KUBERAY],
            "ports": [{"port": 8265, "protocol": "TCP"}],
        }
    ]
    assert render.render_network_policies(parse_spec(BASE, env={}), META) == []  # the chart fences its own


def test_network_policies_are_valid_for_kubernetes() -> None:
    import kubernetes_validate

    spec = parse_spec(SPECS["dedicated"], env={})
    for policy in render.render_network_policies(spec, META, KUBERAY, PROMETHEUS):
        for version in ("1.30", "1.37"):
            kubernetes_validate.validate(policy, version, strict=True)
