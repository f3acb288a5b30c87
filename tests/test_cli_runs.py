"""``autolfads train`` and ``run`` own their ``--out``: one run at a time, ``--resume`` only with the same
inputs, every refusal before anything (MLflow included) touches OUT, Ctrl-C leaves usable outputs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from autolfads.rundir.lease import acquire_lease
from tests.outputs.runs import TINY_OVERRIDES, tiny_data

SMALL = tuple(o for o in TINY_OVERRIDES if not o.startswith("trainer.max_epochs"))


def _env() -> dict[str, str]:
    isolated = ("AWS_", "MLFLOW_", "RAY_ADDRESS", "AUTOLFADS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(isolated)}


def _train(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "autolfads.cli",
        "train",
        str(data),
        "--out",
        str(out),
        "--threads",
        "1",
        *SMALL,
        *extra,
    ]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished tiny ``train`` (2 epochs): its data and its OUT."""
    root = tmp_path_factory.mktemp("trained")
    data = tiny_data(root / "data.h5")
    out = root / "out"
    done = subprocess.run(
        _train(data, out, "trainer.max_epochs=2"), capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr
    return data, out


def _copy(trained: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    data, out = trained
    shutil.copytree(out, tmp_path / "out")
    return data, tmp_path / "out"


def _run(args: list[str]) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr.strip().splitlines()


# ------------------------------------------------------------------------------------------ train
def test_train_ctrl_c_writes_the_best_outputs_so_far_and_resume_finishes_the_fit(tmp_path: Path) -> None:
    data = tiny_data(tmp_path / "data.h5")
    out = tmp_path / "out"
    command = _train(data, out, "trainer.max_epochs=6")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 1/5"):
            proc.send_signal(signal.SIGINT)
            break
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert (
        "stopping after this epoch" in stderr and "wrote the outputs of the best checkpoint so far" in stderr
    )
    assert "--resume" in stderr and "Traceback" not in stderr
    assert {"model.ckpt", "fitlog.csv", "lfads_output_sess0.h5", "config.yaml"} <= {
        p.name for p in out.iterdir()
    }
    assert not (out / "DONE.json").exists()  # interrupted: not a finished run
    stopped_at = pd.read_csv(out / "fitlog.csv")["epoch"].max()
    assert 1 <= stopped_at < 5

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("resuming training on")
    assert f"epoch {stopped_at + 1}/5" in resumed.stdout and "epoch 0/5" not in resumed.stdout
    assert pd.read_csv(out / "fitlog.csv")["epoch"].tolist() == list(range(6))  # each epoch once
    assert (out / "DONE.json").is_file() and not (out / ".lightning").exists()


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ("override", "model.dropout_rate 0.3 → 0.1 (override model.dropout_rate=0.1)"),
        ("data", "content changed"),
        ("config", "model.lr_init 0.004 → 0.002"),
        ("epochs", "trainer.max_epochs 2 → 3"),
    ],
)
def test_resume_with_other_inputs_is_refused_naming_the_difference(
    trained: tuple[Path, Path], tmp_path: Path, change: str, difference: str
) -> None:
    data, out = _copy(trained, tmp_path)
    args = ["train", str(data), "--out", str(out), *SMALL, "trainer.max_epochs=2", "--resume"]
    if change == "override":
        args.append("model.dropout_rate=0.1")
    elif change == "data":
        data = shutil.copy(data, tmp_path / "data.h5")
        import h5py

        with h5py.File(data, "a") as f:
            f["valid_recon_data"][0, 0, 0] += 1
        args[1] = str(data)
    elif change == "config":
        (tmp_path / "cfg.yaml").write_text("model:\n  lr_init: 0.002\n")
        args += ["--config", str(tmp_path / "cfg.yaml")]
    else:
        args[args.index("trainer.max_epochs=2")] = "trainer.max_epochs=3"
    before = _tree(out)
    code, lines = _run(args)
    assert code == 1 and len(lines) == 1, lines
    assert f"--resume: {out} holds a run of other inputs: " in lines[0] and difference in lines[0]
    assert _tree(out) == before


def test_resume_of_a_finished_run_has_nothing_to_do(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = _copy(trained, tmp_path)
    result = CliRunner().invoke(
        main, ["train", str(data), "--out", str(out), *SMALL, "trainer.max_epochs=2", "--resume"]
    )
    assert result.exit_code == 0 and "finished at" in result.stdout and "nothing to resume" in result.stdout


def test_two_trains_into_one_out_exactly_one_proceeds(tmp_path: Path) -> None:
    data = tiny_data(tmp_path / "data.h5")
    out = tmp_path / "out"
    # enough epochs that the first cannot finish before the second, slower to start on a busy machine,
    # reaches its claim on OUT (it would then meet a finished run, not one in use)
    command = _train(data, out, "trainer.max_epochs=30")
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert refused.count("\n") == 1 and "is in use by autolfads train (pid" in refused
    assert (out / "DONE.json").is_file()


def test_force_never_replaces_an_input_kept_in_out(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = _copy(trained, tmp_path)
    before = _tree(out)
    code, lines = _run(
        ["train", str(data), "--out", str(out), "--config", str(out / "config.yaml"), "--force"]
    )
    assert code == 1 and len(lines) == 1 and "is an input of this run but sits in --out" in lines[0]
    assert _tree(out) == before


# ------------------------------------------------------------------------------------------ run
def test_run_refusals_happen_before_tracking_touches_out(trained: tuple[Path, Path], tmp_path: Path) -> None:
    data, out = _copy(trained, tmp_path)
    before = _tree(out)
    for extra in ([], ["--resume", "model.dropout_rate=0.1"]):  # holds a run; resumed with other inputs
        code, lines = _run(["run", str(data), "--out", str(out), *SMALL, "trainer.max_epochs=2", *extra])
        assert code == 1 and len(lines) == 1, lines
        assert _tree(out) == before  # no mlflow.db, no mlartifacts/, no lease file left


def test_run_into_an_out_in_use_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data = tiny_data(tmp_path / "data.h5")
    out = tmp_path / "out"
    with acquire_lease(str(out), "autolfads run"):
        code, lines = _run(["run", str(data), "--out", str(out), *SMALL])
    assert code == 1 and len(lines) == 1
    assert f"is in use by autolfads run (pid {os.getpid()}" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the holder's lease released


@pytest.mark.slow
def test_run_into_an_object_storage_out_in_use_is_refused_before_anything_is_written(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.services import list_keys

    data = tiny_data(tmp_path / "data.h5")
    monkeypatch.chdir(tmp_path)  # where an s3:// run's embedded MLflow store would go
    out = f"s3://{s3_bucket}/runs/held"
    with acquire_lease(out, "autolfads run"):
        code, lines = _run(["run", str(data), "--out", out, *SMALL])
        keys = list_keys(os.environ["AWS_ENDPOINT_URL"], s3_bucket)
    assert code == 1 and len(lines) == 1 and "is in use by autolfads run (pid" in lines[0], lines
    assert keys == ["runs/held/.autolfads-lease.json"]  # the holder's lease only: no probe, no MLflow
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.h5"]  # no mlflow.db either
