"""The binary-tournament scheduler and driver on real Ray with a tiny stand-in trainable (``toy.py``).

The trainable is a scalar "model" (x shrinks by (1 - lr) per epoch), so these tests check the PBT
machinery itself: synchronous generations, pairing, cloning the opponent's checkpoint, explore, the NaN
rule, the stop rule and the per-worker results, without the cost of LFADS.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autolfads.tune.collect import population_fitlog, read_result_rows
from autolfads.tune.driver import run_population
from autolfads.tune.history import HISTORY_JSONL, read_records
from tests.tune.toy import LR, toy_settings, toy_trial

pytestmark = pytest.mark.slow


def _run(tmp_path, settings, max_epochs):
    return run_population(
        toy_trial,
        settings,
        tmp_path,
        max_epochs=max_epochs,
        trainable_kwargs={"settings": settings, "max_epochs": max_epochs},
        live=False,
    )


@pytest.fixture(scope="module")
def toy_run(ray_session, tmp_path_factory):
    """4 members, 6 epochs, 2-epoch generations; member 3 starts with lr 5 and diverges (NaN)."""
    out = tmp_path_factory.mktemp("toy")
    settings = toy_settings(
        hps={
            LR: {
                "min_samp": 0.01,
                "max_samp": 0.5,
                "init": [0.05, 0.1, 0.3, 5.0],
                "explore_wt": 0.3,
                "enforce_limits": True,
            }
        }
    )
    population = _run(out, settings, 6)
    return out, settings, population


def test_every_worker_reports_every_epoch_once_with_its_persistent_id(toy_run):
    out, _, population = toy_run
    fitlog = population_fitlog(out)
    assert sorted(fitlog["worker_id"].unique()) == [0, 1, 2, 3]
    for _, rows in fitlog.groupby("worker_id"):
        assert rows["epoch"].tolist() == list(range(6))
        assert rows["generation"].tolist() == [0, 0, 1, 1, 2, 2]
    assert not population.stopped_early


def test_each_generation_pairs_the_population_and_losers_clone_their_opponent(toy_run):
    out, _, _ = toy_run
    records = read_records(out / HISTORY_JSONL)
    assert sorted({r.generation for r in records}) == [0, 1]  # boundaries at epochs 2 and 4, none at the end
    for generation in (0, 1):
        matches = [r for r in records if r.generation == generation]
        assert len(matches) == 2
        members = [w for r in matches for w in (r.loser, r.winner)]
        assert sorted(members) == [0, 1, 2, 3]  # a binary tournament: everyone plays exactly once
        for r in matches:
            assert r.loser_score > r.winner_score or math.isnan(r.loser_score)


def test_perturbed_learning_rate_is_what_the_loser_trains_with_next(toy_run):
    out, _, _ = toy_run
    fitlog = population_fitlog(out)
    for record in read_records(out / HISTORY_JSONL):
        new_lr = record.new[LR]
        assert 0.01 <= new_lr <= 0.5
        ratio = new_lr / record.winner_hps[LR]
        assert 0.7 <= ratio <= 1.3 and ratio != 1.0
        after = fitlog[(fitlog.worker_id == record.loser) & (fitlog.epoch == record.epoch)]
        assert after["lr-AdamW"].item() == pytest.approx(new_lr)
        # The loser continues from the winner's state: its first epoch starts below the winner's level.
        winner_before = fitlog[(fitlog.worker_id == record.winner) & (fitlog.epoch == record.epoch - 1)]
        assert after["valid/recon"].item() < winner_before["valid/recon"].item()


def test_diverged_member_loses_its_first_tournament_and_is_replaced(toy_run):
    out, _, _ = toy_run
    first = [r for r in read_records(out / HISTORY_JSONL) if r.generation == 0]
    nan_match = next(r for r in first if r.loser == 3)
    assert math.isnan(nan_match.loser_score) and math.isfinite(nan_match.winner_score)
    fitlog = population_fitlog(out)
    worker3 = fitlog[fitlog.worker_id == 3].set_index("epoch")["valid/recon_smth"]
    assert math.isnan(worker3[1]) and all(math.isfinite(worker3[e]) for e in range(2, 6))


def test_results_are_recorded_for_every_report(toy_run):
    out, _, _ = toy_run
    rows = read_result_rows(out)
    assert len(rows) >= 24
    assert all("pid" in row and "trial_id" in row for row in rows)


def test_improvement_ratio_rule_stops_the_whole_population(ray_session, tmp_path):
    # patience 1: a window of one generation best never "improves", so the first recorded generation stops.
    settings = toy_settings(patience=1)
    population = _run(tmp_path, settings, 10)
    assert population.stopped_early
    fitlog = population_fitlog(tmp_path)
    assert fitlog.groupby("worker_id")["epoch"].max().tolist() == [1, 1, 1, 1]
    # Every member's latest checkpoint is the one of its last report, the last reporter's included: its
    # report stopped the run, and Ray Tune registers a reported checkpoint only when it saves the trial.
    for result in population.results:
        with result.checkpoint.as_directory() as directory:
            state = json.loads((Path(directory) / "state.json").read_text())
        assert state["epoch"] == 1, result.config["worker_id"]


def test_member_that_fails_for_good_leaves_and_the_rest_carry_on(ray_session, tmp_path):
    # Member 1 crashes on every start; with no retries left it errors, and the generation it never
    # reaches must not hang the synchronous population.
    settings = toy_settings(
        max_failures=0,
        hps={LR: {"min_samp": 0.01, "max_samp": 0.5, "init": [0.1, 50.0, 0.2], "enforce_limits": True}},
        num_samples=3,
    )
    population = _run(tmp_path, settings, 4)
    errored = [r for r in population.results if r.error is not None]
    assert len(errored) == 1 and errored[0].config["worker_id"] == 1
    fitlog = population_fitlog(tmp_path)
    assert sorted(fitlog["worker_id"].unique()) == [0, 2]
    assert fitlog.groupby("worker_id")["epoch"].max().tolist() == [3, 3]
    assert [r.generation for r in read_records(tmp_path / HISTORY_JSONL)] == [0]


def test_improvement_ratio_rule_still_stops_after_a_member_failed_for_good(ray_session, tmp_path):
    # As above, member 1 dies at its first start; the rule must stop waiting for its records.
    settings = toy_settings(
        max_failures=0,
        patience=1,
        hps={LR: {"min_samp": 0.01, "max_samp": 0.5, "init": [0.1, 50.0, 0.2], "enforce_limits": True}},
        num_samples=3,
    )
    population = _run(tmp_path, settings, 10)
    assert population.stopped_early
    fitlog = population_fitlog(tmp_path)
    assert fitlog.groupby("worker_id")["epoch"].max().tolist() == [1, 1]



def test_members_waiting_for_the_tournament_keep_their_processes(ray_session, tmp_path):
    # All 4 members run at once (0.5 CPU each on 2) and epochs take long enough for them to overlap. A
    # member that ends its generation before the others waits for the tournament with no trial staged to
    # take its process, and Ray Tune ends such a process unless the run keeps it for the next generation
    # (autolfads.tune.actor_reuse): a new one would import torch and Lightning again (≈ 20 s on a CPU).
    settings = toy_settings()
    max_epochs = 6
    run_population(
        toy_trial,
        settings,
        tmp_path,
        max_epochs=max_epochs,
        trainable_kwargs={"settings": settings, "max_epochs": max_epochs, "epoch_s": 0.4},
        live=False,
    )
    rows = read_result_rows(tmp_path)
    assert {row["cur_epoch"] for row in rows} == set(range(max_epochs))
    processes: dict[int, set[int]] = {}  # generation -> the processes its members trained in
    for row in rows:
        processes.setdefault(settings.generation_of(row["cur_epoch"]), set()).add(row["pid"])
    assert len(processes) == 3
    assert all(pids == processes[0] for pids in processes.values()), processes
