"""What a run shows on the console: a live bar on a terminal, plain lines otherwise.

Training: Lightning's own progress bar shows only metrics logged with ``prog_bar=True``; here both views
read the main losses from ``trainer.callback_metrics`` so the model code needs no console concerns. Other
long work (posterior sampling) reports through :class:`WorkProgress`. A log file or a Kubernetes pod (no
TTY) gets plain, greppable lines instead of carriage-return redraws.
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
    """One line per finished epoch: ``epoch 3/40  train/recon 0.123  valid/recon ...  (1.2 s)``."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        width = len(str(trainer.max_epochs)) if trainer.max_epochs and trainer.max_epochs > 0 else 1
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        losses = "  ".join(f"{k} {_format_value(v)}" for k, v in main_metrics(trainer).items())
        seconds = time.perf_counter() - self._started
        line = f"epoch {trainer.current_epoch + 1:>{width}}{total}  {losses}  ({seconds:.1f} s)"
        print(line, file=self.stream or sys.stdout, flush=True)


class WorkProgress:
    """Progress of one long job counted in items (posterior sampling: trials).

    On a terminal a rich bar; otherwise a plain line at most every ``every_s`` seconds and one at the end:
    ``posterior sampling: 1024/2600 trials (39%), sess0 valid, 12 s``. Silent when not ``enabled``.
    """

    def __init__(
        self, description: str, total: int, unit: str = "trials", enabled: bool = True, stream: Any = None,
        every_s: float = 5.0,
    ) -> None:  # fmt: skip
        self.description, self.total, self.unit, self.enabled = description, total, unit, enabled
        self.stream = stream
        self.every_s = every_s
        self.done = 0
        self._started = self._last_line = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> WorkProgress:
        self._started = self._last_line = time.perf_counter()
        if self.enabled and self.stream is None and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, detail="")
        return self

    def advance(self, count: int, detail: str = "") -> None:
        self.done += count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, advance=count, detail=detail)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.every_s and self.done < self.total:
            self._last_line = now
            self._line(f"{self._count()}, {detail}, {now - self._started:.0f} s" if detail else self._count())

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.enabled and exc[0] is None:
            self._line(f"{self._count()} in {time.perf_counter() - self._started:.1f} s")

    def _count(self) -> str:
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        return f"{self.done}/{self.total} {self.unit}{share}"

    def _line(self, text: str) -> None:
        print(f"{self.description}: {text}", file=self.stream or sys.stdout, flush=True)


def console_callbacks(progress: bool) -> list[Callback]:
    """The console view for a run: a live bar on a TTY, epoch lines otherwise, nothing if not ``progress``."""
    if not progress:
        return []
    if sys.stdout.isatty():
        return [LossProgressBar(leave=True)]
    return [EpochLines()]


__all__ = [
    "MAIN_METRICS",
    "EpochLines",
    "LossProgressBar",
    "WorkProgress",
    "console_callbacks",
    "main_metrics",
]
