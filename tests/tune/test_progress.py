"""progress.json (interface 5), the console view and the exploit history, without running Ray."""

from __future__ import annotations

import io
import json
import logging
import math

import pandas as pd
import pytest
from ray.tune.experiment import Trial

from autolfads.tune.console import PopulationView, headline, trials_line
from autolfads.tune.history import (
    HISTORY_JSONL,
    ExploitRecord,
    append_record,
    read_records,
    write_history_csv,
)
from autolfads.tune.progress import (
    PROGRESS_FILE,
    ProgressCallback,
    RunProgress,
    read_progress,
    write_progress,
)
from tests.tune.toy import toy_settings

KEYS = {
    "phase",
    "phase_done",
    "phase_total",
    "phase_unit",
    "generation",
    "generations_total",
    "epoch",
    "max_epochs",
    "epochs_done",
    "epochs_total",
    "epoch_seconds",
    "checkpoint_bytes",
    "started_at",
    "elapsed_s",
    "eta_s",
    "best_metric",
    "best_trial",
    "trials_running",
    "trials_paused",
    "trials_errored",
    "trials_done",
    "trials_total",
    "exploits",
    "updated_at",
    "mlflow_run_id",
}


class _Trial:
    """Just the two attributes the callback reads from a Ray trial."""

    def __init__(self, status: str, worker: int) -> None:
        self.status = status
        self.config = {"worker_id": worker}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(generation: int, loser: int, new_lr: float) -> ExploitRecord:
    key = "model.lr_init"
    return ExploitRecord(
        generation,
        2 * (generation + 1),
        loser,
        1 - loser,
        f"t{loser}",
        f"t{1 - loser}",
        2.0,
        1.0,
        {key: 0.004},
        {key: 0.005},
        {key: new_lr},
        {key: "* 0.8"},
    )


def _progress(tmp_path, clock=None, **kwargs):
    settings = toy_settings(num_samples=3, interval=2, burn_in=2)
    return RunProgress(tmp_path, settings, 6, min_interval_s=0.0, clock=clock or _Clock(), **kwargs)


def test_progress_file_is_strict_json_with_the_contract_keys(tmp_path):
    written = write_progress(tmp_path, {k: None for k in KEYS - {"updated_at"}} | {"best_metric": math.nan})
    text = (tmp_path / PROGRESS_FILE).read_text()
    assert "NaN" not in text
    assert set(json.loads(text)) == KEYS and written["best_metric"] is None
    assert read_progress(tmp_path)["updated_at"].endswith("+00:00")
    assert set(_progress(tmp_path).update(force=True)) == KEYS


def test_callback_reports_generation_of_total_epochs_best_worker_counts_exploits_and_eta(tmp_path):
    clock, seen = _Clock(), []
    progress = _progress(tmp_path, clock, mlflow_run_id="abc", listeners=[seen.append])
    callback = ProgressCallback(progress)
    append_record(tmp_path / HISTORY_JSONL, _record(0, 0, 0.0032))
    trials = [_Trial(Trial.RUNNING, 0), _Trial(Trial.PAUSED, 1), _Trial(Trial.ERROR, 2)]
    callback.on_trial_result(0, trials, trials[0], {"cur_epoch": 0, "valid/recon_smth": 1.0, "worker_id": 0})
    clock.now += 10
    callback.on_trial_result(0, trials, trials[0], {"cur_epoch": 3, "valid/recon_smth": 0.9, "worker_id": 0})
    callback.on_trial_result(0, trials, trials[1], {"cur_epoch": 2, "valid/recon_smth": 0.7, "worker_id": 1})
    clock.now += 10
    callback.on_trial_result(
        0, trials, trials[2], {"cur_epoch": 2, "valid/recon_smth": 0.8, "worker_id": 2, "epoch_s": 0.5}
    )
    progress = read_progress(tmp_path)

    assert set(progress) == KEYS
    assert progress["phase"] == "training" and progress["mlflow_run_id"] == "abc"
    # members completed 4, 3 and 3 epochs: the slowest trains epoch 3, in generation 2 of 3
    assert (progress["epoch"], progress["max_epochs"]) == (3, 6)
    assert (progress["generation"], progress["generations_total"]) == (1, 3)
    assert (progress["epochs_done"], progress["epochs_total"]) == (10, 18)
    assert progress["best_metric"] == 0.7 and progress["best_trial"] == 1
    assert (progress["trials_running"], progress["trials_paused"], progress["trials_errored"]) == (1, 1, 1)
    assert progress["exploits"] == 1 and progress["epoch_seconds"] == 0.5
    # 3 member-epochs reported in the 20 s after the first report: 8 left take 8 / (3 / 20) s
    assert progress["elapsed_s"] == 20 and progress["eta_s"] == pytest.approx(8 / (3 / 20), abs=0.1)
    assert seen[-1] == progress


def test_a_resumed_run_counts_from_its_boundary_not_from_zero(tmp_path):
    """``run --resume`` (a fresh Tuner from pbt_state.json): members 0 and 1 stand at the boundary (epoch
    4) with their metrics, member 2 (not in the resume point) starts over; the ETA's rate is this
    attempt's."""
    clock = _Clock()
    progress = _progress(tmp_path, clock)
    progress.resume_at({0: 4, 1: 4}, {0: 0.6, 1: 0.65})
    before = progress.update(force=True)
    assert (before["epoch"], before["epochs_done"], before["generation"]) == (0, 8, 0)  # member 2 at 0
    assert (before["best_metric"], before["best_trial"]) == (0.6, 0)
    callback = ProgressCallback(progress)
    trials = [_Trial(Trial.RUNNING, w) for w in range(3)]
    callback.on_trial_result(0, trials, trials[2], {"cur_epoch": 3, "valid/recon_smth": 0.9, "worker_id": 2})
    clock.now += 10
    callback.on_trial_result(0, trials, trials[0], {"cur_epoch": 4, "valid/recon_smth": 0.5, "worker_id": 0})
    after = read_progress(tmp_path)
    # members at 5, 4 and 4 epochs: the slowest trains epoch 4, generation 2 of 3 (interval 2, burn-in 2)
    assert (after["epoch"], after["epochs_done"], after["generation"]) == (4, 13, 2)
    assert (after["best_metric"], after["best_trial"]) == (0.5, 0)
    # one member-epoch in the 10 s since this attempt's first report: 5 left take 5 / (1 / 10) s
    assert after["eta_s"] == pytest.approx(50, abs=0.1)


def test_phases_after_training_carry_their_own_progress_and_eta(tmp_path):
    clock = _Clock()
    progress = _progress(tmp_path, clock)
    for worker in range(3):
        progress.trial_result(worker, {"cur_epoch": 5, "valid/recon_smth": 1.0 + worker})
    progress.set_phase("sampling")
    progress.step(0, 40, "batches")
    clock.now += 5
    progress.step(10, 40, "batches")
    sampling = read_progress(tmp_path)
    progress.set_phase("succeeded", best_metric=1.5, best_trial=2)
    done = read_progress(tmp_path)

    assert (sampling["phase"], sampling["phase_done"], sampling["phase_total"]) == ("sampling", 10, 40)
    assert sampling["phase_unit"] == "batches" and sampling["eta_s"] == pytest.approx(15.0)
    assert (sampling["generation"], sampling["generations_total"]) == (3, 3)
    assert (done["phase"], done["best_metric"], done["best_trial"], done["trials_running"]) == (
        "succeeded",
        1.5,
        2,
        0,
    )
    with pytest.raises(ValueError, match="unknown phase 'dancing'"):
        progress.set_phase("dancing")


def test_console_lines_read_generation_n_of_m_and_never_none() -> None:
    training = {
        "phase": "training",
        "generation": 1,
        "generations_total": 3,
        "epoch": 3,
        "max_epochs": 6,
        "elapsed_s": 65,
        "eta_s": 3725,
        "trials_running": 2,
        "trials_paused": 1,
        "trials_total": 3,
        "exploits": 2,
        "best_metric": 0.712345,
        "best_trial": 1,
    }
    assert headline(training) == "training: generation 2/3, epoch 3/6, elapsed 1m05s, ETA 1h02m"
    assert trials_line(training, "valid/recon_smth") == (
        "trials 2 running, 1 paused, 0 errored, 0 done of 3; 2 exploits; "
        "best valid/recon_smth 0.71235 (worker 1)"
    )
    starting = headline({"phase": "starting", "generations_total": 3, "epoch": None, "max_epochs": 6})
    assert "None" not in starting and starting == "starting: generation 1/3, elapsed -, ETA -"
    sampling = {"phase": "sampling", "phase_done": 7, "phase_total": 40, "phase_unit": "batches", "eta_s": 9}
    assert headline(sampling) == "sampling: 7/40 batches, elapsed -, ETA 9s"
    assert headline({"phase": "succeeded", "generation": 3, "generations_total": 3, "elapsed_s": 4}) == (
        "succeeded: generation 3/3, elapsed 4s"
    )


def test_plain_view_logs_a_line_per_generation_and_phase_and_sampling_steps(caplog) -> None:
    caplog.set_level(logging.INFO, logger="autolfads.tune")
    view = PopulationView(live=False)
    base = {"generations_total": 3, "max_epochs": 6, "trials_total": 3}
    view.show({**base, "phase": "training", "generation": 0, "epoch": None}, "m")  # nothing trained yet
    for epoch in (1, 2, 2, 3, 4):
        view.show({**base, "phase": "training", "generation": epoch // 2, "epoch": epoch}, "m")
    for done in range(0, 41):
        view.show(
            {**base, "phase": "sampling", "phase_done": done, "phase_total": 40, "phase_unit": "b"}, "m"
        )
    lines = [r.getMessage() for r in caplog.records]

    assert [line.split(",")[0] for line in lines if line.startswith("training")] == [
        "training: generation 1/3",
        "training: generation 2/3",
        "training: generation 3/3",
    ]
    assert sum(line.startswith("sampling") for line in lines) == 11  # the phase, then every 10 %
    assert not any("None" in line for line in lines)


def test_throttled_progress_still_shows_every_generation_on_the_plain_view(tmp_path, caplog) -> None:
    """Epochs faster than the write interval (a tiny model): the throttle drops steady records, never the
    first epoch of a generation, so the plain log has a line for each."""
    caplog.set_level(logging.INFO, logger="autolfads.tune")
    settings = toy_settings(num_samples=3, interval=2, burn_in=2)
    progress = RunProgress(
        tmp_path, settings, 6, min_interval_s=3600.0, clock=_Clock(), view=PopulationView(live=False)
    )
    callback = ProgressCallback(progress)
    callback.setup()
    trials = [_Trial(Trial.RUNNING, w) for w in range(3)]
    for epoch in range(6):
        for worker in range(3):
            result = {"cur_epoch": epoch, "valid/recon_smth": 1.0, "worker_id": worker}
            callback.on_trial_result(0, trials, trials[worker], result)
    lines = [r.getMessage().split(",")[0] for r in caplog.records if r.getMessage().startswith("training")]

    assert lines == ["training: generation 1/3", "training: generation 2/3", "training: generation 3/3"]


def test_live_view_renders_the_block(tmp_path):
    from rich.console import Console

    stream = io.StringIO()
    view = PopulationView(live=True, stream=stream)
    view.show(
        {"phase": "training", "generation": 1, "generations_total": 3, "best_metric": 0.5, "best_trial": 2},
        "m",
    )
    view.stop()
    text = " ".join(stream.getvalue().split())  # rich wraps at the console's width
    assert "AutoLFADS training: generation 2/3" in text and "best m 0.5 (worker 2)" in text
    assert Console  # rich renders without a terminal too


def test_history_keeps_the_last_record_per_generation_and_loser(tmp_path):
    path = tmp_path / HISTORY_JSONL
    append_record(path, _record(0, 0, 0.0032))
    append_record(path, _record(0, 0, 0.0036))  # the same tournament replayed after a resume
    append_record(path, _record(1, 1, 0.0040))
    with open(path, "a") as handle:
        handle.write('{"generation": 2, "los')  # a line cut by a kill
    records = read_records(path)
    assert [(r.generation, r.loser) for r in records] == [(0, 0), (1, 1)]
    assert records[0].new["model.lr_init"] == 0.0036
    frame = pd.read_csv(write_history_csv(records, tmp_path / "pbt_history.csv"))
    assert list(frame.columns[:8]) == [
        "generation",
        "epoch",
        "loser",
        "loser_trial",
        "winner",
        "winner_trial",
        "loser_score",
        "winner_score",
    ]
    assert frame["new/model.lr_init"].tolist() == [0.0036, 0.0040]
    assert frame["op/model.lr_init"].tolist() == ["* 0.8", "* 0.8"]


def test_empty_history_writes_a_header_only_csv(tmp_path):
    frame = pd.read_csv(write_history_csv([], tmp_path / "pbt_history.csv"))
    assert frame.empty and "loser" in frame.columns
