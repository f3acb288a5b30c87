"""Posterior sampling: ``lfads_output_sess{s}.h5`` = the input file plus the model's averaged latents.

lfads-spec §6.2 with this project's decisions: for every session and split (train, valid, and test when
every session has ``test_encod_data``), each batch's trials are decoded ``num_samples`` times with
posterior sampling on, and every output field is the mean over samples (rates, not log-rates, for
Poisson). Trials keep the input order (the predict loaders never shuffle).

Speed: in eval mode the encoders are deterministic (no dropout), so each batch is encoded once and only
the sampling and the generator run per sample (``LFADS.encode``/``decode``): that is ≈ 40 % of the work
of a forward pass saved for every sample after the first. The samples are drawn in as few no-grad passes
as ``max_trials_per_pass`` allows, the batch repeated along the trial axis (samples are independent rows;
nothing in LFADS couples the trials of a batch in eval mode), so the matrix multiplies are large. The
recurrent loops are compiled where ``AUTOLFADS_COMPILE`` says so (``autolfads.model.compiled``).

Each batch's means go to the CPU and straight into the output file (one slab of rows per dataset), so
memory stays bounded by one batch (reference issue #27), and progress is reported as trials finish,
through the caller's :class:`autolfads.outputs.phases.PhaseProgress` (``autolfads run``: progress.json and
its console; ``train``/``infer``: :class:`autolfads.outputs.console.PhaseLines`).

Shapes: B trials, T = recon_seq_len; see ``autolfads.model.types.SessionOutput`` for each field.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch

from autolfads.data.batch import SessionBatch
from autolfads.errors import AutoLFADSError
from autolfads.model.compiled import mark_step_begin
from autolfads.outputs.atomic import atomic_path
from autolfads.outputs.phases import PhaseProgress

if TYPE_CHECKING:
    import lightning.pytorch as pl

    from autolfads.model import LFADS

# Order and names of the datasets written per split (the fields of SessionOutput, lfads-spec §6.2).
OUTPUT_FIELDS = (
    "output_params",
    "factors",
    "ic_mean",
    "ic_std",
    "co_means",
    "co_stds",
    "gen_states",
    "gen_init",
    "gen_inputs",
    "con_states",
)

# Rows (trials × samples) per decoding pass. Measured on the shared 2-core CPU (reference architecture,
# Lorenz shape, 256 trials × 50 samples, min over 3 interleaved rounds): 1 thread 4.7 / 4.4 / 4.7 / 4.5 s
# CPU at 256 / 512 / 1024 / 2048 rows, 2 threads 3.9 / 3.9 / 2.9 / 3.3 s wall — past ≈ 1,000 rows the
# per-step buffers outgrow the caches; every sample a full forward pass (the method this replaced):
# 7.3 s CPU, 5.4 s wall. On a GPU (not measured: no device was lent) larger passes keep paying off until
# memory runs out; a pass of 16384 reference-size rows holds about 1 GB of outputs. ``None`` picks by device.
MAX_TRIALS_PER_PASS: int | None = None
_MAX_TRIALS_BY_DEVICE = {"cpu": 1024, "cuda": 16384}


def _max_trials(device: torch.device) -> int:
    if MAX_TRIALS_PER_PASS is not None:
        return MAX_TRIALS_PER_PASS
    return _MAX_TRIALS_BY_DEVICE.get(device.type, 1024)


def output_filename(session: int) -> str:
    """``lfads_output_sess{session}.h5`` (the NeuroCAAS naming, lfads-spec §6.2 item 5)."""
    return f"lfads_output_sess{session}.h5"


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, SessionBatch):
        return SessionBatch(*(t.to(device) for t in value))
    if isinstance(value, tuple | list):
        return type(value)(_to_device(v, device) for v in value)
    return value


def sample_counts(num_samples: int, n_trials: int, max_trials: int) -> list[int]:
    """Samples per pass: as few passes as ``max_trials`` rows allow, as even as possible.

    >>> sample_counts(50, 256, 1024)
    [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3]
    """
    per_pass = max(1, min(num_samples, max_trials // max(n_trials, 1)))
    passes = math.ceil(num_samples / per_pass)
    base, extra = divmod(num_samples, passes)
    return [base + 1] * extra + [base] * (passes - extra)


@torch.no_grad()
def sample_batch(
    model: LFADS,
    session: int,
    batch: tuple[SessionBatch, tuple],
    num_samples: int,
    max_trials: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mean over ``num_samples`` posterior samples of every output field for one batch, on the CPU.

    The model must be in eval mode (the encoders run once for all samples). ``max_trials`` (default: by
    device, see ``MAX_TRIALS_PER_PASS``) bounds the rows of one decoding pass.
    """
    if model.training:
        raise AutoLFADSError("posterior sampling needs the model in eval mode (model.eval())")
    session_batch = batch[0]
    device = session_batch.encod_data.device
    max_trials = _max_trials(device) if max_trials is None else max_trials
    n_trials = session_batch.encod_data.shape[0]
    stack = model.infer_aug_stack
    augmented = stack.process_batch(session_batch)  # as predict_step does
    stack.reset()
    encoding = model.encode({session: augmented})
    sample = bool(model.hparams.variational)
    sums: dict[str, torch.Tensor] = {}
    for k in sample_counts(num_samples, n_trials, max_trials):
        mark_step_begin(device)  # CUDA graphs: the previous pass's outputs have been summed
        fields = model.decode(encoding, sample_posteriors=sample, output_means=True, repeats=k)[session]
        for name in OUTPUT_FIELDS:
            value = getattr(fields, name)  # (k·B, ...) sample-major → (k, B, ...) → sum over the k samples
            part = value.view(k, n_trials, *value.shape[1:]).sum(0)
            sums[name] = part if name not in sums else sums[name].add_(part)
    return {name: (total / num_samples).cpu() for name, total in sums.items()}


def sample_split(
    model: LFADS,
    session: int,
    loader: Any,
    num_samples: int,
    on_batch: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Posterior means for every trial a loader yields, concatenated in loader (= input) order.

    ``on_batch`` is called after each batch (progress counting)."""
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in OUTPUT_FIELDS}
    for means in _batch_means(model, session, loader, num_samples):
        for name, value in means.items():
            chunks[name].append(value)
        if on_batch is not None:
            on_batch()
    return {name: np.concatenate(parts) for name, parts in chunks.items() if parts}


def _batch_means(model: LFADS, session: int, loader: Any, num_samples: int) -> Any:
    """Each batch's posterior means as float32 arrays, in loader order."""
    for batch in loader:
        means = sample_batch(model, session, _to_device(batch, model.device), num_samples)
        yield {name: value.numpy().astype(np.float32, copy=False) for name, value in means.items()}


def _session_sources(datamodule: pl.LightningDataModule) -> Sequence[Path]:
    paths = getattr(datamodule, "data_paths", None)
    if not paths:
        raise AutoLFADSError("the datamodule has no data_paths to copy into the output files")
    return [Path(p) for p in paths]


def _write_split(
    h5: h5py.File, split: str, means: Any, n_trials: int, progress: _TrialCounter, label: str
) -> None:
    """Write each batch's means into ``{split}_{field}`` datasets as they come (one slab of rows each)."""
    row = 0
    for batch_means in means:
        size = next(iter(batch_means.values())).shape[0]
        for name, value in batch_means.items():
            key = f"{split}_{name}"
            if row == 0:
                if key in h5:  # a file that is itself an output
                    del h5[key]
                h5.create_dataset(key, shape=(n_trials, *value.shape[1:]), dtype=np.float32)
            h5[key][row : row + size] = value
        row += size
        progress.advance(size)
    if row != n_trials:
        raise AutoLFADSError(f"{label}: the loader gave {row} trials where its dataset has {n_trials}")


def run_posterior_sampling(
    model: LFADS,
    datamodule: pl.LightningDataModule,
    out_dir: str | os.PathLike[str],
    num_samples: int = 50,
    progress: PhaseProgress | None = None,
) -> list[Path]:
    """Write ``out_dir/lfads_output_sess{s}.h5`` for every session and return their paths.

    The model is put in eval mode (dropout off) for the sampling and back in its previous mode after.
    Each file is written beside its final name and moved into place when complete.
    ``progress(done, total, "trials")`` (:class:`autolfads.outputs.phases.PhaseProgress`) is called with 0
    first and then after every batch, counting the trials of all sessions and splits.
    """
    if num_samples < 1:
        raise AutoLFADSError(f"num_samples must be at least 1, got {num_samples}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule.setup("predict")
    loaders = datamodule.predict_dataloader()
    sources = _session_sources(datamodule)
    total = sum(len(loader.dataset) for splits in loaders.values() for loader in splits.values())
    was_training = model.training
    model.eval()
    written = []
    counted = _TrialCounter(total, progress)
    try:
        for session in sorted(loaders):
            final = out_dir / output_filename(session)
            with atomic_path(final) as tmp:
                shutil.copyfile(sources[session], tmp)
                with h5py.File(tmp, "r+") as h5:
                    # A reshuffled run writes the splits it trained on (lfads-spec §6.2 item 2).
                    for key, value in _resplit_arrays(datamodule, session).items():
                        if key in h5:
                            del h5[key]
                        h5.create_dataset(key, data=value)
                    for split, loader in loaders[session].items():
                        means = _batch_means(model, session, loader, num_samples)
                        _write_split(h5, split, means, len(loader.dataset), counted, f"sess{session} {split}")
            written.append(final)
    finally:
        model.train(was_training)
    return written


class _TrialCounter:
    """Counts the trials written and tells ``progress`` (a :class:`PhaseProgress`, or None: silent)."""

    def __init__(self, total: int, progress: PhaseProgress | None) -> None:
        self.total, self.progress, self.done = total, progress, 0
        if progress is not None:
            progress(0, total, "trials")

    def advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total, "trials")


def _resplit_arrays(datamodule: pl.LightningDataModule, session: int) -> Mapping[str, np.ndarray]:
    """The re-split ``train_*``/``valid_*`` arrays when the datamodule reshuffled them, else nothing."""
    resplit = getattr(datamodule, "resplit_arrays", None)
    return resplit(session) if resplit is not None else {}


__all__ = [
    "MAX_TRIALS_PER_PASS",
    "OUTPUT_FIELDS",
    "output_filename",
    "run_posterior_sampling",
    "sample_batch",
    "sample_counts",
    "sample_split",
]
