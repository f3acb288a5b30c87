"""Ray Tune scheduler: synchronous generations + binary tournament (lfads-spec §5.7), and the stopper (§5.8).

Why a subclass of Ray's ``PopulationBasedTraining`` (synch mode) and not a scheduler from scratch: PBT
already owns the delicate Ray-internal steps of an exploit (pause the loser, point its checkpoint at the
winner's, swap its config) and of fair scheduling in synch mode, and it is what the reference subclassed.
What we replace is small and lives in pure functions: the pairing (``tournament_pairs``), the explore
rule (``perturb``), and *when* a generation ends. Generation boundaries are a pure function of the epochs a
trial has completed (``PBTSettings.is_boundary``) instead of Ray's running ``_next_perturbation_sync``
counter, so a restarted trial or a resumed run lands on the same boundaries.

Resume: after each tournament the scheduler writes ``pbt_state.json`` (the boundary epoch and, per
member, its hyperparameters and checkpoint at that boundary; ``autolfads.tune.resume``). A resumed run is
a fresh Tuner built from that plain data (nothing of Ray's is unpickled from OUT); ``resume=`` puts each
member at the boundary here, so the run continues from the last **completed** generation with the same
population the tournament left.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial
from ray.tune.result import SHOULD_CHECKPOINT
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from autolfads.config.pbt import PBTSettings
from autolfads.constants import CUR_EPOCH, WORKER_ID
from autolfads.tune.explore import describe_change, perturb
from autolfads.tune.history import HISTORY_JSONL, ExploitRecord, append_record
from autolfads.tune.resume import STATE_FILE, MemberState, ResumePoint, state_record
from autolfads.tune.stopper import ImprovementRatioRule
from autolfads.tune.tournament import tournament_pairs

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger("autolfads.tune")

STOPPER_FILE = "stopper_state.json"


def epochs_done(result: dict[str, Any]) -> int:
    """Epochs a trial has completed when it reported ``result`` (``cur_epoch`` is 0-based)."""
    return int(result[CUR_EPOCH]) + 1


def _latest_checkpoint(trial: Trial) -> tuple[Any, int] | None:
    """Ray Tune's latest registered checkpoint result of ``trial`` and the epochs done at it; None while it
    has none that names its epoch."""
    latest = trial.latest_checkpoint_result
    metrics = getattr(latest, "metrics", None) or {}
    if latest is None or latest.checkpoint is None or CUR_EPOCH not in metrics:
        return None
    return latest, epochs_done(metrics)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
    os.replace(tmp, path)


class BinaryTournamentPBT(PopulationBasedTraining):
    """Synchronous PBT whose exploit step is the AutoLFADS binary tournament.

    ``run_dir`` is a local directory on the driver where the exploit log and resume state go; ``resume``
    (read from there by ``autolfads.tune.resume``) puts the members it names at its boundary.
    """

    def __init__(
        self,
        settings: PBTSettings,
        run_dir: str | os.PathLike[str],
        max_epochs: int,
        resume: ResumePoint | None = None,
    ) -> None:
        super().__init__(
            time_attr=CUR_EPOCH,
            metric=settings.metric,
            mode=settings.mode,
            perturbation_interval=settings.perturbation_interval,
            burn_in_period=settings.burn_in_period,
            # Only consulted for keys missing from a trial's config; ours always has them (driver samples).
            hyperparam_mutations={key: _missing_key(key) for key in settings.space},
            quantile_fraction=0.0,
            resample_probability=0.0,
            log_config=True,
            require_attrs=True,
            synch=True,
        )
        self.settings = settings
        self.run_dir = str(run_dir)
        self.max_epochs = int(max_epochs)
        self._boundary = 0  # epochs completed at the last tournament
        self._state_written_for = 0  # the boundary whose resume state is on disk
        self._opponents: dict[Trial, Trial] = {}
        self._pending_record: ExploitRecord | None = None
        self._resume = resume
        # Members paused to wait for their tournament (-> the boundary), and the extra cached processes
        # held for them per boundary until the next generation runs (autolfads.tune.actor_reuse).
        self._waiting_at: dict[Trial, int] = {}
        self._held_slots: dict[int, list[Callable[[], None]]] = {}
        self.exploits = 0
        if resume is not None:
            self._boundary = self._state_written_for = resume.boundary
            self._next_perturbation_sync = resume.boundary + settings.perturbation_interval
            self.exploits = resume.exploits

    # ------------------------------------------------------------------------------------------- resume
    @property
    def state_path(self) -> Path:
        return Path(self.run_dir) / STATE_FILE

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        # A resumed member starts at the boundary (its trial loads the boundary checkpoint); a member the
        # resume point does not name (it had no completed generation) starts over from epoch 0.
        if self._resume is not None and int(trial.config.get(WORKER_ID, -1)) in self._resume.members:
            state = self._trial_state[trial]
            state.last_train_time = state.last_perturbation_time = self._resume.boundary

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        self._waiting_at.pop(trial, None)
        self._keep_boundary_checkpoint(trial)
        super().on_trial_error(tune_controller, trial)

    def _keep_boundary_checkpoint(self, trial: Trial) -> None:
        """A member lost just after its boundary restarts from that boundary's checkpoint, not an older one.

        At the boundary a winner is asked to save, and Ray Tune registers the checkpoint only when its
        handler for that save runs. If the member's process dies first (its node lost), Tune drops the
        pending save and would restart the member from its previous checkpoint (or from scratch in the first
        generation), although the checkpoint is in storage and a loser may already have cloned it. The
        scheduler holds that checkpoint (resolved when a loser cloned it, else read without waiting), so
        it is made the member's latest, as Ray's own exploit does for a loser.
        """
        from ray.train._internal.session import _FutureTrainingResult, _TrainingResult

        state = self._trial_state.get(trial)
        if state is None or state.last_checkpoint is None:
            return
        checkpoint, metrics = state.last_checkpoint, state.last_result
        if isinstance(checkpoint, _FutureTrainingResult):
            resolved = checkpoint.resolve(block=False)  # None: the save never finished (nothing to keep)
            if resolved is None:
                return
            checkpoint, metrics = resolved.checkpoint, resolved.metrics
        if checkpoint is None or not metrics or CUR_EPOCH not in metrics:
            return
        registered = _latest_checkpoint(trial)
        if registered is not None and registered[1] >= epochs_done(metrics):
            return
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=copy.copy(checkpoint), metrics=metrics
        )
        logger.warning(
            "worker %s was lost before Ray Tune registered its checkpoint after epoch %d: restarting from it",
            trial.config.get(WORKER_ID),
            epochs_done(metrics) - 1,
        )

    def _try_save_state(self, tune_controller: TuneController) -> None:
        """Write each live trial's checkpoint and config at the last boundary, once all are known.

        A trial's latest checkpoint must be the one **at** the boundary (its own, or its winner's for a
        loser); until the winners' saves resolve it is not, and when a trial already reached the next
        boundary this generation's state is skipped (the next tournament writes its own).
        """
        trials = {}
        for trial in _active(tune_controller):
            found = _latest_checkpoint(trial)
            if found is None:
                return
            latest, done = found
            if done != self._boundary:
                if done > self._boundary:
                    self._state_written_for = self._boundary  # too late for this one
                return
            metrics = latest.metrics
            trials[int(trial.config[WORKER_ID])] = MemberState(
                # relative to the experiment: the run directory (or bucket prefix) may move before a resume
                checkpoint=_relative_to(latest.checkpoint.path, trial.storage.experiment_fs_path),
                hps={key: float(trial.config[key]) for key in self.settings.space},
                metrics=_plain({k: v for k, v in metrics.items() if isinstance(v, int | float | str)}),
            )
        _write_json(self.state_path, state_record(self._boundary, self.exploits, trials))
        self._state_written_for = self._boundary

    # --------------------------------------------------------------------------------------- generations
    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]) -> str:
        if self._metric not in result or self._time_attr not in result:
            return super().on_trial_result(tune_controller, trial, result)  # raises: require_attrs
        done = epochs_done(result)
        self._waiting_at.pop(trial, None)
        self._release_held_slots(before=done)
        if self._boundary and self._state_written_for != self._boundary:
            self._try_save_state(tune_controller)
        if not self.settings.is_boundary(done) or done >= self.max_epochs:
            return TrialScheduler.CONTINUE
        state = self._trial_state[trial]
        self._save_trial_state(state, done, result, trial)
        waiting = [
            t
            for t in _active(tune_controller)
            if t is not trial and self._trial_state[t].last_train_time < done
        ]
        if waiting:
            self._waiting_at[trial] = done
        else:
            self._tournament(tune_controller, done, reporting=trial)
        return TrialScheduler.NOOP if trial.status == Trial.PAUSED else TrialScheduler.PAUSE

    # ---------------------------------------------------------------- processes of waiting members
    def waits_for_tournament(self, trial: Trial) -> int | None:
        """The boundary this member paused at to wait for the others, or None (autolfads.tune.actor_reuse)."""
        return self._waiting_at.get(trial)

    def hold_cache_slot(self, boundary: int, release: Callable[[], None]) -> None:
        """Keep a waiting member's process cached until a trial reports past ``boundary``."""
        self._held_slots.setdefault(boundary, []).append(release)

    def _release_held_slots(self, before: int) -> None:
        """A result after ``before`` epochs: the generations that ended earlier have taken their processes."""
        for boundary in [b for b in self._held_slots if b < before]:
            for release in self._held_slots.pop(boundary):
                release()

    def _tournament(self, tune_controller: TuneController, done: int, reporting: Trial | None = None) -> None:
        """Pair every live trial that reported at ``done`` and run the exploits (spec 5.7).

        ``reporting`` is the running trial whose result completed the generation: the next trial to run is
        staged before it pauses (:func:`_stage_next_trial`).
        """
        generation = self.settings.generation_of(done - 1)
        members = [
            t
            for t in _active(tune_controller)
            if self._trial_state[t].last_score is not None and self._trial_state[t].last_train_time == done
        ]
        members.sort(key=lambda t: t.config.get(WORKER_ID, 0))
        scores = [self._cost(t) for t in members]
        rng = np.random.default_rng([self.settings.seed, generation])
        result = tournament_pairs(scores, rng)
        winners = [members[i] for i in result.winners]
        losers = [members[m.loser] for m in result.matches]
        self._opponents = {members[m.loser]: members[m.winner] for m in result.matches}
        others = [t for t in tune_controller.get_trials() if t not in winners and t not in losers]

        # Winners first (a loser clones its winner's checkpoint). The reporting trial, if it lost, goes after
        # the next generation begins: its exploit pauses it, and by then the next trial to run must be staged
        # to take over its process.
        def settle(t: Trial) -> None:
            self._trial_state[t].last_perturbation_time = done
            self._checkpoint_or_exploit(t, tune_controller, winners, losers)

        order = winners + others + losers
        lost_while_running = reporting if reporting in losers else None
        for t in order:
            if t is not lost_while_running:
                settle(t)
        self._boundary = done
        self._next_perturbation_sync = done + self.settings.perturbation_interval
        if reporting in order:
            _stage_next_trial(tune_controller)
        if lost_while_running is not None:
            settle(lost_while_running)
        self._opponents = {}
        self._try_save_state(tune_controller)
        logger.info(
            "generation %d ended after epoch %d: %d exploits, best %s = %.6g",
            generation + 1,  # the console counts generations from 1 ("generation 2 of 5"; files: 0-based)
            done - 1,  # epochs are numbered from 0 in every output; ``done`` counts them
            len(losers),
            self._metric,
            self._raw_score(min(members, key=lambda t: _nan_last(self._cost(t)))) if members else math.nan,
        )

    def _cost(self, trial: Trial) -> float:
        """Lower is better for either mode: Ray stores ``metric_op * metric`` (higher is better)."""
        score = self._trial_state[trial].last_score
        return math.nan if score is None else -float(score)

    def _raw_score(self, trial: Trial) -> float:
        """The metric as the trial reported it at the boundary."""
        cost = self._cost(trial)
        return cost if self._mode == "min" else -cost

    def _checkpoint_or_exploit(
        self,
        trial: Trial,
        tune_controller: TuneController,
        upper_quantile: list[Trial],
        lower_quantile: list[Trial],
    ) -> None:
        """Ray's winner/loser handling, with each loser cloning its **own opponent** (not a random winner)."""
        if trial not in lower_quantile:
            super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, [])
            return
        opponent = self._opponents[trial]
        self._trial_state[trial].last_checkpoint = None
        super()._checkpoint_or_exploit(trial, tune_controller, [opponent], [trial])

    # ------------------------------------------------------------------------------------------ exploit
    def _get_new_config(self, trial: Trial, trial_to_clone: Trial) -> tuple[dict, dict]:
        generation = self.settings.generation_of(self._trial_state[trial_to_clone].last_train_time - 1)
        worker = int(trial.config.get(WORKER_ID, 0))
        rng = np.random.default_rng([self.settings.seed, generation, worker, 1])
        new_config, operations = perturb(trial_to_clone.config, self.settings.space, rng)
        new_config[WORKER_ID] = trial.config.get(WORKER_ID)  # the worker id is the loser's, always
        space = self.settings.space
        self._pending_record = ExploitRecord(
            generation=generation,
            epoch=int(self._trial_state[trial_to_clone].last_train_time),
            loser=worker,
            winner=int(trial_to_clone.config.get(WORKER_ID, 0)),
            loser_trial=trial.trial_id,
            winner_trial=trial_to_clone.trial_id,
            loser_score=self._raw_score(trial),
            winner_score=self._raw_score(trial_to_clone),
            old={k: float(trial.config[k]) for k in space},
            winner_hps={k: float(trial_to_clone.config[k]) for k in space},
            new={k: float(new_config[k]) for k in space},
            operations=operations,
        )
        return new_config, operations

    def _exploit(self, tune_controller: TuneController, trial: Trial, trial_to_clone: Trial) -> None:
        super()._exploit(tune_controller, trial, trial_to_clone)
        record = self._pending_record
        if record is None:
            return
        self._pending_record = None
        self.exploits += 1
        append_record(Path(self.run_dir) / HISTORY_JSONL, record)
        lines = [
            describe_change(
                space_hp.short_name, record.winner_hps[key], record.new[key], record.operations[key]
            )
            for key, space_hp in self.settings.space.items()
        ]
        logger.info(
            "[exploit] generation %d: worker %d (%.6g) clones worker %d (%.6g)\n  %s",
            record.generation + 1,
            record.loser,
            record.loser_score,
            record.winner,
            record.winner_score,
            "\n  ".join(lines),
        )

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        """Pending/paused trials that are behind the next boundary, least trained first.

        Also un-sticks a generation: when the last trial everyone waited for left the population (failed
        for good), no result arrives to start the tournament, so it starts here (the synch-PBT hang of
        k8s-notes §6.3).
        """
        self._start_stalled_tournament(tune_controller)
        candidates = [
            t
            for t in tune_controller.get_trials()
            if t.status in (Trial.PENDING, Trial.PAUSED)
            and self._trial_state[t].last_train_time < self._next_perturbation_sync
        ]
        candidates.sort(key=lambda t: (self._trial_state[t].last_train_time, t.config.get(WORKER_ID, 0)))
        return candidates[0] if candidates else None

    def _start_stalled_tournament(self, tune_controller: TuneController) -> None:
        live = _active(tune_controller)
        if not live or any(t.status != Trial.PAUSED for t in live):
            return
        times = {self._trial_state[t].last_train_time for t in live}
        if len(times) == 1:
            done = times.pop()
            if done > self._boundary and self.settings.is_boundary(done):
                logger.info(
                    "generation boundary %d: no more trials to wait for; running the tournament", done
                )
                self._tournament(tune_controller, done)

    def debug_string(self) -> str:
        return f"BinaryTournamentPBT: boundary epoch {self._boundary}, {self.exploits} exploits"


class ImprovementRatioStopper(Stopper, Callback):
    """Ray adapter of ``ImprovementRatioRule``; its state is saved beside the run after every change.

    Also a Tune callback (register it as both): a trial that errors for good leaves the rule's population.
    """

    live: ImprovementRatioStopper | None = None  # the newest one: the run this driver process is running

    def __init__(self, settings: PBTSettings, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = str(run_dir)
        ImprovementRatioStopper.live = self
        self.rule = ImprovementRatioRule(
            num_trials=settings.num_samples,
            perturbation_interval=settings.perturbation_interval,
            burn_in_period=settings.burn_in_period,
            patience=settings.patience,
            min_improvement_ratio=settings.min_improvement_ratio,
        )
        self.metric = settings.metric
        self._loaded = False
        self._final_save: Trial | None = None  # the trial whose report stopped the run, while Tune saves it

    @property
    def state_path(self) -> Path:
        return Path(self.run_dir) / STOPPER_FILE

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray pickles its controller's attributes, this stopper among them, into the experiment state (and
        # the Tuner its RunConfig into tuner.pkl). Nothing reads them back (a resume builds a fresh Tuner and
        # this stopper reloads its plain-JSON state), so it pickles as a reference to the live stopper.
        return _live_stopper, ()

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self.metric not in result or CUR_EPOCH not in result:
            return False
        epoch, value = int(result[CUR_EPOCH]), float(result[self.metric])
        member = member_key(result.get(WORKER_ID), trial_id)
        return self._apply(lambda rule: rule.update(member, epoch, value))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        member = member_key(trial.config.get(WORKER_ID), trial.trial_id)
        self._apply(lambda rule: rule.member_left(member))

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        """The report that stops the run carries its boundary checkpoint: have Tune save (register) it.

        Ray Tune registers a function trainable's reported checkpoint only when it saves the trial: the
        members that reached the boundary before paused (a save); the one whose report stopped the run is
        stopped instead, and without this its last checkpoint would be the previous boundary's (or none),
        not the one of the metric that picks the best member. ``stop_all`` waits for that save.
        """
        if self.rule.stopped and self._final_save is None:
            result[SHOULD_CHECKPOINT] = True  # read by Tune after the callbacks (they may edit the result)
            self._final_save = trial

    def _apply(self, change: Any) -> bool:
        if not self._loaded:
            self._loaded = True
            if self.state_path.is_file():
                self.rule = ImprovementRatioRule.from_state(json.loads(self.state_path.read_text()))
        was_stopped, before = self.rule.stopped, self.rule.state()
        stop = change(self.rule)
        if self.rule.state() != before:
            _write_json(self.state_path, self.rule.state())
        if stop and not was_stopped:
            logger.info("improvement-ratio rule: best %s stopped improving; stopping all trials", self.metric)
        return stop

    def stop_all(self) -> bool:
        # Stopping every trial drops pending saves: the last report's save must be registered first.
        return self.rule.stopped and (self._final_save is None or not self._final_save.is_saving)


def member_key(worker_id: Any, trial_id: str) -> str:
    """The rule's name for a member: its worker id, which a resume keeps (Ray's trial id does not)."""
    return f"worker{int(worker_id)}" if worker_id is not None else trial_id


def _relative_to(path: str, experiment: str) -> str:
    """``path`` relative to the experiment directory when it lies inside it (pyarrow paths: no scheme)."""
    prefix = experiment.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _stage_next_trial(tune_controller: TuneController) -> None:
    """Let Ray pick and stage the trial that runs next, now, while the trial that ended the generation still
    runs.

    With ``reuse_actors`` Ray keeps a pausing trial's worker process only for a trial already staged to take
    it. At a generation boundary every other trial waits for the tournament, so none is staged when the last
    one pauses, and Ray would end that process and start a new one for the next trial: a fresh interpreter
    importing torch, several seconds per generation. Staging is what Ray's own scheduling step does next;
    this runs it early. (A private method of Ray's controller: without it, only that time is lost.)
    """
    controller = getattr(tune_controller, "_tune_controller", tune_controller)
    add_actors = getattr(controller, "_maybe_add_actors", None)
    if add_actors is not None:
        add_actors()


def _live_stopper() -> Stopper:
    """The stopper of the run this driver process is running, or (outside a run) one that never stops."""
    live = ImprovementRatioStopper.live
    return live if live is not None else _NeverStop()


class _NeverStop(Stopper):
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False


def _active(tune_controller: TuneController) -> list[Trial]:
    """Trials still in the population: Ray's "live" set also holds trials that failed for good."""
    return [t for t in tune_controller.get_live_trials() if t.status not in (Trial.ERROR, Trial.TERMINATED)]


def _missing_key(key: str) -> Any:
    def fail(*_: Any) -> Any:
        raise KeyError(f"trial config has no value for {key}; the driver samples every HP up front")

    return fail


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(copy.deepcopy(config), default=str))


def _nan_last(value: float) -> float:
    return value if math.isfinite(value) else math.inf


__all__ = ["STATE_FILE", "STOPPER_FILE", "BinaryTournamentPBT", "ImprovementRatioStopper", "epochs_done"]
