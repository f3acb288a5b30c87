"""A KubeRay stand-in for tests: RayCluster and RayJob objects in the API emulator become real Ray.

It watches (polls, as a controller's resync does) the ``ray.io/v1`` RayClusters and RayJobs of the emulated
API server and does with them what the KubeRay operator (v1.7) does, using real Ray processes on this
machine:

- **RayCluster** (the chart's lab cluster, or the one a RayJob's ``rayClusterSpec`` describes): a head node
  started with the head group's ``rayStartParams`` (``num-cpus: "0"`` keeps trials off it) and one
  ``ray start --address`` node per worker replica, each declaring the CPUs, memory and GPUs of its
  container's resource limits (KubeRay's rule: ``cpu`` → ``--num-cpus``, ``memory`` → ``--memory``, any
  limit ending in ``gpu`` such as ``nvidia.com/gpu`` → ``--num-gpus``: logical GPUs) unless a param sets
  them. Each node ("pod") runs in its own process session with its own HOME, TMPDIR and Ray temp dir, and
  the environment its container template gives it: ``env`` (values, ``secretKeyRef``, ``configMapKeyRef``)
  after ``envFrom`` (the referenced Secrets' and ConfigMaps' keys), read from the API server. With
  ``authOptions: {mode: token}`` the stand-in creates the Secret KubeRay creates (named after the cluster,
  key ``auth_token``, owned by the RayCluster) and gives every container ``RAY_AUTH_MODE=token`` and
  ``RAY_AUTH_TOKEN`` from it. ``status.state`` becomes ``ready`` when the dashboard answers and every node
  has joined. A worker whose ``ray start`` exits while the cluster starts is started again (the kubelet
  restarts the container); one whose processes die later is started again (KubeRay recreates the Pod)
  unless ``replace_lost_workers`` is off (no node free for the replacement Pod). Deleting the object stops
  every process of the cluster.
- **RayJob** in ``K8sJobMode``: KubeRay's state machine (``New`` → ``Initializing`` → ``Running`` →
  ``Complete``/``Failed``; ``Retrying`` → a new RayCluster while ``status.failed < backoffLimit + 1``;
  ``Suspended`` while ``spec.suspend``, as Kueue leaves it until it admits the job). The submitter "pod"
  runs KubeRay's own submitter command (``ray job status || ray job submit --no-wait … -- ENTRYPOINT;
  ray job logs --follow``) in ``bash -ce``: the entrypoint string exactly as rendered, the runtime env from
  ``runtimeEnvYAML`` as JSON, the environment from the submitter template (plus the cluster's token and
  ``RAY_DASHBOARD_ADDRESS``/``RAY_JOB_SUBMISSION_ID``), its ConfigMap volumes written into the pod's own
  directory. Status is written as KubeRay writes it: ``jobId``, ``rayClusterName``, ``dashboardURL``,
  ``jobDeploymentStatus``, ``jobStatus``, ``reason`` (``AppFailed``, ``SubmissionFailed``,
  ``DeadlineExceeded``), Ray's ``message``, ``startTime``/``endTime``, ``rayJobInfo``,
  ``failed``/``succeeded``, ``observedGeneration``. With ``shutdownAfterJobFinishes`` the RayCluster is
  deleted ``ttlSecondsAfterFinished`` × ``ttl_factor`` seconds after the end (tests shorten the wait with
  the factor).

What it does **not** model, on purpose or because one machine cannot:

- scheduling onto Kubernetes nodes, ResourceQuotas, image pulls (every "pod" runs this Python environment:
  ``image`` and ``imagePullPolicy`` are ignored), init containers, probes, Services and cluster DNS (a
  ``services`` map rewrites in-cluster URLs in environment values to loopback ones, and the dashboard URL
  is ``127.0.0.1:PORT``), NetworkPolicies (every node listens on this machine's interfaces; Ray's token is
  the only guard), Pod security contexts, resource *enforcement* (limits only become Ray's logical
  resources), GPU drivers (a logical GPU has no CUDA device behind it: the trial's CPU fallback is what
  runs), the in-tree autoscaler (the group's ``replicas`` run, within ``min``/``maxReplicas``), file
  isolation beyond separate directories (a process could still read another node's files; the product
  must not and the tests check it never relies on it), the submitter Job's exponential back-off (a failed
  submitter is re-run at once), KubeRay's Events, and ``HTTPMode``/``SidecarMode``/``InteractiveMode``.
- Container paths: a ConfigMap volume's ``mountPath`` and ``/tmp`` live inside the pod's directory, so a
  path under them in the runtime env's ``working_dir`` or an environment value is translated to it.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import math
import os
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from tests.e2e import raynodes
from tests.e2e.raynodes import RayNode
from tests.services import free_port

log = logging.getLogger("tests.e2e.kuberay")

GROUP, VERSION = "ray.io", "v1"
CLUSTER_LABEL = "ray.io/cluster"
ORIGINATED_NAME = "ray.io/originated-from-cr-name"
ORIGINATED_KIND = "ray.io/originated-from-crd"
TOKEN_KEY = "auth_token"
TERMINAL_JOB = {"SUCCEEDED", "FAILED", "STOPPED"}
RETRY_SUBMITTER = 2  # KubeRay's default submitterConfig.backoffLimit


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms_to_time(ms: Any) -> str | None:
    if not isinstance(ms, int | float) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix(n: int = 5) -> str:
    return "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity (``"2"``, ``"500m"``, ``"8Gi"``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a resource quantity: {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def limits_to_ray(container: Mapping[str, Any]) -> dict[str, int]:
    """KubeRay's rule for ``ray start``: CPU limit (rounded up), memory limit in bytes, GPU-like limits."""
    limits = (container.get("resources") or {}).get("limits") or {}
    out: dict[str, int] = {}
    if "cpu" in limits:
        out["num-cpus"] = math.ceil(quantity(limits["cpu"]))
    if "memory" in limits:
        out["memory"] = int(quantity(limits["memory"]))
    gpus = sum(int(quantity(v)) for k, v in limits.items() if k.lower().endswith("gpu"))
    if gpus:
        out["num-gpus"] = gpus
    return out


# ------------------------------------------------------------------------------------------------ pods
class Pod:
    """What the stand-in knows of a "pod": its name, directory and environment (read from the API)."""

    def __init__(self, standin: KubeRayStandIn, namespace: str, name: str, root: Path) -> None:
        self.standin = standin
        self.namespace = namespace
        self.name = name
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)

    def path(self, container_path: str) -> str:
        """A container path as this machine's path: ``/tmp`` and mounted volumes are the pod's own."""
        for mount, local in self.mounts().items():
            if container_path == mount or container_path.startswith(mount.rstrip("/") + "/"):
                return str(Path(local) / container_path[len(mount) :].lstrip("/"))
        return container_path

    def mounts(self) -> dict[str, str]:
        return {"/tmp": str(self.root / "tmp")}

    def env(self, container: Mapping[str, Any], extra: Mapping[str, str] = ()) -> dict[str, str]:
        """The container's environment: the image's, then ``envFrom``, then ``env`` (values as the
        container sees them: in-cluster URLs and container paths translated), then ``extra`` (the
        stand-in's own, already this machine's)."""
        out: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix") or ""
            if "secretRef" in source:
                data = self.standin.secret(self.namespace, source["secretRef"]["name"]) or {}
            else:
                data = (
                    self.standin.config_map(self.namespace, (source.get("configMapRef") or {}).get("name"))
                    or {}
                )
            out.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            value = self._env_value(item)
            if value is not None:
                out[item["name"]] = value
        return {**self.standin.image_env, **{k: self._translate(v) for k, v in out.items()}, **extra}

    def _env_value(self, item: Mapping[str, Any]) -> str | None:
        if "value" in item:
            return str(item["value"])
        source = item.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return (self.standin.secret(self.namespace, ref["name"]) or {}).get(ref["key"])
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            return (self.standin.config_map(self.namespace, ref["name"]) or {}).get(ref["key"])
        return None  # fieldRef/resourceFieldRef: not modelled

    def _translate(self, value: str) -> str:
        for url, local in self.standin.services.items():
            value = value.replace(url, local)
        return self.path(value) if value.startswith("/") else value


@dataclass
class LocalRayCluster:
    """The running "pods" of one RayCluster object."""

    namespace: str
    name: str
    uid: str
    spec: dict[str, Any]
    root: Path
    token: str | None = None
    head: RayNode | None = None
    workers: list[RayNode] = field(default_factory=list)
    gcs_port: int = 0
    dashboard_port: int = 0
    ready: bool = False
    failed: str | None = None
    stopping: bool = False
    node_ids: dict[str, str] = field(default_factory=dict)  # Ray node id -> pod name
    refreshed: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def dashboard_url(self) -> str:
        return f"127.0.0.1:{self.dashboard_port}"

    @property
    def head_ids(self) -> set[str]:
        return {node_id for node_id, pod in self.node_ids.items() if pod == f"{self.name}-head"}

    def pod_of(self, node: RayNode) -> set[str]:
        """Ray node ids of one "pod" (a restarted pod is a new node)."""
        return {node_id for node_id, pod in self.node_ids.items() if pod == node.name}

    def nodes(self) -> list[RayNode]:
        return ([self.head] if self.head else []) + list(self.workers)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            raynodes.stop_nodes(self.nodes())


@dataclass
class JobRun:
    """The stand-in's own memory of one RayJob attempt: its submitter "pod" and its clock."""

    uid: str
    submitter: subprocess.Popen[bytes] | None = None
    submitter_runs: int = 0
    submitter_log: Path | None = None
    earlier_logs: list[Path] = field(default_factory=list)  # the submitters of earlier attempts
    ended_at: float | None = None
    cluster_deleted: bool = False
    status: dict[str, Any] = field(default_factory=dict)  # the last status written


class KubeRayStandIn:
    """KubeRay's RayCluster and RayJob controllers against the emulated API server (module docstring).

    ``image_env``: the environment every container starts from (the image's: PATH to this Python's
    scripts, …); ``services``: in-cluster URL → loopback URL (cluster DNS); ``ttl_factor`` scales
    ``ttlSecondsAfterFinished``; ``replace_lost_workers``: restart a worker whose processes died.
    """

    def __init__(
        self,
        api: kubernetes.client.ApiClient,
        workdir: Path,
        image_env: Mapping[str, str],
        services: Mapping[str, str] = (),
        ttl_factor: float = 1.0,
        replace_lost_workers: bool = True,
        poll_s: float = 0.25,
    ) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.workdir = workdir
        self.image_env = dict(image_env)
        self.services = dict(services)
        self.ttl_factor = ttl_factor
        self.replace_lost_workers = replace_lost_workers
        self.poll_s = poll_s
        self.clusters: dict[tuple[str, str], LocalRayCluster] = {}
        self.history: list[LocalRayCluster] = []  # every cluster ever started, stopped ones too
        self.jobs: dict[tuple[str, str], JobRun] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kuberay-standin", daemon=True)
        self._starting: dict[tuple[str, str], threading.Thread] = {}
        self._count = 0

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> KubeRayStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for run in list(self.jobs.values()):
            self._kill_submitter(run)
        for cluster in list(self.clusters.values()):
            cluster.stop()
        self.clusters.clear()

    def __enter__(self) -> KubeRayStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for step in (self._reconcile_clusters, self._reconcile_jobs):
                try:
                    step()
                except Exception as exc:  # keep reconciling; a test reads the errors
                    message = f"{step.__name__}: {type(exc).__name__}: {exc}"
                    if not self.errors or self.errors[-1] != message:
                        self.errors.append(message)
                        log.exception(message)
            self._stop.wait(self.poll_s)

    # --- API helpers -------------------------------------------------------------------------------
    def _list(self, plural: str) -> list[dict[str, Any]]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, plural).get("items", [])

    def _patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        with contextlib.suppress(kubernetes.client.ApiException):
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status}
            )

    def secret(self, namespace: str, name: str | None) -> dict[str, str] | None:
        if not name:
            return None
        try:
            found = self.core.read_namespaced_secret(name, namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
        data.update(found.string_data or {})  # the emulator keeps stringData as it was sent
        return data

    def config_map(self, namespace: str, name: str | None) -> dict[str, str] | None:
        if not name:
            return None
        try:
            return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- RayCluster controller ---------------------------------------------------------------------
    def _reconcile_clusters(self) -> None:
        seen = set()
        for obj in self._list("rayclusters"):
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            local = self.clusters.get(key)
            if local is not None and local.uid != meta["uid"]:  # re-created under the same name
                self._drop_cluster(key)
                local = None
            if meta.get("deletionTimestamp"):
                self._drop_cluster(key)
                continue
            if local is None:
                self._create_cluster(obj)
            else:
                self._tend_cluster(local, obj)
        for key in [k for k in self.clusters if k not in seen]:
            self._drop_cluster(key)

    def _create_cluster(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        # Short paths: Ray's Unix sockets live under each node's temp dir (at most 107 bytes).
        self._count += 1
        root = self.workdir / f"c{self._count}"
        local = LocalRayCluster(
            meta["namespace"], meta["name"], meta["uid"], copy.deepcopy(obj["spec"]), root
        )
        auth = (obj["spec"].get("authOptions") or {}).get("mode")
        if auth == "token":
            local.token = self._ensure_token_secret(obj)
        self.clusters[key] = local
        self.history.append(local)
        thread = threading.Thread(
            target=self._start_cluster, args=(local,), name=f"start-{meta['name']}", daemon=True
        )
        self._starting[key] = thread
        thread.start()

    def _ensure_token_secret(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        existing = self.secret(meta["namespace"], meta["name"])
        if existing and existing.get(TOKEN_KEY):
            return existing[TOKEN_KEY]
        token = secrets.token_hex(16)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": meta["name"],
                "labels": {CLUSTER_LABEL: meta["name"]},
                "ownerReferences": [_owner(obj, "RayCluster")],
            },
            "stringData": {TOKEN_KEY: token},
        }
        self.core.create_namespaced_secret(meta["namespace"], body)
        return token

    def _auth_env(self, local: LocalRayCluster) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": local.token} if local.token else {}

    def _start_cluster(self, local: LocalRayCluster) -> None:
        try:
            local.gcs_port, local.dashboard_port = free_port(), free_port()
            local.head = self._start_node(local, "head", None, 0)
            raynodes.wait_until(
                lambda: raynodes.port_open(local.gcs_port) or not local.head.alive(),
                120,
                f"the GCS of {local.name}",
            )
            if not local.head.alive():
                raise RuntimeError(f"head of {local.name} exited: {local.head.log.read_text()[-2000:]}")
            for group in local.spec.get("workerGroupSpecs") or []:
                for index in range(_replicas(group)):
                    with local.lock:
                        if local.stopping:
                            return
                        local.workers.append(self._start_node(local, "worker", group, index))
            expected = 1 + len(local.workers)

            def all_nodes_up() -> bool:
                if local.stopping:
                    return True
                # The kubelet restarts a Pod's exited container: a worker whose `ray start` gave up
                # (on this loaded machine: "timed out during startup" while its GCS was still busy)
                # comes back, as it would on a cluster, instead of the cluster never becoming ready.
                self._restart_exited_workers(local, "exited while the cluster was starting")
                return len(self._refresh_node_ids(local)) >= expected

            # Each poll asks the head's dashboard (and it the GCS) for the nodes: once a second, not more,
            # so the polling itself does not load a GCS that is still starting.
            raynodes.wait_until(all_nodes_up, 180, f"{expected} nodes of {local.name}", poll=1.0)
            local.ready = not local.stopping
        except Exception as exc:
            local.failed = f"{type(exc).__name__}: {exc}"
            log.error("RayCluster %s/%s failed to start: %s", local.namespace, local.name, local.failed)

    def _start_node(
        self, local: LocalRayCluster, kind: str, group: Mapping[str, Any] | None, index: int
    ) -> RayNode:
        spec = local.spec["headGroupSpec"] if kind == "head" else group
        assert spec is not None
        group_name = "head" if kind == "head" else spec.get("groupName", "workers")
        pod_name = f"{local.name}-head" if kind == "head" else f"{local.name}-{group_name}-worker-{_suffix()}"
        pod = Pod(
            self,
            local.namespace,
            pod_name,
            local.root / (f"h{_suffix(3)}" if kind == "head" else f"w{_suffix(3)}"),
        )
        container = ((spec.get("template") or {}).get("spec") or {}).get("containers", [{}])[0]
        params = {k: str(v) for k, v in (spec.get("rayStartParams") or {}).items()}
        params.setdefault("node-name", pod_name)  # so tests can tell the nodes apart (KubeRay leaves it)
        extra = {
            **self._auth_env(local),
            "RAY_CLUSTER_NAME": local.name,
            "RAY_CLOUD_INSTANCE_ID": pod_name,
            "RAY_NODE_TYPE_NAME": group_name,
            "RAY_USAGE_STATS_KUBERAY_IN_USE": "1",
        }
        if kind == "head":
            extra["RAY_ADDRESS"] = f"127.0.0.1:{local.gcs_port}"
        env = pod.env(container, extra)
        return raynodes.start_node(
            pod_name,
            kind,
            group_name,
            params,
            limits_to_ray(container),
            env,
            pod.root,
            local.gcs_port,
            local.dashboard_port if kind == "head" else None,
        )

    def _restart_exited_workers(self, local: LocalRayCluster, why: str) -> None:
        """Start a new "pod" in place of each worker whose processes are gone."""
        with local.lock:
            if local.stopping:
                return
            groups = {g.get("groupName"): g for g in local.spec.get("workerGroupSpecs") or []}
            for i, node in enumerate(local.workers):
                if not node.alive():
                    log.warning("RayCluster %s/%s: worker %s %s; starting another", local.namespace,
                                local.name, node.name, why)  # fmt: skip
                    node.kill()  # whatever of it is left
                    local.workers[i] = self._start_node(local, "worker", groups.get(node.group), i)

    def _refresh_node_ids(self, local: LocalRayCluster) -> dict[str, str]:
        if not local.head:
            return {}
        nodes = raynodes.alive_nodes(local.dashboard_port, local.token)
        alive = {n["node_id"]: n.get("node_name", "") for n in nodes}
        local.node_ids.update(alive)  # dead nodes stay listed: trial results still name them
        return alive

    def _tend_cluster(self, local: LocalRayCluster, obj: dict[str, Any]) -> None:
        """Replace lost workers (KubeRay re-creates Pods); write the status."""
        if local.ready and self.replace_lost_workers and not local.stopping:
            self._restart_exited_workers(local, "lost")
        if local.ready and time.monotonic() - local.refreshed > 2.0:
            local.refreshed = time.monotonic()
            self._refresh_node_ids(local)
        status = self._cluster_status(local, obj)
        current = obj.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            self._patch_status("rayclusters", local.namespace, local.name, status)

    def _cluster_status(self, local: LocalRayCluster, obj: dict[str, Any]) -> dict[str, Any]:
        alive = [n for n in local.workers if n.alive()]
        desired = sum(_replicas(g) for g in local.spec.get("workerGroupSpecs") or [])
        state = "failed" if local.failed else "ready" if local.ready else ""
        status: dict[str, Any] = {
            "state": state,
            "desiredWorkerReplicas": desired,
            "readyWorkerReplicas": len(alive) if local.ready else 0,
            "availableWorkerReplicas": len(alive),
            "observedGeneration": obj["metadata"].get("generation", 1),
        }
        if local.ready:
            status["endpoints"] = {"dashboard": str(local.dashboard_port), "gcs-server": str(local.gcs_port)}
            status["head"] = {"podName": f"{local.name}-head", "podIP": "127.0.0.1", "serviceIP": "127.0.0.1"}
        if local.failed:
            status["reason"] = local.failed[:300]
        return status

    def _drop_cluster(self, key: tuple[str, str]) -> None:
        local = self.clusters.pop(key, None)
        if local is not None:
            local.stop()

    # --- RayJob controller -------------------------------------------------------------------------
    def _reconcile_jobs(self) -> None:
        seen = set()
        for obj in self._list("rayjobs"):
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            run = self.jobs.get(key)
            if run is None or run.uid != meta["uid"]:
                if run is not None:
                    self._forget_job(key)
                run = self.jobs[key] = JobRun(meta["uid"])
            if meta.get("deletionTimestamp"):
                continue
            if (obj["spec"].get("submissionMode") or "K8sJobMode") != "K8sJobMode":
                continue  # not modelled
            self._reconcile_job(obj, run)
        for key in [k for k in self.jobs if k not in seen]:
            self._forget_job(key)

    def _forget_job(self, key: tuple[str, str]) -> None:
        """The RayJob is gone: stop its Ray job (KubeRay's finalizer does) and its submitter."""
        run = self.jobs.pop(key, None)
        if run is not None:
            self._kill_submitter(run)
            if run.status.get("jobStatus") not in TERMINAL_JOB:
                self._stop_ray_job({"metadata": {"namespace": key[0]}}, run.status)

    def _reconcile_job(self, obj: dict[str, Any], run: JobRun) -> None:
        spec, status = obj["spec"], dict(obj.get("status") or {})
        before = copy.deepcopy(status)
        deployment = status.get("jobDeploymentStatus") or ""
        if deployment == "":  # New
            status.update(
                jobId=f"{obj['metadata']['name']}-{_suffix(8)}",
                rayClusterName=_cluster_name(obj),
                jobStatus="",
                jobDeploymentStatus="Initializing",
                startTime=_now(),
            )
        elif deployment == "Initializing":
            self._initializing(obj, run, status)
        elif deployment == "Running":
            self._running(obj, run, status)
        elif deployment == "Retrying":
            if self._release(obj, run, status):
                for field_name in ("rayClusterStatus", "dashboardURL", "message", "reason", "rayJobInfo"):
                    status.pop(field_name, None)
                status.update(rayClusterName=None, jobId=None, jobStatus="", jobDeploymentStatus="")
        elif deployment == "Suspended":
            if not spec.get("suspend"):
                status.update(jobStatus="", jobDeploymentStatus="")
        elif deployment in ("Complete", "Failed"):
            self._finished(obj, run, status)
        self._count_and_retry(obj, before, status)
        status["observedGeneration"] = obj["metadata"].get("generation", 1)
        changed = {k: v for k, v in status.items() if before.get(k) != v}
        changed.update({k: None for k in before if k not in status})
        if changed:
            if status.get("jobDeploymentStatus") in ("Complete", "Failed") and before.get(
                "jobDeploymentStatus"
            ) not in ("Complete", "Failed"):
                changed["endTime"] = status["endTime"] = _now()
                run.ended_at = time.monotonic()
            self._patch_status("rayjobs", obj["metadata"]["namespace"], obj["metadata"]["name"], changed)
        run.status = {k: v for k, v in status.items() if v is not None}

    def _initializing(self, obj: dict[str, Any], run: JobRun, status: dict[str, Any]) -> None:
        spec, meta = obj["spec"], obj["metadata"]
        if spec.get("suspend"):
            status.update(jobDeploymentStatus="Suspended", jobStatus="")
            return
        if self._deadline_passed(obj, status):
            return
        name = status["rayClusterName"]
        cluster = self._get("rayclusters", meta["namespace"], name)
        if cluster is None:
            if spec.get("clusterSelector"):
                return  # KubeRay logs "failed to find the cluster" and requeues
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], "rayclusters", self._cluster_for(obj, name)
            )
            return
        local = self.clusters.get((meta["namespace"], name))
        if local is None or not local.ready:
            return
        status["dashboardURL"] = local.dashboard_url
        self._start_submitter(obj, run, local, status)
        status["jobDeploymentStatus"] = "Running"

    def _cluster_for(self, obj: dict[str, Any], name: str) -> dict[str, Any]:
        meta = obj["metadata"]
        labels = {**(meta.get("labels") or {}), ORIGINATED_NAME: meta["name"], ORIGINATED_KIND: "RayJob"}
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RayCluster",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [_owner(obj, "RayJob")],
            },
            "spec": copy.deepcopy(obj["spec"]["rayClusterSpec"]),
        }

    def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _running(self, obj: dict[str, Any], run: JobRun, status: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if self._deadline_passed(obj, status, stop=True):
            return
        local = self.clusters.get((meta["namespace"], status.get("rayClusterName") or ""))
        finished = self._tend_submitter(obj, run, local, status)
        if finished == "failed":
            status.update(jobDeploymentStatus="Failed", reason="SubmissionFailed",
                          message=f"submitter failed {run.submitter_runs} times; see its log")  # fmt: skip
            return
        if local is None:
            return
        try:
            info = raynodes.dashboard_get(local.dashboard_port, f"/api/jobs/{status['jobId']}", local.token)
        except Exception:
            return  # not submitted yet, or the dashboard is busy: next round
        job_status = str(info.get("status") or "")
        status["jobStatus"] = job_status
        status["message"] = str(info.get("message") or "")
        status["rayClusterStatus"] = self._cluster_status(local, {"metadata": {}})
        times = {k: _ms_to_time(info.get(f"{k}_time")) for k in ("start", "end")}
        status["rayJobInfo"] = {f"{k}Time": v for k, v in times.items() if v}
        if job_status in TERMINAL_JOB and finished == "done":
            if job_status == "FAILED":
                status.update(jobDeploymentStatus="Failed", reason="AppFailed")
            else:
                status.update(jobDeploymentStatus="Complete", reason="")

    def _deadline_passed(self, obj: dict[str, Any], status: dict[str, Any], stop: bool = False) -> bool:
        deadline = obj["spec"].get("activeDeadlineSeconds")
        started = status.get("startTime")
        if not deadline or not started:
            return False
        begun = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if (datetime.now(UTC) - begun).total_seconds() < deadline:
            return False
        status.update(
            jobDeploymentStatus="Failed",
            reason="DeadlineExceeded",
            message=f"The RayJob has passed the activeDeadlineSeconds. StartTime: {started}. "
            f"ActiveDeadlineSeconds: {deadline}",
        )
        if stop:
            self._stop_ray_job(obj, status)
        return True

    def _stop_ray_job(self, obj: dict[str, Any], status: Mapping[str, Any]) -> None:
        local = self.clusters.get((obj["metadata"]["namespace"], status.get("rayClusterName") or ""))
        if local is not None and status.get("jobId"):
            with contextlib.suppress(Exception):
                raynodes.dashboard_post(
                    local.dashboard_port, f"/api/jobs/{status['jobId']}/stop", local.token
                )

    def _finished(self, obj: dict[str, Any], run: JobRun, status: dict[str, Any]) -> None:
        spec = obj["spec"]
        if run.ended_at is None:
            run.ended_at = time.monotonic()  # ended before the stand-in (re)started: count from now
        if spec.get("clusterSelector") or not spec.get("shutdownAfterJobFinishes") or run.cluster_deleted:
            return
        ttl = float(spec.get("ttlSecondsAfterFinished") or 0) * self.ttl_factor
        if time.monotonic() - run.ended_at >= ttl:
            self._delete_cluster(obj["metadata"]["namespace"], status.get("rayClusterName"))
            run.cluster_deleted = True

    def _count_and_retry(
        self, obj: dict[str, Any], before: Mapping[str, Any], status: dict[str, Any]
    ) -> None:
        """KubeRay's checkBackoffLimitAndUpdateStatusIfNeeded, on the transition to a terminal state."""
        now, was = status.get("jobDeploymentStatus"), before.get("jobDeploymentStatus")
        if now == was or now not in ("Complete", "Failed"):
            return
        failed = int(status.get("failed") or 0) + (now == "Failed")
        succeeded = int(status.get("succeeded") or 0) + (
            now == "Complete" and status.get("jobStatus") == "SUCCEEDED"
        )
        status.update(failed=failed, succeeded=succeeded)
        limit = obj["spec"].get("backoffLimit")
        if (
            now == "Failed"
            and limit is not None
            and failed < int(limit) + 1
            and status.get("reason") != "DeadlineExceeded"
        ):
            status["jobDeploymentStatus"] = "Retrying"

    def _release(self, obj: dict[str, Any], run: JobRun, status: Mapping[str, Any]) -> bool:
        """Retrying: the cluster (a RayJob's own) and the submitter go; True once both are gone."""
        self._kill_submitter(run)
        name = status.get("rayClusterName")
        if obj["spec"].get("clusterSelector") or not name:
            return True
        if self._get("rayclusters", obj["metadata"]["namespace"], name) is not None:
            self._delete_cluster(obj["metadata"]["namespace"], name)
            return False
        run.submitter_runs = 0
        return (obj["metadata"]["namespace"], name) not in self.clusters

    def _delete_cluster(self, namespace: str, name: str | None) -> None:
        if name:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "rayclusters", name)

    # --- the submitter "pod" -----------------------------------------------------------------------
    def _start_submitter(
        self, obj: dict[str, Any], run: JobRun, local: LocalRayCluster, status: Mapping[str, Any]
    ) -> None:
        meta = obj["metadata"]
        pod = _SubmitterPod(self, meta["namespace"], f"{meta['name']}-{_suffix()}",
                            self.workdir / f"s{uuid.uuid4().hex[:6]}",
                            obj["spec"].get("submitterPodTemplate") or {})  # fmt: skip
        address = f"http://{local.dashboard_url}"
        command = submitter_command(obj, status["jobId"], address, pod.path)
        env = pod.env(
            pod.container,
            {
                **self._auth_env(local),
                "PYTHONUNBUFFERED": "1",
                "RAY_DASHBOARD_ADDRESS": local.dashboard_url,
                "RAY_JOB_SUBMISSION_ID": status["jobId"],
                "HOME": str(pod.root / "home"),
            },
        )
        (pod.root / "home").mkdir(exist_ok=True)
        if run.submitter_log is not None:
            run.earlier_logs.append(run.submitter_log)
        run.submitter_log = pod.root / "submitter.log"
        with run.submitter_log.open("ab") as out:
            out.write(f"$ bash -ce {shlex.quote(command)}\n".encode())
            out.flush()
            run.submitter = subprocess.Popen(
                ["bash", "-ce", command],
                env=env,
                cwd=pod.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run.submitter_runs += 1

    def _tend_submitter(
        self, obj: dict[str, Any], run: JobRun, local: LocalRayCluster | None, status: Mapping[str, Any]
    ) -> str:
        """ "running", "done" (exit 0), or "failed" (the Job's backoffLimit used up); re-runs a failed one."""
        proc = run.submitter
        if proc is None or proc.poll() is None:
            return "running"
        if proc.returncode == 0:
            return "done"
        limit = (obj["spec"].get("submitterConfig") or {}).get("backoffLimit", RETRY_SUBMITTER)
        if run.submitter_runs > int(limit) or local is None:
            return "failed"
        self._start_submitter(obj, run, local, status)
        return "running"

    def _kill_submitter(self, run: JobRun) -> None:
        proc, run.submitter = run.submitter, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    # --- what tests ask ----------------------------------------------------------------------------
    def cluster(self, namespace: str, name: str) -> LocalRayCluster | None:
        return self.clusters.get((namespace, name))

    def wait_ready(self, namespace: str, name: str, timeout: float = 180) -> LocalRayCluster:
        def ready() -> LocalRayCluster | None:
            local = self.clusters.get((namespace, name))
            if local is not None and local.failed:
                raise RuntimeError(f"RayCluster {namespace}/{name} failed: {local.failed}")
            return local if local is not None and local.ready else None

        return raynodes.wait_until(ready, timeout, f"RayCluster {namespace}/{name} ready")

    def started(self, namespace: str, name: str) -> list[LocalRayCluster]:
        """Every cluster of that name started so far (a RayJob's retries reuse none)."""
        return [c for c in self.history if (c.namespace, c.name) == (namespace, name)]

    def driver_pid(self, namespace: str, rayjob: Mapping[str, Any]) -> int | None:
        """The pid of the RayJob's Ray driver (``driver_info`` of Ray's job API), once it runs."""
        status = rayjob.get("status") or {}
        local = self.clusters.get((namespace, status.get("rayClusterName") or ""))
        if local is None or not status.get("jobId"):
            return None
        try:
            info = raynodes.dashboard_get(local.dashboard_port, f"/api/jobs/{status['jobId']}", local.token)
        except Exception:
            return None
        pid = (info.get("driver_info") or {}).get("pid")
        return int(pid) if pid else None

    def submitter_log(self, namespace: str, rayjob: str) -> str:
        run = self.jobs.get((namespace, rayjob))
        """Every submitter's output of the RayJob, oldest first (``kubectl logs job/…`` across retries)."""
        if run is None:
            return ""
        logs = [*run.earlier_logs, *([run.submitter_log] if run.submitter_log else [])]
        return "\n".join(path.read_text(errors="replace") for path in logs if path.is_file())


class ActorWatch:
    """Counts, every ``poll_s``, the alive actors of one class on each node of a cluster (Ray Tune's trial
    actors are ``ImplicitFunc``): ``most[node_id]`` is the most seen there at once. ``cluster`` is called
    each time, so a cluster that does not exist yet (a RayJob's own) is picked up when it does."""

    def __init__(
        self,
        cluster: Callable[[], LocalRayCluster | None],
        class_name: str = "ImplicitFunc",
        poll_s: float = 0.5,
    ) -> None:
        self.cluster, self.class_name, self.poll_s = cluster, class_name, poll_s
        self.most: dict[str, int] = {}
        self.looks = 0  # answers counted
        self.errors: list[str] = []  # why the others were not
        self.classes: set[str] = set()  # every alive actor class seen (says what a failed look saw)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="actor-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            local = self.cluster()
            if local is not None and local.ready and not local.stopping:
                self._look(local)
            self._stop.wait(self.poll_s)

    def _look(self, local: LocalRayCluster) -> None:
        try:
            actors = raynodes.alive_actors(local.dashboard_port, local.token)
        except Exception as exc:  # the dashboard busy: the next look
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        self.looks += 1
        counts: dict[str, int] = {}
        for actor in actors:
            self.classes.add(str(actor.get("class_name")))
            # Ray names the class as it was defined: "ImplicitFunc" or "wrap_function.<locals>.ImplicitFunc"
            name = str(actor.get("class_name"))
            if (name == self.class_name or name.endswith(f".{self.class_name}")) and actor.get("node_id"):
                counts[actor["node_id"]] = counts.get(actor["node_id"], 0) + 1
        for node, count in counts.items():
            self.most[node] = max(self.most.get(node, 0), count)

    def __str__(self) -> str:
        return (
            f"{self.most} after {self.looks} looks (actor classes seen: {sorted(self.classes)}); "
            f"last errors: {self.errors[-3:]}"
        )

    def __enter__(self) -> ActorWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class _SubmitterPod(Pod):
    """The submitter Job's pod: its ConfigMap volumes are written into its own directory."""

    def __init__(
        self, standin: KubeRayStandIn, namespace: str, name: str, root: Path, template: Mapping[str, Any]
    ) -> None:
        super().__init__(standin, namespace, name, root)
        pod_spec = template.get("spec") or {}
        self.container = (pod_spec.get("containers") or [{}])[0]
        self._mounts = {"/tmp": str(root / "tmp")}
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        for mount in self.container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"]) or {}
            local = root / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = standin.config_map(namespace, volume["configMap"]["name"]) or {}
                items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        target = local / item["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(data[item["key"]])
            self._mounts[mount["mountPath"]] = str(local)

    def mounts(self) -> dict[str, str]:
        return getattr(self, "_mounts", {"/tmp": str(self.root / "tmp")})


def submitter_command(obj: Mapping[str, Any], job_id: str, address: str, path: Callable[[str], str]) -> str:
    """KubeRay's K8sJobMode submitter command (``BuildJobSubmitCommand``), joined as KubeRay joins it.

    ``path`` maps container paths to this machine's (the runtime env's ``working_dir`` points into a
    ConfigMap volume of the submitter pod)."""
    spec = obj["spec"]
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
    if isinstance(runtime_env.get("working_dir"), str) and runtime_env["working_dir"].startswith("/"):
        runtime_env["working_dir"] = path(runtime_env["working_dir"])
    probe = f"import urllib.request; urllib.request.urlopen({address + '/api/gcs_healthz'!r}, timeout=2)"
    health = f"python -c {shlex.quote(probe)}"
    parts = ["until", health, ">/dev/null", "2>&1", ";", "do", "echo", '"Waiting for Ray Dashboard GCS"', ";",
             "sleep", "2", ";", "done", ";"]  # fmt: skip
    parts += [
        "if",
        "!",
        "ray",
        "job",
        "status",
        "--address",
        address,
        job_id,
        ">/dev/null",
        "2>&1",
        ";",
        "then",
    ]
    parts += ["ray", "job", "submit", "--address", address, "--no-wait"]
    if runtime_env:
        parts += ["--runtime-env-json", json.dumps(json.dumps(runtime_env))]
    parts += ["--submission-id", job_id]
    for key, flag in (
        ("entrypointNumCpus", "--entrypoint-num-cpus"),
        ("entrypointNumGpus", "--entrypoint-num-gpus"),
    ):
        if spec.get(key):
            parts += [flag, f"{float(spec[key]):f}"]
    if spec.get("entrypointResources"):
        parts += ["--entrypoint-resources", json.dumps(spec["entrypointResources"])]
    parts += ["--", spec["entrypoint"].strip(), ";", "fi", ";"]
    parts += ["ray", "job", "logs", "--address", address, "--follow", job_id]
    return " ".join(parts)


def _replicas(group: Mapping[str, Any]) -> int:
    replicas = int(group.get("replicas", group.get("minReplicas", 0)) or 0)
    low, high = int(group.get("minReplicas", 0) or 0), int(group.get("maxReplicas", 2**31 - 1) or 0)
    return max(low, min(high, replicas))


def _cluster_name(obj: Mapping[str, Any]) -> str:
    selector = obj["spec"].get("clusterSelector") or {}
    if selector:
        return selector[CLUSTER_LABEL]
    return f"{obj['metadata']['name']}-{_suffix()}"


def _owner(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
