"""The RayJob's driver killed: KubeRay retries on a new cluster and ``--resume`` continues the run.

A dedicated cluster (population 2: one GPU worker) with ``backoffLimit: 1`` (a lab's shared cluster
refuses retries, as KubeRay does). Once the first generation's resume point is in the bucket the driver
gets SIGKILL (no clean-up, its lease left behind); the Ray job fails, KubeRay counts the failure, deletes
the cluster, starts a new one and submits the same entrypoint, which always carries ``--resume``. The retry
waits out the dead driver's lease, continues from the last completed generation, and the job succeeds with
each tournament recorded once.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
import uuid

import pytest

from tests.e2e.platform import LAB_NS, Platform
from tests.e2e.raynodes import wait_until
from tests.e2e.test_shared_cluster import REFERENCE_FILES

pytestmark = pytest.mark.slow

# Two 2-epoch generations: the kill lands in the second, right after the first boundary's resume point is
# in the bucket (a generation takes tens of seconds here; the kill follows within a second or two), and the
# retry trains that generation again from the boundary. A third generation would only add minutes.
EPOCHS = 4


def test_a_killed_driver_is_retried_and_resumes_from_the_last_generation(platform: Platform) -> None:
    name = f"retried-{uuid.uuid4().hex[:6]}"
    prefix = platform.run_prefix(name)
    spec = platform.job_spec(dedicatedCluster={}, backoffLimit=1, maxEpochs=EPOCHS, population=2)
    platform.apply_job(name, spec)
    platform.wait_phase(name, ("Running",))

    def resume_point() -> dict | None:
        if f"{prefix}/pbt_state.json" not in platform.keys(prefix):
            return None
        return json.loads(platform.read(f"{prefix}/pbt_state.json"))

    state = wait_until(resume_point, 300, f"{prefix}/pbt_state.json in the bucket", poll=0.5)
    rayjob = platform.rayjob(name)
    pid = wait_until(lambda: platform.standin.driver_pid(LAB_NS, rayjob), 30, "the driver's pid")
    first_cluster = rayjob["status"]["rayClusterName"]
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()

    status = platform.wait_phase(name, ("Succeeded", "Failed"), timeout=420)
    assert status["phase"] == "Succeeded", f"{status.get('message')}\n{platform.diagnose(name)}"
    rayjob = platform.rayjob(name)
    assert rayjob["status"]["failed"] == 1 and rayjob["status"]["succeeded"] == 1
    assert rayjob["status"]["rayClusterName"] != first_cluster  # the retry ran on a new cluster
    assert set(platform.zip_names(status["outputURI"])) >= REFERENCE_FILES

    # Continued, not restarted: after the kill no member trained an epoch before the resume point's boundary.
    boundary = resume_boundary(state)
    rows = [r for r in platform.trial_rows(name) if "cur_epoch" in r]
    after = [r for r in rows if float(r["reported_at"]) > killed_at]
    seen = sorted((int(r["cur_epoch"]), r["worker_id"], float(r["reported_at"]) > killed_at) for r in rows)
    why = f"boundary {boundary}, rows (epoch, member, after the kill): {seen}\n{platform.diagnose(name)}"
    assert after, why
    assert min(int(r["cur_epoch"]) for r in after) >= boundary, why
    assert {int(r["cur_epoch"]) for r in rows} == set(range(EPOCHS)), why

    history = list(csv.DictReader(io.StringIO(platform.read(f"{prefix}/pbt_history.csv").decode())))
    tournaments = [(row["generation"], row["loser"]) for row in history]
    assert tournaments and len(tournaments) == len(set(tournaments)), history


def resume_boundary(state: dict) -> int:
    """The epoch the resume point's members continue from."""
    for key in ("boundary", "epoch", "last_boundary"):
        if isinstance(state.get(key), int):
            return int(state[key])
    raise AssertionError(f"pbt_state.json names no boundary: {sorted(state)}")
