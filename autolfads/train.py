"""One LFADS model, one process: config → datamodule + model → Lightning fit → the run's output files.

``autolfads train`` calls :func:`train_model`; PBT trials (``autolfads.tune``) reuse the builders with
their own callbacks and loggers. A finished ``out_dir`` holds exactly:

- ``model.ckpt``: the best epoch by ``valid/recon_smth`` (loads with ``LFADS.load_from_checkpoint(path)``);
- ``lfads_output_sess{s}.h5``: the input file plus 50-sample posterior means, from that best model
  (``posterior_sampling.use_best_ckpt: false``: from the last epoch's model; ``num_samples`` sets the 50);
- ``fitlog.csv``: one row per epoch (``autolfads.outputs.fitlog``);
- ``config.yaml``: the fully resolved config that ran (seed included).

Lightning's working files (CSV log, checkpoints) go to ``out_dir/.lightning`` and are removed after the
outputs are written; every output file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.trainer.states import TrainerStatus
from omegaconf import DictConfig, OmegaConf, open_dict

from autolfads.config.loader import save_resolved_config
from autolfads.config.safety import check_data
from autolfads.constants import PBT_METRIC
from autolfads.errors import AutoLFADSError, CheckpointError, ConfigError, find_user_error
from autolfads.outputs.atomic import atomic_copy
from autolfads.outputs.console import PhaseLines, console_callbacks
from autolfads.outputs.fitlog import read_fitlog, write_fitlog
from autolfads.outputs.posterior import run_posterior_sampling

CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "model.ckpt"
FITLOG_NAME = "fitlog.csv"
WORK_DIR = ".lightning"  # Lightning's own files while the run is alive (kept after Ctrl-C, for --resume)
EARLIER_METRICS = "metrics_before_resume.csv"
DONE_FILE = "DONE.json"
CSV_SUBDIR = "csv_logs"
CHECKPOINT_SUBDIR = "checkpoints"
DEFAULT_SEED = 0
DEFAULT_NUM_SAMPLES = 50
# The key under which a checkpoint carries the run's resolved config, so ``autolfads infer`` can rebuild
# the datamodule settings without the original config file.
CONFIG_CHECKPOINT_KEY = "autolfads_config"

# Names in ``out_dir`` that mean "a finished (or partly written) run lives here".
RESULT_GLOBS = (CHECKPOINT_NAME, FITLOG_NAME, CONFIG_NAME, "lfads_output_sess*.h5", "autolfads.zip")

# Trainer keys this module sets itself; a config value for them would be silently overridden, so refuse it.
_MANAGED_TRAINER_KEYS = ("callbacks", "logger", "default_root_dir", "enable_progress_bar")


@dataclass(frozen=True)
class TrainResult:
    """Where a finished run's files are and how it ended."""

    out_dir: Path
    checkpoint: Path
    fitlog: Path
    config: Path
    outputs: tuple[Path, ...]
    best_metric: float  # the best valid/recon_smth (NaN if never computed)
    best_epoch: int | None  # 0-based, as in fitlog.csv
    epochs: int  # epochs trained
    interrupted: bool = False  # stopped by Ctrl-C: the outputs are the best checkpoint's so far

    @property
    def names(self) -> list[str]:
        """The output files' names (what ``DONE.json`` lists)."""
        return [p.name for p in (self.checkpoint, self.fitlog, self.config, *self.outputs)]

    @classmethod
    def nothing(cls, out_dir: Path, epochs: int) -> TrainResult:
        """Interrupted before any validation: no checkpoint to write outputs from."""
        missing = out_dir / CHECKPOINT_NAME
        return cls(out_dir, missing, missing, missing, (), float("nan"), None, epochs, interrupted=True)

    def moved_to(self, out_dir: Path) -> TrainResult:
        """The same result with its files under ``out_dir`` (after a ``--force`` staging folder moved)."""

        def moved(path: Path) -> Path:
            return out_dir / path.relative_to(self.out_dir)

        return dataclasses.replace(
            self,
            out_dir=out_dir,
            checkpoint=moved(self.checkpoint),
            fitlog=moved(self.fitlog),
            config=moved(self.config),
            outputs=tuple(moved(p) for p in self.outputs),
        )


# ---------------------------------------------------------------------------------------------- builders
def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def build_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """Instantiate ``cfg.datamodule`` (a ``_target_`` mapping) with plain Python values.

    Like :func:`build_model`, checks the block (allowed targets, no resolvers) first: trials rebuild both
    from the run config they are handed, not from ``load_config``.
    """
    if "datamodule" not in cfg:
        raise ConfigError("config has no 'datamodule' block")
    check_data(OmegaConf.to_container(cfg.datamodule, resolve=False), "datamodule")
    return _instantiate(cfg.datamodule, "datamodule", _convert_="all")


def build_model(cfg: DictConfig) -> pl.LightningModule:
    """Instantiate ``cfg.model``; its module-valued arguments stay plain mappings the model builds itself."""
    if "model" not in cfg:
        raise ConfigError("config has no 'model' block")
    check_data(OmegaConf.to_container(cfg.model, resolve=False), "model")
    return _instantiate(cfg.model, "model", _recursive_=False, _convert_="all")


def _instantiate(node: Any, block: str, **kwargs: Any) -> Any:
    """Hydra's ``instantiate`` with the project's own one-line errors unwrapped from its
    ``InstantiationException``, and a constructor's TypeError/ValueError as a ConfigError naming the block."""
    try:
        return instantiate(node, **kwargs)
    except Exception as error:
        cause = find_user_error(error)
        if cause is not None:
            raise cause from None
        innermost = _innermost(error)
        if isinstance(innermost, TypeError | ValueError | OverflowError):
            raise ConfigError(f"{block}: {_first_line(innermost)}") from error
        raise


def _innermost(error: BaseException) -> BaseException:
    seen: set[int] = set()
    while (error.__cause__ or error.__context__) is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return error


def build_trainer(
    cfg: DictConfig,
    out_dir: str | os.PathLike[str],
    extra_callbacks: Sequence[pl.Callback] = (),
    loggers: Sequence[Any] | None = None,
    max_epochs: int | None = None,
    progress: bool = True,
    checkpoint: bool | None = None,
) -> pl.Trainer:
    """A Trainer from ``cfg.trainer`` with this project's callbacks and loggers.

    - ``loggers=None``: a CSVLogger writing ``out_dir/.lightning/csv_logs/metrics.csv``; pass a list
      (possibly empty) to use your own.
    - ``checkpoint``: keep the best epoch by ``valid/recon_smth`` (and the last one) in
      ``out_dir/.lightning/checkpoints``; default: unless ``trainer.enable_checkpointing`` is false.
    - Always: the run's config saved in every checkpoint; LearningRateMonitor (``lr-AdamW`` per epoch)
      when there is a logger; with ``progress`` a live bar on a TTY or one line per epoch otherwise.
    - A ``trainer`` option Lightning rejects (unknown key, an accelerator this machine lacks) is a
      ConfigError.
    """
    work = Path(out_dir) / WORK_DIR
    options = dict(_container(cfg.get("trainer")) or {})
    for key in _MANAGED_TRAINER_KEYS:
        if key in options:
            raise ConfigError(f"trainer.{key} is set by autolfads itself; remove it from the config")
    if max_epochs is not None:
        options["max_epochs"] = max_epochs
    if checkpoint is None:
        checkpoint = bool(options.get("enable_checkpointing", True))
    options["enable_checkpointing"] = checkpoint
    options.setdefault("enable_model_summary", False)

    if loggers is None:
        loggers = [CSVLogger(save_dir=work, name=CSV_SUBDIR, version="")]
    callbacks: list[pl.Callback] = [ConfigInCheckpoint(cfg)]
    if loggers:  # Lightning refuses a learning-rate monitor without a logger
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if checkpoint:
        callbacks.append(
            ModelCheckpoint(
                dirpath=work / CHECKPOINT_SUBDIR,
                filename="best",
                monitor=PBT_METRIC,
                mode="min",
                save_top_k=1,
                save_last=True,
                auto_insert_metric_name=False,
            )
        )
    callbacks += console_callbacks(progress)
    callbacks += list(extra_callbacks)
    try:
        return pl.Trainer(
            **options,
            callbacks=callbacks,
            logger=list(loggers) if loggers else False,
            default_root_dir=work,
            enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        )
    except (TypeError, ValueError, MisconfigurationException) as error:
        raise ConfigError(f"trainer: {_first_line(error)}") from error


class ConfigInCheckpoint(Callback):
    """Stores the resolved run config in every checkpoint under ``autolfads_config``.

    ``autolfads infer`` reads it back to rebuild the datamodule settings without the original config file.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.config = _container(cfg)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_CHECKPOINT_KEY] = self.config


def fit_model(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    ckpt_path: str | os.PathLike[str] | None = None,
) -> None:
    """``trainer.fit``; resuming from ``ckpt_path`` loads it weights-only (``autolfads.model.checkpoint``):
    a checkpoint handed over by Ray or found in OUT is data, never code."""
    import pickle

    from autolfads.model.checkpoint import refusal, weights_only_loading

    if ckpt_path is None:
        trainer.fit(model, datamodule=datamodule)
        return
    try:
        with weights_only_loading():
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(refusal(ckpt_path, error)) from None


# ---------------------------------------------------------------------------------------------- console
@contextlib.contextmanager
def quiet_lightning(ignore_warnings: bool = False) -> Iterator[None]:
    """Hide Lightning's chatter (device banners, litlogger tips, dataloader-worker hints) for one run.

    Warnings about *our* inputs still show, unless ``ignore_warnings`` (the config key of that name, as in
    the reference) hides every warning; only messages a user cannot act on are filtered by default.
    """
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in (
                r".*does not have many workers.*",
                r".*smaller than the logging interval.*",
                r".*isinstance\(treespec, LeafSpec\).*",
                r".*Checkpoint directory .* exists and is not empty.*",
                r".*`training_step` returned `None`.*",
            ):
                warnings.filterwarnings("ignore", message=pattern)
            if ignore_warnings:
                warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


# ---------------------------------------------------------------------------------------------- outputs
def existing_results(out_dir: Path) -> list[Path]:
    """Result files already in ``out_dir`` (what ``--force`` would overwrite)."""
    if not out_dir.is_dir():
        return []
    found: list[Path] = []
    for pattern in RESULT_GLOBS:
        found += sorted(out_dir.glob(pattern))
    return found


def _seed(cfg: DictConfig) -> int | None:
    seed = cfg.get("seed", DEFAULT_SEED)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or null, found {seed!r}")
    return seed


def train_model(
    cfg: DictConfig,
    out_dir: str | os.PathLike[str],
    force: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Fit one model on ``cfg`` and write ``model.ckpt``, ``lfads_output_sess*.h5``, ``fitlog.csv``,
    ``config.yaml`` and, last, ``DONE.json`` into ``out_dir``.

    ``out_dir`` is claimed first (``autolfads.rundir``): a run going on there is refused, and so are
    earlier results unless ``resume`` (the same inputs: continue the fit from its last epoch) or ``force``
    (train into a staging folder, replace the old results when this run completes). The seed is
    ``cfg.seed`` (default 0; null for a different initialisation each run).
    """
    from autolfads.config.dims import data_paths_of
    from autolfads.rundir import claim_out
    from autolfads.rundir.fingerprint import compute_fingerprint

    plain = OmegaConf.to_container(cfg, resolve=True)
    fingerprint = compute_fingerprint([(p, p) for p in data_paths_of(cfg)], plain)  # type: ignore[arg-type]
    with claim_out(
        str(out_dir), "autolfads train", resume=resume, force=force, fingerprint=fingerprint
    ) as claim:
        if claim.mode == "finished":
            raise AutoLFADSError(f"the run in {out_dir} finished already ({DONE_FILE}); nothing to resume")
        result = fit_and_write(cfg, claim.local_target, resume=claim.resume, progress=progress)
        if result.interrupted:
            raise KeyboardInterrupt
        claim.complete(claim.local_target, result.names, "autolfads train")
    return result.moved_to(Path(out_dir))


def fit_and_write(
    cfg: DictConfig, out_dir: Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Fit (or, with ``resume``, continue from ``.lightning``'s last checkpoint) and write the outputs.

    The caller owns ``out_dir`` (``autolfads.rundir.claim_out``). Ctrl-C stops the fit cleanly at the end
    of the current epoch (a second Ctrl-C at once); the outputs of the best checkpoint so far are then
    written, Lightning's checkpoints are kept for ``--resume``, and the result says ``interrupted``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.seed = _seed(cfg)
    num_samples = int(OmegaConf.select(cfg, "posterior_sampling.num_samples", default=DEFAULT_NUM_SAMPLES))
    work = out_dir / WORK_DIR
    last = work / CHECKPOINT_SUBDIR / "last.ckpt"
    resume_from = last if resume and last.is_file() else None
    if resume_from is None:
        shutil.rmtree(work, ignore_errors=True)  # a fresh fit: no other run's checkpoints or logs
    earlier_metrics = _set_aside_metrics(work) if resume_from is not None else None
    with quiet_lightning(bool(cfg.get("ignore_warnings", False))):
        if cfg.seed is not None:
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
        datamodule = build_datamodule(cfg)
        model = build_model(cfg)
        trainer = build_trainer(cfg, out_dir, progress=progress, checkpoint=True)
        with stop_on_interrupt(trainer) as stop:
            try:
                fit_model(trainer, model, datamodule, resume_from)  # a checkpoint loads weights-only
            except SystemExit:  # Lightning's answer to a KeyboardInterrupt it caught (the second Ctrl-C)
                if trainer.state.status != TrainerStatus.INTERRUPTED:
                    raise
            interrupted = stop.requested or trainer.interrupted
            best = _best_checkpoint(trainer)
            if interrupted and best is None:
                return TrainResult.nothing(out_dir, trainer.current_epoch)
            use_best = bool(OmegaConf.select(cfg, "posterior_sampling.use_best_ckpt", default=True))
            if best is not None and (use_best or interrupted):
                model = type(model).load_from_checkpoint(best, map_location="cpu")
            model = model.to(trainer.strategy.root_device)  # sample on the device that trained
            checkpoint = out_dir / CHECKPOINT_NAME
            if best is not None:
                atomic_copy(best, checkpoint)
            else:  # no validation ran (e.g. zero epochs): keep the final state
                trainer.save_checkpoint(work / "final.ckpt")
                atomic_copy(work / "final.ckpt", checkpoint)
            outputs = sample_posterior(model, datamodule, out_dir, num_samples, progress=progress)
    metrics = _metrics_so_far(work, earlier_metrics)
    sources = [metrics] if metrics is not None else []
    # worker 0: a population of one, so the NeuroCAAS way of reading fitlog.csv (per worker) works too
    fitlog = write_fitlog(sources, out_dir / FITLOG_NAME, worker_ids=[0] * len(sources))
    config = save_resolved_config(cfg, out_dir / CONFIG_NAME)
    best_metric, best_epoch = _best_row(fitlog)
    if not interrupted:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(
        out_dir=out_dir,
        checkpoint=checkpoint,
        fitlog=fitlog,
        config=config,
        outputs=tuple(outputs),
        best_metric=best_metric,
        best_epoch=best_epoch,
        epochs=trainer.current_epoch,
        interrupted=interrupted,
    )


class _StopRequest:
    """SIGINT handler for a fit: the first Ctrl-C asks Lightning to stop after this epoch, the second
    stops at once (Lightning's own KeyboardInterrupt handling)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        self.trainer = trainer
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.trainer.should_stop = True
        print(
            "\nstopping after this epoch, then writing the outputs of the best checkpoint so far "
            "(Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def stop_on_interrupt(trainer: pl.Trainer) -> Iterator[_StopRequest]:
    """Install :class:`_StopRequest` for SIGINT while a fit runs (main thread only); restore after."""
    request = _StopRequest(trainer)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _set_aside_metrics(work: Path) -> Path | None:
    """Lightning's CSV logger starts its file afresh: keep the epochs logged before a resume."""
    current = work / CSV_SUBDIR / "metrics.csv"
    kept = work / EARLIER_METRICS
    combined = _metrics_so_far(work, kept if kept.is_file() else None)
    if combined is None:
        return None
    if combined != kept:
        shutil.copyfile(combined, kept)
    current.unlink(missing_ok=True)
    return kept


def _metrics_so_far(work: Path, earlier: Path | None) -> Path | None:
    """Lightning's metrics.csv, after the epochs logged before a resume (the later log wins an epoch)."""
    import pandas as pd

    current = work / CSV_SUBDIR / "metrics.csv"
    if earlier is None or not earlier.is_file():
        return current if current.is_file() else None
    if not current.is_file():
        return earlier
    old, new = pd.read_csv(earlier), pd.read_csv(current)
    if "epoch" in new.columns and len(new) and "epoch" in old.columns:
        old = old[old["epoch"] < new["epoch"].min()]
    merged = work / "metrics_merged.csv"
    pd.concat([old, new], ignore_index=True).to_csv(merged, index=False)
    return merged


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _checkpoint_callback(trainer: pl.Trainer) -> Any:
    return trainer.checkpoint_callback


def _best_checkpoint(trainer: pl.Trainer) -> Path | None:
    callback = _checkpoint_callback(trainer)
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return Path(path) if path else None


def _best_row(fitlog: Path) -> tuple[float, int | None]:
    """The lowest ``valid/recon_smth`` in the fitlog and its epoch (NaN, None when never computed)."""
    frame = read_fitlog(fitlog)
    if PBT_METRIC not in frame.columns or frame[PBT_METRIC].isna().all():
        return float("nan"), None
    row = frame.loc[frame[PBT_METRIC].idxmin()]
    return float(row[PBT_METRIC]), int(row["epoch"])


__all__ = [
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "FITLOG_NAME",
    "ConfigInCheckpoint",
    "TrainResult",
    "build_datamodule",
    "build_model",
    "build_trainer",
    "existing_results",
    "fit_and_write",
    "fit_model",
    "infer_model",
    "quiet_lightning",
    "stop_on_interrupt",
    "train_model",
]


# ---------------------------------------------------------------------------------------------- inference
def infer_model(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_samples: int = DEFAULT_NUM_SAMPLES,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Posterior means for the trials of ``data`` from a trained ``checkpoint`` → ``lfads_output_sess0.h5``.

    The datamodule settings (batch size, ...) come from the config stored in the checkpoint; a file whose
    dimensions differ from the model's is refused naming both. ``progress``: sampling progress on the
    console (:class:`PhaseLines`).
    """
    from autolfads.data import inspect_data_file
    from autolfads.data.datamodule import LFADSDataModule
    from autolfads.model import LFADS
    from autolfads.model.checkpoint import load_checkpoint

    out_dir = Path(out_dir)
    existing = sorted(out_dir.glob("lfads_output_sess*.h5")) if out_dir.is_dir() else []
    if existing and not force:
        raise AutoLFADSError(
            f"--out {out_dir} already holds {existing[0].name}; choose another directory or pass --force"
        )
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise AutoLFADSError(f"checkpoint {checkpoint} does not exist")
    summary = inspect_data_file(data, check_values=False)
    saved = load_checkpoint(checkpoint)  # weights-only: a checkpoint is data (docs/security.md)
    try:
        model = LFADS.load_from_checkpoint(checkpoint, map_location="cpu")
    except AutoLFADSError:
        raise
    except Exception as error:  # Lightning raises many types for a file that is not our checkpoint
        raise AutoLFADSError(
            f"{checkpoint} is not a model checkpoint this version can load ({_first_line(error)})"
        ) from error
    hparams = model.hparams
    n_sessions = len(hparams.get("readin", [None]))
    if n_sessions != 1:
        raise AutoLFADSError(f"{checkpoint} is a {n_sessions}-session model; infer takes one-session models")
    for key, found in (
        ("encod_data_dim", summary.encod_data_dim),
        ("encod_seq_len", summary.encod_seq_len),
        ("ext_input_dim", summary.ext_input_dim),
    ):
        expected = hparams.get(key)
        if expected is not None and int(expected) != found:
            raise AutoLFADSError(
                f"{data}: {key} is {found} but the model in {checkpoint} was trained with {expected}"
            )
    batch_size = _stored_batch_size(saved, checkpoint)
    datamodule = LFADSDataModule(data_paths=[str(data)], batch_size=batch_size)
    with quiet_lightning():
        return sample_posterior(model, datamodule, out_dir, num_samples, progress=progress)


def sample_posterior(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: Path,
    num_samples: int,
    progress: bool = True,
) -> list[Path]:
    """:func:`run_posterior_sampling` with its progress on the console when ``progress`` (a bar on a
    terminal, a line every 10 % or 30 s otherwise: :class:`PhaseLines`)."""
    if not progress:
        return run_posterior_sampling(model, datamodule, out_dir, num_samples=num_samples)
    with PhaseLines(f"posterior sampling ({num_samples} samples)") as lines:
        return run_posterior_sampling(model, datamodule, out_dir, num_samples=num_samples, progress=lines)


def _stored_batch_size(saved: dict[str, Any], checkpoint: Path) -> int:
    """``datamodule.batch_size`` of the config stored in the checkpoint (256 when it has none)."""
    stored = saved.get(CONFIG_CHECKPOINT_KEY)
    datamodule = stored.get("datamodule") if isinstance(stored, dict) else None
    value = datamodule.get("batch_size", 256) if isinstance(datamodule, dict) else 256
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AutoLFADSError(
            f"{checkpoint}: its stored datamodule.batch_size must be a positive integer, found {value!r}"
        )
    return value
