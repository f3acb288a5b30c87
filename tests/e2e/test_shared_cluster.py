"""The lab's shared cluster: ``kubectl apply`` of an AutoLFADSJob → ``autolfads.zip`` in the bucket.

The chart's RayCluster for the lab (a CPU head that takes no work, two workers of one GPU each) runs as real
Ray under the KubeRay stand-in; the job (population 4, half a GPU per trial, its config in a ConfigMap)
goes through the real operator, KubeRay's submitter command and ``autolfads run`` on that cluster, with its
data and outputs only in the (moto) S3 bucket and its runs in a basic-auth MLflow server.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.e2e.kuberay import ActorWatch
from tests.e2e.platform import LAB_CLUSTER, LAB_NS, Platform

pytestmark = pytest.mark.slow

REFERENCE_FILES = {"fitlog.csv", "lfads_output_sess0.h5", "model.ckpt"}


@pytest.fixture(scope="module")
def job(lab_cluster: Platform) -> dict[str, Any]:
    platform = lab_cluster
    name = f"shared-{uuid.uuid4().hex[:6]}"
    seen: list[str] = []
    with ActorWatch(lambda: platform.standin.cluster(LAB_NS, LAB_CLUSTER)) as trials:
        applied = platform.apply_job(name, platform.job_spec())
        status = platform.wait_phase(name, ("Succeeded", "Failed"), seen=seen)
    assert status["phase"] == "Succeeded", f"{status.get('message')}\n{platform.diagnose(name)}"
    log = platform.standin.submitter_log(LAB_NS, status["rayJobName"])
    return {"name": name, "status": status, "phases": seen, "applied": applied, "log": log,
            "trials_at_once": dict(trials.most), "watch": str(trials)}  # fmt: skip


def test_the_job_goes_pending_running_succeeded(job: dict[str, Any]) -> None:
    assert job["phases"][0] == "Pending"
    assert job["phases"][-2:] == ["Running", "Succeeded"]


def test_the_output_uri_names_a_zip_in_the_bucket_with_the_reference_files(
    lab_cluster: Platform, job: dict[str, Any]
) -> None:
    uri = job["status"]["outputURI"]
    assert uri == f"s3://e2e-results/runs/{LAB_NS}/{job['name']}/autolfads.zip"
    assert set(lab_cluster.zip_names(uri)) >= REFERENCE_FILES


def test_mlflow_has_the_parent_run_and_one_child_per_member(
    lab_cluster: Platform, job: dict[str, Any]
) -> None:
    runs = lab_cluster.mlflow.runs(lab_cluster.experiment_id)
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    parent = job["status"]["mlflowRunID"]
    assert parent in tags
    children = [run_id for run_id, t in tags.items() if t.get("mlflow.parentRunId") == parent]
    assert len(children) == 4


def test_every_trial_ran_on_a_worker_two_at_a_time_none_on_the_head(
    lab_cluster: Platform, job: dict[str, Any]
) -> None:
    cluster = lab_cluster.standin.cluster(LAB_NS, LAB_CLUSTER)
    assert cluster is not None
    rows = lab_cluster.trial_rows(job["name"])
    assert_two_trials_per_worker(cluster, job["trials_at_once"], rows, job["watch"])


def assert_two_trials_per_worker(
    cluster: Any, trials_at_once: dict[str, int], rows: list[dict[str, Any]], watch: str = ""
) -> None:
    """Ray's trial actors, counted live on each node: two at a time on each GPU worker, none on the head;
    every epoch each member reported came from a worker."""
    workers = set(cluster.node_ids) - cluster.head_ids
    assert sorted(trials_at_once.values()) == [2, 2], watch
    assert set(trials_at_once) <= workers, f"trial actors off the workers: {set(trials_at_once) - workers}"
    rows = [r for r in rows if "node_id" in r]
    assert {r["worker_id"] for r in rows} == {0, 1, 2, 3}
    assert {r["node_id"] for r in rows} <= workers


def test_posterior_sampling_ran_on_a_worker(lab_cluster: Platform, job: dict[str, Any]) -> None:
    cluster = lab_cluster.standin.cluster(LAB_NS, LAB_CLUSTER)
    assert cluster is not None
    found = re.search(r"posterior sampling ran on Ray node ([0-9a-f]+)", job["log"])
    assert found, job["log"][-3000:]
    assert not cluster.node_ids[found.group(1)].endswith("-head")
