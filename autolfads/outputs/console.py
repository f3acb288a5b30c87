"""What a training run shows on the console: a live bar on a terminal, one line per epoch otherwise.

Lightning's own progress bar shows only metrics logged with ``prog_bar=True``; here both views read the
main losses from ``trainer.callback_metrics`` so the model code needs no console concerns. A log file or
a Kubernetes pod (no TTY) gets plain, greppable lines instead of carriage-return redraws.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar

from autolfads.constants import PBT_METRIC, split_metric

# The losses a user watches: training fit, validation fit, and the smoothed objective that picks the best.
MAIN_METRICS = (split_metric("train", "recon"), split_metric("valid", "recon"), PBT_METRIC)


def main_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The main losses logged so far this epoch, as floats (missing ones left out)."""
    found = {}
    for name in MAIN_METRICS:
        value = trainer.callback_metrics.get(name)
        if value is not None:
            found[name] = float(value)
    return found


def _format_value(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.5g}"


class LossProgressBar(RichProgressBar):
    """Rich bar (epochs and batches) with the main losses, for interactive terminals."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        return {name: _format_value(value) for name, value in main_metrics(trainer).items()}


class EpochLines(Callback):
    """One line per finished epoch: ``epoch 3/39  train/recon 0.123  valid/recon ...  (1.2 s)``.

    Epochs are numbered from 0 to max_epochs − 1 everywhere (these lines, Lightning's bar, fitlog.csv,
    the summary's "best at epoch", PBT's progress), as Lightning and the reference's fitlog number them.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        last = trainer.max_epochs - 1 if trainer.max_epochs and trainer.max_epochs > 0 else None
        width = len(str(last)) if last is not None else 1
        total = f"/{last}" if last is not None else ""
        losses = "  ".join(f"{k} {_format_value(v)}" for k, v in main_metrics(trainer).items())
        seconds = time.perf_counter() - self._started
        line = f"epoch {trainer.current_epoch:>{width}}{total}  {losses}  ({seconds:.1f} s)"
        print(line, file=self.stream or sys.stdout, flush=True)


def console_callbacks(progress: bool) -> list[Callback]:
    """The console view for a run: a live bar on a TTY, epoch lines otherwise, nothing if not ``progress``."""
    if not progress:
        return []
    if sys.stdout.isatty():
        return [LossProgressBar(leave=True)]
    return [EpochLines()]


__all__ = ["MAIN_METRICS", "EpochLines", "LossProgressBar", "console_callbacks", "main_metrics"]
