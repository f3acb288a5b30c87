"""``autolfads run``: AutoLFADS on Ray, from config to ``autolfads.zip`` (lfads-spec §5, DESIGN.md §4).

Two layers:

- :func:`run_population` runs any function trainable that follows the trial protocol (report
  ``cur_epoch`` and the metric every epoch, a checkpoint at generation ends) under the binary-tournament
  scheduler, fresh or resumed, and returns Ray's results. Tests and ``bench/`` use it with small
  trainables.
- :func:`run_autolfads` loads and validates the config, runs the LFADS population, then selects the best
  member, runs posterior sampling and writes the run directory (interface 6).

Ray: an existing cluster when ``address`` (or ``RAY_ADDRESS``) is given, else a local one. Trial
storage goes through Ray Tune's ``storage_path`` under ``OUT/trials`` (``autolfads.storage.ray_storage``),
so nothing assumes a filesystem shared by trials.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.callback import Callback, CallbackList

from autolfads.config.pbt import PBTSettings, parse_pbt_block
from autolfads.constants import CUR_EPOCH, WORKER_ID
from autolfads.errors import AutoLFADSError, ConfigError, RunInterrupted
from autolfads.storage import is_remote, local_path, refuse_existing_run
from autolfads.tune.explore import initial_config
from autolfads.tune.history import HISTORY_CSV, HISTORY_JSONL, read_records, write_history_csv
from autolfads.tune.progress import ProgressListener, RunProgress

if TYPE_CHECKING:
    from autolfads.tune.resume import ResumePoint

logger = logging.getLogger("autolfads.tune")

TRIALS_DIR = "trials"
DEFAULT_NAME = "autolfads"
CONFIG_NAME = "config.yaml"


@dataclass(frozen=True)
class PopulationResult:
    results: Any  # ray.tune.ResultGrid
    experiment_path: str
    stopped_early: bool


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    best_worker: int
    best_metric: float
    zip_path: Path
    exploits: int
    model: Any = field(default=None, repr=False, compare=False)  # the best member, loaded (for MLflow)

    @property
    def output_names(self) -> list[str]:
        """The run's output files in ``out_dir`` (what ``DONE.json`` lists with checksums)."""
        fixed = [self.zip_path.name, "model.ckpt", "fitlog.csv", HISTORY_CSV, CONFIG_NAME]
        return [*fixed, *sorted(p.name for p in self.out_dir.glob("lfads_output_sess*.h5"))]


# ------------------------------------------------------------------------------------------------ Ray
# What the driver needs only once training is under way (the best member's model, posterior sampling):
# torch, Lightning and Hydra, ≈ 18 CPU-seconds on a 2-core machine. Not before the population starts: the
# driver hands Tune autolfads.tune.entry.lfads_trial, which imports none of them, so the trials start as
# soon as Ray is up; and not while the trial processes do their own imports, which it would slow down on a
# machine with few cores. ImportOnceTraining imports them in a thread at the first reported epoch
# (measured: bench/bench_cli.py, docs/pbt.md "Start-up").
BACKGROUND_IMPORTS = ("autolfads.train",)


def import_in_background(modules: Sequence[str] = BACKGROUND_IMPORTS) -> threading.Thread:
    """Start importing ``modules`` in a thread, so the import overlaps the start-up work around it.

    Safe to race: Python's per-module import locks make a later ``import`` in the main thread wait for (or
    share) this one. A failure here is ignored, as the main thread imports the same modules again and
    reports the error there. Not a daemon: the process never exits half-way through importing torch.
    """

    def run() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # the main thread's own import reports it
                logger.debug("background import of %s failed", module, exc_info=True)

    thread = threading.Thread(target=run, name="autolfads-imports")
    thread.start()
    return thread


class ImportOnceTraining(Callback):
    """Imports :data:`BACKGROUND_IMPORTS` in a thread when the first epoch is reported (see above)."""

    def __init__(self, modules: Sequence[str] = BACKGROUND_IMPORTS) -> None:
        self.modules = tuple(modules)
        self.thread: threading.Thread | None = None

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if self.thread is None:
            self.thread = import_in_background(self.modules)


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address``/``RAY_ADDRESS`` or start a local Ray; reuse one already initialised.

    A cluster with token authentication takes the token from this process's environment
    (``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``); a missing or wrong token,
    or a ``ray://`` address, is one line (:mod:`autolfads.tune.ray_access`), not a 20 s timeout.
    """
    import ray

    from autolfads.tune.quiet import RAY_INIT_QUIET, local_ray_auth
    from autolfads.tune.ray_access import check_ray_access

    # Ray < 2.52 has no token authentication, and no AuthenticationError.
    auth_errors: tuple[type[BaseException], ...] = tuple(
        getattr(ray.exceptions, name) for name in ("AuthenticationError",) if hasattr(ray.exceptions, name)
    )
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_ray_access(address)
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, **RAY_INIT_QUIET}
    if address is None:
        local_ray_auth()
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as error:
        raise AutoLFADSError(
            f"--address {address}: cannot connect to a Ray cluster there ({error})"
        ) from error
    except auth_errors as error:  # e.g. a token the probe could not check (another address form)
        first = str(error).split(". ")[0].strip().rstrip(".")
        raise AutoLFADSError(f"--address {address}: {first}") from None
    _log_cluster(address)


def _log_cluster(address: str | None) -> None:
    """One line saying which Ray the run uses (Ray's own INFO lines are quieted: quiet.py)."""
    import ray

    total = ray.cluster_resources()
    size = f"{len(ray.nodes())} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs"
    if address is None:
        logger.info("Ray: a local Ray on this machine (%s)", size)
    else:
        logger.info("Ray: connected to the existing cluster at %s (%s)", address, size)


def trial_resources(settings: PBTSettings) -> dict[str, float]:
    """``pbt.resources_per_trial`` where GPUs exist, else CPUs only; clamped to the cluster's size."""
    import ray

    total = ray.cluster_resources()
    cpu = min(settings.resources_per_trial.cpu, float(total.get("CPU", 1.0)))
    resources = {"cpu": max(cpu, 0.01)}
    gpus = float(total.get("GPU", 0.0))
    if gpus > 0 and settings.resources_per_trial.gpu > 0:
        resources["gpu"] = min(settings.resources_per_trial.gpu, gpus)
    return resources


def initial_population(settings: PBTSettings) -> list[dict[str, float]]:
    """Every member's starting HPs; member i draws from ``default_rng([seed, i])`` (reproducible)."""
    return [
        initial_config(settings.space, np.random.default_rng([settings.seed, member]), member)
        for member in range(settings.num_samples)
    ]


def _member_value(table: list[dict[str, float]], key: str, config: Any) -> float:
    return table[int(config[WORKER_ID])][key]


def param_space(settings: PBTSettings, resume: ResumePoint | None = None) -> dict[str, Any]:
    """``worker_id`` 0..N-1 (one trial each) and each HP's start value for that worker, top level: its
    initial sample, or on a resume the value it had at the resumed boundary."""
    from ray import tune

    table = initial_population(settings)
    for worker, member in (resume.members if resume is not None else {}).items():
        table[worker] = dict(member.hps)
    space: dict[str, Any] = {WORKER_ID: tune.grid_search(list(range(settings.num_samples)))}
    for key in settings.space:
        space[key] = tune.sample_from(partial(_member_value, table, key))
    return space


class _DriverCallbacks(CallbackList):
    """The driver's callbacks, as one. The Tuner pickles its RunConfig into the experiment (``tuner.pkl``)
    when it is built; live objects (MLflow clients, the console, locks, test listeners) need not and cannot
    travel there, and nothing reads that file back (a resume builds a fresh Tuner with fresh callbacks), so
    this pickles as an empty list."""

    def __reduce__(self) -> tuple[Any, ...]:
        return CallbackList, ([],)


def _check_resume_checkpoints(
    experiment: str, filesystem: Any, members: dict[int, str], state_file: Path
) -> None:
    """Every resumed member's checkpoint is where the resume point says: fail now, in one line, not in
    the trials."""
    from pyarrow import fs as pafs

    fs = filesystem or pafs.LocalFileSystem()
    for worker, relative in sorted(members.items()):
        if fs.get_file_info(f"{experiment.rstrip('/')}/{relative}").type != pafs.FileType.Directory:
            raise AutoLFADSError(
                f"{state_file}: member {worker}'s checkpoint {relative} is not in {experiment}; "
                f"delete {state_file.name} to start the population over"
            )


def _trial_dirname(trial: Any) -> str:
    return f"worker{int(trial.config.get(WORKER_ID, 0)):03d}_{trial.trial_id}"


def run_population(
    trainable: Callable[..., Any],
    settings: PBTSettings,
    run_dir: str | os.PathLike[str],
    *,
    max_epochs: int,
    name: str = DEFAULT_NAME,
    resume: bool = False,
    trainable_kwargs: dict[str, Any] | None = None,
    callbacks: Sequence[Any] = (),
    listeners: Sequence[ProgressListener] = (),
    mlflow_run_id: str | None = None,
    live: bool | None = None,
    trials_uri: str | None = None,
    progress: RunProgress | None = None,
) -> PopulationResult:
    """Run (or, with ``resume`` and a completed generation in ``run_dir``, continue) the population.

    ``run_dir`` is local (driver files: progress, history, resume state); trial checkpoints go to
    ``trials_uri`` (default ``run_dir/trials``; ``s3://…`` works through Ray Tune's storage). Raises
    ``RunInterrupted`` when Ray stopped early on a signal; the state is then saved for resume. A resumed
    run passes ``resume_from`` (``autolfads.tune.resume.ResumeCheckpoints``) to the trainable, which
    must then accept it.
    ``progress`` is the run's progress (``run_autolfads`` keeps it for the phases after training);
    without it one is made from ``listeners``, ``mlflow_run_id`` and ``live``.
    """
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from autolfads.storage import join_uri, ray_storage
    from autolfads.tune.actor_reuse import install_keep_waiting_members
    from autolfads.tune.collect import RESULTS_JSONL, ResultRecorder
    from autolfads.tune.devices import DeviceNotice
    from autolfads.tune.node_loss import NodeLossWait, install_reused_actor_fix
    from autolfads.tune.progress import ProgressCallback
    from autolfads.tune.quiet import quiet_ray_driver
    from autolfads.tune.resume import STATE_FILE, ResumeCheckpoints, read_resume_point
    from autolfads.tune.scheduler import STOPPER_FILE, BinaryTournamentPBT, ImprovementRatioStopper

    quiet_ray_driver()
    install_reused_actor_fix()
    install_keep_waiting_members()

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    storage_path, storage_fs = ray_storage(trials_uri or join_uri(str(run_dir.absolute()), TRIALS_DIR))
    experiment_path = f"{storage_path.rstrip('/')}/{name}"
    point = read_resume_point(run_dir, settings) if resume else None
    kwargs = dict(trainable_kwargs or {})
    if point is not None:
        logger.info("resuming %s from generation boundary epoch %d", run_dir, point.boundary)
        members = {worker: m.checkpoint for worker, m in point.members.items()}
        _check_resume_checkpoints(experiment_path, storage_fs, members, run_dir / STATE_FILE)
        kwargs["resume_from"] = ResumeCheckpoints(experiment_path, storage_fs, members)
    else:
        if resume:
            logger.info("nothing to resume in %s (no generation completed): a new population", run_dir)
        for stale in (STATE_FILE, STOPPER_FILE, HISTORY_JSONL, RESULTS_JSONL):
            (run_dir / stale).unlink(missing_ok=True)
    wrapped = tune.with_resources(tune.with_parameters(trainable, **kwargs), trial_resources(settings))
    stopper = ImprovementRatioStopper(settings, run_dir)
    own_progress = progress is None
    if progress is None:
        progress = new_progress(run_dir, settings, max_epochs, mlflow_run_id, listeners, live)
    if point is not None:  # the resumed members stand at the boundary until they report
        boundary = dict.fromkeys(point.members, point.boundary)
        progress.resume_at(boundary, point.scores(settings.metric))
    # A fresh Tuner always, also on --resume: Tuner.restore would unpickle tuner.pkl and the experiment
    # state from OUT (code, if crafted) and need Ray's private API to re-attach live callbacks. The resume
    # point is plain JSON (autolfads.tune.resume); the members start there.
    tuner = tune.Tuner(
        wrapped,
        param_space=param_space(settings, point),
        tune_config=tune.TuneConfig(
            scheduler=BinaryTournamentPBT(settings, run_dir, max_epochs, resume=point),
            num_samples=1,
            reuse_actors=True,  # a paused trial resumes in a warm process (no torch re-import)
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            # Never delete a checkpoint mid-run: a loser may still clone it (k8s-notes §6.3).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # Live callbacks travel as one that pickles empty (tuner.pkl); Ray's CSV and JSON result
            # loggers stay at the top level, where Ray looks for them before adding a TensorBoard one.
            callbacks=[
                _DriverCallbacks(
                    [
                        ResultRecorder(run_dir),
                        DeviceNotice(),
                        NodeLossWait(),
                        ProgressCallback(progress),
                        stopper,
                        *callbacks,
                    ]
                ),
                CSVLoggerCallback(),
                JsonLoggerCallback(),
            ],
            stop=stopper,
            verbose=0,
        ),
    )
    try:
        return _population_result(tuner, stopper, progress, run_dir, max_epochs, experiment_path)
    finally:
        if own_progress:
            progress.close()


def _population_result(
    tuner: Any, stopper: Any, progress: RunProgress, run_dir: Path, max_epochs: int, experiment_path: str
) -> PopulationResult:
    """Run the population and sort out how it ended: interrupted, every trial failed, or done."""
    from autolfads.tune.collect import read_result_rows

    progress.update(force=True)
    results = tuner.fit()
    stopped_early = stopper.stop_all()
    # A member is done when it reported its last epoch (Ray's "done" flag is not reliable after a restore).
    last_epoch: dict[int, int] = {}
    for row in read_result_rows(run_dir):
        if CUR_EPOCH in row and WORKER_ID in row:
            worker = int(row[WORKER_ID])
            last_epoch[worker] = max(last_epoch.get(worker, -1), int(row[CUR_EPOCH]))
    unfinished = [
        r
        for r in results
        if r.error is None and last_epoch.get(int((r.config or {}).get(WORKER_ID, -1)), -1) + 1 < max_epochs
    ]
    if unfinished and not stopped_early:
        progress.set_phase("interrupted")
        raise RunInterrupted(
            f"the run in {run_dir} was interrupted with {len(unfinished)} of {len(results)} trials "
            "unfinished; continue it with --resume",
            len(unfinished),
            len(results),
        )
    if all(r.error is not None for r in results):
        raise AutoLFADSError(f"every trial failed; the first error: {next(iter(results)).error}")
    return PopulationResult(results=results, experiment_path=experiment_path, stopped_early=stopped_early)


def new_progress(
    run_dir: str | os.PathLike[str],
    settings: PBTSettings,
    max_epochs: int,
    mlflow_run_id: str | None = None,
    listeners: Sequence[ProgressListener] = (),
    live: bool | None = None,
) -> RunProgress:
    """The run's progress with its console view (a live block on a terminal unless ``live=False``)."""
    from autolfads.tune.console import PopulationView

    return RunProgress(
        run_dir,
        settings,
        max_epochs,
        mlflow_run_id=mlflow_run_id,
        listeners=listeners,
        view=PopulationView(live=live),
    )


# ------------------------------------------------------------------------------------------ AutoLFADS
def _config_for_run(
    data_paths: Sequence[str],
    config: str | os.PathLike[str] | None,
    out_dir: Path,
    overrides: Sequence[str],
    resume: bool,
) -> Any:
    from autolfads.config.loader import load_config, load_saved_config

    saved = out_dir / CONFIG_NAME
    if resume and saved.is_file():
        if overrides or config is not None:
            logger.info("resuming with the run's saved %s; --config and overrides are not re-applied", saved)
        return load_saved_config(saved)  # OUT is data too: checked as a user's file is

    return load_config(config, overrides=overrides, data_paths=data_paths)


def run_autolfads(
    data_paths: Sequence[str],
    config: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    resume: bool = False,
    address: str | None = None,
    overrides: Sequence[str] = (),
    callbacks: Sequence[Any] = (),
    listeners: Sequence[ProgressListener] = (),
    mlflow_run_id: str | None = None,
    live: bool | None = None,
    num_cpus: int | None = None,
    trials_uri: str | None = None,
    cfg: Any = None,
) -> RunResult:
    """Tune an LFADS population with PBT and package the best member into ``out_dir`` (interface 6).

    ``out_dir`` is local; for an ``s3://`` run the CLI passes a staging directory and ``trials_uri``.
    ``cfg``: the config the CLI already loaded and checked, and whose resume it already allowed (the
    fingerprint in ``autolfads.rundir``); without it the config is loaded here (on ``resume``, the run's
    saved ``config.yaml``).
    """
    out_dir = Path(out_dir)
    refuse_existing_run(out_dir, resume)
    # Trials run in Ray workers, whose working directory is not ours: local data paths go in absolute.
    data_paths = [p if is_remote(p) else str(local_path(p).absolute()) for p in data_paths]
    if cfg is not None:
        cfg = _with_absolute_data_paths(cfg)
    else:
        cfg = _config_for_run(data_paths, config, out_dir, overrides, resume)
    if "pbt" not in cfg:
        raise ConfigError("config has no 'pbt' block; autolfads run needs one (see docs/pbt.md)")
    settings = parse_pbt_block(cfg.pbt)
    max_epochs = _max_epochs(cfg)
    # A cluster that refuses us (its token) is one line before anything is written or torch is imported.
    ensure_ray(address, num_cpus=num_cpus)

    from autolfads.config.loader import save_resolved_config
    from autolfads.tune.entry import lfads_trial  # torch and Lightning are the trials' imports

    out_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(cfg, out_dir / CONFIG_NAME)
    progress = new_progress(out_dir, settings, max_epochs, mlflow_run_id, listeners, live)
    try:
        progress.update(force=True)
        run_config = _plain_config(cfg)
        population = run_population(
            lfads_trial,
            settings,
            out_dir,
            max_epochs=max_epochs,
            name=name or DEFAULT_NAME,
            resume=resume,
            trainable_kwargs={"run_config": run_config, "settings": settings},
            callbacks=[*callbacks, ImportOnceTraining()],
            trials_uri=trials_uri,
            progress=progress,
        )
        return finalize_run(population, cfg, settings, out_dir, progress=progress)
    except RunInterrupted:
        raise  # progress already says so
    except KeyboardInterrupt:
        progress.set_phase("interrupted")
        raise
    except Exception:
        progress.set_phase("failed")
        raise
    finally:
        progress.close()


def _with_absolute_data_paths(cfg: Any) -> Any:
    """A copy of ``cfg`` whose local data paths are absolute (trials run in another working directory)."""
    from omegaconf import ListConfig

    cfg = cfg.copy()
    paths = cfg.datamodule.get("data_paths")
    if isinstance(paths, ListConfig):
        cfg.datamodule.data_paths = [p if is_remote(p) else str(local_path(p).absolute()) for p in paths]
    return cfg


def _max_epochs(cfg: Any) -> int:
    value = cfg.get("trainer", {}).get("max_epochs") if "trainer" in cfg else None
    if value is None or isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"trainer.max_epochs: expected an integer >= 1 (the hard cap per trial), found {value!r}"
        )
    return int(value)


def _plain_config(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def finalize_run(
    population: PopulationResult,
    cfg: Any,
    settings: PBTSettings,
    out_dir: Path,
    mlflow_run_id: str | None = None,
    progress: RunProgress | None = None,
) -> RunResult:
    """Best member → ``model.ckpt``, posterior sampling, ``fitlog.csv``, ``pbt_history.csv``, the zip.

    ``progress`` (from :func:`run_population`) goes through the phases ``sampling`` (with the batches
    done, when it runs here), ``writing`` and ``succeeded``; without it a silent one writes
    ``progress.json``."""
    from omegaconf import OmegaConf

    from autolfads.outputs import write_fitlog
    from autolfads.outputs.atomic import atomic_copy
    from autolfads.outputs.bundle import write_autolfads_zip
    from autolfads.outputs.plots import draw_run_plots, plot_names
    from autolfads.tune.collect import best_member, population_fitlog, prune_checkpoints
    from autolfads.tune.sampling import POSTERIOR_DIR, SamplingJob, load_model, run_sampling
    from autolfads.tune.trainable import CHECKPOINT_FILE, member_config

    if progress is None:
        progress = RunProgress(out_dir, settings, _max_epochs(cfg), mlflow_run_id=mlflow_run_id)
    progress.set_phase("sampling")
    results = list(population.results)
    fitlog = population_fitlog(out_dir)
    best = best_member(results, fitlog, settings.metric, settings.mode)
    if best is None:
        raise AutoLFADSError(
            f"no trial reported a finite {settings.metric} with a checkpoint; nothing to select"
        )
    write_fitlog(fitlog, out_dir / "fitlog.csv")
    records = read_records(out_dir / HISTORY_JSONL)
    write_history_csv(records, out_dir / HISTORY_CSV)

    local = out_dir / ".best_checkpoint"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir()
    checkpoint = best.result.checkpoint  # only model.ckpt, by name: the directory listing is storage's
    source_path = f"{checkpoint.path}/{CHECKPOINT_FILE}"
    with (
        checkpoint.filesystem.open_input_stream(source_path) as source,
        open(local / CHECKPOINT_FILE, "wb") as sink,
    ):
        shutil.copyfileobj(source, sink)
    atomic_copy(local / CHECKPOINT_FILE, out_dir / "model.ckpt")
    shutil.rmtree(local, ignore_errors=True)

    hps = {key: best.result.config[key] for key in settings.space}
    best_cfg = member_config(OmegaConf.to_container(cfg, resolve=True), hps)  # type: ignore[arg-type]
    # In the driver on one machine; on a cluster whose head takes no work, a Ray task on a worker.
    sampling = SamplingJob(
        config=OmegaConf.to_container(best_cfg, resolve=True),  # type: ignore[arg-type]
        checkpoint_fs=best.result.checkpoint.filesystem,
        checkpoint_dir=best.result.checkpoint.path,
        outputs_dir=f"{population.experiment_path.rstrip('/')}/{POSTERIOR_DIR}",
        num_samples=int(OmegaConf.select(best_cfg, "posterior_sampling.num_samples", default=50)),
    )
    model = load_model(sampling.config, out_dir / "model.ckpt")  # small; also what MLflow logs
    run_sampling(sampling, model, out_dir, trial_resources(settings), progress=progress.step)
    progress.set_phase("writing")
    plots = draw_run_plots(out_dir)  # into the zip too (issue 4); a failed plot only warns
    zip_path = write_autolfads_zip(out_dir, extra=[HISTORY_CSV, CONFIG_NAME, *plot_names(plots)])
    prune_checkpoints(results, earlier_attempts=True)
    progress.set_phase("succeeded", best_metric=best.metric, best_trial=best.worker_id)
    logger.info(
        "best member: worker %d, %s = %.6g at epoch %d",
        best.worker_id,
        settings.metric,
        best.metric,
        best.epoch,
    )
    return RunResult(out_dir, best.worker_id, best.metric, zip_path, len(records), model=model)


__all__ = [
    "DEFAULT_NAME",
    "TRIALS_DIR",
    "PopulationResult",
    "RunInterrupted",
    "RunResult",
    "ensure_ray",
    "finalize_run",
    "initial_population",
    "param_space",
    "run_autolfads",
    "run_population",
    "trial_resources",
]
