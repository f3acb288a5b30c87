"""Where the run's progress.json is read from, and with which storage credentials."""

from __future__ import annotations

import json
from pathlib import Path

from operators.progress import read_progress, run_dir, run_dirs, storage_options


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


def test_no_progress_yet_is_none(tmp_path: Path) -> None:
    assert read_progress(f"file://{tmp_path}", "lab", "job", {}) is None
