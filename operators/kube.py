"""The operator's few calls to the Kubernetes API, through the official client.

Kept in one module so the handlers read as orchestration, and so the RBAC in ``k8s/rbac/`` can be checked
against one list of verbs: get configmaps/secrets, create configmaps, get/create/patch rayjobs, get/patch
autolfadsjobs(/status). Everything else (watching, finalizers, Events) goes through kopf.
"""

from __future__ import annotations

import base64
import os
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


def _missing(exc: ApiException) -> bool:
    return exc.status == 404


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
