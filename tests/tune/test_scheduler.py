"""BinaryTournamentPBT's own handling of Ray Tune trial state (the whole population: test_population.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.train._internal.session import _FutureTrainingResult, _TrainingResult
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.schedulers.pbt import _PBTTrialState

from autolfads.config.pbt import HyperParam, PBTSettings
from autolfads.constants import CUR_EPOCH, WORKER_ID
from autolfads.tune.scheduler import BinaryTournamentPBT


def _member(tmp_path: Path, registered_epoch: int | None) -> tuple[BinaryTournamentPBT, Trial]:
    lr = HyperParam(key="model.lr_init", min_samp=1e-4, max_samp=1e-2)
    scheduler = BinaryTournamentPBT(
        PBTSettings(hps=(lr,), perturbation_interval=2, burn_in_period=0), tmp_path, 8
    )
    trial = Trial("lfads_trial", config={WORKER_ID: 0}, stub=True)
    scheduler._trial_state[trial] = _PBTTrialState(trial)
    if registered_epoch is not None:
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=Checkpoint(str(tmp_path / f"epoch{registered_epoch}")),
            metrics={CUR_EPOCH: registered_epoch},
        )
    return scheduler, trial


def _at_boundary(scheduler: BinaryTournamentPBT, trial: Trial, checkpoint, epoch: int = 3) -> None:
    state = scheduler._trial_state[trial]
    state.last_checkpoint, state.last_result = checkpoint, {CUR_EPOCH: epoch}


@pytest.mark.parametrize("registered", [None, 1], ids=["first generation", "an older checkpoint"])
def test_a_member_lost_before_its_boundary_save_was_registered_restarts_from_it(
    tmp_path: Path, registered: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, trial = _member(tmp_path, registered)
    boundary = Checkpoint(str(tmp_path / "boundary"))
    _at_boundary(scheduler, trial, boundary)
    scheduler.on_trial_error(None, trial)
    assert trial.checkpoint is not None and trial.checkpoint.path == boundary.path
    assert "restarting from it" in caplog.text


def test_a_registered_checkpoint_as_new_as_the_boundary_is_kept(tmp_path: Path) -> None:
    scheduler, trial = _member(tmp_path, registered_epoch=3)
    _at_boundary(scheduler, trial, Checkpoint(str(tmp_path / "boundary")))
    scheduler.on_trial_error(None, trial)
    assert trial.checkpoint.path.endswith("epoch3")


def test_a_loser_or_a_save_that_never_finished_changes_nothing(ray_session: None, tmp_path: Path) -> None:
    import ray

    scheduler, trial = _member(tmp_path, registered_epoch=None)
    _at_boundary(scheduler, trial, None)  # a loser: its checkpoint is its winner's, set by the exploit
    scheduler.on_trial_error(None, trial)
    assert trial.checkpoint is None

    @ray.remote(num_cpus=0)  # takes none of the shared session's CPUs from the tests after this one
    def never() -> None:
        import time

        time.sleep(60)

    unfinished = never.remote()
    try:
        _at_boundary(scheduler, trial, _FutureTrainingResult(unfinished))
        scheduler.on_trial_error(None, trial)
        assert trial.checkpoint is None
    finally:
        ray.cancel(unfinished, force=True)


def test_a_boundary_save_that_finished_is_read_without_waiting(ray_session: None, tmp_path: Path) -> None:
    import ray

    scheduler, trial = _member(tmp_path, registered_epoch=None)
    saved = _TrainingResult(checkpoint=Checkpoint(str(tmp_path / "saved")), metrics={CUR_EPOCH: 3})
    _at_boundary(scheduler, trial, _FutureTrainingResult(ray.put(saved)))
    scheduler.on_trial_error(None, trial)
    assert trial.checkpoint.path == saved.checkpoint.path
