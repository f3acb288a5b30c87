"""Posterior sampling: ``lfads_output_sess{s}.h5`` = the input file plus the model's averaged latents.

lfads-spec §6.2 with this project's decisions: for every session and split (train, valid, and test when
every session has ``test_encod_data``), each batch goes through ``predict_step`` with posterior sampling
on, ``num_samples`` times, and every output field is the mean over samples (rates, not log-rates, for
Poisson). Trials keep the input order (the predict loaders never shuffle). Per-batch results move to the
CPU at once, so memory stays bounded by one batch (reference issue #27).

The samples of one batch are drawn in a few larger forward passes rather than ``num_samples`` small ones:
the batch is repeated along the trial axis (samples are independent rows; nothing in LFADS couples the
trials of a batch in eval mode), so small batches do not leave the matrix multiplies tiny.

Shapes: B trials, T = recon_seq_len; see ``autolfads.model.types.SessionOutput`` for each field.
"""

from __future__ import annotations

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
from autolfads.outputs.atomic import atomic_path
from autolfads.outputs.phases import PhaseProgress

if TYPE_CHECKING:
    import lightning.pytorch as pl

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

# Trials per forward pass when repeating a batch for its samples. Measured on the shared 2-core CPU (noisy,
# load 5-8): small model (Lorenz, gen 32), a 256-trial batch's 50 samples took 2.0 s at one sample per pass
# and 1.3-1.5 s at 1024-2048 rows; at the reference size (gen 200, 256 trials) larger passes did not help
# (4-5 s per 12 samples at 256, 512 or 1024 rows). So on the CPU only small batches are repeated. On a GPU
# (not measured: no device was lent) larger passes should keep paying off until memory runs out; one
# pass of 16384 reference-size trials holds about 1 GB of activations. ``None`` picks by device.
MAX_TRIALS_PER_PASS: int | None = None
_MAX_TRIALS_BY_DEVICE = {"cpu": 512, "cuda": 16384}


def _max_trials(device: torch.device) -> int:
    if MAX_TRIALS_PER_PASS is not None:
        return MAX_TRIALS_PER_PASS
    return _MAX_TRIALS_BY_DEVICE.get(device.type, 512)


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


def _repeat_trials(value: Any, times: int) -> Any:
    """Repeat every tensor ``times`` along the trial axis: rows ``[b0..bB-1, b0..bB-1, ...]``."""
    if isinstance(value, torch.Tensor):
        return value.repeat(times, *([1] * (value.dim() - 1))) if value.dim() else value
    if isinstance(value, SessionBatch):
        return SessionBatch(*(_repeat_trials(t, times) for t in value))
    if isinstance(value, tuple | list):
        return type(value)(_repeat_trials(v, times) for v in value)
    return value


@torch.no_grad()
def sample_batch(
    model: pl.LightningModule,
    session: int,
    batch: tuple[SessionBatch, tuple],
    num_samples: int,
    max_trials: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mean over ``num_samples`` posterior samples of every output field for one batch, on the CPU.

    ``max_trials`` (default: by device, see ``MAX_TRIALS_PER_PASS``) bounds the rows of one forward pass.
    """
    max_trials = _max_trials(batch[0].encod_data.device) if max_trials is None else max_trials
    session_batch, extras = batch
    n_trials = session_batch.encod_data.shape[0]
    per_pass = max(1, min(num_samples, max_trials // max(n_trials, 1)))
    sums: dict[str, torch.Tensor] | None = None
    done = 0
    while done < num_samples:
        k = min(per_pass, num_samples - done)
        repeated = (_repeat_trials(session_batch, k), _repeat_trials(tuple(extras), k))
        output = model.predict_step({session: repeated}, 0, sample_posteriors=True)[session]
        # (k·B, ...) → (k, B, ...) → sum over the k samples
        fields = output._asdict()
        part = {
            name: fields[name].reshape(k, n_trials, *fields[name].shape[1:]).sum(0) for name in OUTPUT_FIELDS
        }
        sums = part if sums is None else {name: sums[name] + part[name] for name in OUTPUT_FIELDS}
        done += k
    assert sums is not None  # num_samples >= 1
    return {name: (total / num_samples).cpu() for name, total in sums.items()}


def sample_split(
    model: pl.LightningModule,
    session: int,
    loader: Any,
    num_samples: int,
    on_batch: Callable[[], None] | None = None,
) -> dict[str, np.ndarray]:
    """Posterior means for every trial a loader yields, concatenated in loader (= input) order.

    ``on_batch`` is called after each batch (progress counting)."""
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in OUTPUT_FIELDS}
    for batch in loader:
        means = sample_batch(model, session, _to_device(batch, model.device), num_samples)
        for name, value in means.items():
            chunks[name].append(value)
        if on_batch is not None:
            on_batch()
    return {name: torch.cat(parts).numpy().astype(np.float32) for name, parts in chunks.items() if parts}


def _session_sources(datamodule: pl.LightningDataModule) -> Sequence[Path]:
    paths = getattr(datamodule, "data_paths", None)
    if not paths:
        raise AutoLFADSError("the datamodule has no data_paths to copy into the output files")
    return [Path(p) for p in paths]


def _write_session_file(final: Path, source: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy ``source`` to ``final`` atomically, with ``arrays`` added (or replacing same-named keys)."""
    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as h5:
            for key, value in arrays.items():
                if key in h5:  # a reshuffled split, or a file that is itself an output
                    del h5[key]
                h5.create_dataset(key, data=value)


def run_posterior_sampling(
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    out_dir: str | os.PathLike[str],
    num_samples: int = 50,
    progress: PhaseProgress | None = None,
) -> list[Path]:
    """Write ``out_dir/lfads_output_sess{s}.h5`` for every session and return their paths.

    The model is put in eval mode (dropout off) for the sampling and back in its previous mode after.
    ``progress(done, total, "batches")`` is called after every batch, over all sessions and splits.
    """
    if num_samples < 1:
        raise AutoLFADSError(f"num_samples must be at least 1, got {num_samples}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datamodule.setup("predict")
    loaders = datamodule.predict_dataloader()
    sources = _session_sources(datamodule)
    was_training = model.training
    model.eval()
    written = []
    counted = _batch_counter(loaders, progress)
    try:
        for session in sorted(loaders):
            # A reshuffled run writes the splits it trained on (lfads-spec §6.2 item 2).
            arrays = dict(_resplit_arrays(datamodule, session))
            for split, loader in loaders[session].items():
                for name, value in sample_split(model, session, loader, num_samples, counted).items():
                    arrays[f"{split}_{name}"] = value
            final = out_dir / output_filename(session)
            _write_session_file(final, sources[session], arrays)
            written.append(final)
    finally:
        model.train(was_training)
    return written


def _batch_counter(loaders: Mapping[int, Mapping[str, Any]], progress: PhaseProgress | None) -> Any:
    """A no-argument callable that counts batches and reports them to ``progress`` (None without one)."""
    if progress is None:
        return None
    try:
        total: int | None = sum(len(loader) for split in loaders.values() for loader in split.values())
    except TypeError:  # a loader without a length
        total = None
    done = 0
    progress(0, total, "batches")

    def count() -> None:
        nonlocal done
        done += 1
        progress(done, total, "batches")

    return count


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
    "sample_split",
]
