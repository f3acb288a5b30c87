"""Pure builders: an AutoLFADSJob (typed spec + metadata) → the objects the operator creates.

Nothing here talks to the API server, so every rendering is unit-tested and validated against KubeRay's
RayJob CRD schema offline. ``operators.handlers`` only orchestrates: render, adopt, create.

How the run gets its inputs (k8s-notes §1.1):
- The RayJob uses ``K8sJobMode``: a submitter pod runs ``ray job submit … -- ENTRYPOINT`` and the entrypoint
  (``autolfads run …``) runs as the Ray driver on the head node. The config file therefore has to reach the
  head, which on the lab's *shared* cluster we cannot mount anything into. So the config's ConfigMap is
  mounted into the submitter pod and named as the job's Ray ``working_dir``: ``ray job submit`` uploads it
  and the driver starts inside it, where ``--config config.yaml`` resolves. This works for shared and
  dedicated clusters alike.
- Credentials go only where they are used. The submitter only talks to the head's job API: it carries no
  storage or MLflow credentials. On a dedicated cluster the head (driver) and workers (trials) get the
  job's storage Secret as ``envFrom``, and the head alone the lab's MLflow credentials (trials do not log to
  MLflow; the driver does). On the lab's shared cluster those come with the chart's pods.
- Ray token authentication is on for every cluster (``authOptions.mode: token``): KubeRay creates the
  token Secret (named after the RayCluster, key ``auth_token``) and sets ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``
  on the cluster's containers and on this RayJob's submitter, and on nothing else.
- A dedicated cluster's pods are fenced by NetworkPolicies rendered with it (:func:`render_network_policies`):
  Ray ports only between the cluster's own pods, the job API for its submitter and the KubeRay operator,
  the metrics port for Prometheus.
- ``--resume`` is always passed, so a RayJob retry (``backoffLimit``, a fresh cluster) continues from the last
  completed generation in the output URI instead of starting over. This relies on the run's fingerprint:
  ``autolfads run --resume`` continues only a run started with the same data, config and overrides, so a
  job re-applied with other inputs fails naming the difference instead of training on the old ones
  (docs/kubernetes.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from operators.progress import run_dir
from operators.spec import JobSpec

RAY_API_VERSION = "ray.io/v1"
RAYJOB_NAME_MAX = 47  # KubeRay: RayJob name ≤ 47 chars (the RayCluster adds "-xxxxx", ≤ 53)
HASH_LEN = 6
JOB_LABEL = "autolfads.io/job"
RAYJOB_LABEL = "autolfads.io/rayjob"  # on the pods of one RayJob: what its NetworkPolicy selects
COMPONENT_LABEL = "autolfads.io/component"
RAY_COMPONENT = "ray"  # head and workers of a dedicated cluster
SUBMITTER_COMPONENT = "ray-submitter"  # the lab's Ray cluster admits its job API only from these pods
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RAY_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001}
METRICS_PORT = 8080
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "autolfads-operator"
CONFIG_MOUNT = "/home/ray/autolfads-job"
CONFIG_FILE = "config.yaml"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_RAY_VERSION = "2.60.0"

# How the spec's sizing fields reach the run: dotted overrides of the config (lfads-spec §5.3 keys).
POPULATION_KEY = "pbt.num_samples"
GPUS_KEY = "pbt.resources_per_trial.gpu"
CPUS_KEY = "pbt.resources_per_trial.cpu"
MAX_EPOCHS_KEY = "trainer.max_epochs"

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LEN]


def rayjob_name(job_name: str, uid: str) -> str:
    """A DNS-1035 label of at most 47 characters, stable for one AutoLFADSJob object.

    The suffix hashes the object's uid, so re-rendering (operator restart) gives the same name, while a job
    deleted and re-created under the same name gets a new RayJob even if the old one is still being
    garbage-collected.
    """
    stem = _NOT_DNS.sub("-", job_name.lower()).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"alj-{stem}".rstrip("-")
    stem = stem[: RAYJOB_NAME_MAX - HASH_LEN - 1].rstrip("-")
    return f"{stem}-{_short_hash(uid)}"


def config_map_name(job_name: str, uid: str) -> str:
    """Name of the ConfigMap the operator creates for an inline config."""
    return f"{rayjob_name(job_name, uid)}-config"


def worker_replicas(population: int, gpus_per_trial: float) -> int:
    """GPU worker pods of a dedicated cluster: one GPU each, ``ceil(population × gpusPerTrial)`` of them."""
    return max(1, math.ceil(round(population * gpus_per_trial, 9)))


def run_overrides(spec: JobSpec) -> list[str]:
    """The spec's sizing fields as config overrides; the user's own ``spec.overrides`` come after and win."""
    out = [
        f"{POPULATION_KEY}={spec.population}",
        f"{GPUS_KEY}={spec.gpus_per_trial:g}",
        f"{CPUS_KEY}={spec.cpus_per_trial:g}",
    ]
    if spec.max_epochs is not None:
        out.append(f"{MAX_EPOCHS_KEY}={spec.max_epochs}")
    return out + list(spec.overrides)


def entrypoint(spec: JobSpec, namespace: str, job_name: str) -> str:
    """``autolfads run DATA --config config.yaml --out OUT/NS/NAME --name NAME --resume …``, shell-safe.

    ``--out`` is the job's own directory (``operators.progress.run_dir``)."""
    args = ["autolfads", "run", spec.data_uri]
    if spec.has_config:
        args += ["--config", CONFIG_FILE]
    args += ["--out", run_dir(spec.output_uri, namespace, job_name), "--name", job_name, "--resume"]
    if spec.mlflow_tracking_uri:
        args += ["--mlflow-uri", spec.mlflow_tracking_uri]
    if spec.mlflow_experiment:
        args += ["--mlflow-experiment", spec.mlflow_experiment]
    return shlex.join([*args, *run_overrides(spec)])


def render_config_map(spec: JobSpec, job_name: str, uid: str) -> dict[str, Any] | None:
    """The owned ConfigMap holding an inline config as YAML; ``None`` when there is nothing to hold."""
    if spec.config is None:
        return None
    text = yaml.safe_dump(dict(spec.config), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(job_name, uid), "labels": _labels(job_name)},
        "data": {CONFIG_FILE: text},
    }


def render_rayjob(spec: JobSpec, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The KubeRay RayJob for an AutoLFADSJob (``meta``: its ``metadata``, with ``name`` and ``uid``).

    Owner references, namespace and the parent's labels are added by ``kopf.adopt`` in the handler.
    """
    name, uid = meta["name"], meta["uid"]
    pod_labels = _pod_labels(name, uid)
    job: dict[str, Any] = {
        "entrypoint": entrypoint(spec, meta.get("namespace") or "default", name),
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": _submitter_template(spec, name, uid, pod_labels),
        "submitterConfig": {"backoffLimit": 2},
    }
    if spec.has_config:
        job["runtimeEnvYAML"] = yaml.safe_dump({"working_dir": CONFIG_MOUNT})
    if spec.active_deadline_seconds is not None:
        job["activeDeadlineSeconds"] = spec.active_deadline_seconds
    labels = _labels(name)
    if spec.dedicated is None:
        job["clusterSelector"] = {"ray.io/cluster": spec.ray_cluster_name}
        if spec.driver_resource:
            # The lab's head offers a fixed number of these: drivers beyond it wait in Ray's job queue
            # instead of running the head out of memory.
            job["entrypointResources"] = json.dumps({spec.driver_resource: 1})
    else:
        job["rayClusterSpec"] = _cluster_spec(spec, pod_labels)
        job["shutdownAfterJobFinishes"] = True
        job["ttlSecondsAfterFinished"] = 60
        job["backoffLimit"] = spec.backoff_limit
        # Kueue admits a queued job by lifting suspend (KubeRay's Kueue integration).
        job["suspend"] = spec.suspend or spec.queue_name is not None
        if spec.queue_name is not None:
            labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": rayjob_name(name, uid), "labels": labels},
        "spec": job,
    }


def render_network_policies(
    spec: JobSpec,
    meta: Mapping[str, Any],
    kuberay_peers: Sequence[Mapping[str, Any]] = (),
    metrics_peers: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The NetworkPolicies of a dedicated cluster; none on the lab's shared cluster (the chart's).

    The head listens on every interface (``dashboard-host: 0.0.0.0``) so that its submitter and the
    KubeRay operator can reach the job API through its Service; these policies keep everyone else out.
    ``<rayjob>-ray`` (every pod of the cluster): all ports between the cluster's own pods, the metrics
    port for Prometheus. ``<rayjob>-ray-head`` (the head): the job API (8265) for this job's submitter and
    the KubeRay operator. GCS (6379) and the Ray client (10001) for no one else, and no job API on a
    worker, where a trial could listen on that port. ``kuberay_peers``/``metrics_peers``: NetworkPolicy
    peers from the labs file.
    """
    if spec.dedicated is None:
        return []
    name, uid = meta["name"], meta["uid"]
    own = {RAYJOB_LABEL: rayjob_name(name, uid), COMPONENT_LABEL: RAY_COMPONENT}
    head = {**own, "ray.io/node-type": "head"}  # KubeRay labels the head pod
    submitter = {RAYJOB_LABEL: rayjob_name(name, uid), COMPONENT_LABEL: SUBMITTER_COMPONENT}
    cluster_rules: list[dict[str, Any]] = [{"from": [{"podSelector": {"matchLabels": own}}]}]
    if metrics_peers:
        cluster_rules.append(
            {"from": [dict(p) for p in metrics_peers], "ports": [{"port": METRICS_PORT, "protocol": "TCP"}]}
        )
    job_api = {
        "from": [{"podSelector": {"matchLabels": submitter}}, *map(dict, kuberay_peers)],
        "ports": [{"port": RAY_PORTS["dashboard"], "protocol": "TCP"}],
    }
    return [
        _network_policy(f"{rayjob_name(name, uid)}-ray", name, own, cluster_rules),
        _network_policy(f"{rayjob_name(name, uid)}-ray-head", name, head, [job_api]),
    ]


def _network_policy(
    policy_name: str, job_name: str, selected: Mapping[str, str], ingress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": policy_name, "labels": _labels(job_name)},
        "spec": {
            "podSelector": {"matchLabels": dict(selected)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _labels(job_name: str) -> dict[str, str]:
    # Label values are ≤ 63 chars; a longer job name is still findable through ownerReferences.
    return {JOB_LABEL: job_name[:63].rstrip("-_."), MANAGED_BY_LABEL: MANAGED_BY}


def _pod_labels(job_name: str, uid: str) -> dict[str, str]:
    """Labels on every pod of the RayJob: the job, and its RayJob's name (unique, ≤ 47 characters)."""
    return {**_labels(job_name), RAYJOB_LABEL: rayjob_name(job_name, uid)}


# The image runs as uid 1000 (Dockerfile); these settings pass the "restricted" Pod Security Standard, so
# jobs run in namespaces that enforce it. The root filesystem stays writable: Ray writes under /tmp/ray.
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _container(
    spec: JobSpec, name: str, resources: Mapping[str, Any], secrets: Sequence[str | None] = ()
) -> dict[str, Any]:
    """A container of the job's image; ``secrets``: Secrets whose keys become its environment."""
    c: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "resources": dict(resources),
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    if spec.image_pull_policy:
        c["imagePullPolicy"] = spec.image_pull_policy
    env_from = [{"secretRef": {"name": s}} for s in secrets if s]
    if env_from:
        c["envFrom"] = env_from
    return c


def _submitter_template(spec: JobSpec, job_name: str, uid: str, labels: Mapping[str, str]) -> dict[str, Any]:
    small = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    container = _container(spec, "ray-job-submitter", small)  # no credentials: it only submits
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [container],
    }
    if spec.has_config:
        if spec.config_map_name is not None:
            source, key = spec.config_map_name, spec.config_map_key
        else:
            source, key = config_map_name(job_name, uid), CONFIG_FILE
        mount = {"name": "autolfads-config", "mountPath": CONFIG_MOUNT, "readOnly": True}
        container["volumeMounts"] = [mount]
        pod["volumes"] = [
            {
                "name": "autolfads-config",
                "configMap": {"name": source, "items": [{"key": key, "path": CONFIG_FILE}]},
            }
        ]
    return {"metadata": {"labels": {**labels, COMPONENT_LABEL: SUBMITTER_COMPONENT}}, "spec": pod}


def _default_worker_resources(spec: JobSpec) -> dict[str, Any]:
    trials_per_pod = max(1, math.floor(round(1 / spec.gpus_per_trial, 9)))
    cpus = max(1, math.ceil(trials_per_pod * spec.cpus_per_trial))
    memory = f"{8 * trials_per_pod}Gi"
    return {"requests": {"cpu": str(cpus), "memory": memory}, "limits": {"cpu": str(cpus), "memory": memory}}


def _cluster_spec(spec: JobSpec, pod_labels: Mapping[str, str]) -> dict[str, Any]:
    dedicated = spec.dedicated
    assert dedicated is not None  # only called for dedicated clusters
    labels = {"labels": {**pod_labels, COMPONENT_LABEL: RAY_COMPONENT}}
    head_res = dedicated.head_resources or {
        "requests": {"cpu": "2", "memory": "8Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    }
    chosen = dedicated.worker_resources or _default_worker_resources(spec)
    worker_res = {k: dict(v) for k, v in chosen.items()}
    worker_res.setdefault("limits", {})[GPU_RESOURCE] = 1
    worker_res.setdefault("requests", {})[GPU_RESOURCE] = 1
    gpu_toleration = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    tolerations = [dict(t) for t in dedicated.tolerations]
    if gpu_toleration not in tolerations:
        tolerations.append(gpu_toleration)
    worker_pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "containers": [_container(spec, "ray-worker", worker_res, [spec.storage_secret])],
        "tolerations": tolerations,
    }
    if dedicated.node_selector:
        worker_pod["nodeSelector"] = dict(dedicated.node_selector)
    replicas = worker_replicas(spec.population, spec.gpus_per_trial)
    head_secrets = [spec.storage_secret, spec.mlflow_secret]
    return {
        "rayVersion": dedicated.ray_version or DEFAULT_RAY_VERSION,
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            # No trials on the head: it hosts the driver, GCS and dashboard only.
            "rayStartParams": {"num-cpus": "0", "num-gpus": "0", "dashboard-host": "0.0.0.0"},
            "template": {
                "metadata": copy.deepcopy(labels),
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
                    "containers": [_container(spec, "ray-head", head_res, head_secrets)],
                },
            },
        },
        "workerGroupSpecs": [
            {
                "groupName": "gpu",
                "replicas": replicas,
                "minReplicas": replicas,
                "maxReplicas": replicas,
                "rayStartParams": {},
                "template": {"metadata": copy.deepcopy(labels), "spec": worker_pod},
            }
        ],
    }
