"""What a lab allows its jobs: the admission check the handlers run before anything is created.

:func:`refusals` compares a job's spec with its lab (``operators.labs``): the image must be one the admin
allows; ``rayClusterName`` can only name the lab's own Ray cluster; ``storageSecretRef`` only one of the
lab's storage Secrets (the handler also checks the Secret carries :data:`STORAGE_SECRET_LABEL`, see
:func:`secret_unmarked`); ``dataURI``/``outputURI`` must lie under the lab's storage prefixes; MLflow goes
to the platform's server and the lab's experiment; the deadline stays within the lab's limit. Everything is
pure: the lab and the spec in, one :class:`Refusal` per problem out, each naming the field.
:func:`job_spec` then fills in what the lab decides for an admitted job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from operators.labs import Lab, Policy, has_unsafe_segments
from operators.spec import JobSpec, parse_spec

STORAGE_SECRET_LABEL = "autolfads.io/storage-secret"  # value "true": the admin marked it for AutoLFADS
DRIVER_RESOURCE = "autolfads_driver"  # Ray custom resource: one per driver the lab's head may host
TOKEN_AUTH_MIN_RAY = (2, 52, 0)  # Ray token authentication (KubeRay authOptions) needs Ray >= 2.52

# Reasons of a refused job (status.reason, the Warning Event's reason).
NOT_A_LAB = "NotALab"
IMAGE_NOT_ALLOWED = "ImageNotAllowed"
CLUSTER_NOT_ALLOWED = "RayClusterNotAllowed"
SECRET_NOT_ALLOWED = "StorageSecretNotAllowed"
OUTSIDE_LAB_STORAGE = "StorageOutsideLab"
MLFLOW_NOT_ALLOWED = "MLflowNotAllowed"
DEADLINE_NOT_ALLOWED = "DeadlineNotAllowed"
REFUSAL_REASONS = frozenset(
    {
        NOT_A_LAB,
        IMAGE_NOT_ALLOWED,
        CLUSTER_NOT_ALLOWED,
        SECRET_NOT_ALLOWED,
        OUTSIDE_LAB_STORAGE,
        MLFLOW_NOT_ALLOWED,
        DEADLINE_NOT_ALLOWED,
    }
)

# Overrides that would point the run at data other than spec.dataURI (the config loader applies
# overrides after the DATA argument).
DATA_KEYS = ("datamodule.data_paths", "datamodule.datafile_pattern")


@dataclass(frozen=True)
class Refusal:
    """Why a job may not run: a CamelCase reason and a one-line message naming the field."""

    reason: str
    message: str


def not_a_lab(namespace: str) -> Refusal:
    return Refusal(
        NOT_A_LAB,
        f"namespace {namespace!r} is not an AutoLFADS lab: jobs run only in the namespaces the cluster "
        "admin declared as labs (Helm values `labs`)",
    )


def refusals(spec: Mapping[str, Any], lab: Lab, policy: Policy) -> list[Refusal]:
    """Everything about ``spec`` that lab ``lab`` does not allow, one :class:`Refusal` per problem."""
    out = _image_refusals(spec, lab, policy)
    out += _cluster_refusals(spec, lab)
    out += _secret_refusals(spec, lab)
    out += _storage_refusals(spec, lab)
    out += _mlflow_refusals(spec, lab, policy)
    out += _deadline_refusals(spec, lab)
    return out


def _image_refusals(spec: Mapping[str, Any], lab: Lab, policy: Policy) -> list[Refusal]:
    image = spec.get("image")
    allowed = policy.images_for(lab)
    if image is None or image in allowed:
        return []
    listed = ", ".join(allowed) or "none"
    message = f"spec.image: {image!r} is not an image the cluster admin allows (allowed: {listed})"
    return [Refusal(IMAGE_NOT_ALLOWED, message)]


def _cluster_refusals(spec: Mapping[str, Any], lab: Lab) -> list[Refusal]:
    if "dedicatedCluster" in spec:
        version = (spec.get("dedicatedCluster") or {}).get("rayVersion")
        if version is not None and _version(version) < TOKEN_AUTH_MIN_RAY:
            return [
                Refusal(
                    CLUSTER_NOT_ALLOWED,
                    f"spec.dedicatedCluster.rayVersion: {version!r} has no token authentication; "
                    "every Ray cluster here requires it (Ray >= 2.52.0)",
                )
            ]
        return []
    name = spec.get("rayClusterName")
    if lab.ray_cluster is None:
        return [
            Refusal(
                CLUSTER_NOT_ALLOWED,
                f"lab {lab.name!r} has no shared Ray cluster: give the job spec.dedicatedCluster",
            )
        ]
    if name is not None and name != lab.ray_cluster:
        return [
            Refusal(
                CLUSTER_NOT_ALLOWED,
                f"spec.rayClusterName: {name!r} is not lab {lab.name!r}'s Ray cluster; its jobs run on "
                f"{lab.ray_cluster!r} (leave rayClusterName out) or on a dedicated cluster",
            )
        ]
    return []


def _secret_refusals(spec: Mapping[str, Any], lab: Lab) -> list[Refusal]:
    name = (spec.get("storageSecretRef") or {}).get("name")
    if name is None:
        return []
    if name not in lab.storage_secrets:
        listed = ", ".join(lab.storage_secrets) or "none"
        return [
            Refusal(
                SECRET_NOT_ALLOWED,
                f"spec.storageSecretRef.name: {name!r} is not one of lab {lab.name!r}'s storage Secrets "
                f"(allowed: {listed})",
            )
        ]
    if "dedicatedCluster" not in spec and name != lab.cluster_secret:
        return [
            Refusal(
                SECRET_NOT_ALLOWED,
                f"spec.storageSecretRef.name: jobs on lab {lab.name!r}'s Ray cluster use its Secret "
                f"{lab.cluster_secret!r}; name {name!r} only with spec.dedicatedCluster",
            )
        ]
    return []


def _storage_refusals(spec: Mapping[str, Any], lab: Lab) -> list[Refusal]:
    out = []
    for key in ("dataURI", "outputURI"):
        problem = uri_problem(spec.get(key), lab)
        if problem is not None:
            out.append(Refusal(OUTSIDE_LAB_STORAGE, f"spec.{key}: {problem}"))
    for i, item in enumerate(spec.get("overrides") or []):
        key = str(item).partition("=")[0].lstrip("+~")
        if key in DATA_KEYS:
            out.append(
                Refusal(
                    OUTSIDE_LAB_STORAGE,
                    f"spec.overrides[{i}]: {key} cannot be overridden; the data comes from spec.dataURI",
                )
            )
    return out


def uri_problem(uri: Any, lab: Lab) -> str | None:
    """Why ``uri`` is outside ``lab``'s storage, or ``None`` when it lies under an allowed prefix."""
    if not isinstance(uri, str):
        return f"expected a URI, got {uri!r}"
    if not lab.allowed_prefixes:
        return (
            f"lab {lab.name!r} has no storage prefixes yet (the cluster admin sets "
            "labs[].storage.allowedPrefixes)"
        )
    if has_unsafe_segments(uri):
        return f"{uri!r} has a '.', '..' or empty path segment, '?', '#' or '\\'; write the plain path"
    if not any(f"{uri.rstrip('/')}/".startswith(prefix) for prefix in lab.allowed_prefixes):
        return f"{uri!r} is outside lab {lab.name!r}'s storage ({', '.join(lab.allowed_prefixes)})"
    return None

def secret_unmarked(field: str, namespace: str, name: str) -> Refusal:
    return Refusal(
        SECRET_NOT_ALLOWED,
        f"{field}: Secret {namespace}/{name} is not marked for AutoLFADS (the cluster admin labels "
        f"storage Secrets {STORAGE_SECRET_LABEL}=true)",
    )


def secret_unreadable(field: str, namespace: str, name: str) -> Refusal:
    return Refusal(
        SECRET_NOT_ALLOWED,
        f"{field}: the operator may not read Secret {namespace}/{name}; the cluster admin lists each "
        "lab's storage Secrets (labs[].storage.secrets)",
    )


def _mlflow_refusals(spec: Mapping[str, Any], lab: Lab, policy: Policy) -> list[Refusal]:
    mlflow = spec.get("mlflow") or {}
    out = []
    uri = mlflow.get("trackingURI")
    if policy.mlflow_uri and uri is not None and uri.rstrip("/") != policy.mlflow_uri.rstrip("/"):
        out.append(
            Refusal(
                MLFLOW_NOT_ALLOWED,
                f"spec.mlflow.trackingURI: runs are tracked on the platform's server {policy.mlflow_uri} "
                f"(leave trackingURI out), got {uri!r}",
            )
        )
    experiment = mlflow.get("experiment")
    if lab.mlflow_experiment and experiment is not None and experiment != lab.mlflow_experiment:
        out.append(
            Refusal(
                MLFLOW_NOT_ALLOWED,
                f"spec.mlflow.experiment: lab {lab.name!r} logs to its experiment "
                f"{lab.mlflow_experiment!r} (leave experiment out), got {experiment!r}",
            )
        )
    return out


def _deadline_refusals(spec: Mapping[str, Any], lab: Lab) -> list[Refusal]:
    deadline = spec.get("activeDeadlineSeconds")
    limit = lab.max_deadline_seconds
    if limit is None or not isinstance(deadline, int) or deadline <= limit:
        return []
    return [
        Refusal(
            DEADLINE_NOT_ALLOWED,
            f"spec.activeDeadlineSeconds: {deadline} is above lab {lab.name!r}'s limit "
            f"{lab.max_deadline_seconds}",
        )
    ]


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return (0,)


def job_spec(spec: Mapping[str, Any], lab: Lab, policy: Policy, *, kueue: bool = False) -> JobSpec:
    """The typed spec with the lab's defaults applied (image, cluster, Secrets, MLflow, deadline, queue).

    Call only for a spec :func:`refusals` accepted. ``kueue``: Kueue's API exists on the cluster; then a
    dedicated cluster's RayJob is handed to the lab's LocalQueue and starts suspended.
    """
    job = parse_spec(spec, env={})
    dedicated = job.dedicated is not None
    return dataclasses.replace(
        job,
        image=spec.get("image") or policy.default_image or job.image,
        ray_cluster_name=lab.ray_cluster or job.ray_cluster_name,
        storage_secret=job.storage_secret or lab.cluster_secret,
        mlflow_tracking_uri=job.mlflow_tracking_uri or policy.mlflow_uri,
        mlflow_experiment=job.mlflow_experiment or lab.mlflow_experiment,
        mlflow_secret=lab.mlflow_credentials_secret,
        active_deadline_seconds=job.active_deadline_seconds or lab.default_deadline_seconds,
        queue_name=lab.queue_name if kueue and dedicated else None,
        driver_resource=DRIVER_RESOURCE if lab.driver_slots and not dedicated else None,
    )
