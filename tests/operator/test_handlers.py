"""The operator end to end against the emulated API server: kubectl applies, the operator (as ``kopf run``
starts it) creates RayJobs, the test plays KubeRay by patching RayJob status, and the AutoLFADSJob's
phase, message, Events, ownership, metrics and restart behaviour are checked."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from operators import render
from operators.spec import parse_spec
from tests.k8s.conftest import REPO
from tests.operator.cluster import ApiServer, Kube, LabsFile, operator, wait_for
from tests.services import DUMMY_AWS_ENV

DUMMY_S3 = {
    "AWS_ACCESS_KEY_ID": DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"],
    "AWS_SECRET_ACCESS_KEY": DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    "REGION_NAME": DUMMY_AWS_ENV["AWS_DEFAULT_REGION"],
}

pytestmark = pytest.mark.slow
EXAMPLES = sorted((REPO / "k8s" / "examples").glob("*.yaml"))


def spec_for(outputs: Path, **extra: object) -> dict:
    return {"dataURI": "s3://lab-data/lorenz.h5", "outputURI": f"file://{outputs}", "population": 4, **extra}


def rayjob_of(kube: Kube, job: str) -> dict:
    name = wait_for(lambda: kube.status(job).get("rayJobName"), what=f"{job} to get a RayJob")
    (rayjob,) = [r for r in kube.rayjobs() if r["metadata"]["name"] == name]
    return rayjob


def phase(kube: Kube, job: str, expected: str) -> dict:
    return wait_for(lambda: (s := kube.status(job)).get("phase") == expected and s, what=f"phase {expected}")


def test_kubectl_applies_the_crds_and_every_example(
    apiserver: ApiServer, kube: Kube, labs: LabsFile, operator_env: dict
) -> None:
    labs.write([labs.lab(secrets=["lab-storage"])])  # the examples' Secret, marked by the example
    again = apiserver.kubectl(
        "apply", "--validate=false", "-f", str(REPO / "k8s/crds/autolfadsjobs.autolfads.io.yaml")
    )
    assert again.returncode == 0, again.stderr
    args = [a for p in EXAMPLES for a in ("-f", str(p))]
    with operator(operator_env["liveness"]) as runner:
        applied = apiserver.kubectl("apply", "--validate=false", "-n", kube.ns, *args)
        assert applied.returncode == 0, applied.stderr
        listed = apiserver.kubectl("get", "alj", "-n", kube.ns, "-o", "name")
        assert sorted(listed.stdout.split()) == [
            "autolfadsjob.autolfads.io/lorenz-small",
            "autolfadsjob.autolfads.io/mc-maze",
            "autolfadsjob.autolfads.io/mc-maze-dedicated",
        ]
        for job in ("mc-maze", "lorenz-small", "mc-maze-dedicated"):
            rayjob = rayjob_of(kube, job)
            (owner,) = rayjob["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == ("AutoLFADSJob", job, True)
            assert owner["uid"] == kube.job(job)["metadata"]["uid"]
            assert kube.status(job)["phase"] == "Pending"
        dedicated = rayjob_of(kube, "mc-maze-dedicated")["spec"]
        assert dedicated["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 10
        assert rayjob_of(kube, "mc-maze")["spec"]["clusterSelector"] == {"ray.io/cluster": "autolfads-ray"}
        # kmock serves no server-side Table, so kubectl prints no printer columns here; read the field.
        shown = apiserver.kubectl("get", "alj", "-n", kube.ns, "-o", "jsonpath={.items[*].status.phase}")
        assert shown.returncode == 0 and shown.stdout.split() == ["Pending"] * 3
    assert runner.exception is None and runner.exit_code == 0


def placed(status: dict) -> tuple[str, str | None, str | None]:
    (cond,) = [c for c in status["conditions"] if c["type"] == "Placed"]
    return cond["status"], cond.get("reason"), cond.get("message")


def printer_columns(apiserver: ApiServer, kube: Kube, job: str) -> dict[str, str]:
    """``kubectl get`` of the job with the CRD's printer columns (but AGE) as custom columns."""
    import yaml

    crd = yaml.safe_load((REPO / "k8s/crds/autolfadsjobs.autolfads.io.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    columns = [c for c in version["additionalPrinterColumns"] if not c.get("priority") and c["name"] != "Age"]
    spec = ",".join(f"{c['name'].upper().replace(' ', '_')}:{c['jsonPath']}" for c in columns)
    shown = apiserver.kubectl("get", "alj", job, "-n", kube.ns, "-o", f"custom-columns={spec}")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    return dict(zip(header.split(), row.split(), strict=True))


def test_job_runs_to_success_mirroring_kuberay_and_progress(
    apiserver: ApiServer, kube: Kube, labs: LabsFile, operator_env: dict, outputs: Path
) -> None:
    labs.write([labs.lab(driverSlots=2)])
    with operator(operator_env["liveness"]):
        kube.create_job("lorenz", spec_for(outputs, config={"pbt": {"perturbation_interval": 5}}))
        rayjob = rayjob_of(kube, "lorenz")
        name = rayjob["metadata"]["name"]
        (cm,) = kube.config_maps()
        assert (
            cm.metadata.owner_references[0].name == "lorenz"
            and "perturbation_interval: 5" in cm.data["config.yaml"]
        )

        # The lab's RayCluster does not exist (yet): KubeRay only logs that; the job says it.
        missing = wait_for(lambda: (s := kube.status("lorenz")).get("reason") == "RayClusterNotFound" and s)
        assert missing["phase"] == "Pending" and "the lab's Ray cluster, does not exist" in missing["message"]
        assert placed(missing) == ("False", "RayClusterNotFound", missing["message"])
        assert "RayClusterNotFound" in kube.reasons("lorenz")
        kube.create_raycluster("autolfads-ray", {"state": "ready"})
        kube.patch_rayjob_status(name, {"jobDeploymentStatus": "Initializing", "rayClusterName": "rc-1"})
        wait_for(
            lambda: kube.status("lorenz").get("jobDeploymentStatus") == "Initializing", what="Initializing"
        )
        status = wait_for(lambda: (s := kube.status("lorenz")).get("reason") == "Initializing" and s)
        assert status["phase"] == "Pending" and status["message"] == "starting (Ray cluster rc-1)"
        # Submitted, every driver slot of the lab's head taken: Pending, and why.
        kube.patch_rayjob_status(name, {"jobDeploymentStatus": "Running", "jobStatus": "PENDING"})
        queued = wait_for(lambda: (s := kube.status("lorenz")).get("reason") == "WaitingForDriverSlot" and s)
        assert queued["phase"] == "Pending" and "runs 2 drivers at once" in queued["message"]

        kube.patch_rayjob_status(
            name,
            {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "startTime": "2026-11-25T12:00:00Z"},
        )
        status = phase(kube, "lorenz", "Running")
        assert status["startTime"] == "2026-11-25T12:00:00Z" and status["rayClusterName"] == "rc-1"

        (outputs / kube.ns / "lorenz").mkdir(parents=True)
        (outputs / kube.ns / "lorenz" / "progress.json").write_text(
            json.dumps(
                {
                    "phase": "training",
                    "generation": 2,
                    "generations_total": 5,
                    "epoch": 40,
                    "best_metric": 0.32109876543,
                    "best_trial": "t3",
                    "trials_running": 3,
                    "trials_paused": 0,
                    "trials_done": 0,
                    "trials_errored": 1,
                    "trials_total": 4,
                    "exploits": 2,
                    "updated_at": "2026-11-25T12:10:00Z",
                    "mlflow_run_id": "r1",
                }
            )
        )
        status = wait_for(lambda: (s := kube.status("lorenz")).get("generation") == 2 and s, what="progress")
        assert (status["bestValidReconSmth"], status["bestTrial"]) == (0.32109876543, "t3")
        assert placed(status)[0] == "True"
        # kmock serves no server-side Table: kubectl evaluates the CRD's own printer columns itself here.
        assert printer_columns(apiserver, kube, "lorenz") == {
            "PHASE": "Running",
            "GENERATION": "2/5",
            "BEST_VALID_RECON": "0.3211",
            "TRIALS_R/D/F": "3/0/1",
            "START": "2026-11-25T12:00:00Z",
            "END": "<none>",
        }
        wait_for(lambda: "GenerationCompleted" in kube.reasons("lorenz"), what="GenerationCompleted event")

        kube.patch_rayjob_status(
            name,
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "endTime": "2026-11-25T13:00:00Z"},
        )
        status = phase(kube, "lorenz", "Succeeded")
        assert status["outputURI"] == f"file://{outputs}/{kube.ns}/lorenz/autolfads.zip"
        assert status["completionTime"] == "2026-11-25T13:00:00Z"
        assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
        wait_for(
            lambda: {"RayJobCreated", "JobRunning", "JobSucceeded"} <= kube.reasons("lorenz"),
            what=f"events (have {kube.events('lorenz')})",
        )


def test_progress_is_read_from_s3_with_the_jobs_own_secret(
    kube: Kube, labs: LabsFile, operator_env: dict, moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's environment has no AWS settings: endpoint and keys can only come from the Secret
    (and the endpoint must be one the admin allowed)."""
    import boto3

    monkeypatch.setenv("AUTOLFADS_ALLOWED_STORAGE_ENDPOINTS", moto_server)

    bucket = f"runs-{kube.ns}"
    s3 = boto3.client("s3", endpoint_url=moto_server, **{k.lower(): v for k, v in DUMMY_S3.items()})
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key=f"out/{kube.ns}/onS3/progress.json",
        Body=json.dumps({"generation": 3, "best_metric": 0.25, "trials_running": 2, "trials_total": 2}),
    )
    labs.write([labs.lab(secrets=["s3"])])
    kube.create_secret("s3", {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": moto_server})
    with operator(operator_env["liveness"]):
        kube.create_job(
            "onS3", spec_for(Path("/unused"), outputURI=f"s3://{bucket}/out", storageSecretRef={"name": "s3"})
        )
        name = rayjob_of(kube, "onS3")["metadata"]["name"]
        kube.patch_rayjob_status(name, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        status = wait_for(
            lambda: (s := kube.status("onS3")).get("generation") == 3 and s, what="progress from S3"
        )
        assert (status["bestValidReconSmth"], status["display"]) == (
            0.25,
            {"generation": "3", "best": "0.25", "trials": "2/0/0"},
        )


def test_failed_ray_job_fails_the_job_with_kuberays_message(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("doomed", spec_for(outputs))
        name = rayjob_of(kube, "doomed")["metadata"]["name"]
        kube.patch_rayjob_status(name, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        phase(kube, "doomed", "Running")
        kube.patch_rayjob_status(
            name,
            {
                "jobDeploymentStatus": "Complete",
                "jobStatus": "FAILED",
                "message": "Job entrypoint command failed with exit code 1\n\nError: data: no such file\n",
            },
        )
        status = phase(kube, "doomed", "Failed")
        # Ray's paragraph becomes the driver's own one-line error (operators.status.run_error)
        assert (status["reason"], status["message"]) == (
            "AppFailed",
            "autolfads run failed (exit code 1): data: no such file",
        )
        assert "outputURI" not in status
        events = wait_for(lambda: [e for e in kube.events("doomed") if e[1] == "JobFailed"], what="JobFailed")
        assert events[0][0] == "Warning" and "exit code 1" in events[0][2]


def test_rayjob_deleted_by_hand_fails_the_job(kube: Kube, operator_env: dict, outputs: Path) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("orphaned", spec_for(outputs))
        name = rayjob_of(kube, "orphaned")["metadata"]["name"]
        kube.custom.delete_namespaced_custom_object("ray.io", "v1", kube.ns, "rayjobs", name)
        status = phase(kube, "orphaned", "Failed")
        assert status["reason"] == "RayJobDeleted" and name in status["message"]


def test_invalid_spec_fails_naming_the_field_creates_nothing_until_fixed(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    kube.core.create_namespaced_config_map(
        kube.ns, {"metadata": {"name": "cfg"}, "data": {"config.yaml": "pbt:\n  mode: sideways\n"}}
    )
    with operator(operator_env["liveness"]):
        kube.create_job("tiny", spec_for(outputs, population=1))
        kube.create_job("badpbt", spec_for(outputs, configMapRef={"name": "cfg"}))
        tiny = phase(kube, "tiny", "Failed")
        assert tiny["reason"] == "InvalidSpec" and tiny["message"].startswith(
            "spec.population: expected >= 2"
        )
        bad = phase(kube, "badpbt", "Failed")
        assert bad["message"].startswith(f"ConfigMap {kube.ns}/cfg key config.yaml: pbt.mode: expected")
        events = wait_for(
            lambda: [e for e in kube.events("tiny") if e[1] == "InvalidSpec"], what="InvalidSpec"
        )
        assert events[0][0] == "Warning" and "spec.population" in events[0][2]
        assert kube.rayjobs() == []

        # fixing the spec of a job that was never submitted submits it
        kube.custom.patch_namespaced_custom_object(
            "autolfads.io", "v1alpha1", kube.ns, "autolfadsjobs", "tiny", {"spec": {"population": 4}}
        )
        assert "pbt.num_samples=4" in rayjob_of(kube, "tiny")["spec"]["entrypoint"]
        fixed = phase(kube, "tiny", "Pending")
        assert (
            fixed["observedGeneration"] == 2
            and {c["type"]: c["status"] for c in fixed["conditions"]}["SpecValid"] == "True"
        )


def test_job_waits_for_its_secret_then_starts(
    kube: Kube, labs: LabsFile, operator_env: dict, outputs: Path
) -> None:
    labs.write([labs.lab(secrets=["creds"])])
    with operator(operator_env["liveness"]):
        spec = spec_for(outputs, storageSecretRef={"name": "creds"}, dedicatedCluster={})
        kube.create_job("patient", spec)
        status = wait_for(
            lambda: (s := kube.status("patient")).get("reason") == "MissingReference" and s,
            what="MissingReference",
        )
        assert status["phase"] == "Pending" and f"Secret {kube.ns}/creds not found" in status["message"]
        assert kube.rayjobs() == []
        kube.create_secret("creds", {"AWS_ACCESS_KEY_ID": "a"})
        rayjob = rayjob_of(kube, "patient")["spec"]
        cluster = rayjob["rayClusterSpec"]
        for pod in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
            assert pod["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "creds"}}]
        assert "envFrom" not in rayjob["submitterPodTemplate"]["spec"]["containers"][0]


def test_deleting_the_job_removes_what_it_owns_and_keeps_outputs(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    (outputs / "kept.txt").write_text("results")
    with operator(operator_env["liveness"]):
        kube.create_job("gone", spec_for(outputs, config={"model": {"gen_dim": 8}}))
        rayjob_of(kube, "gone")
        assert len(kube.config_maps()) == 1
        kube.custom.delete_namespaced_custom_object(
            "autolfads.io", "v1alpha1", kube.ns, "autolfadsjobs", "gone"
        )
        wait_for(lambda: kube.job("gone") is None, what="job deletion")
        wait_for(lambda: kube.rayjobs() == [] and kube.config_maps() == [], what="owned objects to go")
    assert (outputs / "kept.txt").read_text() == "results"


def test_restarted_operator_creates_no_duplicate_and_keeps_mirroring(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("steady", spec_for(outputs))
        first = rayjob_of(kube, "steady")
    with operator(operator_env["liveness"]) as runner:
        kube.create_job("second", spec_for(outputs))
        rayjob_of(kube, "second")  # the new operator is up and reconciling
        (again,) = [r for r in kube.rayjobs() if r["metadata"]["labels"]["autolfads.io/job"] == "steady"]
        assert again["metadata"]["uid"] == first["metadata"]["uid"]
        kube.patch_rayjob_status(
            first["metadata"]["name"], {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
        )
        phase(kube, "steady", "Running")
    assert runner.exception is None and len(kube.rayjobs()) == 2


def test_operator_that_died_after_creating_the_rayjob_adopts_it_instead_of_duplicating(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    spec = spec_for(outputs)
    kube.create_job("interrupted", spec)  # no operator yet: the RayJob below is what it got to create
    meta = kube.job("interrupted")["metadata"]
    rayjob = render.render_rayjob(parse_spec(spec), meta)
    rayjob["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "autolfads.io/v1alpha1",
            "kind": "AutoLFADSJob",
            "name": "interrupted",
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    kube.custom.create_namespaced_custom_object("ray.io", "v1", kube.ns, "rayjobs", rayjob)
    before = kube.rayjobs()[0]["metadata"]["uid"]
    with operator(operator_env["liveness"]):
        assert rayjob_of(kube, "interrupted")["metadata"]["uid"] == before
        assert phase(kube, "interrupted", "Pending")["rayJobName"] == rayjob["metadata"]["name"]
    assert len(kube.rayjobs()) == 1 and "RayJobCreated" not in kube.reasons("interrupted")


def test_spec_change_on_a_submitted_job_is_refused(kube: Kube, operator_env: dict, outputs: Path) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("fixed", spec_for(outputs))
        rayjob = rayjob_of(kube, "fixed")
        kube.custom.patch_namespaced_custom_object(
            "autolfads.io", "v1alpha1", kube.ns, "autolfadsjobs", "fixed", {"spec": {"population": 8}}
        )
        status = wait_for(lambda: (s := kube.status("fixed")).get("specChangeRefused") and s, what="refusal")
        assert status["specChangeRefused"].startswith("spec.population cannot change")
        assert status["observedGeneration"] == 1 and kube.job("fixed")["metadata"]["generation"] == 2
        wait_for(lambda: "SpecChangeRefused" in kube.reasons("fixed"), what="SpecChangeRefused event")
    (unchanged,) = kube.rayjobs()
    assert unchanged["spec"] == rayjob["spec"]


def test_suspend_is_applied_to_a_dedicated_clusters_rayjob(
    kube: Kube, operator_env: dict, outputs: Path
) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("pausable", spec_for(outputs, dedicatedCluster={"nodeSelector": {"gpu": "yes"}}))
        name = rayjob_of(kube, "pausable")["metadata"]["name"]
        kube.custom.patch_namespaced_custom_object(
            "autolfads.io", "v1alpha1", kube.ns, "autolfadsjobs", "pausable", {"spec": {"suspend": True}}
        )
        wait_for(
            lambda: [
                r for r in kube.rayjobs() if r["metadata"]["name"] == name and r["spec"]["suspend"] is True
            ],
            what="RayJob suspended",
        )
        status = wait_for(
            lambda: (s := kube.status("pausable")).get("observedGeneration") == 2 and s, what="gen 2"
        )
        # the lab names a Kueue LocalQueue, but this cluster has no Kueue: nothing waits for admission
        assert render.KUEUE_QUEUE_LABEL not in rayjob_of(kube, "pausable")["metadata"]["labels"]
        assert "specChangeRefused" not in status
        wait_for(lambda: "Suspended" in kube.reasons("pausable"), what="Suspended event")


def test_metrics_and_liveness_are_served(kube: Kube, operator_env: dict, outputs: Path) -> None:
    with operator(operator_env["liveness"]):
        kube.create_job("counted", spec_for(outputs))
        rayjob_of(kube, "counted")

        def scrape() -> str:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{operator_env['metrics']}/metrics", timeout=5
            ) as r:
                return r.read().decode()

        def pending_jobs(text: str) -> float:
            line = next(
                x for x in text.splitlines() if x.startswith('autolfads_operator_jobs{phase="Pending"}')
            )
            return float(line.split()[-1])

        def scrape_once_a_job_is_pending() -> str:
            text = scrape()
            return text if pending_jobs(text) >= 1 else ""

        text = wait_for(scrape_once_a_job_is_pending, what="jobs gauge")
        assert 'autolfads_operator_reconciles_total{handler="create"}' in text
        assert "autolfads_operator_reconcile_duration_seconds_bucket" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{operator_env['liveness']}/healthz", timeout=5) as r:
            assert r.status == 200


def test_operator_without_its_labs_file_refuses_to_start(
    operator_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kopf._core.engines.activities import ActivityError  # what a failed startup handler raises

    monkeypatch.delenv("AUTOLFADS_LABS_FILE")  # no labs declared must not mean "every namespace is one"
    with pytest.raises(ActivityError) as failed, operator(operator_env["liveness"]):
        pass
    assert "$AUTOLFADS_LABS_FILE is not set" in str(failed.value.__cause__)
