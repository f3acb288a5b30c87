"""Where a trial trains (a GPU share or the CPU) and where it ran (its Ray node), said once, loudly.

Ray gives a trial a share of a GPU (``pbt.resources_per_trial.gpu``, 0.5 on the platform: two trials per
GPU) and makes that GPU the only one the trial's process sees. Whether CUDA can actually use it is another
matter: a logical GPU with no device behind it (a test cluster), a CPU-only torch, or a broken driver on a
real GPU node all leave ``torch.cuda.is_available()`` false, and Lightning's ``accelerator: auto`` would
then train on the CPU without a word, a hundred times slower. So a trial given a GPU share decides here:
CUDA when it works, else the CPU **with the reason**, which the trial reports; the driver logs it once per
run (:class:`DeviceNotice`), where the user reads the run's output (``kubectl logs``, the terminal).

Each epoch's report also names the Ray node the trial ran on (``node_id``), so placement can be checked
from ``trial_results.jsonl``: which node, how many trials at a time, never the head.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

logger = logging.getLogger("autolfads.tune")

NODE_ID = "node_id"
DEVICE = "device"
DEVICE_NOTE = "device_note"
REPORT_KEYS = (NODE_ID, DEVICE, DEVICE_NOTE)  # strings: trial_results.jsonl only, never the fitlog


@dataclass(frozen=True)
class TrialDevice:
    """``device``: "cuda" or "cpu"; ``note``: why a trial given a GPU share trains on the CPU (else None)."""

    device: str
    note: str | None = None

    def trainer_options(self, configured: Any) -> dict[str, Any]:
        """Trainer overrides: only where the config left the choice to us (``accelerator: auto``)."""
        if configured not in (None, "auto"):
            return {}
        return {"accelerator": "gpu", "devices": 1} if self.device == "cuda" else {"accelerator": "cpu"}


def cuda_problem() -> str | None:
    """Why CUDA cannot be used in this process, or None when it can."""
    import torch

    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        return None
    said = [str(w.message).splitlines()[0] for w in caught if str(w.message).strip()]
    return "CUDA is not usable here" + (f" ({said[0]})" if said else " (no device visible)")


def trial_device(gpu_share: float) -> TrialDevice:
    """CUDA for a trial given a GPU share when CUDA works; the CPU otherwise, with the reason."""
    if gpu_share <= 0:
        return TrialDevice("cpu")
    problem = cuda_problem()
    if problem is None:
        return TrialDevice("cuda")
    return TrialDevice("cpu", f"given {gpu_share:g} GPU but {problem}: training on the CPU, much slower")


def current_node_id() -> str:
    """The Ray node this process runs on (hex id, as ``ray.nodes()`` lists it); "" outside Ray."""
    import ray

    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else ""


class DeviceNotice(Callback):
    """Driver side: the first trial that reports a CPU fallback is logged once, as a warning."""

    def __init__(self) -> None:
        self.warned = False

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **_: Any) -> None:
        note = result.get(DEVICE_NOTE)
        if note and not self.warned:
            self.warned = True
            logger.warning(
                "trial %s on Ray node %s was %s (every trial on such a node does the same); check the "
                "node's GPU driver and that the image's torch is a CUDA build",
                result.get("worker_id", trial),
                result.get(NODE_ID, "?"),
                note,
            )


__all__ = [
    "DEVICE",
    "DEVICE_NOTE",
    "NODE_ID",
    "REPORT_KEYS",
    "DeviceNotice",
    "TrialDevice",
    "cuda_problem",
    "current_node_id",
    "trial_device",
]
