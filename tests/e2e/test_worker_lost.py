"""A worker node of the lab's cluster dies mid-run: its trials come back from storage on the other worker.

A population of two, one member per GPU worker. Once both members' first-generation checkpoints are in
the bucket, one GPU worker "pod" is killed (every
process of that Ray node, SIGKILL) and not replaced (as when no GPU node is free for the new Pod). Ray Tune
restarts the lost trials from their last checkpoints in object storage, on the surviving worker (the head
takes no work); the job still succeeds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e import raynodes
from tests.e2e.kuberay import ActorWatch
from tests.e2e.platform import LAB_CLUSTER, LAB_NS, Platform
from tests.e2e.raynodes import wait_until
from tests.e2e.test_shared_cluster import REFERENCE_FILES

pytestmark = pytest.mark.slow

EPOCHS = 8  # four 2-epoch generations: the worker dies after the first, with most of the run ahead
POPULATION = 2  # one member per GPU worker (the least that shows a restore on the other node)


@pytest.fixture
def no_replacement(lab_cluster: Platform) -> Iterator[Platform]:
    lab_cluster.standin.replace_lost_workers = False
    try:
        yield lab_cluster
    finally:
        lab_cluster.standin.replace_lost_workers = True  # KubeRay re-creates the Pod afterwards


def test_a_lost_worker_node_s_trials_are_restored_on_the_other(no_replacement: Platform) -> None:
    platform = no_replacement
    cluster = platform.standin.cluster(LAB_NS, LAB_CLUSTER)
    assert cluster is not None and len(cluster.workers) == 2
    name = f"lost-{uuid.uuid4().hex[:6]}"
    trials = f"{platform.run_prefix(name)}/trials/"
    platform.apply_job(name, platform.job_spec(population=POPULATION, maxEpochs=EPOCHS))
    platform.wait_phase(name, ("Running",))

    def checkpointed_members() -> bool:
        keys = platform.keys(trials)
        members = {k.split("/")[-3] for k in keys if "/checkpoint_" in k and k.endswith("model.ckpt")}
        return len(members) >= POPULATION

    wait_until(checkpointed_members, 300, "a checkpoint of every member in the bucket", poll=0.5)
    # and the driver has seen them: the first tournament is over (a checkpoint uploaded by a member whose
    # report never reached the driver is not one Ray Tune can restore from; the member then redoes its
    # generation, which is not what this scenario checks)
    rayjob = platform.rayjob(name)["metadata"]["name"]
    wait_until(
        lambda: "generation 1 ended" in platform.standin.submitter_log(LAB_NS, rayjob),
        120,
        "the driver to log the end of the first generation",
        poll=0.2,
    )
    victim, survivor = cluster.workers
    lost_ids = cluster.pod_of(victim)
    victim.kill()
    killed_at = time.time()

    def victim_marked_dead() -> bool:
        # Until Ray has noticed, its state API still lists the dead node's actors as alive: the placement
        # check below starts once the node is gone from a (non-empty) answer.
        alive = {n["node_id"] for n in raynodes.alive_nodes(cluster.dashboard_port, cluster.token)}
        return bool(alive) and not alive & lost_ids

    wait_until(victim_marked_dead, 120, "Ray to mark the killed worker node dead", poll=0.5)
    with ActorWatch(lambda: cluster) as actors:
        status = platform.wait_phase(name, ("Succeeded", "Failed"), timeout=420)
    assert status["phase"] == "Succeeded", f"{status.get('message')}\n{platform.diagnose(name)}"
    assert set(platform.zip_names(status["outputURI"])) >= REFERENCE_FILES

    rows = [r for r in platform.trial_rows(name) if "node_id" in r]
    before = {
        r["worker_id"] for r in rows if r["node_id"] in lost_ids and float(r["reported_at"]) < killed_at
    }
    after = [r for r in rows if float(r["reported_at"]) > killed_at]
    assert before, "no trial ran on the killed worker before it died"
    assert {r["node_id"] for r in after} <= cluster.pod_of(survivor)
    # The lost members continued from their checkpoints (epoch 2 on), not from scratch, on the survivor.
    seen = sorted(
        (int(r["cur_epoch"]), r["worker_id"], r["node_id"] in lost_ids, float(r["reported_at"]) > killed_at)
        for r in rows
    )
    why = f"rows (epoch, member, on the lost node, after the kill): {seen}\n{platform.diagnose(name)}"
    print(why)  # in full under "Captured stdout" if an assertion below fails (its message is truncated)
    # the driver's word on the lost node (autolfads.tune.node_loss), when a restart had to wait for it
    log = platform.standin.submitter_log(LAB_NS, rayjob)
    print("\n".join(line for line in log.splitlines() if "Ray node" in line))
    # no member left the population (a member reset into a dead kept process once did, job "Succeeded")
    members = {r["worker_id"] for r in rows}
    assert len(members) == POPULATION and {r["worker_id"] for r in after} == members, why
    last_epoch = {m: max(int(r["cur_epoch"]) for r in rows if r["worker_id"] == m) for m in members}
    assert len(set(last_epoch.values())) == 1, (last_epoch, why)  # every member trained to the end
    for member in before:
        epochs = [int(r["cur_epoch"]) for r in after if r["worker_id"] == member]
        assert epochs and min(epochs) >= 2, (member, epochs, why)
    assert set(actors.most) <= cluster.pod_of(survivor) and max(actors.most.values()) <= 2, actors.most
