"""A job whose data URI does not exist: ``Failed``, with the run's own one-line error as the message.

The URI lies under the lab's prefixes, so the operator admits it and the RayJob runs; ``autolfads run``
checks its inputs before anything else and exits with one line naming the URI, which KubeRay reports inside
Ray's message and the operator copies into ``status.message``.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.platform import DATA_BUCKET, Platform

pytestmark = pytest.mark.slow


def test_a_job_whose_data_does_not_exist_fails_with_the_runs_one_line_error(lab_cluster: Platform) -> None:
    platform = lab_cluster
    name = f"nodata-{uuid.uuid4().hex[:6]}"
    missing = f"s3://{DATA_BUCKET}/sessions/nobody/absent.h5"
    platform.apply_job(name, platform.job_spec(dataURI=missing))
    status = platform.wait_phase(name, ("Succeeded", "Failed"), timeout=240)
    assert status["phase"] == "Failed", status
    assert status["reason"] == "AppFailed"
    message = status["message"]
    assert "\n" not in message
    assert message.startswith("autolfads run failed (exit code 1): cannot read " + missing), message
    assert message.endswith("no such file or object"), message
    assert platform.keys(platform.run_prefix(name)) == []  # nothing written for a run that never started
