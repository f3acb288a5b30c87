"""Where the run's progress.json is read from, with which storage credentials, and within what bounds."""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators import progress
from operators.progress import (
    PROGRESS_FIELDS,
    ProgressReadError,
    ReadBackoff,
    allowed_endpoints,
    checked_progress,
    normalise_endpoint,
    read_progress,
    run_dir,
    run_dirs,
    storage_options,
)
from tests.operator.hostile import GOOD, LIAR, Hostile, hostile_endpoint


def test_each_job_gets_its_own_directory_under_the_output_uri() -> None:
    assert run_dir("s3://out/runs/", "lab", "job") == "s3://out/runs/lab/job"


def test_progress_is_looked_for_in_the_run_dir_then_under_its_name() -> None:
    assert run_dirs("s3://out/runs", "lab", "job") == ["s3://out/runs/lab/job", "s3://out/runs/lab/job/job"]


def test_s3_options_come_from_the_secrets_aws_variables() -> None:
    secret = {
        "AWS_ACCESS_KEY_ID": "AK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    assert storage_options(secret, "s3://b/k") == {
        "key": "AK",
        "secret": "SK",
        "client_kwargs": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-1"},
    }


def test_non_s3_uris_get_no_credentials() -> None:
    assert storage_options({"AWS_ACCESS_KEY_ID": "AK"}, "file:///tmp/x") == {}


def test_progress_is_read_from_the_run_dir(tmp_path: Path) -> None:
    (tmp_path / "lab" / "job").mkdir(parents=True)
    (tmp_path / "lab" / "job" / "progress.json").write_text(json.dumps({"generation": 2}))
    assert read_progress(f"file://{tmp_path}", "lab", "job", {}) == (
        {"generation": 2},
        f"file://{tmp_path}/lab/job",
    )


def test_progress_nested_under_the_name_is_found_too(tmp_path: Path) -> None:
    (tmp_path / "lab" / "job" / "job").mkdir(parents=True)
    (tmp_path / "lab" / "job" / "job" / "progress.json").write_text(json.dumps({"generation": 1}))
    found = read_progress(f"file://{tmp_path}", "lab", "job", {})
    assert found == ({"generation": 1}, f"file://{tmp_path}/lab/job/job")


def test_a_run_writes_only_fields_the_operator_keeps_and_keeps_them_unchanged(tmp_path: Path) -> None:
    """What RunProgress writes passes whole; the operator's status and its job series read only these."""
    from autolfads.tune.progress import RunProgress
    from tests.tune.toy import toy_settings

    record = RunProgress(tmp_path, toy_settings(), 6, mlflow_run_id="abc123").update(force=True)
    assert record is not None and set(PROGRESS_FIELDS) <= set(record)
    record.update(phase="sampling", phase_done=3, phase_total=10, phase_unit="batches", eta_s=1.5)
    kept = checked_progress({k: v for k, v in record.items() if v is not None})
    assert kept == {k: v for k, v in record.items() if v is not None and k in PROGRESS_FIELDS}


def test_progress_fields_of_the_wrong_type_or_size_are_dropped_before_any_handler_sees_them(
    tmp_path: Path,
) -> None:
    assert checked_progress(LIAR) == {}  # every field malformed: NaN, inf, 10**30, "pwned", lists, bools
    assert checked_progress({"surprise": 1, "phase": "training", "eta_s": 12}) == {
        "phase": "training",
        "eta_s": 12.0,
    }
    (tmp_path / "lab" / "liar").mkdir(parents=True)
    (tmp_path / "lab" / "liar" / "progress.json").write_text(json.dumps({**LIAR, "generation": 3}))
    assert read_progress(f"file://{tmp_path}", "lab", "liar", {})[0] == {"generation": 3}
    (tmp_path / "lab" / "deep" / "progress.json").parent.mkdir(parents=True)
    (tmp_path / "lab" / "deep" / "progress.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ProgressReadError, match="not JSON"):
        read_progress(f"file://{tmp_path}", "lab", "deep", {})


def test_no_progress_yet_is_none(tmp_path: Path) -> None:
    assert read_progress(f"file://{tmp_path}", "lab", "job", {}) is None


# ------------------------------------------------------------------ bounded reads (docs/security.md)
HOSTILE_SECRET = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def hostile_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hostile]:
    """The misbehaving endpoint in a process of its own, allowed by the admin; deadlines short so the test
    is quick (the rule, not the constant, is under test)."""
    monkeypatch.setattr(progress, "DEADLINE_S", 2.0)
    monkeypatch.setattr(progress, "READ_TIMEOUT_S", 1.0)  # the server sends a byte every 0.1 s
    with hostile_endpoint(own_process=True) as server:
        monkeypatch.setenv(progress.ALLOWED_ENDPOINTS_ENV, server.url)
        _read(server, "good")  # botocore parses its S3 model once per process: not part of a read
        yield server


def _read(server: Hostile, bucket: str) -> tuple[object, float, int]:
    """(result or the error, seconds, peak bytes allocated) of one read of s3://BUCKET/out/lab/job."""
    secret = {**HOSTILE_SECRET, "AWS_ENDPOINT_URL": server.url}
    tracemalloc.start()
    started = time.monotonic()
    try:
        found: object = read_progress(f"s3://{bucket}/out", "lab", "job", secret)
    except ProgressReadError as exc:
        found = exc
    elapsed = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return found, elapsed, peak


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        ("huge", "more than the 1000000 bytes allowed"),
        ("declared", "52428800 bytes, more than the 1000000 allowed"),
        ("slow", "no complete answer within 2 s"),
        ("slowheaders", "no complete answer within 2 s"),
        ("junk", "not JSON"),
        ("array", "expected a JSON object, got list"),
    ],
)
def test_a_hostile_answer_costs_bounded_time_and_memory(
    hostile_process: Hostile, bucket: str, message: str
) -> None:
    found, elapsed, peak = _read(hostile_process, bucket)
    assert isinstance(found, ProgressReadError) and message in str(found), found
    assert "\n" not in str(found)
    assert elapsed < progress.DEADLINE_S + 2 * progress.READ_TIMEOUT_S + 1.0
    assert peak < 4 * progress.MAX_PROGRESS_BYTES  # 50 MB were on offer


def test_a_well_formed_answer_is_read(hostile_process: Hostile) -> None:
    found, _, _ = _read(hostile_process, "good")
    assert found == (GOOD, "s3://good/out/lab/job")


def test_an_endpoint_the_admin_did_not_allow_is_never_contacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.ALLOWED_ENDPOINTS_ENV, "http://minio.autolfads:9000")
    with hostile_endpoint() as hostile:
        found, _, _ = _read(hostile, "good")
    assert isinstance(found, ProgressReadError) and "is not one the cluster admin allowed" in str(found)
    assert hostile.hits == []


def test_only_the_shared_schemes_are_read(tmp_path: Path) -> None:
    for uri in ("http://127.0.0.1:1/x", "gs://b/x", "memory://x", "ssh://h/x", "s3://b/../x", "file://h/x"):
        with pytest.raises(ProgressReadError, match=r"spec\.outputURI"):
            read_progress(uri, "lab", "job", {})


def test_a_symlink_out_of_the_output_directory_is_not_followed(tmp_path: Path) -> None:
    secret_file = tmp_path / "operator-secret.json"
    secret_file.write_text(json.dumps({"generation": 9, "mlflow_run_id": "leaked"}))
    (tmp_path / "out" / "lab" / "job").mkdir(parents=True)
    (tmp_path / "out" / "lab" / "job" / "progress.json").symlink_to(secret_file)
    with pytest.raises(ProgressReadError, match="leads outside"):
        read_progress(f"file://{tmp_path}/out", "lab", "job", {})


def test_a_local_file_over_the_cap_or_not_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lab" / "job").mkdir(parents=True)
    (tmp_path / "lab" / "job" / "progress.json").write_bytes(b" " * (progress.MAX_PROGRESS_BYTES + 1))
    with pytest.raises(ProgressReadError, match="more than the 1000000 allowed"):
        read_progress(f"file://{tmp_path}", "lab", "job", {})
    (tmp_path / "lab" / "job" / "progress.json").unlink()
    os.mkfifo(tmp_path / "lab" / "job" / "progress.json")  # a reader of a FIFO would block forever
    with pytest.raises(ProgressReadError, match="not a regular file"):
        read_progress(f"file://{tmp_path}", "lab", "job", {})


def test_endpoints_are_compared_normalised() -> None:
    allowed = allowed_endpoints(
        {progress.ALLOWED_ENDPOINTS_ENV: "http://MinIO.lab:9000 https://s3.example.org"}
    )
    assert allowed == {"http://minio.lab:9000", "https://s3.example.org:443"}
    assert normalise_endpoint("ftp://x") is None and normalise_endpoint("http://") is None


def test_backoff_doubles_per_failure_up_to_its_cap_and_resets() -> None:
    now = [0.0]
    backoff = ReadBackoff(base_s=30, cap_s=200, clock=lambda: now[0])
    assert backoff.ready()
    assert [backoff.failed() for _ in range(4)] == [30, 60, 120, 200]
    assert not backoff.ready()
    now[0] = 199.0
    assert not backoff.ready()
    now[0] = 200.0
    assert backoff.ready()
    backoff.succeeded()
    assert backoff.failed() == 30
