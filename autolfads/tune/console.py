"""The population on the console: a live status block on a terminal, plain lines everywhere else.

On a terminal a ``rich`` live block at the bottom shows phase, generation N of M, epochs, elapsed time,
ETA, trials and the best member; log lines (exploits, generation ends) print **above** it. That works
because our log handler looks up ``sys.stderr`` at every line (:class:`_CurrentStderrHandler`): while the
live block is shown, rich has swapped ``sys.stderr`` for a proxy that prints above the block. A handler
that kept the stderr of its creation would write under the block, where the next redraw erases the line.

Not on a terminal (a log file, a Kubernetes pod), there is no redraw: one line per generation and per
phase, and during posterior sampling a line every 10 % or 30 s.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from autolfads.outputs.phases import PLAIN_STEP_FRACTION, PLAIN_STEP_SECONDS, duration

logger = logging.getLogger("autolfads.tune")


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it; always use sys.stderr
        pass


def console_logging() -> None:
    """Our log lines (``autolfads.*``) on stderr with a time stamp, above a live block when one is shown."""
    root = logging.getLogger("autolfads")
    if not any(isinstance(h, _CurrentStderrHandler) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.5g}"


def headline(progress: dict[str, Any]) -> str:
    """``training: generation 2/5, epoch 40/100, elapsed 3m05s, ETA 4m10s`` (the phase's own numbers
    after training: ``sampling: 120/400 batches, elapsed …, ETA …``)."""
    phase = progress.get("phase") or "starting"
    parts = []
    if phase in ("sampling", "writing") and progress.get("phase_unit"):
        total = progress.get("phase_total")
        parts.append(f"{progress.get('phase_done') or 0}/{total if total else '?'} {progress['phase_unit']}")
    else:
        total = progress.get("generations_total")
        generation = progress.get("generation") or 0
        shown = generation if phase in ("succeeded", "failed", "interrupted") else generation + 1
        if total:
            parts.append(f"generation {min(shown, total)}/{total}")
        if progress.get("epoch") is not None and progress.get("max_epochs"):
            parts.append(f"epoch {progress['epoch']}/{progress['max_epochs']}")
    parts.append(f"elapsed {duration(progress.get('elapsed_s'))}")
    if phase not in ("succeeded", "failed", "interrupted"):
        parts.append(f"ETA {duration(progress.get('eta_s'))}")
    return f"{phase}: " + ", ".join(parts)


def trials_line(progress: dict[str, Any], metric: str) -> str:
    """``trials 2 running, 2 paused, 0 errored, 0 done of 4; 6 exploits; best valid/recon_smth 1.013
    (worker 3)``."""
    counts = ", ".join(
        f"{progress.get(f'trials_{k}') or 0} {k}" for k in ("running", "paused", "errored", "done")
    )
    text = (
        f"trials {counts} of {progress.get('trials_total') or '?'}; {progress.get('exploits') or 0} exploits"
    )
    if progress.get("best_metric") is not None:
        text += f"; best {metric} {_number(progress['best_metric'])} (worker {progress.get('best_trial')})"
    if progress.get("epoch_seconds") is not None:
        text += f"; {progress['epoch_seconds']:.2g} s/epoch"
    return text


class PopulationView:
    """Shows each progress record: a live block on a terminal (``live``), else plain log lines."""

    def __init__(self, live: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.live = (stream or sys.stdout).isatty() if live is None else live
        self._live: Any = None
        self._last_key: tuple[Any, ...] | None = None
        self._last_step: tuple[float, float] = (0.0, -1.0)  # (time, fraction) of the last plain step line

    def show(self, progress: dict[str, Any], metric: str) -> None:
        if self.live:
            self._show_live(progress, metric)
        else:
            self._show_plain(progress, metric)

    def _show_live(self, progress: dict[str, Any], metric: str) -> None:
        from rich.console import Console, Group
        from rich.live import Live
        from rich.text import Text

        block = Group(
            Text(f"AutoLFADS {headline(progress)}", style="bold"), Text(trials_line(progress, metric))
        )
        if self._live is None:
            console = Console(file=self.stream) if self.stream is not None else Console()
            self._live = Live(block, console=console, refresh_per_second=2, transient=False)
            self._live.start()
        else:
            self._live.update(block)

    def _show_plain(self, progress: dict[str, Any], metric: str) -> None:
        phase = progress.get("phase")
        generation, total = progress.get("generation"), progress.get("generations_total")
        if phase == "training" and generation is not None and total:
            generation = min(generation, total - 1)  # all epochs done: still the last generation's line
        key = (phase, generation)
        if phase == "training" and progress.get("epoch") is None:
            return  # nothing trained yet: no line with empty numbers
        if key != self._last_key:
            self._last_key = key
            self._last_step = (time.monotonic(), 0.0)
            logger.info("%s; %s", headline(progress), trials_line(progress, metric))
            return
        done, total = progress.get("phase_done"), progress.get("phase_total")
        if phase in ("sampling", "writing") and done and total:
            fraction, (at, shown) = done / total, self._last_step
            if fraction - shown >= PLAIN_STEP_FRACTION - 1e-9 or time.monotonic() - at >= PLAIN_STEP_SECONDS:
                self._last_step = (time.monotonic(), fraction)
                logger.info("%s", headline(progress))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


__all__ = ["PopulationView", "console_logging", "duration", "headline", "trials_line"]
