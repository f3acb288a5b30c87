"""The operator's few calls to the Kubernetes API, through the official client.

Kept in one module so the handlers read as orchestration, and so the RBAC in ``k8s/rbac/`` can be checked
against one list of verbs. In a lab's namespace (``k8s/rbac/operator-lab-role.yaml``): get configmaps,
create configmaps, get (named) secrets, get/create/patch rayjobs, create networkpolicies. Anywhere it
watches (``k8s/rbac/operator-clusterrole.yaml``): get/patch autolfadsjobs(/status). API discovery
(:func:`has_api_group`) needs no grant. Everything else (watching, finalizers, Events) goes through kopf.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from operators.spec import GROUP, PLURAL, VERSION

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayjobs"


def configure() -> kubernetes.client.Configuration:
    """Load credentials: in-cluster service account, else the kubeconfig ``$KUBECONFIG`` names *now*.

    (The client reads ``$KUBECONFIG`` once at import; reading it here lets a test or a wrapper set it later.)
    """
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        kubernetes.config.load_kube_config(config_file=path.split(os.pathsep)[0])
    _api.cache_clear()
    return kubernetes.client.Configuration.get_default_copy()


@cache
def _api() -> kubernetes.client.ApiClient:
    return kubernetes.client.ApiClient()


def _core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(_api())


def _custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(_api())


class Forbidden(Exception):
    """The operator's RBAC does not allow the call (HTTP 403); the message names the object."""


def _missing(exc: ApiException) -> bool:
    return exc.status == 404


def _networking() -> kubernetes.client.NetworkingV1Api:
    return kubernetes.client.NetworkingV1Api(_api())


def get_config_map_data(namespace: str, name: str) -> dict[str, str] | None:
    try:
        cm = _core().read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise
    return dict(cm.data or {})


def get_secret_data(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's values, decoded; ``None`` when it does not exist."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    data.update(secret.string_data or {})
    return data


def get_secret_labels(namespace: str, name: str) -> dict[str, str] | None:
    """The Secret's labels; ``None`` when it does not exist; :class:`Forbidden` when the operator may not
    read it (its Role names the lab's storage Secrets only)."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if _missing(exc):
            return None
        if exc.status == 403:
            raise Forbidden(f"Secret {namespace}/{name}") from exc
        raise
    return dict(secret.metadata.labels or {})


def create_network_policy(namespace: str, body: Mapping[str, Any]) -> None:
    """Create, or leave alone if it already exists (a reconcile after a restart)."""
    try:
        _networking().create_namespaced_network_policy(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise


_GROUPS_TTL = 60.0
_groups: dict[str, tuple[float, bool]] = {}


def forget_api_groups() -> None:
    """Look API groups up afresh on the next :func:`has_api_group` (operator start)."""
    _groups.clear()


def has_api_group(group: str) -> bool:
    """Whether the cluster serves API group ``group`` (discovery: ``GET /apis/GROUP``, open to every
    authenticated client; the answer is kept for a minute)."""
    now = time.monotonic()
    cached = _groups.get(group)
    if cached is not None and now - cached[0] < _GROUPS_TTL:
        return cached[1]
    request = _api().param_serialize(
        method="GET",
        resource_path="/apis/{group}",
        path_params={"group": group},
        auth_settings=["BearerToken"],
    )
    response = _api().call_api(*request)
    response.read()
    if response.status not in (200, 404):
        raise ApiException(status=response.status, reason=f"discovery of API group {group}")
    _groups[group] = (now, response.status == 200)
    return response.status == 200


def create_config_map(namespace: str, body: Mapping[str, Any]) -> None:
    """Create, or leave alone if it already exists (a reconcile after a restart)."""
    try:
        _core().create_namespaced_config_map(namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def get_rayjob(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _custom().get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise


def create_rayjob(namespace: str, body: Mapping[str, Any]) -> bool:
    """True when created, False when a RayJob of that name already exists (409)."""
    try:
        _custom().create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise
    return True


def patch_rayjob(namespace: str, name: str, patch: Mapping[str, Any]) -> None:
    _custom().patch_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, patch)


def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if _missing(exc):
            return None
        raise


def patch_job_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    _custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}
    )
