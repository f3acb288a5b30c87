"""A typed, defaulted view of an AutoLFADSJob's ``spec``.

The CRD's OpenAPI schema sets defaults and ranges at apply time, but an API server that does no
defaulting (our test emulator, or an object written before a CRD upgrade) may hand the operator a spec
without them. So the operator applies the same defaults here, once, and every other module reads the
typed view rather than poking into nested dicts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP = "autolfads.io"
VERSION = "v1alpha1"
PLURAL = "autolfadsjobs"
KIND = "AutoLFADSJob"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_POPULATION = 16
DEFAULT_GPUS_PER_TRIAL = 0.5
DEFAULT_CPUS_PER_TRIAL = 2.0
DEFAULT_CONFIG_KEY = "config.yaml"

# Set by the operator's Deployment (Helm values); the fallbacks match the chart's defaults.
IMAGE_ENV = "AUTOLFADS_IMAGE"
RAY_CLUSTER_ENV = "AUTOLFADS_RAY_CLUSTER"
MLFLOW_URI_ENV = "AUTOLFADS_MLFLOW_URI"  # the chart's MLflow server, for jobs that name none
FALLBACK_IMAGE = "ghcr.io/autolfads/autolfads:0.1.0"
FALLBACK_RAY_CLUSTER = "autolfads-ray"


@dataclass(frozen=True)
class DedicatedCluster:
    """Head + one GPU worker group created for this job only (``spec.dedicatedCluster``)."""

    ray_version: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    head_resources: Mapping[str, Any] = field(default_factory=dict)
    worker_resources: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    """``spec`` of an AutoLFADSJob with every default applied (field names follow the CRD)."""

    data_uri: str
    output_uri: str
    config: Mapping[str, Any] | None = None
    config_map_name: str | None = None
    config_map_key: str = DEFAULT_CONFIG_KEY
    overrides: tuple[str, ...] = ()
    population: int = DEFAULT_POPULATION
    gpus_per_trial: float = DEFAULT_GPUS_PER_TRIAL
    cpus_per_trial: float = DEFAULT_CPUS_PER_TRIAL
    max_epochs: int | None = None
    image: str = FALLBACK_IMAGE
    image_pull_policy: str | None = None
    storage_secret: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    ray_cluster_name: str = FALLBACK_RAY_CLUSTER
    dedicated: DedicatedCluster | None = None
    active_deadline_seconds: int | None = None
    backoff_limit: int = 0
    suspend: bool = False
    # Set from the job's lab (operators.admission.job_spec), never from the spec itself:
    mlflow_secret: str | None = None  # Secret with MLFLOW_TRACKING_USERNAME/PASSWORD for the driver
    queue_name: str | None = None  # Kueue LocalQueue: the RayJob is queued there and starts suspended
    driver_resource: str | None = None  # Ray resource the driver takes on the lab's head (one unit)

    @property
    def has_config(self) -> bool:
        """Whether the run gets a config file (inline or ConfigMap); without one it uses the defaults."""
        return self.config is not None or self.config_map_name is not None


def parse_spec(spec: Mapping[str, Any], env: Mapping[str, str] | None = None) -> JobSpec:
    """Build the typed view. Raises ``KeyError``/``TypeError`` only for specs the CRD schema rejects;
    ``operators.validation.validate_spec`` runs first and turns those into one-line messages."""
    env = os.environ if env is None else env
    cm = spec.get("configMapRef") or {}
    mlflow = spec.get("mlflow") or {}
    dedicated = spec.get("dedicatedCluster")
    return JobSpec(
        data_uri=spec["dataURI"],
        output_uri=spec["outputURI"],
        config=spec.get("config"),
        config_map_name=cm.get("name"),
        config_map_key=cm.get("key") or DEFAULT_CONFIG_KEY,
        overrides=tuple(spec.get("overrides") or ()),
        population=int(spec.get("population", DEFAULT_POPULATION)),
        gpus_per_trial=float(spec.get("gpusPerTrial", DEFAULT_GPUS_PER_TRIAL)),
        cpus_per_trial=float(spec.get("cpusPerTrial", DEFAULT_CPUS_PER_TRIAL)),
        max_epochs=spec.get("maxEpochs"),
        image=spec.get("image") or env.get(IMAGE_ENV) or FALLBACK_IMAGE,
        image_pull_policy=spec.get("imagePullPolicy"),
        storage_secret=(spec.get("storageSecretRef") or {}).get("name"),
        mlflow_tracking_uri=mlflow.get("trackingURI") or env.get(MLFLOW_URI_ENV) or None,
        mlflow_experiment=mlflow.get("experiment"),
        ray_cluster_name=spec.get("rayClusterName") or env.get(RAY_CLUSTER_ENV) or FALLBACK_RAY_CLUSTER,
        dedicated=None
        if dedicated is None
        else DedicatedCluster(
            ray_version=dedicated.get("rayVersion"),
            node_selector=dict(dedicated.get("nodeSelector") or {}),
            tolerations=tuple(dedicated.get("tolerations") or ()),
            head_resources=dict(dedicated.get("headResources") or {}),
            worker_resources=dict(dedicated.get("workerResources") or {}),
        ),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
        backoff_limit=int(spec.get("backoffLimit", 0)),
        suspend=bool(spec.get("suspend", False)),
    )
