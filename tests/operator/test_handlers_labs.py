"""Labs on one cluster, end to end against the emulated API server: the operator places a job only in its
own lab, refuses what the lab does not allow before creating anything (status ``Failed`` with the reason,
a Warning Event, no RayJob), and hands dedicated clusters to the lab's Kueue LocalQueue where Kueue's API
exists. This module runs its own emulator, with Kueue's API registered, so other tests never see Kueue."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest
import yaml

from operators import admission, render
from tests.operator.cluster import ApiServer, Kube, LabsFile, api_server, operator, wait_for

pytestmark = pytest.mark.slow

ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
# Just enough of Kueue's CRD for API discovery to report the kueue.x-k8s.io group.
KUEUE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "localqueues.kueue.x-k8s.io"},
    "spec": {
        "group": "kueue.x-k8s.io",
        "scope": "Namespaced",
        "names": {"kind": "LocalQueue", "plural": "localqueues", "singular": "localqueue"},
        "versions": [
            {
                "name": "v1beta1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": ANY_OBJECT},
            }
        ],
    },
}


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """An emulator of a cluster with Kueue installed (overrides the session-wide one here)."""
    workdir = tmp_path_factory.mktemp("kueue-apiserver")
    with api_server(workdir) as server:
        crd = workdir / "kueue-crd.yaml"
        crd.write_text(yaml.safe_dump(KUEUE_CRD))
        applied = server.kubectl("apply", "--validate=false", "-f", str(crd))
        assert applied.returncode == 0, applied.stderr
        yield server


@pytest.fixture
def lab_b(apiserver: ApiServer, kube: Kube) -> Kube:
    return Kube(apiserver.client(), f"{kube.ns}-b")


def two_labs(labs: LabsFile, lab_b: Kube) -> None:
    """Lab A (the test's namespace) and lab B, each with its own Ray cluster, Secrets and prefixes."""
    a = labs.lab(
        secrets=["a-s3", "a-scratch"],
        name="lab-a",
        rayCluster="a-ray",
        driverSlots=4,
        mlflow={"experiment": "lab-a", "credentialsSecret": "autolfads-mlflow"},
        jobs={"queueName": "a-queue", "defaultActiveDeadlineSeconds": 86400},
    )
    b = labs.lab(lab_b.ns, secrets=["b-s3"], name="lab-b", rayCluster="b-ray")
    b["storage"]["allowedPrefixes"] = ["s3://b-data/"]
    labs.write([a, b], mlflow={"trackingURI": "http://autolfads-mlflow.platform.svc:5000"})


def failed(kube: Kube, job: str) -> dict:
    return wait_for(lambda: (s := kube.status(job)).get("phase") == "Failed" and s, what=f"{job} Failed")


def test_jobs_a_lab_does_not_allow_fail_with_the_reason_an_event_and_nothing_created(
    apiserver: ApiServer, kube: Kube, lab_b: Kube, labs: LabsFile, operator_env: dict
) -> None:
    two_labs(labs, lab_b)
    stray = Kube(apiserver.client(), f"{kube.ns}-x")  # not a lab
    kube.create_secret("a-s3", {"AWS_ACCESS_KEY_ID": "a"})
    kube.create_secret("a-scratch", {"AWS_ACCESS_KEY_ID": "a"}, marked=False)  # listed, never marked
    ok = {"dataURI": "s3://lab-data/x.h5", "outputURI": "s3://lab-results/runs"}
    refused = {  # job -> (namespace, spec, reason, words in the message)
        "other-labs-cluster": (
            kube,
            {**ok, "rayClusterName": "b-ray"},
            admission.CLUSTER_NOT_ALLOWED,
            "spec.rayClusterName: 'b-ray' is not lab 'lab-a''s Ray cluster",
        ),
        "not-in-a-lab": (stray, ok, admission.NOT_A_LAB, f"namespace '{stray.ns}' is not an AutoLFADS lab"),
        "own-image": (
            kube,
            {**ok, "image": "docker.io/someone/autolfads:mine"},
            admission.IMAGE_NOT_ALLOWED,
            "spec.image: 'docker.io/someone/autolfads:mine'",
        ),
        "unmarked-secret": (
            kube,
            {**ok, "dedicatedCluster": {}, "storageSecretRef": {"name": "a-scratch"}},
            admission.SECRET_NOT_ALLOWED,
            f"Secret {kube.ns}/a-scratch is not marked for AutoLFADS",
        ),
        "other-labs-secret": (
            kube,
            {**ok, "dedicatedCluster": {}, "storageSecretRef": {"name": "b-s3"}},
            admission.SECRET_NOT_ALLOWED,
            "'b-s3' is not one of lab 'lab-a''s storage Secrets",
        ),
        "other-labs-data": (
            kube,
            {**ok, "dataURI": "s3://b-data/session.h5"},
            admission.OUTSIDE_LAB_STORAGE,
            "spec.dataURI: 's3://b-data/session.h5' is outside lab 'lab-a''s storage",
        ),
        "escaping-output": (
            kube,
            {**ok, "outputURI": "s3://lab-results/../b-data/runs"},
            admission.OUTSIDE_LAB_STORAGE,
            "'..'",
        ),
    }
    with operator(operator_env["liveness"]):
        for job, (where, spec, _, _) in refused.items():
            where.create_job(job, spec)
        for job, (where, _, reason, words) in refused.items():
            status = failed(where, job)
            assert status["reason"] == reason, (job, status)
            assert words in status["message"], (job, status["message"])
            condition = {c["type"]: c for c in status["conditions"]}
            assert condition["Failed"]["message"] == status["message"]
            assert condition["RayJobCreated"]["status"] == "False"
            events = wait_for(lambda w=where, j=job: w.events(j), what=f"{job}'s Event")
            assert ("Warning", reason) == events[0][:2] and words in events[0][2], (job, events)
    for where in (kube, lab_b, stray):
        assert where.rayjobs() == [] and where.config_maps() == [] and where.network_policies() == []


def test_legitimate_jobs_run_on_their_own_labs_cluster_and_kueue_queues_dedicated_ones(
    kube: Kube, lab_b: Kube, labs: LabsFile, operator_env: dict
) -> None:
    two_labs(labs, lab_b)
    kube.create_secret("a-s3", {"AWS_ACCESS_KEY_ID": "a"})
    lab_b.create_secret("b-s3", {"AWS_ACCESS_KEY_ID": "b"})
    ok = {"dataURI": "s3://lab-data/x.h5", "outputURI": "s3://lab-results/runs"}
    with operator(operator_env["liveness"]):
        kube.create_job("shared", ok)
        kube.create_job("dedicated", {**ok, "dedicatedCluster": {}})
        lab_b.create_job("shared", {"dataURI": "s3://b-data/x.h5", "outputURI": "s3://b-data/runs"})
        for where, job in ((kube, "shared"), (kube, "dedicated"), (lab_b, "shared")):
            wait_for(lambda w=where, j=job: w.status(j).get("rayJobName"), what=f"{where.ns}/{job} RayJob")
        rayjobs = {r["metadata"]["labels"][render.JOB_LABEL]: r for r in kube.rayjobs()}
        (in_b,) = lab_b.rayjobs()

        shared = rayjobs["shared"]
        assert shared["spec"]["clusterSelector"] == {"ray.io/cluster": "a-ray"}
        assert in_b["spec"]["clusterSelector"] == {"ray.io/cluster": "b-ray"}  # each lab its own cluster
        # KubeRay cannot suspend a job on an existing cluster: Kueue leaves it alone (the lab's quota and
        # the cluster's maxReplicas bound it), and the head's driver slots queue its driver
        assert render.KUEUE_QUEUE_LABEL not in shared["metadata"]["labels"]
        assert shared["spec"]["entrypointResources"] == '{"autolfads_driver": 1}'
        assert shared["spec"]["activeDeadlineSeconds"] == 86400  # the lab's default deadline
        args = shlex.split(shared["spec"]["entrypoint"])
        assert args[args.index("--mlflow-experiment") + 1] == "lab-a"
        assert args[args.index("--mlflow-uri") + 1] == "http://autolfads-mlflow.platform.svc:5000"

        dedicated = rayjobs["dedicated"]
        assert dedicated["metadata"]["labels"][render.KUEUE_QUEUE_LABEL] == "a-queue"
        assert dedicated["spec"]["suspend"] is True  # Kueue admits it by lifting suspend
        cluster = dedicated["spec"]["rayClusterSpec"]
        assert cluster["authOptions"] == {"mode": "token"}
        head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert [e["secretRef"]["name"] for e in head["envFrom"]] == ["a-s3", "autolfads-mlflow"]
        fences = kube.network_policies()
        assert len(fences) == 2
        for fence in fences:
            (owner,) = fence["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"]) == ("AutoLFADSJob", "dedicated")
            selected = fence["spec"]["podSelector"]["matchLabels"]
            assert selected[render.RAYJOB_LABEL] == dedicated["metadata"]["name"]

        # Kueue decides when a queued job runs: the user cannot lift suspend past it
        kube.custom.patch_namespaced_custom_object(
            "autolfads.io", "v1alpha1", kube.ns, "autolfadsjobs", "dedicated", {"spec": {"suspend": True}}
        )
        status = wait_for(
            lambda: (s := kube.status("dedicated")).get("specChangeRefused") and s, what="refusal"
        )
        assert status["specChangeRefused"].startswith("spec.suspend: Kueue queues this job")
        assert all(s["phase"] == "Pending" for s in (kube.status("shared"), lab_b.status("shared")))
