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
