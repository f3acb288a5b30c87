"""Where the run's progress.json is read from, and with which storage credentials."""

from __future__ import annotations

import json
from pathlib import Path

from operators.progress import read_progress, run_dirs, storage_options


def test_run_dir_is_tried_before_the_output_root() -> None:
    assert run_dirs("s3://out/runs/", "job") == ["s3://out/runs/job", "s3://out/runs"]


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
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "progress.json").write_text(json.dumps({"generation": 2}))
    assert read_progress(f"file://{tmp_path}", "job", {}) == ({"generation": 2}, f"file://{tmp_path}/job")


def test_progress_falls_back_to_the_output_root(tmp_path: Path) -> None:
    (tmp_path / "progress.json").write_text(json.dumps({"generation": 1}))
    assert read_progress(f"file://{tmp_path}", "job", {}) == ({"generation": 1}, f"file://{tmp_path}")


def test_no_progress_yet_is_none(tmp_path: Path) -> None:
    assert read_progress(f"file://{tmp_path}", "job", {}) is None
