"""values.schema.json (and the chart's own checks) refuse bad values with a message naming the value."""

from __future__ import annotations

import pytest

from tests.helm.chart import template_args

CASES = [
    ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent'"),
    (
        "rayCluster.gpuWorkers.maxReplicas=two",
        "'/rayCluster/gpuWorkers/maxReplicas': got string, want integer",
    ),
    ("rayCluster.gpuWorkers.gpusPerPod=0", "at '/rayCluster/gpuWorkers/gpusPerPod': minimum: got 0, want 1"),
    ("rayClustr.enabled=true", "additional properties 'rayClustr' not allowed"),
    ("operator.resources.limits=null", "at '/operator/resources': missing property 'limits'"),
    ("operator.resources.requests.cpu=lots", "at '/operator/resources/requests/cpu'"),
    ("minio.rootPassword=short", "at '/minio/rootPassword': minLength: got 5, want 8"),
    ("storage.endpointUrl=minio:9000", "at '/storage/endpointUrl': 'minio:9000' does not match pattern"),
    (
        "mlflow.backendStore.type=postgres",
        "'/mlflow/backendStore/type': value must be one of 'sqlite', 'external'",
    ),
    ("mlflow.artifactsDestination=mlflow-artifacts", "at '/mlflow/artifactsDestination'"),
    ("rayCluster.rayVersion=latest", "at '/rayCluster/rayVersion'"),
    ("operator.logLevel=debug", "at '/operator/logLevel': value must be one of 'verbose', 'info', 'quiet'"),
    ("networkPolicies.enabled=yes", "at '/networkPolicies/enabled': got string, want boolean"),
    # Required-together values.
    ("mlflow.backendStore.type=external", "at '/mlflow/backendStore/external/existingSecret': minLength"),
    ("storage.credentials.create=true", "at '/storage/credentials/accessKeyId': minLength: got 0, want 1"),
    # Checked in the templates: a relation between two values.
    (
        "rayCluster.gpuWorkers.minReplicas=5",
        "rayCluster.gpuWorkers.minReplicas (5) must not exceed rayCluster.gpuWorkers.maxReplicas (4)",
    ),
    (
        "rayCluster.gpuWorkers.replicas=9",
        "rayCluster.gpuWorkers.replicas (9) must lie within minReplicas..maxReplicas (0..4)",
    ),
    (
        "operator.serviceAccount.create=false",
        "operator.serviceAccount.name is required when operator.serviceAccount.create is false",
    ),
    # Labs: what would let one lab reach another's, or leave a lab half-declared.
    ("rayCluster.authMode=disabled", "at '/rayCluster/authMode': value must be 'token'"),
    ("labs[0].name=Lab_A", "at '/labs/0/name': 'Lab_A' does not match pattern"),
    ("labs[0].name=" + "a" * 41, "at '/labs/0/name': maxLength: got 41, want 40"),
    ("labs[0].namespace=x", "at '/labs/0': missing property 'name'"),
    ("labs[0].name=a,labs[0].storage.allowedPrefixes={s3://b}", "at '/labs/0/storage/allowedPrefixes/0'"),
    ("labs[0].name=a,labs[0].storage.secrets={s3,s3}", "at '/labs/0/storage/secrets'"),
    ("labs[0].name=a,labs[0].shell=bash", "at '/labs/0': additional properties 'shell' not allowed"),
    ("allowedImages={}", "at '/allowedImages/0'"),
    (
        "labs[0].name=a,labs[0].namespace=autolfads",
        "labs[0] (a): a lab cannot live in the release namespace autolfads",
    ),
    ("labs[0].name=a,labs[1].name=b,labs[1].namespace=a", "labs[1] (b): namespace a is already lab a's"),
    ("labs[0].name=a,labs[1].name=a,labs[1].namespace=b", "labs[1] (a): the lab name a is used twice"),
    (
        "labs[0].name=a,labs[0].storage.allowedPrefixes={s3://b/},"
        "labs[1].name=c,labs[1].storage.allowedPrefixes={s3://b/c/}",
        "lab a's storage prefix s3://b/ contains lab c's s3://b/c/",
    ),
    (
        "rayCluster.gpuWorkers.maxReplicas=9",
        "lab autolfads-lab: its Ray cluster may grow to 9 GPUs (gpuWorkers.maxReplicas x gpusPerPod) but its "
        "quota requests.nvidia.com/gpu is 4",
    ),
    (
        "operator.watchNamespaces={elsewhere}",
        "operator.watchNamespaces must include every lab's namespace (missing: autolfads-lab)",
    ),
    (
        "rayCluster.extraEnv[0].name=RAY_AUTH_MODE,rayCluster.extraEnv[0].value=disabled",
        "lab autolfads-lab: rayCluster.extraEnv sets RAY_AUTH_MODE; KubeRay sets RAY_AUTH_MODE",
    ),
    # Values removed in 0.2.0 fail with where they went.
    ("jobsNamespace.name=lab", "jobsNamespace was replaced by labs"),
    (
        "networkPolicies.clientNamespaceSelector.matchLabels.a=b",
        "networkPolicies.clientNamespaceSelector was removed",
    ),
]


@pytest.mark.parametrize(("setting", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_value_is_refused_with_a_message_naming_it(helm_run, setting: str, message: str) -> None:
    result = helm_run(*template_args(set_values=[setting]))
    assert result.returncode != 0, f"{setting} was accepted"
    assert message in result.stderr


@pytest.mark.parametrize(("setting", "message"), CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_lint_reports_bad_values_too(helm_run, setting: str, message: str) -> None:
    from tests.helm.chart import CHART

    result = helm_run("lint", "--strict", str(CHART), "--set", setting)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_explicit_credentials_render_a_secret_only_when_asked(helm_run) -> None:
    off = helm_run(*template_args(set_values=["storage.credentials.accessKeyId=AKIA"]))
    assert off.returncode == 0, off.stderr
    assert not [d for d in off.documents if d["metadata"]["name"] == "autolfads-storage"]
    on = helm_run(
        *template_args(
            set_values=[
                "storage.credentials.create=true",
                "storage.credentials.accessKeyId=AKIA",
                "storage.credentials.secretAccessKey=s3cr3t",
            ]
        )
    )
    assert on.returncode == 0, on.stderr
    (secret,) = [d for d in on.documents if d["metadata"]["name"] == "autolfads-storage"]
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
