"""autolfads.storage against a real S3 API (moto's server on 127.0.0.1) and the local filesystem."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autolfads import storage
from autolfads.errors import StorageError
from tests.services import free_port, list_keys, moto_auth_enforced

# --- local paths (fast) ---------------------------------------------------------------------------------


def test_local_atomic_upload_replaces_the_file_and_leaves_no_temporaries(tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"new")
    target = tmp_path / "out" / "autolfads.zip"
    target.parent.mkdir()
    target.write_bytes(b"old")

    storage.atomic_upload(source, target)

    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["autolfads.zip"]


def test_local_uri_helpers_treat_file_urls_as_paths(tmp_path: Path) -> None:
    assert not storage.is_remote(tmp_path)
    assert storage.join_uri(f"file://{tmp_path}", "a", "b.txt") == str(tmp_path / "a" / "b.txt")
    assert storage.join_uri("s3://bucket/run/", "trials", "x.json") == "s3://bucket/run/trials/x.json"
    assert storage.download_to_local(tmp_path) == tmp_path


def test_local_check_readable_names_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(StorageError, match=r"cannot read .*nope\.h5: no such file"):
        storage.check_readable(missing)


def test_local_check_writable_refuses_a_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match=r"cannot write to .*file/run"):
        storage.check_writable(blocker / "run")


def test_ray_storage_for_a_local_directory_is_its_absolute_path(tmp_path: Path) -> None:
    assert storage.ray_storage(tmp_path / "trials") == (str(tmp_path / "trials"), None)


# --- S3 on moto (slow: one server per session) ----------------------------------------------------------


@pytest.mark.slow
def test_s3_round_trip_upload_exists_open_and_download(s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "data.h5"
    source.write_bytes(b"\x89HDF" + b"x" * 1000)
    uri = f"s3://{s3_bucket}/inputs/data.h5"

    storage.atomic_upload(source, uri)

    assert storage.exists(uri)
    assert not storage.exists(f"s3://{s3_bucket}/inputs/other.h5")
    with storage.open_uri(uri) as handle:
        assert handle.read() == source.read_bytes()
    local = storage.download_to_local(uri, cache=tmp_path / "cache")
    assert local.read_bytes() == source.read_bytes()
    assert local.is_relative_to(tmp_path / "cache")
    assert list_keys(storage.endpoint_url() or "", s3_bucket) == ["inputs/data.h5"]


@pytest.mark.slow
def test_s3_download_is_refreshed_when_the_object_changes(s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/data.h5"
    storage.atomic_write_bytes(b"first", uri)
    first = storage.download_to_local(uri, cache=tmp_path)
    assert first.read_bytes() == b"first"

    storage.atomic_write_bytes(b"second version", uri)

    assert storage.download_to_local(uri, cache=tmp_path).read_bytes() == b"second version"


@pytest.mark.slow
def test_s3_copy_local_directory_keeps_the_tree(s3_bucket: str, tmp_path: Path) -> None:
    (tmp_path / "run" / "plots").mkdir(parents=True)
    (tmp_path / "run" / "fitlog.csv").write_text("epoch\n0\n")
    (tmp_path / "run" / "plots" / "recon.png").write_bytes(b"png")

    storage.copy_local_to_uri(tmp_path / "run", f"s3://{s3_bucket}/out")

    assert sorted(list_keys(storage.endpoint_url() or "", s3_bucket)) == [
        "out/fitlog.csv",
        "out/plots/recon.png",
    ]


@pytest.mark.slow
def test_s3_atomic_upload_whose_final_copy_fails_leaves_no_object(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    async def refuse_copy(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("copy refused by the test")

    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", refuse_copy)
    source = tmp_path / "autolfads.zip"
    source.write_bytes(b"PK" + b"z" * 5000)

    with pytest.raises(StorageError, match=r"cannot write s3://.*/run/autolfads\.zip"):
        storage.atomic_upload(source, f"s3://{s3_bucket}/run/autolfads.zip")

    assert list_keys(storage.endpoint_url() or "", s3_bucket) == []


@pytest.mark.slow
def test_s3_upload_killed_before_commit_leaves_only_a_temporary_key(s3_bucket: str, tmp_path: Path) -> None:
    """A process killed (SIGKILL) between upload and commit: no complete-looking zip, the old one intact."""
    endpoint = storage.endpoint_url() or ""
    final = f"s3://{s3_bucket}/run/autolfads.zip"
    storage.atomic_write_bytes(b"previous complete zip", final)
    source = tmp_path / "autolfads.zip"
    source.write_bytes(b"PK" + b"n" * 200_000)
    script = textwrap.dedent(
        f"""
        import os, signal, s3fs
        from autolfads import storage

        async def die(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        s3fs.S3FileSystem._cp_file = die
        storage.atomic_upload({str(source)!r}, {final!r})
        """
    )

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)

    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    keys = list_keys(endpoint, s3_bucket, "run/")
    leftovers = sorted(set(keys) - {"run/autolfads.zip"})
    assert "run/autolfads.zip" in keys
    assert len(leftovers) == 1
    assert leftovers[0].startswith("run/.tmp-")
    with storage.open_uri(final) as handle:
        assert handle.read() == b"previous complete zip"


@pytest.mark.slow
def test_s3_wrong_credentials_give_one_clear_error_and_write_nothing(
    s3_bucket: str, tmp_path: Path, moto_server: str
) -> None:
    source = tmp_path / "autolfads.zip"
    source.write_bytes(b"PK")
    uri = f"s3://{s3_bucket}/run"

    with moto_auth_enforced(moto_server):
        with pytest.raises(StorageError) as writable:
            storage.check_writable(uri)
        with pytest.raises(StorageError) as upload:
            storage.atomic_upload(source, f"{uri}/autolfads.zip")

    for err in (writable, upload):
        message = str(err.value)
        assert "\n" not in message
        assert f"s3://{s3_bucket}/run" in message
        assert "access denied: check AWS_ACCESS_KEY_ID" in message
        assert moto_server in message
    assert list_keys(moto_server, s3_bucket) == []


@pytest.mark.slow
def test_s3_missing_bucket_is_named(s3_env: str) -> None:
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-x' does not exist"):
        storage.check_writable("s3://no-such-bucket-x/run")
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-x' does not exist"):
        storage.check_readable("s3://no-such-bucket-x/data.h5")


@pytest.mark.slow
def test_s3_missing_object_is_named(s3_bucket: str) -> None:
    with pytest.raises(StorageError, match=rf"cannot read s3://{s3_bucket}/data\.h5 .*: no such object"):
        storage.check_readable(f"s3://{s3_bucket}/data.h5")


@pytest.mark.slow
def test_s3_unreachable_endpoint_is_reported_quickly(monkeypatch: pytest.MonkeyPatch, s3_env: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)

    with pytest.raises(StorageError) as err:
        storage.check_writable("s3://bucket/run")

    assert "the storage endpoint cannot be reached" in str(err.value)
    assert dead in str(err.value)


@pytest.mark.slow
def test_s3_ray_storage_filesystem_writes_to_the_endpoint(s3_bucket: str) -> None:
    path, fs = storage.ray_storage(f"s3://{s3_bucket}/runs/x/trials")
    assert path == f"{s3_bucket}/runs/x/trials"
    assert fs is not None

    with fs.open_output_stream(f"{path}/probe.txt") as out:
        out.write(b"from pyarrow")

    with storage.open_uri(f"s3://{s3_bucket}/runs/x/trials/probe.txt") as handle:
        assert handle.read() == b"from pyarrow"


# --- RunMirror: a run directory in object storage -------------------------------------------------------


@pytest.mark.slow
def test_run_mirror_pushes_changes_only_and_pulls_them_back(s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/runs/demo"
    mirror = storage.RunMirror(uri, tmp_path / "stage", min_interval_s=0)
    stage = mirror.local_dir
    (stage / "progress.json").write_text('{"generation": 0}')
    (stage / "config.yaml").write_text("model: {}\n")
    (stage / "plots").mkdir()
    (stage / "plots" / "recon.png").write_bytes(b"\x89PNG")
    (stage / "trials").mkdir()
    (stage / "trials" / "ckpt.bin").write_bytes(b"ray writes these itself")
    (stage / ".progress.json.tmp").write_text("half")

    first = mirror.push()
    (stage / "progress.json").write_text('{"generation": 1}')
    second = mirror.push()

    assert sorted(first) == [f"{uri}/config.yaml", f"{uri}/plots/recon.png", f"{uri}/progress.json"]
    assert second == [f"{uri}/progress.json"]
    assert sorted(list_keys(storage.endpoint_url() or "", s3_bucket)) == [
        "runs/demo/config.yaml",
        "runs/demo/plots/recon.png",
        "runs/demo/progress.json",
    ]
    again = storage.RunMirror(uri, tmp_path / "resumed")
    pulled = again.pull()
    assert sorted(p.relative_to(again.local_dir).as_posix() for p in pulled) == [
        "config.yaml",
        "plots/recon.png",
        "progress.json",
    ]
    assert (again.local_dir / "progress.json").read_text() == '{"generation": 1}'
    assert again.push() == []  # nothing changed since the pull


def test_run_mirror_pushes_the_resume_point_after_the_results_it_follows(tmp_path: Path) -> None:
    # A driver killed mid-push must not leave a resume state in the bucket whose results are not there.
    mirror = storage.RunMirror("s3://bucket/run", tmp_path / "stage", min_interval_s=0)
    for name in ("pbt_state.json", "trial_results.jsonl", "stopper_state.json", "zz.csv", "config.yaml"):
        (mirror.local_dir / name).write_text("{}")
    order = [p.name for p in mirror._files()]
    assert order[-2:] == ["stopper_state.json", "pbt_state.json"]
    assert order[:3] == ["config.yaml", "trial_results.jsonl", "zz.csv"]


@pytest.mark.slow
def test_run_mirror_as_a_listener_warns_once_and_never_raises(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    mirror = storage.RunMirror("s3://no-such-bucket-y/run", tmp_path, min_interval_s=0)
    (tmp_path / "progress.json").write_text("{}")

    for _ in range(3):
        mirror({"generation": 0})

    warnings = [r for r in caplog.records if "no-such-bucket-y" in r.getMessage()]
    assert len(warnings) == 1
    assert "does not exist" in warnings[0].getMessage()


def test_run_mirror_refuses_a_local_path(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="needs an object-storage URI"):
        storage.RunMirror(str(tmp_path))


@pytest.mark.slow
def test_run_locations_are_checked_and_an_s3_run_is_not_overwritten(s3_bucket: str, tmp_path: Path) -> None:
    data = f"s3://{s3_bucket}/data.h5"
    out = f"s3://{s3_bucket}/runs/demo"
    with pytest.raises(StorageError, match=r"cannot read s3://.*/data\.h5 .*: no such object"):
        storage.check_run_locations([data], out, resume=False)
    storage.atomic_write_bytes(b"\x89HDF", data)
    storage.check_run_locations([data], out, resume=False)

    storage.atomic_write_bytes(b"PK", f"{out}/autolfads.zip")

    with pytest.raises(StorageError, match=r"--out s3://.*/runs/demo already holds a run; pass --resume"):
        storage.check_run_locations([data], out, resume=False)
    storage.check_run_locations([data], out, resume=True)


# --- keys and URIs are data (docs/security.md, "keys") ----------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("s3://b/runs/../other-lab/x.h5", "holds a '..' or '.' path segment"),
        ("s3://b/runs/./x.h5", "holds a '..' or '.' path segment"),
        ("s3://b//etc/passwd", "starts with '/' (an absolute path)"),
        ("s3://../x.h5", "with a bucket name"),
        ("s3a://b/a/../../x", "holds a '..'"),
        ("file:///data/../etc/passwd", "holds a '..'"),
        ("file://host/data.h5", "a file:// URI names no host"),
        ("gs://bucket/data.h5", "the scheme gs:// is not supported"),
        ("http://example.org/data.h5", "the scheme http:// is not supported"),
    ],
)
def test_keys_and_uris_are_checked_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uri: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a URI misread as a local path would create files here
    for action in (
        lambda: storage.download_to_local(uri, cache=tmp_path / "cache"),
        lambda: storage.atomic_write_bytes(b"x", uri),
        lambda: storage.check_writable(uri),
        lambda: storage.join_uri(uri, "more"),
    ):
        with pytest.raises(StorageError, match=re.escape(message)):
            action()
    assert list(tmp_path.iterdir()) == []


def test_a_name_joined_to_a_location_cannot_climb_out(tmp_path: Path) -> None:
    for bad in ("..", "../x", "a/../../x"):
        with pytest.raises(StorageError, match="refused"):
            storage.join_uri("s3://b/run", bad)
        with pytest.raises(StorageError, match="refused"):
            storage.join_uri(str(tmp_path), bad)
    with pytest.raises(StorageError, match="refused"):
        storage.join_uri(str(tmp_path), "/etc")  # Path would drop everything before an absolute part
    assert storage.join_uri("s3://b/run", "/etc") == "s3://b/run/etc"  # a key: still under the run
    assert storage.join_uri("s3a://b/run", "plots", "recon.png") == "s3a://b/run/plots/recon.png"


@pytest.mark.slow
def test_a_dotdot_key_in_the_bucket_is_refused_and_nothing_is_written_outside(
    s3_bucket: str, tmp_path: Path
) -> None:
    """Keys written around autolfads (straight to the S3 API) that climb out of the run or the cache."""
    import boto3

    client = boto3.client("s3", endpoint_url=storage.endpoint_url())
    client.put_object(Bucket=s3_bucket, Key="runs/demo/progress.json", Body=b"{}")
    client.put_object(Bucket=s3_bucket, Key="runs/demo/../../../../escaped.txt", Body=b"pwned")
    client.put_object(Bucket=s3_bucket, Key="runs/demo/plots/../../../../../escaped2.txt", Body=b"pwned")
    keys = list_keys(storage.endpoint_url() or "", s3_bucket)
    assert any(".." in k for k in keys)  # the store kept them as written

    root = tmp_path / "machine"
    mirror = storage.RunMirror(f"s3://{s3_bucket}/runs/demo", root / "mirror" / "a" / "b")
    with pytest.raises(StorageError, match=r"cannot pull .*: '\.\./\.\./\.\./\.\./escaped\.txt' holds a"):
        mirror.pull()
    assert not (mirror.local_dir / "progress.json").exists()  # checked before the first byte
    with pytest.raises(StorageError, match=r"holds a '\.\.'"):
        storage.download_to_local(f"s3://{s3_bucket}/runs/demo/../../../../escaped.txt", cache=root / "cache")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_a_file_uri_is_the_local_path_everywhere(tmp_path: Path) -> None:
    from autolfads.config import load_config
    from tests.data.files import write_contract_file

    data = write_contract_file(tmp_path / "data.h5")
    assert storage.local_path(f"file://{data}") == data
    cfg = load_config(data_paths=[f"file://{data}"])  # the scheme list's file:// reaches the datamodule
    assert cfg.model.encod_data_dim == 5
    with pytest.raises(StorageError, match=r"^DATA: the scheme gs:// is not supported"):
        storage.check_run_locations(["gs://b/d.h5"], tmp_path / "out", resume=False)
