"""The Ray trial function: one population member trains LFADS until Ray pauses or stops it.

Each (re)start builds the datamodule and model from the run config with this member's hyperparameters,
restores the checkpoint Ray hands it (its own, or its tournament winner's; on ``autolfads run --resume``,
its checkpoint at the resumed boundary, ``autolfads.tune.resume``) weights-only, and then, **after** the
restore, calls ``model.update_hyperparameters`` so perturbed values take effect, the learning rate
included (the reference let the restored optimizer state undo a perturbed lr; lfads-spec §5.7, §11.2).
The ``valid/recon_smth`` smoothing state travels in the model checkpoint (MODEL), so it survives.

Seeds: every (re)start of a member reseeds torch, numpy and ``random`` once the checkpoint is restored
(``MemberSeed``), with a seed derived from the run's ``seed``, the member's ``worker_id`` and the epoch it
starts at. So each member and each generation draws its own dropout and coordinated-dropout masks,
posterior noise and batch order (the reference's PBT config uses ``seed: null`` for the same reason),
and a generation trained again from the same checkpoint with the same hyperparameters (a restarted trial,
a resumed run) draws the same ones. ``seed: null`` draws fresh seeds from the operating system instead.

Every epoch reports all logged metrics plus ``lr-AdamW``, ``worker_id`` (the persistent member index),
``generation`` and ``step`` through ``tune.report``; at a generation boundary and at the last epoch the
report carries a checkpoint (``model.ckpt``), which Ray copies into its storage: no filesystem is shared
between trials.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from ray import tune

from autolfads.config.pbt import PBTSettings
from autolfads.constants import CUR_EPOCH, GENERATION, LR_METRIC, WORKER_ID
from autolfads.tune.devices import DEVICE, DEVICE_NOTE, NODE_ID, TrialDevice, current_node_id, trial_device
from autolfads.tune.resume import ResumeCheckpoints

CHECKPOINT_FILE = "model.ckpt"
MODEL_PREFIX = "model."


def member_config(run_config: Mapping[str, Any], hps: Mapping[str, Any]) -> DictConfig:
    """The run config with this member's HP values written at their config paths."""
    cfg = OmegaConf.create(dict(run_config))
    for key, value in hps.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def model_updates(hps: Mapping[str, Any]) -> dict[str, float]:
    """HPs under ``model.`` with that prefix removed: the keys ``LFADS.update_hyperparameters`` takes."""
    return {k[len(MODEL_PREFIX) :]: float(v) for k, v in hps.items() if k.startswith(MODEL_PREFIX)}


def member_seed(seed: int | None, worker_id: int, start_epoch: int) -> int:
    """The 32-bit seed of member ``worker_id`` (re)starting at ``start_epoch``; None: fresh OS entropy.

    Derived through numpy's ``SeedSequence`` (a hash of the three numbers), so nearby runs, members and
    epochs get unrelated streams, unlike ``seed + worker_id``.
    """
    if seed is None:
        return secrets.randbits(32)
    entropy = [int(seed) % 2**64, int(worker_id), int(start_epoch)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class MemberSeed(pl.Callback):
    """Reseeds everything for the epochs a member trains in this start (see the module docstring).

    ``on_train_start`` runs after Lightning restored the checkpoint and before the first epoch draws its
    batch order, so ``trainer.current_epoch`` is the epoch the member starts at.
    """

    def __init__(self, seed: int | None, worker_id: int) -> None:
        self.seed = seed
        self.worker_id = worker_id

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed = member_seed(self.seed, self.worker_id, trainer.current_epoch)
        pl.seed_everything(seed, workers=True, verbose=False)


def epoch_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """Every scalar the model logged this epoch (train and valid), as floats."""
    metrics: dict[str, float] = {}
    for name, value in trainer.callback_metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float):
            metrics[name] = float(value)
    optimizers = trainer.optimizers
    if optimizers:
        metrics[LR_METRIC] = float(optimizers[0].param_groups[0]["lr"])
    return metrics


class TrialReporter(pl.Callback):
    """Applies the member's HPs after any restore, and reports each epoch to Ray Tune."""

    def __init__(
        self,
        settings: PBTSettings,
        hps: Mapping[str, Any],
        worker_id: int,
        max_epochs: int,
        started: float | None = None,
        device: TrialDevice | None = None,
    ) -> None:
        self.settings = settings
        self.device = device or TrialDevice("cpu")
        self.node_id = current_node_id()
        self.hps = dict(hps)
        self.worker_id = worker_id
        self.max_epochs = max_epochs
        self._started = time.perf_counter() if started is None else started
        self._setup_s = 0.0  # trial start to first training batch: what a (re)start costs in the trial
        self._report_s = 0.0  # how long the previous tune.report blocked: the driver's round trip

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after Lightning restored weights, optimizer and loop state from ckpt_path.
        updates = model_updates(self.hps)
        if updates and hasattr(pl_module, "update_hyperparameters"):
            pl_module.update_hyperparameters(updates)
        self._setup_s = time.perf_counter() - self._started

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        metrics = epoch_metrics(trainer)
        metrics.update(
            {
                CUR_EPOCH: epoch,
                "epoch": epoch,
                "step": trainer.global_step,
                WORKER_ID: self.worker_id,
                GENERATION: self.settings.generation_of(epoch),
                # Recorded by the driver, not in fitlog: which process trained it, and where the time
                # went (epoch = train + validation, setup, report round trip, wall clock at the report),
                # for bench/bench_pbt.py's training fraction and overhead breakdown.
                "pid": os.getpid(),
                "epoch_s": time.perf_counter() - getattr(self, "_epoch_start", time.perf_counter()),
                "setup_s": self._setup_s,
                "report_s": self._report_s,
                "reported_at": time.time(),
                # Where it ran (placement checks) and on what; the note says why a GPU share went unused.
                NODE_ID: self.node_id,
                DEVICE: self.device.device,
            }
        )
        if self.device.note:
            metrics[DEVICE_NOTE] = self.device.note
        self._setup_s = 0.0
        for key, value in self.hps.items():
            metrics.setdefault(f"hp/{key.rsplit('.', 1)[-1]}", float(value))
        done = epoch + 1
        reported = time.perf_counter()
        self._report(trainer, metrics, done)
        self._report_s = time.perf_counter() - reported

    def _report(self, trainer: pl.Trainer, metrics: dict[str, Any], done: int) -> None:
        if self.settings.is_boundary(done) or done >= self.max_epochs:
            directory = tempfile.mkdtemp(prefix="autolfads-ckpt-")
            try:
                trainer.save_checkpoint(os.path.join(directory, CHECKPOINT_FILE))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        else:
            tune.report(metrics)


def lfads_trial(
    config: dict[str, Any],
    *,
    run_config: Mapping[str, Any],
    settings: PBTSettings,
    resume_from: ResumeCheckpoints | None = None,
) -> None:
    """Ray Tune function trainable for one member; ``config`` holds ``worker_id`` and the HP values.

    ``resume_from`` (``autolfads run --resume``): the member's checkpoint at the resumed boundary, used
    when Ray hands the trial none of its own yet.
    """
    from autolfads.train import quiet_lightning

    started = time.perf_counter()
    worker_id = int(config[WORKER_ID])
    hps = {key: config[key] for key in settings.space}
    cfg = member_config(run_config, hps)
    # A diverged member must report NaN and lose its tournament, not crash on a distribution's argument
    # check (NaN means) and drop out of the population.
    torch.distributions.Distribution.set_default_validate_args(False)
    resources = tune.get_context().get_trial_resources().required_resources
    torch.set_num_threads(max(1, math.floor(resources.get("CPU", 1))))
    device = trial_device(float(resources.get("GPU", 0)))
    if device.note:
        _warn_once(f"worker {worker_id}: {device.note}")
    with open_dict(cfg):
        cfg.trainer.update(device.trainer_options(cfg.trainer.get("accelerator")))
    work = Path(tempfile.mkdtemp(prefix=f"autolfads-worker{worker_id}-"))
    try:
        with quiet_lightning():
            max_epochs = int(cfg.trainer.max_epochs)
            reporter = TrialReporter(settings, hps, worker_id, max_epochs, started, device)
            ckpt_path = _restore_checkpoint(work, worker_id, resume_from)
            fit_member(cfg, worker_id, work, ckpt_path, [reporter])
    finally:
        shutil.rmtree(work, ignore_errors=True)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """In the trial's process log (the driver repeats the first such note in the run's own output)."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger("autolfads.tune").warning(message)


def fit_member(
    cfg: DictConfig,
    worker_id: int,
    work: Path,
    ckpt_path: str | None,
    callbacks: list[pl.Callback],
) -> pl.Trainer:
    """Build one member from ``cfg`` (its HPs written in), restore ``ckpt_path`` and train to max_epochs.

    What a trial does between Ray's hand-over and its reports, without Ray (tests call it directly).
    ``ckpt_path`` is loaded weights-only (``autolfads.train.fit_model``); ``MemberSeed`` reseeds from the
    epoch it restores, so a member resumed from ``pbt_state.json`` reseeds from its boundary epoch.
    """
    from autolfads.train import build_datamodule, build_model, build_trainer, fit_model

    seed = cfg.get("seed", 0)
    # the initial weights (a restart's are replaced by the checkpoint's); MemberSeed then seeds the epochs
    pl.seed_everything(member_seed(seed, worker_id, 0), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    model = build_model(cfg)
    with open_dict(cfg):
        if ckpt_path is not None:
            cfg.trainer.num_sanity_val_steps = 0  # checked at the first start; a restart skips it
    trainer = build_trainer(
        cfg,
        work,
        extra_callbacks=[MemberSeed(seed, worker_id), *callbacks],
        loggers=None,  # a throwaway CSV log in the work dir (LearningRateMonitor needs a logger)
        progress=False,
        checkpoint=False,
    )
    fit_model(trainer, model, datamodule, ckpt_path)  # a checkpoint loads weights-only
    return trainer


def _restore_checkpoint(work: Path, worker_id: int, resume_from: ResumeCheckpoints | None) -> str | None:
    """Copy the checkpoint this trial continues from to local disk; None on a fresh start.

    Ray's (own or the tournament winner's) first; else, on a resumed run, the member's boundary checkpoint.
    Only ``model.ckpt`` is copied, by its fixed name: nothing else in a checkpoint directory (whose listing
    comes from storage) decides where bytes land on this machine.
    """
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        location = (checkpoint.filesystem, checkpoint.path)
    elif resume_from is not None:
        location = resume_from.location(worker_id)
    else:
        location = None
    if location is None:
        return None
    filesystem, directory = location
    target = work / "restore" / CHECKPOINT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        source_path = f"{directory.rstrip('/')}/{CHECKPOINT_FILE}"
        with filesystem.open_input_stream(source_path) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    except FileNotFoundError:
        return None
    return str(target)


__all__ = [
    "CHECKPOINT_FILE",
    "MemberSeed",
    "TrialReporter",
    "epoch_metrics",
    "fit_member",
    "lfads_trial",
    "member_config",
    "member_seed",
    "model_updates",
]
