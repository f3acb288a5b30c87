"""RayJob (jobDeploymentStatus × jobStatus) and run progress → AutoLFADSJob status (k8s-notes §1.2)."""

from __future__ import annotations

import pytest

from operators.status import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    conditions,
    phase_from_rayjob,
    placement,
    progress_fields,
    rayjob_fields,
    run_error,
    status_patch,
    transition_event,
)

TABLE = [
    ("", "", PENDING),
    ("Initializing", "", PENDING),
    ("Waiting", "", PENDING),
    ("Retrying", "FAILED", PENDING),
    ("Suspending", "", PENDING),
    ("Suspended", "", PENDING),
    ("Running", "", PENDING),
    ("Running", "PENDING", PENDING),
    ("Running", "RUNNING", RUNNING),
    ("Complete", "SUCCEEDED", SUCCEEDED),
    ("Complete", "FAILED", FAILED),
    ("Complete", "STOPPED", FAILED),
    ("Failed", "", FAILED),
    ("Failed", "RUNNING", FAILED),
    ("ValidationFailed", "", FAILED),
    ("SomethingNew", "", PENDING),
]


@pytest.mark.parametrize(("deployment", "job", "phase"), TABLE)
def test_phase_follows_the_status_pair(deployment: str, job: str, phase: str) -> None:
    assert phase_from_rayjob({"jobDeploymentStatus": deployment, "jobStatus": job}).phase == phase


def test_missing_status_means_pending() -> None:
    assert phase_from_rayjob(None).phase == PENDING


def test_complete_with_failed_job_is_a_failure_not_a_success() -> None:
    view = phase_from_rayjob({"jobDeploymentStatus": "Complete", "jobStatus": "FAILED"})
    assert (view.phase, view.reason) == (FAILED, "AppFailed")
    assert "FAILED" in view.message


def test_a_failed_driver_leaves_its_last_line_as_the_message_not_rays_log_dump() -> None:
    ray_message = (
        "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
        "2026-11-30 10:00:01 resuming nothing\n"
        "Error: cannot read s3://lab-data/x.h5 at endpoint http://minio:9000: no such object\n\n"
    )
    rayjob = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}
    view = phase_from_rayjob({**rayjob, "message": ray_message})
    assert (view.phase, view.reason) == (FAILED, "AppFailed")
    assert view.message == (
        "autolfads run failed (exit code 1): cannot read s3://lab-data/x.h5 at endpoint http://minio:9000: "
        "no such object"
    )
    bare = "Job entrypoint command failed with exit code -9, last available logs (truncated):\n"
    assert run_error(bare) == "autolfads run failed (exit code -9)"
    assert run_error("something else\nentirely") == "something else\nentirely"


def test_failure_copies_kuberays_reason_and_message() -> None:
    view = phase_from_rayjob(
        {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "message": "ran past 3600 s"}
    )
    assert (view.phase, view.reason, view.message) == (FAILED, "DeadlineExceeded", "ran past 3600 s")


def test_suspended_job_says_so() -> None:
    assert phase_from_rayjob({"jobDeploymentStatus": "Suspended"}).reason == "Suspended"


def test_unknown_deployment_status_is_named() -> None:
    assert "SomethingNew" in phase_from_rayjob({"jobDeploymentStatus": "SomethingNew"}).message


def test_rayjob_fields_copy_cluster_and_times_and_completion_only_when_terminal() -> None:
    st = {
        "jobDeploymentStatus": "Running",
        "jobStatus": "RUNNING",
        "rayClusterName": "rc",
        "startTime": "2026-11-25T10:00:00Z",
        "endTime": "2026-11-25T11:00:00Z",
    }
    out = rayjob_fields(st)
    assert out["rayClusterName"] == "rc" and out["startTime"] == "2026-11-25T10:00:00Z"
    assert "completionTime" not in out
    assert (
        rayjob_fields({**st, "jobDeploymentStatus": "Complete"})["completionTime"] == "2026-11-25T11:00:00Z"
    )


PROGRESS = {
    "phase": "training",
    "generation": 3,
    "generations_total": 5,
    "epoch": 130,
    "best_metric": 0.4321,
    "best_trial": "t_07",
    "trials_running": 4,
    "trials_paused": 2,
    "trials_done": 1,
    "trials_errored": 1,
    "trials_total": 8,
    "exploits": 5,
    "updated_at": "2026-11-25T10:05:00Z",
    "mlflow_run_id": "abc123",
}


def test_only_documented_progress_fields_of_checked_type_and_size_reach_the_status() -> None:
    """progress.json lives in storage the job's owner controls: a lying file changes nothing."""
    from tests.operator.hostile import LIAR

    assert progress_fields(LIAR, "http://mlflow:5000") == {}
    huge = {"generation": 10**10, "best_trial": "t" * 65, "mlflow_run_id": "a/b", "updated_at": "yesterday"}
    assert progress_fields(huge) == {}
    assert progress_fields({"best_trial": 3, "updated_at": "2026-11-25T10:05:00+00:00"}) == {
        "bestTrial": "3",
        "progressUpdatedAt": "2026-11-25T10:05:00+00:00",
    }


def test_progress_fills_generation_best_metric_and_trials() -> None:
    out = progress_fields(PROGRESS, "http://mlflow:5000/")
    assert out == {
        "generation": 3,
        "generationsTotal": 5,
        "epoch": 130,
        "bestValidReconSmth": 0.4321,
        "bestTrial": "t_07",
        "trialsRunning": 4,
        "trialsPaused": 2,
        "trialsDone": 1,
        "trialsFailed": 1,
        "trialsTotal": 8,
        "display": {"generation": "3/5", "best": "0.4321", "trials": "6/1/1"},
        "exploits": 5,
        "progressUpdatedAt": "2026-11-25T10:05:00Z",
        "mlflowRunID": "abc123",
        "mlflowRunURL": "http://mlflow:5000/#/runs/abc123",
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"best_metric": float("nan")},
        {"best_metric": "low"},
        {"generation": "3"},
        {"generation": True},
        {"best_metric": None},
    ],
)
def test_malformed_progress_values_are_skipped(bad: dict) -> None:
    out = progress_fields(bad)
    assert "bestValidReconSmth" not in out and "generation" not in out


@pytest.mark.parametrize(
    ("best", "shown"),
    [(1.0134567890123457, "1.013"), (0.000123456, "0.0001235"), (12345.678, "1.235e+04"), (0.5, "0.5")],
)
def test_kubectl_shows_the_best_metric_to_four_significant_digits(best: float, shown: str) -> None:
    assert progress_fields({"best_metric": best})["display"] == {"best": shown}


def test_a_finished_job_shows_its_trials_done_and_every_generation() -> None:
    final = {"generation": 5, "generations_total": 5, "trials_running": 0, "trials_paused": 0}
    final |= {"trials_done": 4, "trials_errored": 0, "trials_total": 4}
    assert progress_fields(final)["display"] == {"generation": "5/5", "trials": "0/4/0"}


def test_no_run_link_without_an_http_tracking_server() -> None:
    out = progress_fields({"mlflow_run_id": "r1"}, "file:///tmp/mlruns")
    assert out == {"mlflowRunID": "r1"}


def test_condition_transition_time_moves_only_when_status_flips() -> None:
    first = conditions(PENDING, "RayJobCreated", "m", None, "t0")
    same = conditions(PENDING, "Initializing", "m2", first, "t1")
    running = conditions(RUNNING, "Running", "go", same, "t2")
    by_type = {c["type"]: c for c in running}
    assert {c["type"]: c["lastTransitionTime"] for c in same} == {c["type"]: "t0" for c in first}
    assert by_type["Running"] == {
        "type": "Running",
        "status": "True",
        "lastTransitionTime": "t2",
        "reason": "Running",
        "message": "go",
    }
    assert by_type["RayJobCreated"]["lastTransitionTime"] == "t0"


def test_invalid_spec_sets_spec_valid_false_with_the_message() -> None:
    patch = status_patch(
        phase_from_rayjob(None).__class__(FAILED, "InvalidSpec", "spec.population: expected >= 2"), None, "t"
    )
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["SpecValid"]["status"] == "False" and "spec.population" in by_type["SpecValid"]["message"]
    assert by_type["RayJobCreated"]["status"] == "False" and by_type["Failed"]["status"] == "True"


@pytest.mark.parametrize(
    ("old", "new", "event"),
    [
        (PENDING, RUNNING, ("Normal", "JobRunning")),
        (RUNNING, SUCCEEDED, ("Normal", "JobSucceeded")),
        (RUNNING, FAILED, ("Warning", "JobFailed")),
        (RUNNING, RUNNING, None),
        (None, PENDING, None),
    ],
)
def test_phase_transitions_worth_an_event(old: str | None, new: str, event: tuple | None) -> None:
    assert transition_event(old, new) == event


def test_every_status_the_operator_writes_fits_the_crd_status_schema(alj_validator) -> None:
    st = {
        "jobDeploymentStatus": "Complete",
        "jobStatus": "SUCCEEDED",
        "rayClusterName": "rc",
        "dashboardURL": "rc-head:8265",
        "startTime": "2026-11-25T10:00:00Z",
        "endTime": "2026-11-25T11:00:00Z",
    }
    status = {
        **rayjob_fields(st),
        **status_patch(phase_from_rayjob(st), None, "2026-11-25T11:00:01Z"),
        **progress_fields(PROGRESS, "http://mlflow:5000"),
        "rayJobName": "lorenz-0a1b2c",
        "observedGeneration": 1,
        "outputURI": "s3://out/lab/lorenz/autolfads.zip",
        "specChangeRefused": "spec.population cannot change once the job is submitted",
    }
    job = {
        "apiVersion": "autolfads.io/v1alpha1",
        "kind": "AutoLFADSJob",
        "metadata": {"name": "lorenz"},
        "spec": {"dataURI": "s3://d/x.h5", "outputURI": "s3://out"},
        "status": status,
    }
    assert alj_validator.errors(job) == []


# --- a job that cannot be placed says so ------------------------------------------------------------

INITIALIZING = {"jobDeploymentStatus": "Initializing", "rayClusterName": "lab-ray"}
SHARED_RAYJOB = {"metadata": {"namespace": "lab", "name": "job-1a2b3c"}, "spec": {}}
READY = {"status": {"state": "ready"}}


def placed(rayjob_status: dict, cluster: dict | None, rayjob: dict = SHARED_RAYJOB, slots: int = 4):
    return placement(phase_from_rayjob(rayjob_status), rayjob, "lab-ray", cluster, slots)


def placed_condition(view) -> dict:
    (cond,) = [c for c in status_patch(view, None, "t0")["conditions"] if c["type"] == "Placed"]
    return cond


def test_a_missing_lab_cluster_is_named_in_the_status_and_the_placed_condition() -> None:
    view = placed(INITIALIZING, None)
    assert (view.phase, view.reason) == (PENDING, "RayClusterNotFound")
    assert view.message.startswith("RayCluster lab/lab-ray, the lab's Ray cluster, does not exist")
    cond = placed_condition(view)
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "RayClusterNotFound", view.message)


def test_a_cluster_that_is_not_ready_says_why() -> None:
    cluster = {
        "status": {"conditions": [{"type": "HeadPodReady", "status": "False", "message": "0/3 nodes"}]}
    }
    view = placed(INITIALIZING, cluster)
    assert (view.reason, view.message) == (
        "RayClusterNotReady",
        "RayCluster lab/lab-ray is not ready (starting: 0/3 nodes): the job starts when its head runs",
    )


def test_a_job_queued_for_a_driver_slot_is_pending_with_the_slots_named() -> None:
    view = placed({"jobDeploymentStatus": "Running", "jobStatus": "PENDING"}, READY)
    assert (view.phase, view.reason) == (PENDING, "WaitingForDriverSlot")
    assert "runs 4 drivers at once and all are taken" in view.message
    started = placed({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, READY)
    assert started.phase == RUNNING and placed_condition(started)["status"] == "True"


def test_a_job_kueue_holds_names_its_queue() -> None:
    rayjob = {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "lab-q"}}, "spec": {"suspend": True}}
    view = placement(phase_from_rayjob({"jobDeploymentStatus": "Suspended"}), rayjob, None, None)
    assert (view.reason, view.message) == (
        "QueuedByKueue",
        "queued in Kueue LocalQueue 'lab-q': it starts when Kueue admits it",
    )


def test_every_pending_reason_comes_with_a_message() -> None:
    statuses = [None] + [{"jobDeploymentStatus": d, "jobStatus": j} for d, j, _ in TABLE]
    for st in statuses:
        for cluster in (None, {}, READY):
            view = placed(st or {}, cluster)
            assert view.message and view.reason, (st, cluster)
            if view.phase == PENDING:
                assert placed_condition(view)["message"] == view.message
