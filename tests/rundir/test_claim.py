"""Claiming OUT: new, refused, resumed, finished or replaced with --force; inputs and other files never
touched; temporaries of a killed run removed; the same on object storage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from autolfads.errors import AutoLFADSError
from autolfads.rundir.claim import claim_out
from autolfads.rundir.done import read_done
from autolfads.rundir.fingerprint import compute_fingerprint
from autolfads.rundir.layout import LEASE_NAME
from tests.services import list_keys

CONFIG = {"model": {"gen_dim": 8}, "datamodule": {}, "pbt": {"num_samples": 4}}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.h5"
    path.write_bytes(b"spikes")
    return path


def _fp(data: Path, **model: int) -> dict:
    return compute_fingerprint([(str(data), data)], {**CONFIG, "model": {"gen_dim": 8, **model}})


def _finish(out: str, data: Path, **claim: object) -> None:
    """A whole (tiny) run: claim, write one result, complete."""
    with claim_out(
        out, "autolfads test", fingerprint=_fp(data), **{"resume": False, "force": False, **claim}
    ) as c:
        target = c.local_target
        (target / "fitlog.csv").write_text("epoch\n0\n")
        c.complete(target, ["fitlog.csv"], "autolfads test")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_new_run_saves_its_fingerprint_and_ends_with_done(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    _finish(str(out), data)
    assert sorted(p.name for p in out.iterdir()) == ["DONE.json", "fingerprint.json", "fitlog.csv"]
    done = read_done(str(out))
    assert done is not None and done["command"] == "autolfads test"
    assert sorted(done["files"]) == ["fitlog.csv"] and done["files"]["fitlog.csv"]["size"] == 8
    assert json.loads((out / "fingerprint.json").read_text())["data"][0]["size"] == 6


def test_a_run_in_out_is_refused_without_resume_or_force_and_nothing_changes(
    tmp_path: Path, data: Path
) -> None:
    out = tmp_path / "out"
    _finish(str(out), data)
    before = _tree(out)
    with pytest.raises(
        AutoLFADSError, match=r"already holds a finished run \(DONE.json, .*--resume .*--force"
    ):
        _finish(str(out), data)
    assert _tree(out) == before


def test_resume_with_the_same_inputs_continues_and_a_finished_run_has_nothing_to_do(
    tmp_path: Path, data: Path
) -> None:
    out = tmp_path / "out"
    (out / "trials").mkdir(
        parents=True
    )  # an interrupted run's state, from an older autolfads: no fingerprint
    with claim_out(str(out), "t", resume=True, force=False, fingerprint=_fp(data)) as claim:
        assert claim.mode == "resume" and claim.target == str(out)
        assert "no fingerprint.json" in claim.notes[0]
    with claim_out(str(out), "t", resume=True, force=False, fingerprint=_fp(data)) as claim:
        assert claim.mode == "resume" and claim.notes == []  # the attempt above saved one
        claim.complete(out, [], "t")
    with claim_out(str(out), "t", resume=True, force=False, fingerprint=_fp(data)) as claim:
        assert claim.mode == "finished" and claim.done is not None


def test_resume_with_other_inputs_is_refused_listing_the_differences(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    with claim_out(str(out), "t", resume=False, force=False, fingerprint=_fp(data)):
        (out / "trials").mkdir()
    data.write_bytes(b"new spikes")
    with (
        pytest.raises(AutoLFADSError) as refused,
        claim_out(str(out), "t", resume=True, force=False, fingerprint=_fp(data, gen_dim=16)),
    ):
        pass
    message = str(refused.value)
    assert (
        f"--resume: {out} holds a run of other inputs: data {data}: content changed (size 6 → 10)" in message
    )
    assert "model.gen_dim 8 → 16" in message and "--force" in message


def test_force_replaces_old_results_only_on_success_and_keeps_other_files(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "out"
    _finish(str(out), data)
    (out / "lfads_output_sess1.h5").write_text("old")
    (out / "notes.txt").write_text("mine")
    (out / "mlflow.db").write_text("tracking store")
    before = _tree(out)
    with (
        pytest.raises(RuntimeError),
        claim_out(str(out), "t", resume=False, force=True, fingerprint=_fp(data)) as c,
    ):
        assert (
            c.mode == "force" and Path(c.target).parent == out and Path(c.target).name.startswith(".staging-")
        )
        (c.local_target / "fitlog.csv").write_text("new")
        raise RuntimeError("the new run fails")
    assert _tree(out) == before  # the failed attempt changed nothing (its staging folder is gone)
    with claim_out(str(out), "t", resume=False, force=True, fingerprint=_fp(data, gen_dim=9)) as c:
        (c.local_target / "fitlog.csv").write_text("new")
        c.complete(c.local_target, ["fitlog.csv"], "t")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["DONE.json", "fingerprint.json", "fitlog.csv", "mlflow.db", "notes.txt"]
    assert (out / "fitlog.csv").read_text() == "new" and (out / "notes.txt").read_text() == "mine"


def test_an_input_where_the_run_writes_is_refused_before_anything_is_written(
    tmp_path: Path, data: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text("model: {gen_dim: 8}\n")
    with (
        pytest.raises(AutoLFADSError, match=r"config.yaml is an input of this run but sits in --out"),
        claim_out(str(out), "t", resume=False, force=False, fingerprint=_fp(data), inputs=[str(config)]),
    ):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"] and config.read_text().startswith("model")
    other = tmp_path / "other"
    with claim_out(str(other), "t", resume=False, force=False, fingerprint=_fp(data), inputs=[str(data)]):
        pass  # an input elsewhere is fine


def test_temporaries_of_a_killed_run_are_removed_but_ray_and_mlflow_files_kept(
    tmp_path: Path, data: Path
) -> None:
    out = tmp_path / "out"
    names = (
        ".tmp-1a2b-autolfads.zip",
        "plots/.tmp-recon.png",
        ".fitlog.csv.x1y2.tmp",
        ".staging-0123/fitlog.csv",
    )
    for name in (*names, "trials/.tmp-ray-owned", "mlartifacts/.x.tmp", "notes.txt"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    with claim_out(str(out), "t", resume=True, force=False, fingerprint=_fp(data)):
        pass
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["fingerprint.json", "mlartifacts/.x.tmp", "notes.txt", "trials/.tmp-ray-owned"]


def test_resume_and_force_together_are_refused(tmp_path: Path, data: Path) -> None:
    with (
        pytest.raises(AutoLFADSError, match="--resume and --force"),
        claim_out(str(tmp_path / "out"), "t", resume=True, force=True, fingerprint=_fp(data)),
    ):
        pass
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ s3
@pytest.mark.slow
def test_object_storage_claim_refuses_resumes_and_replaces_like_a_local_one(
    s3_bucket: str, data: Path, tmp_path: Path
) -> None:
    from autolfads.storage import atomic_upload, join_uri

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    out = f"s3://{s3_bucket}/runs/x"
    local = tmp_path / "local"
    local.mkdir()
    (local / "fitlog.csv").write_text("old")
    with claim_out(out, "t", resume=False, force=False, fingerprint=_fp(data)) as claim:
        atomic_upload(local / "fitlog.csv", join_uri(claim.target, "fitlog.csv"))
        atomic_upload(local / "fitlog.csv", join_uri(claim.target, "trials/w0/checkpoint"))
        claim.complete(local, ["fitlog.csv"], "t")
    assert sorted(list_keys(endpoint, s3_bucket)) == [
        "runs/x/DONE.json", "runs/x/fingerprint.json", "runs/x/fitlog.csv", "runs/x/trials/w0/checkpoint"
    ]  # fmt: skip
    with (
        pytest.raises(AutoLFADSError, match="already holds a finished run"),
        claim_out(out, "t", resume=False, force=False, fingerprint=_fp(data)),
    ):
        pass
    with (
        pytest.raises(AutoLFADSError, match=r"model\.gen_dim 8 → 9"),
        claim_out(out, "t", resume=True, force=False, fingerprint=_fp(data, gen_dim=9)),
    ):
        pass
    (local / "fitlog.csv").write_text("new")
    with claim_out(out, "t", resume=False, force=True, fingerprint=_fp(data, gen_dim=9)) as claim:
        assert claim.target.startswith(f"{out}/.staging-")
        atomic_upload(local / "fitlog.csv", join_uri(claim.target, "fitlog.csv"))
        claim.complete(local, ["fitlog.csv"], "t")
    keys = sorted(list_keys(endpoint, s3_bucket))
    assert keys == [
        "runs/x/DONE.json",
        "runs/x/fingerprint.json",
        "runs/x/fitlog.csv",
    ]  # old trials/ replaced
    assert f"runs/x/{LEASE_NAME}" not in keys
    from tests.services import _boto_s3

    body = _boto_s3(endpoint).get_object(Bucket=s3_bucket, Key="runs/x/fitlog.csv")["Body"].read()
    assert body == b"new"
