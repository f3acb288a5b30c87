"""The Lightning datamodule: session files → per-session loaders of ``SessionBatch`` (lfads-spec §1.2).

It accepts the reference ``BasicDataModule`` arguments (a ``data_paths`` list as in the NeuroCAAS pipeline, or
a ``datafile_pattern`` glob as on the reference's later branches), so a reference config needs only its
``_target_`` changed, which the config loader does. Files are sorted by path and a session's index is its
position in that order. All data is held in memory as float32 tensors; loaders index whole batches at once
(no per-trial collation), which keeps data loading out of the way of the training step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from autolfads.data.batch import SessionBatch
from autolfads.data.contract import SPLITS, DataSummary, inspect_data_file
from autolfads.data.paths import resolve_data_paths
from autolfads.errors import ConfigError, DataError

Item = tuple[SessionBatch, tuple[torch.Tensor, ...]]


class SessionDataset(Dataset):
    """One session's split: whole-split tensors, indexed by a trial or a list of trials at once."""

    def __init__(self, batch: SessionBatch, extras: Sequence[torch.Tensor] = ()) -> None:
        n = batch.encod_data.shape[0]
        for name, tensor in (*zip(SessionBatch._fields, batch, strict=True), *enumerate(extras)):
            if tensor.shape[0] != n:
                raise DataError(f"batch field {name!r} has {tensor.shape[0]} trials, expected {n}")
        self.batch = batch
        self.extras = tuple(extras)

    def __len__(self) -> int:
        return self.batch.encod_data.shape[0]

    def __getitem__(self, index: int | Sequence[int] | torch.Tensor) -> Item:
        if not isinstance(index, int):
            index = torch.as_tensor(index, dtype=torch.long)
        return SessionBatch(*(t[index] for t in self.batch)), tuple(e[index] for e in self.extras)


def batch_loader(dataset: SessionDataset, batch_size: int, *, shuffle: bool, drop_last: bool) -> DataLoader:
    """A DataLoader of ``(SessionBatch, extras)`` with ``batch_size`` trials, fetched by one index op."""
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None, collate_fn=_as_is
    )


def _as_is(item: Item) -> Item:
    """The dataset already returns whole batches; the default would turn the extras tuple into a list."""
    return item


class LFADSDataModule(LightningDataModule):
    """Session files → train/valid loaders combined across sessions, and per-session predict loaders.

    ``batch_size`` is the total across sessions (each session's train/valid loader gets
    ``batch_size // n_sessions``); predict loaders use the full ``batch_size`` and see every trial once, in
    file order.
    """

    def __init__(
        self,
        data_paths: str | Sequence[str] | None = None,
        datafile_pattern: str | None = None,
        batch_keys: Sequence[str] = (),
        attr_keys: Sequence[str] = (),
        batch_size: int = 64,
        reshuffle_tv_seed: int | None = None,
        reshuffle_tv_ratio: float | None = None,
        sv_rate: float = 0.0,
        sv_seed: int = 0,
        dm_ic_enc_seq_len: int = 0,
    ) -> None:
        super().__init__()
        self.data_paths = resolve_data_paths(data_paths, datafile_pattern)
        self.batch_keys = tuple(batch_keys or ())
        self.attr_keys = tuple(attr_keys or ())
        _check_arguments(
            batch_size, reshuffle_tv_seed, reshuffle_tv_ratio, sv_rate, dm_ic_enc_seq_len, self.attr_keys
        )
        self.batch_size = int(batch_size)
        self.reshuffle_tv_seed = reshuffle_tv_seed
        self.reshuffle_tv_ratio = reshuffle_tv_ratio
        self.sv_rate = float(sv_rate)
        self.sv_seed = int(sv_seed)
        self.dm_ic_enc_seq_len = int(dm_ic_enc_seq_len)
        # Plain types only: Lightning stores these in checkpoints, which must load with weights_only=True.
        self.save_hyperparameters(
            {
                "data_paths": [str(p) for p in self.data_paths],
                "datafile_pattern": None if datafile_pattern is None else str(datafile_pattern),
                "batch_keys": list(self.batch_keys),
                "attr_keys": list(self.attr_keys),
                "batch_size": self.batch_size,
                "reshuffle_tv_seed": None if reshuffle_tv_seed is None else int(reshuffle_tv_seed),
                "reshuffle_tv_ratio": None if reshuffle_tv_ratio is None else float(reshuffle_tv_ratio),
                "sv_rate": self.sv_rate,
                "sv_seed": self.sv_seed,
                "dm_ic_enc_seq_len": self.dm_ic_enc_seq_len,
            }
        )
        self.summaries: list[DataSummary] = []
        self.datasets: list[dict[str, SessionDataset]] = []
        # Per session, for reshuffled runs: indices into concat(train, valid) that make the new splits.
        self.resplit_indices: list[dict[str, np.ndarray] | None] = []
        self.session_attrs: list[dict[str, np.ndarray]] = []

    @property
    def n_sessions(self) -> int:
        return len(self.data_paths)

    def setup(self, stage: str | None = None) -> None:
        """Load every session once (repeated calls are no-ops).

        The loaded sessions are also kept for the next datamodule this process builds with the same files
        (unchanged on disk) and loading arguments: a PBT trial process restarts its trial, and builds a new
        datamodule, at every generation, and re-reading the files was most of a restart's cost. The tensors
        are shared, never written to: loaders index copies out of them.
        """
        if self.datasets:
            return
        key = self._cache_key()
        if key is not None and (loaded := _LOADED.get(key)) is not None:
            self._adopt(loaded)
            return
        generator = torch.Generator().manual_seed(self.sv_seed)
        for session, path in enumerate(self.data_paths):
            summary = inspect_data_file(path, check_values=False)
            self.summaries.append(summary)
            self.datasets.append(self._load_session(session, summary, generator))
        if len({(s.encod_seq_len, s.recon_seq_len) for s in self.summaries}) > 1:
            lens = ", ".join(f"{s.path}: {s.encod_seq_len}/{s.recon_seq_len}" for s in self.summaries)
            raise DataError(f"sessions differ in encod_seq_len/recon_seq_len ({lens}); they must all agree")
        _LOADED.clear()  # one entry: the data of the run this process works for
        if key is not None:
            _LOADED[key] = _Loaded(self.summaries, self.datasets, self.resplit_indices, self.session_attrs)

    def _cache_key(self) -> tuple[Any, ...] | None:
        """The files (path, inode, size, change times) and every argument that changes what is loaded."""
        try:
            stats = [(str(p), os.stat(p)) for p in self.data_paths]
            files = tuple((p, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for p, st in stats)
        except OSError:
            return None  # a missing file fails in inspect_data_file with its own message
        loading = {k: v for k, v in self.hparams.items() if k != "batch_size"}
        return files, json.dumps(loading, sort_keys=True, default=str)

    def _adopt(self, loaded: _Loaded) -> None:
        self.summaries = list(loaded.summaries)
        self.datasets = [dict(sets) for sets in loaded.datasets]
        self.resplit_indices = list(loaded.resplit_indices)
        self.session_attrs = [dict(attrs) for attrs in loaded.session_attrs]
        for attrs in self.session_attrs:
            for name, value in attrs.items():
                setattr(self, name, value)

    # ------------------------------------------------------------------ loaders
    def session_batch_size(self, session: int) -> int:
        """The train batch size of one session: total // n_sessions, clamped to the split size."""
        wanted = max(1, self.batch_size // self.n_sessions)
        n_train = len(self._datasets()[session]["train"])
        if wanted > n_train:
            warnings.warn(
                f"{self.data_paths[session]}: batch size {wanted} is larger than the {n_train} training "
                f"trials; using {n_train} so that an epoch has a batch",
                stacklevel=2,
            )
            return n_train
        return wanted

    def train_dataloader(self) -> CombinedLoader:
        loaders = {
            s: batch_loader(sets["train"], self.session_batch_size(s), shuffle=True, drop_last=True)
            for s, sets in enumerate(self._datasets())
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> CombinedLoader:
        size = max(1, self.batch_size // self.n_sessions)
        loaders = {
            s: batch_loader(sets["valid"], size, shuffle=False, drop_last=False)
            for s, sets in enumerate(self._datasets())
        }
        return CombinedLoader(loaders, mode="max_size_cycle")

    def predict_dataloader(self) -> dict[int, dict[str, DataLoader]]:
        """``{s: {"train": DL, "valid": DL[, "test": DL]}}``; ``test`` only if every session has test data."""
        sets = self._datasets()
        splits = [*SPLITS, "test"] if all("test" in d for d in sets) else list(SPLITS)
        return {
            s: {
                split: batch_loader(d[split], self.batch_size, shuffle=False, drop_last=False)
                for split in splits
            }
            for s, d in enumerate(sets)
        }

    def resplit_arrays(self, session: int) -> dict[str, np.ndarray]:
        """Every ``train_*``/``valid_*`` per-trial array of a session as the reshuffled run split it.

        Output writers use this so that a reshuffled run's output file holds the data it was trained on.
        Empty when the run was not reshuffled.
        """
        indices = self.resplit_indices[session] if self.resplit_indices else None
        if indices is None:
            return {}
        out: dict[str, np.ndarray] = {}
        with h5py.File(self.data_paths[session], "r") as f:
            for key in f:
                if not key.startswith("train_"):
                    continue
                kind = key.removeprefix("train_")
                other = f"valid_{kind}"
                if other not in f or not isinstance(f[key], h5py.Dataset) or f[key].ndim == 0:
                    continue
                both = np.concatenate([f[key][()], f[other][()]])
                if both.shape[0] != sum(len(i) for i in indices.values()):
                    continue
                out[key] = both[indices["train"]]
                out[other] = both[indices["valid"]]
        return out

    # ------------------------------------------------------------------ loading
    def _datasets(self) -> list[dict[str, SessionDataset]]:
        if not self.datasets:
            self.setup()
        return self.datasets

    def _load_session(
        self, session: int, summary: DataSummary, generator: torch.Generator
    ) -> dict[str, SessionDataset]:
        path = summary.path
        arrays: dict[str, dict[str, np.ndarray]] = {split: {} for split in SPLITS}
        with h5py.File(path, "r") as f:
            for split in SPLITS:
                for kind in ("encod_data", "recon_data", "ext_input", "truth", *self.batch_keys):
                    key = f"{split}_{kind}"
                    if key in f:
                        arrays[split][kind] = _read(f, key)
                    elif kind in self.batch_keys:
                        raise DataError(
                            f"{path}: batch key '{kind}' needs '{key}', which is missing; "
                            f"keys in the file: {', '.join(sorted(f.keys()))}"
                        )
                for kind in self.batch_keys:
                    n, found = summary.n_train if split == "train" else summary.n_valid, arrays[split][kind]
                    if found.ndim == 0 or found.shape[0] != n:
                        raise DataError(
                            f"{path}: '{split}_{kind}' has shape {found.shape}; expected {n} trials first"
                        )
            test = {k: _read(f, f"test_{k}") for k in ("encod_data", "ext_input") if f"test_{k}" in f}
            attrs = {}
            for key in self.attr_keys:
                if key not in f:
                    raise DataError(
                        f"{path}: attr key '{key}' is missing; keys in the file: {', '.join(sorted(f))}"
                    )
                attrs[key] = np.asarray(f[key][()])
        self.session_attrs.append(attrs)
        for key, value in attrs.items():
            setattr(self, key, value)  # the reference keeps the last session's values (lfads-spec §11.7)

        if summary.truth_splits and set(summary.truth_splits) >= set(SPLITS):
            for split in SPLITS:
                arrays[split]["truth"] = arrays[split]["truth"] / np.float32(summary.conversion_factor)
        else:
            for split in SPLITS:
                arrays[split].pop("truth", None)  # one-sided truth cannot be compared across splits
        indices = None
        if self.reshuffle_tv_seed is not None:
            arrays, indices = _reshuffle(arrays, summary, self.reshuffle_tv_seed, self.reshuffle_tv_ratio)
        self.resplit_indices.append(indices)

        sets = {}
        for split in SPLITS:
            sets[split] = self._dataset(arrays[split], summary, generator, sv=True)
        if test:
            sets["test"] = self._dataset(test, summary, generator, sv=False)
        return sets

    def _dataset(
        self, arrays: dict[str, np.ndarray], summary: DataSummary, generator: torch.Generator, *, sv: bool
    ) -> SessionDataset:
        encod = torch.from_numpy(arrays["encod_data"])
        n = encod.shape[0]
        t_rec, k = summary.recon_seq_len, self.dm_ic_enc_seq_len
        recon = torch.from_numpy(arrays["recon_data"]) if "recon_data" in arrays else torch.zeros(n, t_rec, 0)
        ext = (
            torch.from_numpy(arrays["ext_input"])
            if "ext_input" in arrays
            else torch.zeros(n, summary.encod_seq_len, 0)
        )
        truth = (
            torch.from_numpy(arrays["truth"]) if "truth" in arrays else torch.full((n, t_rec, 0), math.nan)
        )
        if sv and self.sv_rate > 0:
            sv_mask = torch.bernoulli(torch.full(encod.shape, 1.0 - self.sv_rate), generator=generator)
        else:
            sv_mask = torch.ones(encod.shape)
        batch = SessionBatch(
            encod_data=encod,
            recon_data=recon,
            ext_input=ext[:, k:],
            truth=truth[:, k:],
            sv_mask=sv_mask[:, k:],
        )
        extras = tuple(torch.from_numpy(arrays[kind]) for kind in self.batch_keys) if sv else ()
        return SessionDataset(batch, extras)


@dataclasses.dataclass(frozen=True)
class _Loaded:
    summaries: list[DataSummary]
    datasets: list[dict[str, SessionDataset]]
    resplit_indices: list[dict[str, np.ndarray] | None]
    session_attrs: list[dict[str, np.ndarray]]


_LOADED: dict[tuple[Any, ...], _Loaded] = {}


def _read(f: h5py.File, key: str) -> np.ndarray:
    return np.ascontiguousarray(f[key][()], dtype=np.float32)


def _reshuffle(
    arrays: dict[str, dict[str, np.ndarray]], summary: DataSummary, seed: int, ratio: float | None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Re-split concat(train, valid) as sklearn's ``train_test_split(random_state=seed)`` would.

    The valid count is ``ceil(ratio * n)``, or the file's own valid count when ratio is None; the order is
    sklearn's too (a RandomState permutation: valid first, then train), so a reference run's split is matched.
    """
    n = summary.n_train + summary.n_valid
    n_valid = summary.n_valid if ratio is None else math.ceil(ratio * n)
    if not 0 < n_valid < n:
        raise ConfigError(
            f"datamodule.reshuffle_tv_ratio {ratio} leaves {n_valid} of {n} trials for validation; "
            "both splits need at least one trial"
        )
    permutation = np.random.RandomState(seed).permutation(n)
    indices = {"valid": permutation[:n_valid], "train": permutation[n_valid:]}
    merged = {
        kind: np.concatenate([arrays["train"][kind], arrays["valid"][kind]]) for kind in arrays["train"]
    }
    return {split: {kind: a[indices[split]] for kind, a in merged.items()} for split in SPLITS}, indices


def _check_arguments(
    batch_size: Any,
    reshuffle_tv_seed: Any,
    reshuffle_tv_ratio: Any,
    sv_rate: Any,
    dm_ic_enc_seq_len: Any,
    attr_keys: Sequence[str],
) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"datamodule.batch_size must be a positive integer, found {batch_size!r}")
    if not isinstance(sv_rate, int | float) or not 0.0 <= sv_rate < 1.0:
        raise ConfigError(f"datamodule.sv_rate must be in [0, 1), found {sv_rate!r}")
    if reshuffle_tv_ratio is not None and not (
        isinstance(reshuffle_tv_ratio, int | float) and 0.0 < reshuffle_tv_ratio < 1.0
    ):
        raise ConfigError(
            f"datamodule.reshuffle_tv_ratio must be in (0, 1) or null, found {reshuffle_tv_ratio!r}"
        )
    if reshuffle_tv_ratio is not None and reshuffle_tv_seed is None:
        raise ConfigError("datamodule.reshuffle_tv_ratio is set but reshuffle_tv_seed is null; set a seed")
    if reshuffle_tv_seed is not None and attr_keys:
        raise ConfigError(
            f"datamodule.attr_keys {list(attr_keys)} cannot be used with reshuffle_tv_seed: per-trial "
            "attributes would no longer line up with the re-split trials"
        )
    if not isinstance(dm_ic_enc_seq_len, int) or dm_ic_enc_seq_len < 0:
        raise ConfigError(
            f"datamodule.dm_ic_enc_seq_len must be a non-negative integer, found {dm_ic_enc_seq_len!r}"
        )
