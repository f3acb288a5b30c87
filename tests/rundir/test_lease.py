"""OUT's lease: one holder at a time, named to whoever is refused; released however the holder ends.

Local leases race between real processes; object-storage leases against moto's S3 server, through the
same conditional writes (``If-None-Match``/``If-Match``) AWS S3 and MinIO honour.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autolfads.rundir.layout import LEASE_NAME
from autolfads.rundir.lease import LeaseHeld, acquire_lease
from tests.services import list_keys

HOLD = textwrap.dedent(
    """
    import sys, time
    from autolfads.rundir.lease import LeaseHeld, acquire_lease
    start_at, out, ttl, hold = float(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lease = acquire_lease(out, "autolfads test", ttl_s=ttl)
    except LeaseHeld as refused:
        print("REFUSED", refused, flush=True)
        sys.exit(3)
    print("HOLDING", flush=True)
    try:
        end = time.monotonic() + hold
        while time.monotonic() < end:  # a run's main loop: it comes back to Python often
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("LOST", flush=True)
        sys.exit(4)
    lease.release()
    print("RELEASED", flush=True)
    """
)


def _holder(
    out: str, *, ttl: float = 120.0, hold: float = 30.0, start_at: float | None = None
) -> subprocess.Popen:
    start = start_at if start_at is not None else time.time()
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(start), out, str(ttl), str(hold)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _wait_holding(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("HOLDING"), (line, proc.stderr.read() if proc.stderr else "")


def _race(out: str, n: int = 3) -> list[str]:
    """``n`` processes asking for the lease at the same instant; their first lines."""
    start_at = time.time() + 2.0  # every interpreter is up by then
    procs = [_holder(out, hold=1.0, start_at=start_at) for _ in range(n)]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    return [text.splitlines()[0] if text else "" for text in outputs]


# ------------------------------------------------------------------------------------------ local
def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    lease = acquire_lease(str(tmp_path / "out"), "autolfads run")
    try:
        with pytest.raises(LeaseHeld) as refused:
            acquire_lease(str(tmp_path / "out"), "autolfads train")
        message = str(refused.value)
        assert f"is in use by autolfads run (pid {os.getpid()} on {socket.gethostname()}" in message
        assert "\n" not in message
    finally:
        lease.release()
    assert not (tmp_path / "out" / LEASE_NAME).exists()  # released: the file goes
    acquire_lease(str(tmp_path / "out"), "autolfads train").release()


def test_local_processes_racing_for_one_out_get_exactly_one_lease(tmp_path: Path) -> None:
    firsts = _race(str(tmp_path / "out"))
    assert sorted(line.split()[0] for line in firsts) == ["HOLDING", "REFUSED", "REFUSED"], firsts


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    proc = _holder(out)
    _wait_holding(proc)
    with pytest.raises(LeaseHeld, match=f"pid {proc.pid}"):
        acquire_lease(out, "autolfads run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (tmp_path / "out" / LEASE_NAME).exists()  # the file stays behind ...
    acquire_lease(out, "autolfads run").release()  # ... but the kernel dropped the lock with the process


# ------------------------------------------------------------------------------------------ s3
@pytest.mark.slow
def test_object_storage_lease_refuses_a_second_holder_and_is_deleted_on_release(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/runs/a"
    lease = acquire_lease(out, "autolfads run")
    try:
        with pytest.raises(
            LeaseHeld, match=r"is in use by autolfads run \(pid \d+ on .*expires 1\d\d s after"
        ):
            acquire_lease(out, "autolfads run")
        body = json.loads(_read(s3_bucket, f"runs/a/{LEASE_NAME}"))
        assert body["pid"] == os.getpid() and body["ttl_s"] == 120.0 and body["token"] == lease.token
    finally:
        lease.release()
    assert list_keys(os.environ["AWS_ENDPOINT_URL"], s3_bucket) == []
    acquire_lease(out, "autolfads run").release()


@pytest.mark.slow
def test_object_storage_processes_racing_get_exactly_one_lease(s3_bucket: str) -> None:
    firsts = _race(f"s3://{s3_bucket}/race")
    assert sorted(line.split()[0] for line in firsts) == ["HOLDING", "REFUSED", "REFUSED"], firsts


@pytest.mark.slow
def test_an_expired_object_lease_is_taken_over(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/runs/b"
    proc = _holder(out, ttl=2.0)
    _wait_holding(proc)
    proc.send_signal(signal.SIGKILL)  # a dead holder: no renewals, no release
    proc.wait(timeout=30)
    with pytest.raises(LeaseHeld):
        acquire_lease(out, "autolfads run")  # not expired yet
    time.sleep(3.5)
    lease = acquire_lease(out, "autolfads run")  # expired by the server's clock: taken over
    lease.release()


@pytest.mark.slow
def test_a_resumed_run_waits_for_a_dead_holders_lease_to_expire(s3_bucket: str) -> None:
    # A KubeRay retry: the killed driver's lease is still there, unrenewed; --resume waits it out.
    out = f"s3://{s3_bucket}/runs/retry"
    proc = _holder(out, ttl=3.0)
    _wait_holding(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    started = time.monotonic()
    lease = acquire_lease(out, "autolfads run", wait_for_stale=True)
    waited = time.monotonic() - started
    lease.release()
    assert 0.5 < waited < 20


@pytest.mark.slow
def test_a_resumed_run_is_refused_at_once_when_the_holder_renews(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/runs/alive"
    proc = _holder(out, ttl=6.0, hold=30.0)  # renews every 2 s
    _wait_holding(proc)
    try:
        # A renewal answers it: without one the wait ends at its deadline (TTL + 10 s) with the plain
        # "held" refusal. No wall-clock bound: on a loaded 2-core machine the holder's renewals and the
        # waiter's polls drift by seconds (7.1 s against a 7 s bound failed a CI run that passed before).
        with pytest.raises(LeaseHeld, match="it renewed its lease while this run waited: it is running"):
            acquire_lease(out, "autolfads run", wait_for_stale=True)
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, 120.0), ("", 120.0), ("30", 30.0), ("6", 6.0), ("5", None), ("soon", None)]
)
def test_the_lease_ttl_comes_from_the_environment(
    value: str | None, expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autolfads.errors import StorageError
    from autolfads.rundir.lease import TTL_ENV, default_ttl

    if value is not None:
        monkeypatch.setenv(TTL_ENV, value)
    if expected is None:
        with pytest.raises(StorageError, match=f"{TTL_ENV}="):
            default_ttl()
    else:
        assert default_ttl() == expected


@pytest.mark.slow
def test_a_holder_whose_lease_was_taken_stops_itself(s3_bucket: str) -> None:
    out = f"s3://{s3_bucket}/runs/c"
    proc = _holder(out, ttl=1.5)
    _wait_holding(proc)
    from tests.services import _boto_s3

    _boto_s3(os.environ["AWS_ENDPOINT_URL"]).put_object(
        Bucket=s3_bucket, Key=f"runs/c/{LEASE_NAME}", Body=b'{"holder": "someone else"}'
    )
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 4 and "LOST" in stdout, (stdout, stderr)
    assert "lost the lease on" in stderr


def _read(bucket: str, key: str) -> bytes:
    from tests.services import _boto_s3

    return _boto_s3(os.environ["AWS_ENDPOINT_URL"]).get_object(Bucket=bucket, Key=key)["Body"].read()
