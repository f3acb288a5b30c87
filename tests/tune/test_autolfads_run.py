"""``autolfads run`` end to end: real LFADS, real Ray, tiny synthetic data, the CLI in a subprocess.

Population 4, 6 epochs in 2-epoch generations (tournaments after epochs 2 and 4). Member 3 starts with an
absurd learning rate so it diverges; fault tests kill a trial process mid-generation and interrupt the
driver with SIGINT, then resume it.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pandas as pd
import pytest

from autolfads.tune.collect import RESULTS_JSONL, read_result_rows
from tests.outputs.neurocaas import run_documented_snippet
from tests.tune.test_progress import KEYS as PROGRESS_KEYS
from tests.tune.tiny import tiny_config, tiny_data

pytestmark = pytest.mark.slow

EPOCHS = 6
POPULATION = 4
HUGE_LR = 50.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    data = tiny_data(root / "data.h5")
    lr = {"init": [4e-3, 4e-3, 4e-3, HUGE_LR]}
    config = tiny_config(
        root / "cfg.yaml", num_samples=POPULATION, max_epochs=EPOCHS, hps={"model.lr_init": lr}
    )
    return data, config


def _command(data, config, out, *extra):
    return [
        sys.executable,
        "-m",
        "autolfads.cli",
        "run",
        str(data),
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-mlflow",
        *extra,
    ]


def _env():
    """This process's environment without anything that points at a real cluster, bucket or server."""
    isolated = ("AWS_", "MLFLOW_", "RAY_ADDRESS", "KUBECONFIG", "AUTOLFADS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(isolated)}
    return {**env, "RAY_AUTH_MODE": "disabled", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _run(args, timeout=400, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd)


def _start(args) -> subprocess.Popen:
    """The CLI running in the background, for tests that interfere with it mid-run."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _wait_for(predicate, proc, timeout=300, poll=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(poll)
    raise AssertionError("timed out")


def _assert_complete_fitlog(out: Path) -> pd.DataFrame:
    fitlog = pd.read_csv(out / "fitlog.csv")
    assert sorted(fitlog["worker_id"].unique()) == list(range(POPULATION))
    for _, rows in fitlog.groupby("worker_id"):
        assert rows["epoch"].tolist() == list(range(EPOCHS))  # each epoch exactly once, in order
        assert rows["generation"].tolist() == [0, 0, 1, 1, 2, 2]
    return fitlog


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    data, config = inputs
    out = tmp_path_factory.mktemp("run") / "out"
    # DATA relative to the working directory, as a user types it: Ray workers run elsewhere.
    proc = _run(_command(data.name, config, out), cwd=data.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_a_finished_run_ends_with_done_listing_its_outputs(finished):
    out, _ = finished
    done = json.loads((out / "DONE.json").read_text())
    assert done["command"] == "autolfads run"
    expected = {"autolfads.zip", "model.ckpt", "fitlog.csv", "lfads_output_sess0.h5", "pbt_history.csv"}
    assert expected | {"config.yaml"} == set(done["files"])
    assert done["files"]["autolfads.zip"]["size"] == (out / "autolfads.zip").stat().st_size
    assert not (out / ".autolfads-lease.json").exists()


def test_run_writes_the_neurocaas_bundle_and_pbt_outputs(finished):
    out, proc = finished
    assert "best member: worker" in proc.stdout
    with zipfile.ZipFile(out / "autolfads.zip") as bundle:
        required = {"fitlog.csv", "lfads_output_sess0.h5", "model.ckpt", "pbt_history.csv", "config.yaml"}
        assert required <= set(bundle.namelist())
    for name in ("fitlog.csv", "lfads_output_sess0.h5", "model.ckpt", "pbt_history.csv", "config.yaml"):
        assert (out / name).is_file(), name
    with h5py.File(out / "lfads_output_sess0.h5") as h5:
        for key in (
            "train_output_params",
            "valid_output_params",
            "train_factors",
            "valid_gen_states",
            "train_encod_data",
        ):
            assert key in h5, key
    from autolfads.model import LFADS

    model = LFADS.load_from_checkpoint(out / "model.ckpt")
    assert model.hparams["gen_dim"] == 8


def test_fitlog_reads_the_neurocaas_documented_way_with_every_workers_rows(finished, tmp_path):
    out, _ = finished
    done = run_documented_snippet(out, tmp_path)
    seen = {int(w): list(rows.epoch) for w, rows in done["df"].groupby("worker_id")}
    assert seen == {w: list(range(EPOCHS)) for w in range(POPULATION)}
    with zipfile.ZipFile(out / "autolfads.zip") as bundle:  # the zip's copy reads the same way
        (tmp_path / "zip").mkdir()
        (tmp_path / "zip" / "fitlog.csv").write_bytes(bundle.read("fitlog.csv"))
    assert len(run_documented_snippet(tmp_path / "zip", tmp_path / "zip-read")["df"]) == EPOCHS * POPULATION


# Other libraries' lines that do not apply to our users (issue 12): each must be silenced at its source.
RAY_ADVICE = (
    "Tuner.restore",
    "Trials did not complete",
    "Failed to fetch metrics",
    "Remote file not found",
    "TensorBoard",
    "tensorboard",
    "View detailed results",
    "Configuration for experiment",
    "Token authentication",
    "auth_token",
    "Stop signal received",
    "performance bottleneck",
    "Started a local Ray instance",
)


def _assert_no_advice_for_ray_users(text: str) -> None:
    shown = [advice for advice in RAY_ADVICE if advice in text]
    assert not shown, f"{shown} in:\n{text[-3000:]}"
    assert "epoch None" not in text and "None/" not in text


def exploit_lines(out: Path) -> list[str]:
    """Every line the console must show for the run's exploits: the header and one line per HP."""
    from autolfads.tune.explore import describe_change
    from autolfads.tune.history import HISTORY_JSONL, read_records

    lines = []
    for record in read_records(out / HISTORY_JSONL):
        lines.append(
            f"[exploit] generation {record.generation + 1}: worker {record.loser} "
            f"({record.loser_score:.6g}) clones worker {record.winner} ({record.winner_score:.6g})"
        )
        lines += [
            describe_change(
                key.rsplit(".", 1)[-1], record.winner_hps[key], record.new[key], record.operations[key]
            )
            for key in record.new
        ]
    return lines


def test_plain_output_shows_progress_each_exploit_line_and_no_advice_for_ray_users(finished):
    out, proc = finished
    err = proc.stderr
    assert "\x1b[" not in err  # not a terminal: no redraws, no colours
    for line in (
        "training: generation 1/3",
        "training: generation 2/3",
        "training: generation 3/3",
        "sampling: ",
        "writing: ",
        "succeeded: generation 3/3, epoch 6/6",
    ):
        assert line in err, line
    expected = exploit_lines(out)
    assert len(expected) >= 2 * 8  # two exploits or more, each with its 7 hyperparameters
    missing = [line for line in expected if line not in err]
    assert not missing, missing
    _assert_no_advice_for_ray_users(err)


def test_progress_file_ends_succeeded_with_the_contract_keys(finished):
    out, _ = finished
    progress = json.loads((out / "progress.json").read_text())
    assert set(progress) >= PROGRESS_KEYS
    assert progress["phase"] == "succeeded"
    assert progress["trials_total"] == POPULATION and progress["exploits"] >= 2
    assert (progress["generation"], progress["generations_total"]) == (3, 3)
    assert (progress["epoch"], progress["max_epochs"]) == (EPOCHS, EPOCHS)
    assert progress["epochs_done"] == progress["epochs_total"] == POPULATION * EPOCHS
    assert progress["trials_done"] == POPULATION and progress["checkpoint_bytes"] > 0
    assert progress["elapsed_s"] > 0 and progress["epoch_seconds"] > 0


def test_fitlog_has_every_worker_epoch_and_the_perturbed_lr_after_each_exploit(finished):
    out, _ = finished
    fitlog = _assert_complete_fitlog(out)
    history = pd.read_csv(out / "pbt_history.csv")
    assert sorted(history["generation"].unique()) == [0, 1]
    assert (history.groupby("generation").size() == 2).all()
    for _, exploit in history.iterrows():
        rows = fitlog[(fitlog.worker_id == exploit["loser"]) & (fitlog.epoch >= exploit["epoch"])]
        first = rows.iloc[0]
        assert first["lr-AdamW"] == pytest.approx(exploit["new/model.lr_init"])  # lr applied after restore
        assert first["hp/dropout_rate"] == pytest.approx(exploit["new/model.dropout_rate"])
        assert exploit["new/model.lr_init"] != exploit["winner/model.lr_init"]


def test_trial_processes_are_reused_across_generations(finished):
    # 1 CPU per trial on this 2-core machine: 2 trials at a time. Without staging the next trial before
    # the last one of a generation pauses, Ray ends the process and starts a new one at every boundary.
    out, _ = finished
    rows = read_result_rows(out)
    slots = os.cpu_count() or 1  # trials take one CPU each
    assert len({row["pid"] for row in rows}) <= min(slots, POPULATION)


def test_trials_record_their_timings_for_the_benchmark_but_fitlog_leaves_them_out(finished):
    out, _ = finished
    timings = ("epoch_s", "setup_s", "report_s", "reported_at")
    rows = read_result_rows(out)
    assert all(all(key in row for key in timings) for row in rows)
    assert all(row["epoch_s"] > 0 for row in rows)
    assert any(row["setup_s"] > 0 for row in rows)  # the first epoch after each (re)start
    fitlog = pd.read_csv(out / "fitlog.csv")
    assert not {*timings, "pid", "trial_id"} & set(fitlog.columns)


def test_diverged_member_loses_and_the_run_goes_on(finished):
    out, _ = finished
    fitlog = pd.read_csv(out / "fitlog.csv")
    history = pd.read_csv(out / "pbt_history.csv")
    first = history[history.generation == 0]
    assert 3 in first["loser"].tolist()
    member3 = fitlog[fitlog.worker_id == 3].set_index("epoch")
    assert member3.loc[0, "lr-AdamW"] == pytest.approx(HUGE_LR)
    assert member3.loc[2, "lr-AdamW"] <= 5e-3  # replaced by a winner's explored config


def test_best_member_is_the_lowest_last_reported_metric(finished):
    out, proc = finished
    fitlog = pd.read_csv(out / "fitlog.csv")
    last = fitlog.sort_values("epoch").groupby("worker_id").last()["valid/recon_smth"]
    best = int(last[last.apply(math.isfinite)].idxmin())
    assert f"best member: worker {best}," in proc.stdout
    assert json.loads((out / "progress.json").read_text())["best_trial"] == best


def test_killed_trial_process_restarts_from_its_checkpoint(inputs, tmp_path):
    data, config = inputs
    out = tmp_path / "out"
    proc = _start(_command(data, config, out))
    try:

        def mid_generation_row():
            rows = read_result_rows(out)
            return next((r for r in rows if r.get("cur_epoch") == 2 and r.get("worker_id") == 0), None)

        row = _wait_for(mid_generation_row, proc)
        seen = len(read_result_rows(out))
        os.kill(int(row["pid"]), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=400)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    _assert_complete_fitlog(out)
    later = [r for r in read_result_rows(out)[seen:] if r["worker_id"] == 0]
    assert later and all(r["pid"] != row["pid"] for r in later)
    assert min(r["cur_epoch"] for r in later) >= 2  # restarted from the generation's checkpoint, not epoch 0


def test_interrupted_run_resumes_to_a_complete_consistent_fitlog(inputs, tmp_path):
    data, config = inputs
    out = tmp_path / "out"
    proc = _start(_command(data, config, out))
    try:
        _wait_for(lambda: (out / "pbt_state.json").is_file(), proc)
        # a second run into the same OUT while the first one goes: refused at once, naming the first
        second = _run(_command(data, config, out), timeout=120)
        assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
        assert f"is in use by autolfads run (pid {proc.pid} on" in second.stderr
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    # one line says how to continue; none of Ray's advice for Ray users
    assert f"Continue with: autolfads run {data} --out {out} --resume" in stderr
    _assert_no_advice_for_ray_users(stderr)
    assert json.loads((out / "progress.json").read_text())["phase"] == "interrupted"
    assert not (out / "autolfads.zip").exists()

    # the run directory moves (copied to another disk, say) before it is resumed: nothing in it may point
    # at the old place
    moved = tmp_path / "moved"
    shutil.move(out, moved)
    out = moved
    # another population (or any other input) is not this run: refused, listing the difference
    other = _run(_command(data, config, out, "--resume", "pbt.num_samples=5"), timeout=120)
    assert other.returncode == 1 and "holds a run of other inputs: population 4 → 5" in other.stderr
    resumed = _run(_command(data, config, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_no_advice_for_ray_users(resumed.stderr)
    _assert_complete_fitlog(out)
    history = pd.read_csv(out / "pbt_history.csv")
    assert (history.groupby("generation").size() == 2).all()  # a replayed tournament is recorded once
    assert (out / "autolfads.zip").is_file()
    assert len(read_result_rows(out)) >= POPULATION * EPOCHS
    assert (out / RESULTS_JSONL).is_file()


def test_on_a_terminal_every_exploit_line_survives_above_the_live_block(tmp_path):
    """``autolfads run`` in a real terminal (tmux): the live block redraws at the bottom, and every log line
    (each exploit and each of its hyperparameter lines) stays on the screen above it."""
    tmux = shutil.which("tmux")
    assert tmux, "tmux is needed for the terminal test (apt-get install tmux)"
    data = tiny_data(tmp_path / "data.h5")
    config = tiny_config(tmp_path / "cfg.yaml", num_samples=2, max_epochs=6, interval=2)
    out = tmp_path / "out"
    script = tmp_path / "run.sh"
    # As a user's shell has it: no RAY_AUTH_MODE, so Ray's token auth is on; a HOME of its own to look in.
    home = tmp_path / "home"
    home.mkdir()
    user_env = {k: v for k, v in _env().items() if k != "RAY_AUTH_MODE"} | {"HOME": str(home)}
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in user_env.items() if k.isidentifier())
    unset = "unset RAY_AUTH_MODE\n"
    command = shlex.join(_command(data, config, out))
    script.write_text(f"#!/bin/sh\n{unset}export {env}\n{command}\necho EXIT:$?\nsleep 600\n")
    script.chmod(0o755)
    (tmp_path / "tmux.conf").write_text("set -g history-limit 50000\n")
    server = ["tmux", "-L", f"autolfads-{os.getpid()}-{tmp_path.name}", "-f", str(tmp_path / "tmux.conf")]
    subprocess.run([*server, "new-session", "-d", "-x", "150", "-y", "30", str(script)], check=True)
    try:

        def screen() -> str:
            captured = subprocess.run(
                [*server, "capture-pane", "-p", "-J", "-S", "-"], capture_output=True, text=True, check=True
            )
            return captured.stdout

        deadline = time.monotonic() + 400
        while "EXIT:" not in (text := screen()):
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(1)
    finally:
        subprocess.run([*server, "kill-server"], check=False)
    assert "EXIT:0" in text, text[-3000:]
    expected = exploit_lines(out)
    assert len(expected) == 2 * 8  # two exploits with 7 hyperparameter lines each
    missing = [line for line in expected if line not in text]
    assert not missing, f"{missing} lost from the screen:\n{text[-4000:]}"
    # the live block's last state stays, once, under the log lines
    assert text.count("AutoLFADS succeeded: generation 3/3, epoch 6/6") == 1
    assert text.index(expected[-1]) < text.index("AutoLFADS succeeded")
    _assert_no_advice_for_ray_users(text)
    assert not (home / ".ray").exists()  # token auth stayed on, and no token file was written
