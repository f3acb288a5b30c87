"""Posterior sampling of the best member: in the driver on one machine, on a worker on a cluster.

On a lab's shared Ray cluster the head runs many jobs' drivers and its memory is sized for drivers only
(docs/install.md, "Head capacity"); its Ray node offers no CPU (``num-cpus: 0``), so no trial lands there.
Sampling 50 posterior samples of every trial and writing the outputs is the heaviest thing a driver did, so
where the driver's node takes no work it runs as a Ray task with a trial's resources (a GPU share on the
GPU workers), which Ray therefore places on a worker. Nothing is shared between nodes but the run's storage:
the task reads the best checkpoint from the trials' storage (where Ray Tune put it), stages the data from
its URI on its own node, samples, and writes the ``lfads_output_sess*.h5`` files back into that storage
(``<experiment>/posterior/``); the driver copies them into the run directory and removes them there.
On one machine (the driver's node has CPUs) it simply runs in the driver, as before.

The call into the sampling itself stays ``run_posterior_sampling(model, datamodule, out_dir, num_samples=…)``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autolfads.outputs.phases import PhaseProgress

logger = logging.getLogger("autolfads.tune")

POSTERIOR_DIR = "posterior"
CHECKPOINT_FILE = "model.ckpt"


@dataclass(frozen=True)
class SamplingJob:
    """What the sampling needs, all of it picklable and none of it a local path of the driver's."""

    config: dict[str, Any]  # the best member's resolved config (its data paths are URIs or its own paths)
    checkpoint_fs: Any  # pyarrow filesystem of the trials' storage (None: local)
    checkpoint_dir: str  # the best member's checkpoint directory in it
    outputs_dir: str  # where the task leaves the files, in the same filesystem
    num_samples: int


@dataclass(frozen=True)
class SamplingReport:
    node_id: str
    files: list[str]
    device: str


def driver_node_takes_work() -> bool:
    """Whether the Ray node this driver runs on offers CPUs (a laptop does; a cluster's head does not)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == here:
            return float((node.get("Resources") or {}).get("CPU", 0.0)) > 0
    return True


def _filesystem(fs: Any) -> Any:
    from pyarrow import fs as pafs

    return fs or pafs.LocalFileSystem()


def _copy_out(fs: Any, source: str, target: Path) -> None:
    with fs.open_input_stream(source) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _copy_in(fs: Any, source: Path, target: str) -> None:
    with open(source, "rb") as src, fs.open_output_stream(target) as dst:
        shutil.copyfileobj(src, dst)


def load_model(config: Mapping[str, Any], checkpoint: Path, device: str = "cpu") -> Any:
    """The best member's model from its checkpoint (the class its config names, from the allow-list; the
    weights are loaded weights-only: docs/security.md)."""
    import hydra.utils

    from autolfads.config.targets import checked_target
    from autolfads.train import quiet_lightning

    model_class = hydra.utils.get_class(checked_target(config["model"].get("_target_"), "model._target_"))
    with quiet_lightning():
        return model_class.load_from_checkpoint(checkpoint, map_location=device)


def sample_here(
    job: SamplingJob, model: Any, out_dir: Path, progress: PhaseProgress | None = None
) -> list[Path]:
    """Sample ``model`` (already on its device) into ``out_dir``."""
    from omegaconf import OmegaConf

    from autolfads.outputs import run_posterior_sampling
    from autolfads.train import build_datamodule, quiet_lightning

    cfg = OmegaConf.create(job.config)
    with quiet_lightning():
        return run_posterior_sampling(
            model, build_datamodule(cfg), out_dir, num_samples=job.num_samples, progress=progress
        )


def _has_gpu_share() -> bool:
    import ray

    return ray.is_initialized() and bool(ray.get_gpu_ids())


def _sample_task(job: SamplingJob) -> SamplingReport:
    """The Ray task: checkpoint in from the trials' storage, outputs back out to it."""
    import torch

    from autolfads.tune.devices import current_node_id

    fs = _filesystem(job.checkpoint_fs)
    with tempfile.TemporaryDirectory(prefix="autolfads-sampling-") as tmp:
        local = Path(tmp)
        checkpoint = local / CHECKPOINT_FILE
        _copy_out(fs, f"{job.checkpoint_dir.rstrip('/')}/{CHECKPOINT_FILE}", checkpoint)
        device = "cuda" if _has_gpu_share() and torch.cuda.is_available() else "cpu"
        written = sample_here(job, load_model(job.config, checkpoint, device), local / "out")
        fs.create_dir(job.outputs_dir, recursive=True)
        for path in written:
            _copy_in(fs, path, f"{job.outputs_dir}/{path.name}")
    return SamplingReport(current_node_id(), [p.name for p in written], device)


def run_sampling(
    job: SamplingJob,
    model: Any,
    out_dir: Path,
    resources: Mapping[str, float],
    progress: PhaseProgress | None = None,
) -> list[Path]:
    """``lfads_output_sess*.h5`` into ``out_dir``: here with ``model`` (reporting batches to ``progress``)
    when this node takes work, else as a Ray task with ``resources`` (``{"cpu": …, "gpu": …}``, a trial's)
    that Ray places on a worker, which loads the model itself."""
    if driver_node_takes_work():
        return sample_here(job, model, out_dir, progress)
    import ray

    task = ray.remote(_sample_task).options(
        num_cpus=resources.get("cpu", 1), num_gpus=resources.get("gpu", 0), max_retries=2
    )
    logger.info("posterior sampling as a Ray task on a worker (this node, the head, takes no work)")
    report: SamplingReport = ray.get(task.remote(job))
    logger.info(
        "posterior sampling ran on Ray node %s (%s): %s",
        report.node_id,
        report.device,
        ", ".join(report.files),
    )
    fs = _filesystem(job.checkpoint_fs)
    written = []
    for name in report.files:
        target = out_dir / name
        partial = target.with_name(f".{name}.part")
        _copy_out(fs, f"{job.outputs_dir}/{name}", partial)
        partial.replace(target)
        written.append(target)
    try:
        fs.delete_dir(job.outputs_dir)
    except OSError as exc:  # the copies are already in the run directory
        logger.warning("could not remove %s from the trials' storage: %s", job.outputs_dir, exc)
    return written


__all__ = [
    "POSTERIOR_DIR",
    "SamplingJob",
    "SamplingReport",
    "driver_node_takes_work",
    "load_model",
    "run_sampling",
]
