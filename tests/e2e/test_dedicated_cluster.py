"""A dedicated cluster: the same job with ``dedicatedCluster``, on a Ray cluster of its own.

The operator renders the cluster into the RayJob (``rayClusterSpec``: a head that takes no work and
``ceil(4 × 0.5) = 2`` GPU workers); the KubeRay stand-in creates that RayCluster, starts it, runs the job on
it and, the job finished (``shutdownAfterJobFinishes``), deletes it: the object and every Ray process.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.kuberay import ActorWatch, LocalRayCluster
from tests.e2e.platform import LAB_NS, Platform
from tests.e2e.raynodes import wait_until
from tests.e2e.test_shared_cluster import REFERENCE_FILES, assert_two_trials_per_worker

pytestmark = pytest.mark.slow


def test_a_dedicated_cluster_runs_the_job_and_is_removed_at_the_end(platform: Platform) -> None:
    name = f"dedicated-{uuid.uuid4().hex[:6]}"
    seen: list[str] = []

    def own_cluster() -> LocalRayCluster | None:
        cluster_name = (platform.rayjob(name).get("status") or {}).get("rayClusterName") or ""
        return platform.standin.cluster(LAB_NS, cluster_name)

    with ActorWatch(own_cluster) as trials:
        platform.apply_job(name, platform.job_spec(dedicatedCluster={}))
        status = platform.wait_phase(name, ("Succeeded", "Failed"), seen=seen)
    assert status["phase"] == "Succeeded", f"{status.get('message')}\n{platform.diagnose(name)}"
    assert seen[0] == "Pending" and seen[-2:] == ["Running", "Succeeded"]
    assert set(platform.zip_names(status["outputURI"])) >= REFERENCE_FILES

    cluster_name = platform.rayjob(name)["status"]["rayClusterName"]
    (cluster,) = platform.standin.started(LAB_NS, cluster_name)
    assert len(cluster.workers) == 2  # ceil(population 4 x 0.5 GPU)
    # Where the trials ran, from every epoch's report (node id): both workers, never the head. The live
    # two-at-a-time count is the shared-cluster scenario's; here the state API of a cluster that lives only
    # as long as its job answered empty once in a loaded run, so it is reported, not required.
    rows = [r for r in platform.trial_rows(name) if "node_id" in r]
    workers = set(cluster.node_ids) - cluster.head_ids
    assert {r["worker_id"] for r in rows} == {0, 1, 2, 3}, str(trials)
    assert {r["node_id"] for r in rows} == workers, str(trials)
    if trials.most:
        assert_two_trials_per_worker(cluster, trials.most, rows, str(trials))

    def removed() -> bool:
        objects = platform.kube.custom.list_namespaced_custom_object("ray.io", "v1", LAB_NS, "rayclusters")
        gone = cluster_name not in {o["metadata"]["name"] for o in objects["items"]}
        return gone and not any(node.pids() for node in cluster.nodes())

    wait_until(removed, 60, f"RayCluster {cluster_name} and its processes to go")
