"""``--resume`` reads plain JSON and never unpickles anything from OUT (docs/security.md, "resume state").

The fast tests check ``pbt_state.json`` field by field; the slow ones interrupt a real Ray population (the
toy trainable of ``toy.py``), plant a pickle that would leave a marker file in every pickled file Ray left
in OUT, and resume: the run completes from the last completed generation and the marker never appears.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
from pathlib import Path

import pytest

from autolfads.tune.collect import population_fitlog, read_result_rows
from autolfads.tune.driver import RunInterrupted, run_population
from autolfads.tune.history import HISTORY_JSONL, read_records
from autolfads.tune.resume import (
    STATE_FILE,
    MemberState,
    ResumeStateError,
    parse_resume_point,
    read_resume_point,
    state_record,
)
from tests.tune.toy import LR, toy_settings, toy_trial

SETTINGS = toy_settings(num_samples=4, interval=2, burn_in=2)


def good_state() -> dict:
    members = {w: MemberState(f"worker00{w}_x/checkpoint_000001", {LR: 0.1 * (w + 1)}) for w in range(4)}
    return state_record(4, 3, members)


def test_a_written_state_reads_back_as_the_same_resume_point(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps(good_state()))
    point = read_resume_point(tmp_path, SETTINGS)
    assert point is not None and (point.boundary, point.exploits) == (4, 3)
    assert point.members[2] == MemberState("worker002_x/checkpoint_000001", {LR: pytest.approx(0.3)})


def test_no_state_file_means_nothing_to_resume(tmp_path: Path) -> None:
    assert read_resume_point(tmp_path, SETTINGS) is None


def _with(change) -> dict:
    state = good_state()
    change(state)
    return state


BAD_STATES = [
    (_with(lambda s: s["members"]["0"].update(checkpoint="../../../etc")), "'..' or '.' path segment"),
    (_with(lambda s: s["members"]["0"].update(checkpoint="/etc/passwd")), "starts with '/'"),
    (_with(lambda s: s["members"]["0"].update(checkpoint=["a"])), "checkpoint: expected a path"),
    (_with(lambda s: s["members"].update({"7": s["members"]["0"]})), "member 7 is outside the population"),
    (_with(lambda s: s["members"]["1"].update(hps={LR: "nan"})), f"hps.{LR}: expected a finite number"),
    (_with(lambda s: s["members"]["1"].update(hps={LR: math.inf})), "expected a finite number"),
    (_with(lambda s: s["members"]["1"].update(hps={"model.other": 1.0})), "hps: expected values for"),
    (_with(lambda s: s.update(boundary=3)), "boundary 3 is not a generation boundary"),
    (_with(lambda s: s.update(boundary="4")), "boundary: expected a non-negative integer"),
    (_with(lambda s: s.update(members=[1, 2])), "expected 'members', a mapping"),
    ([1, 2], "expected a JSON object"),
]


@pytest.mark.parametrize(("state", "message"), BAD_STATES, ids=[m for _, m in BAD_STATES])
def test_state_that_is_not_ours_is_refused_in_one_line(tmp_path: Path, state, message: str) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ResumeStateError) as info:
        read_resume_point(tmp_path, SETTINGS)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_state_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_bytes(pickle.dumps({"boundary": 4}))
    with pytest.raises(ResumeStateError, match=r"not readable JSON.*delete it to start the population over"):
        read_resume_point(tmp_path, SETTINGS)


def test_extra_fields_of_a_member_are_ignored() -> None:
    state = good_state()
    state["members"]["0"]["config"] = {"_target_": "os.system"}
    point = parse_resume_point(state, SETTINGS)
    assert point.members[0].hps == {LR: pytest.approx(0.1)}


# ----------------------------------------------------------------------------------------- end to end
class _Bomb:
    """Unpickling this writes the marker file (what a crafted tuner.pkl or experiment state would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def _interrupt_after_first_generation(run: Path, settings) -> object:
    """SIGINT once a generation is done and its tournament has written the resume point (the progress
    record of a new generation is written at once, possibly before the scheduler's tournament)."""
    fired: list[int] = []

    def listener(progress: dict) -> None:
        if fired or (progress.get("generation") or 0) < 1:
            return
        if read_resume_point(run, settings) is not None:
            fired.append(progress["generation"])
            os.kill(os.getpid(), signal.SIGINT)  # what Ray Tune sees when the pod is told to stop

    return listener


def _population(run_dir: Path, settings, **kwargs):
    return run_population(
        toy_trial,
        settings,
        run_dir,
        max_epochs=8,
        trainable_kwargs={"settings": settings, "max_epochs": 8},
        live=False,
        **kwargs,
    )


@pytest.mark.slow
def test_resume_never_unpickles_ray_state_and_continues_from_the_boundary(
    ray_session, tmp_path: Path
) -> None:
    settings = toy_settings(num_samples=4, interval=2, burn_in=2)
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        _population(run, settings, listeners=[_interrupt_after_first_generation(run, settings)])
    point = read_resume_point(run, settings)
    assert point is not None and point.boundary >= 2
    before = {w: max(r["cur_epoch"] for r in read_result_rows(run) if r["worker_id"] == w) for w in range(4)}

    # Everything Ray pickled into OUT becomes a bomb; then the run directory moves before the resume.
    marker = tmp_path / "marker"
    ray_files = [p for p in (run / "trials").rglob("*") if p.is_file() and "checkpoint_" not in str(p)]
    pickled = [p for p in ray_files if p.suffix == ".pkl" or "state" in p.name]
    assert {"tuner.pkl", "params.pkl"} <= {p.name for p in pickled}
    planted = pickle.dumps(_Bomb(marker))
    for path in pickled:
        path.write_bytes(planted)
    moved = tmp_path / "moved"
    shutil.move(run, moved)

    seen = len(read_result_rows(moved))
    records: list[dict] = []
    population = _population(moved, settings, resume=True, listeners=[records.append])
    assert not marker.exists()
    # progress.json continues from the boundary (RunProgress.resume_at): never back to 0 epochs
    assert records[0]["epoch"] == point.boundary and records[0]["epochs_done"] == 4 * point.boundary
    assert all(r["epochs_done"] >= 4 * point.boundary for r in records)
    assert records[-1]["epochs_done"] == 4 * 8
    pickle.loads(planted)  # what Tuner.restore would have done with it:
    assert marker.read_text() == "unpickled"  # the planted files were live
    assert all(r.error is None for r in population.results)
    later = read_result_rows(moved)[seen:]
    for worker in range(4):
        epochs = [r["cur_epoch"] for r in later if r["worker_id"] == worker]
        # continues from the last completed generation: not from 0, and no epoch skipped
        assert min(epochs) == point.boundary and max(epochs) == 7, (worker, epochs, before)
    fitlog = population_fitlog(moved)
    assert all(sorted(rows["epoch"]) == list(range(8)) for _, rows in fitlog.groupby("worker_id"))
    exploits = {(r.generation, r.loser) for r in read_records(moved / HISTORY_JSONL)}
    for generation in (0, 1, 2):  # tournaments after epochs 2, 4 and 6, two losers each, each once
        assert len([e for e in exploits if e[0] == generation]) == 2, exploits
    assert json.loads((moved / STATE_FILE).read_text())["boundary"] == 6


def test_a_tampered_state_stops_the_resume_before_any_trial_starts(tmp_path: Path) -> None:
    state = good_state()
    state["members"]["0"]["checkpoint"] = "../../outside/checkpoint_000000"
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(ResumeStateError, match=r"members.0.checkpoint: .* '\.\.' or '\.' path segment"):
        _population(tmp_path, SETTINGS, resume=True)
    assert read_result_rows(tmp_path) == [] and not (tmp_path / "trials" / "autolfads").exists()
