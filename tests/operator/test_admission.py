"""What a lab allows its jobs: the admission rules of ``operators.admission`` (pure: no API server)."""

from __future__ import annotations

import pytest

from operators import admission
from operators.admission import refusals
from operators.labs import Lab, Policy, parse_policy

IMAGE = "registry.test/autolfads:1"
LABS_YAML = f"""
images:
  default: {IMAGE}
  allowed: [registry.test/autolfads:2]
mlflow:
  trackingURI: http://mlflow.platform.svc:5000
networkPolicy:
  kuberayOperator:
    - namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kuberay-system}}}}
labs:
  - name: neuro
    namespace: neuro-lab
    rayCluster: neuro-ray
    driverSlots: 4
    storage:
      secrets: [neuro-s3, neuro-archive]
      allowedPrefixes: [s3://neuro/, s3://shared-data/neuro/]
    mlflow: {{experiment: neuro, credentialsSecret: autolfads-mlflow}}
    jobs: {{defaultActiveDeadlineSeconds: 86400, maxActiveDeadlineSeconds: 604800, queueName: neuro}}
  - name: vision
    rayCluster: vision-ray
    storage:
      secrets: [vision-s3]
      allowedPrefixes: [s3://vision/]
"""
POLICY = parse_policy(LABS_YAML)
NEURO = POLICY.labs["neuro-lab"]
OK = {"dataURI": "s3://neuro/data/mc_maze.h5", "outputURI": "s3://neuro/runs"}


def reasons(spec: dict, lab: Lab = NEURO, policy: Policy = POLICY) -> list[str]:
    return [r.reason for r in refusals(spec, lab, policy)]


def messages(spec: dict, lab: Lab = NEURO) -> str:
    return "; ".join(r.message for r in refusals(spec, lab, POLICY))


def test_the_legitimate_job_is_admitted() -> None:
    assert refusals(OK, NEURO, POLICY) == []
    assert refusals({**OK, "dataURI": "s3://shared-data/neuro/sess*.h5", "image": IMAGE}, NEURO, POLICY) == []
    assert refusals({**OK, "outputURI": "s3://neuro"}, NEURO, POLICY) == []  # the prefix itself


def test_local_prefixes_are_checked_on_path_segments_too() -> None:
    local = Lab(name="l", namespace="l", ray_cluster="r", allowed_prefixes=("file:///data/l/",))
    good = {"dataURI": "file:///data/l/x.h5", "outputURI": "file:///data/l/out"}
    assert refusals(good, local, POLICY) == []
    bad = {"dataURI": "file:///data/l/../m/x.h5", "outputURI": "file:///data/lm/out"}
    assert [r.reason for r in refusals(bad, local, POLICY)] == [admission.OUTSIDE_LAB_STORAGE] * 2


IMG, CLUSTER, SECRET, STORAGE = (
    admission.IMAGE_NOT_ALLOWED,
    admission.CLUSTER_NOT_ALLOWED,
    admission.SECRET_NOT_ALLOWED,
    admission.OUTSIDE_LAB_STORAGE,
)


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        ({"image": "docker.io/attacker/miner:latest"}, IMG, "spec.image: 'docker.io/attacker"),
        ({"rayClusterName": "vision-ray"}, admission.CLUSTER_NOT_ALLOWED, "not lab 'neuro''s Ray cluster"),
        ({"storageSecretRef": {"name": "minio-root"}}, SECRET, "'minio-root' is not one of"),
        ({"storageSecretRef": {"name": "neuro-archive"}}, SECRET, "only with spec.dedicated"),
        (
            {"dataURI": "s3://vision/data.h5"},
            admission.OUTSIDE_LAB_STORAGE,
            "spec.dataURI: 's3://vision/data.h5'",
        ),
        ({"outputURI": "s3://vision/runs"}, admission.OUTSIDE_LAB_STORAGE, "spec.outputURI"),
        ({"outputURI": "s3://neuro/../vision/runs"}, admission.OUTSIDE_LAB_STORAGE, "'..'"),
        ({"outputURI": "s3://neuro//runs"}, admission.OUTSIDE_LAB_STORAGE, "empty path segment"),
        ({"outputURI": "s3://neuro/runs?endpoint_override=evil"}, admission.OUTSIDE_LAB_STORAGE, "'?'"),
        ({"outputURI": "s3://neuro/%2e%2e/vision"}, admission.OUTSIDE_LAB_STORAGE, "plain path"),
        ({"outputURI": "s3://neuroscience/runs"}, admission.OUTSIDE_LAB_STORAGE, "outside lab 'neuro'"),
        ({"overrides": ["datamodule.data_paths=[s3://vision/x.h5]"]}, STORAGE, "overrides[0]"),
        ({"overrides": ["+datamodule.datafile_pattern=/x"]}, admission.OUTSIDE_LAB_STORAGE, "spec.dataURI"),
        ({"mlflow": {"trackingURI": "http://evil:80"}}, admission.MLFLOW_NOT_ALLOWED, "platform's server"),
        ({"mlflow": {"experiment": "vision"}}, admission.MLFLOW_NOT_ALLOWED, "its experiment 'neuro'"),
        ({"activeDeadlineSeconds": 604801}, admission.DEADLINE_NOT_ALLOWED, "above lab 'neuro''s limit"),
        (
            {"dedicatedCluster": {"rayVersion": "2.40.0"}},
            admission.CLUSTER_NOT_ALLOWED,
            "no token authentication",
        ),
    ],
)
def test_what_the_lab_does_not_allow_is_refused_naming_the_field(
    change: dict, reason: str, words: str
) -> None:
    assert reasons({**OK, **change}) == [reason]
    assert words in messages({**OK, **change})


def test_every_problem_is_reported_not_only_the_first() -> None:
    found = reasons({**OK, "image": "evil:1", "outputURI": "s3://vision/x", "rayClusterName": "x"})
    assert found == [IMG, CLUSTER, STORAGE]


def test_dedicated_cluster_jobs_may_use_any_of_the_labs_storage_secrets() -> None:
    spec = {**OK, "dedicatedCluster": {}, "storageSecretRef": {"name": "neuro-archive"}}
    assert refusals(spec, NEURO, POLICY) == []


def test_the_platforms_own_mlflow_server_and_the_labs_experiment_are_fine_to_name() -> None:
    spec = {**OK, "mlflow": {"trackingURI": "http://mlflow.platform.svc:5000/", "experiment": "neuro"}}
    assert refusals(spec, NEURO, POLICY) == []


def test_lab_without_storage_prefixes_refuses_every_uri_until_the_admin_sets_them() -> None:
    bare = Lab(name="new", namespace="new", ray_cluster="new-ray")
    assert "has no storage prefixes yet" in messages(OK, bare)


def test_lab_without_a_shared_cluster_runs_only_dedicated_jobs() -> None:
    dedicated_only = Lab(name="d", namespace="d", allowed_prefixes=("s3://neuro/",))
    assert reasons(OK, dedicated_only) == [admission.CLUSTER_NOT_ALLOWED]
    assert reasons({**OK, "dedicatedCluster": {}}, dedicated_only) == []


def test_job_spec_fills_in_what_the_lab_decides() -> None:
    job = admission.job_spec(OK, NEURO, POLICY)
    assert (job.image, job.ray_cluster_name, job.storage_secret) == (IMAGE, "neuro-ray", "neuro-s3")
    assert (job.mlflow_tracking_uri, job.mlflow_experiment) == ("http://mlflow.platform.svc:5000", "neuro")
    assert (job.mlflow_secret, job.active_deadline_seconds) == ("autolfads-mlflow", 86400)
    assert job.driver_resource == admission.DRIVER_RESOURCE and job.queue_name is None
    spec = {**OK, "dedicatedCluster": {}, "activeDeadlineSeconds": 60}
    dedicated = admission.job_spec(spec, NEURO, POLICY, kueue=True)
    assert (dedicated.queue_name, dedicated.driver_resource) == ("neuro", None)
    assert dedicated.active_deadline_seconds == 60
    # Kueue only queues jobs that own their cluster (KubeRay cannot suspend a shared-cluster job)
    assert admission.job_spec(OK, NEURO, POLICY, kueue=True).queue_name is None
