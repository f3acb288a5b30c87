"""What a run shows on the console: a live bar on a terminal, plain lines otherwise.

Training: Lightning's own progress bar shows only metrics logged with ``prog_bar=True``; here both views
read the main losses from ``trainer.callback_metrics`` so the model code needs no console concerns. Other
long work (posterior sampling) reports through :class:`PhaseLines`. A log file or a Kubernetes pod (no
TTY) gets plain, greppable lines instead of carriage-return redraws.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, RichProgressBar

from autolfads.constants import PBT_METRIC, split_metric
from autolfads.outputs.phases import PLAIN_STEP_FRACTION, PLAIN_STEP_SECONDS, duration

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


class PhaseLines:
    """Progress of the work after training (posterior sampling) for ``train`` and ``infer``: a
    :class:`autolfads.outputs.phases.PhaseProgress` that shows ``progress(done, total, unit)`` on the console.

    The conventions of ``autolfads run``'s console (``autolfads.tune.console``): on a terminal a live rich
    bar; otherwise a plain line at the start, every 10 % or 30 s, and at the end, e.g.
    ``posterior sampling: 640/1300 trials (49%), elapsed 12s, ETA 13s``. Use it as a context manager so
    the bar is taken down when the work ends or fails.
    """

    def __init__(self, description: str, live: bool | None = None, stream: TextIO | None = None) -> None:
        self.description = description
        self.stream = stream
        self.live = (stream or sys.stdout).isatty() if live is None else live
        self._started = time.monotonic()
        self._last: tuple[float, float] | None = None  # (time, fraction) of the last plain line
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> PhaseLines:
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, done: int, total: int | None, unit: str = "batches") -> None:
        if self.live:
            self._show_bar(done, total, unit)
            return
        now = time.monotonic()
        fraction = done / total if total else 0.0
        finished = total is not None and done >= total
        if (
            self._last is None
            or finished
            or fraction - self._last[1] >= PLAIN_STEP_FRACTION - 1e-9
            or now - self._last[0] >= PLAIN_STEP_SECONDS
        ):
            self._last = (now, fraction)
            print(self.line(done, total, unit, now), file=self.stream or sys.stdout, flush=True)

    def line(self, done: int, total: int | None, unit: str, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self._started
        share = f" ({100 * done // total}%)" if total else ""
        count = f"{done}/{total if total else '?'} {unit}{share}"
        text = f"{self.description}: {count}, elapsed {duration(elapsed)}"
        if total and 0 < done < total:
            text += f", ETA {duration(elapsed / done * (total - done))}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _show_bar(self, done: int, total: int | None, unit: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream) if self.stream is not None else None
            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                TimeElapsedColumn(), console=console,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=total)
        self._bar.update(self._task, completed=done, total=total)


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
    "PhaseLines",
    "console_callbacks",
    "main_metrics",
]
