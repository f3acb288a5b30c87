"""How long work after training (posterior sampling, writing the outputs) tells the run how far it got.

After the last epoch a run spends minutes sampling the posterior and writing files; without a sign of life
users think it hung. Code doing such work takes an optional :data:`PhaseProgress` and calls it as it goes::

    def run_posterior_sampling(..., progress: PhaseProgress | None = None):
        total = ...                              # batches over every session and split
        for done, batch in enumerate(batches, 1):
            ...
            if progress is not None:
                progress(done, total, "batches")

The driver passes a callable that puts the numbers into ``progress.json`` (``phase_done``,
``phase_total``, ``phase_unit``), the console and the metrics; ``autolfads infer`` passes nothing.
Calling it is cheap (the receiver throttles), so once per batch is fine. Nothing here imports torch.
"""

from __future__ import annotations

from typing import Protocol


class PhaseProgress(Protocol):
    """``progress(done, total, unit)``: ``done`` of ``total`` units of the current phase are finished.

    ``total`` may be None when unknown; ``unit`` names what is counted (``"batches"``, ``"files"``).
    """

    def __call__(self, done: int, total: int | None, unit: str = "batches") -> None: ...


__all__ = ["PhaseProgress"]
