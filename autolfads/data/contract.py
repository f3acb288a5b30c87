"""The HDF5 data contract (lfads-spec §1.1, DESIGN.md §3): one validation pass, then the file's dimensions.

``inspect_data_file`` is what ``autolfads validate``, the config loader (dimension inference) and the
datamodule call before anything is built, so a bad file is refused with one line naming the file and key
instead of a shape error deep in training. Shapes, dtypes and the memory the declared arrays would take
(``autolfads.budget``) are checked from the file's metadata before a single value is read; then the values
are scanned in blocks of at most ``_CHUNK_BYTES`` (whole trials, or slices of one trial when a trial is
larger), so a multi-GB file is never held in memory. ``check_values=False`` skips the value scan when only
the shapes are needed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from autolfads.budget import FLOAT32_BYTES, budget_source, format_bytes, memory_budget_bytes
from autolfads.errors import DataError

SPLITS = ("train", "valid")
REQUIRED_KEYS = tuple(f"{split}_{kind}_data" for split in SPLITS for kind in ("encod", "recon"))
TEST_KEY = "test_encod_data"
CONVERSION_FACTOR = "conversion_factor"

# What each reconstruction (by class name, lower case) accepts as target values. The config decides the
# likelihood; the contract only knows what support it needs.
LIKELIHOOD_SUPPORT = {
    "poisson": "counts",
    "poissonbps": "counts",
    "gamma": "positive",
    "zeroinflatedgamma": "nonnegative",
    "gaussian": "real",
    "mse": "real",
}
_SUPPORT_TEXT = {
    "counts": "non-negative spike counts",
    "positive": "strictly positive values (Gamma has no mass at 0; ZeroInflatedGamma allows zeros)",
    "nonnegative": "non-negative values",
}

_CHUNK_BYTES = 64 * 2**20  # how much of one array a value scan reads at a time
_MAX_KEYS_SHOWN = 12
MIN_SEQ_LEN = 2  # one time bin has no dynamics for the generator to model


class DataWarning(UserWarning):
    """Something in the data is unusual but accepted; the message says what and why it is allowed."""


@dataclass(frozen=True)
class DataSummary:
    """What one session file holds, as the config and the datamodule need it."""

    path: Path
    n_train: int
    n_valid: int
    n_test: int  # 0 when there is no test_encod_data
    encod_data_dim: int
    encod_seq_len: int
    recon_data_dim: int
    recon_seq_len: int
    ext_input_dim: int  # 0 when there is no *_ext_input
    has_truth: bool  # train_truth or valid_truth present (with conversion_factor)
    conversion_factor: float | None
    truth_splits: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    likelihood: str | None = None  # the likelihood the values were checked against, if any
    values_checked: bool = False
    extra: dict[str, tuple[int, ...]] = field(default_factory=dict)  # other datasets: shape
    notes: tuple[str, ...] = ()  # accepted oddities (non-integer Poisson targets, ...), one line each
    declared_bytes: int = 0  # what the contract arrays take as float32 in memory

    @property
    def n_held_out(self) -> int:
        """Channels in recon_data that the encoder never sees (held-out neurons)."""
        return self.recon_data_dim - self.encod_data_dim

    @property
    def n_forward(self) -> int:
        """Time steps in recon_data past the observed window (forward prediction)."""
        return self.recon_seq_len - self.encod_seq_len

    def describe(self) -> str:
        """A short human-readable report, as ``autolfads validate`` prints it."""
        lines = [
            f"{self.path}",
            f"  trials        train {self.n_train}, valid {self.n_valid}, test {self.n_test}",
            f"  encod_data    {self.encod_seq_len} steps x {self.encod_data_dim} channels",
            f"  recon_data    {self.recon_seq_len} steps x {self.recon_data_dim} channels"
            f"  ({self.n_held_out} held-out channels, {self.n_forward} forward steps)",
            f"  ext_input     {self.ext_input_dim} channels"
            if self.ext_input_dim
            else "  ext_input     none",
            (
                f"  truth         {', '.join(self.truth_splits)}"
                f" (conversion_factor {self.conversion_factor:g})"
                if self.has_truth and self.conversion_factor is not None
                else "  truth         none"
            ),
        ]
        if self.values_checked and self.likelihood:
            lines.append(f"  values        finite, within the support of {likelihood_name(self.likelihood)}")
        elif self.values_checked:
            lines.append("  values        finite (no likelihood given, support not checked)")
        if self.extra:
            lines.append(f"  other keys    {', '.join(sorted(self.extra))}")
        lines += [f"  note          {note}" for note in self.notes]
        return "\n".join(lines)


def inspect_data_file(
    path: str | Path, likelihood: str | None = None, *, check_values: bool = True
) -> DataSummary:
    """Validate one session file against the contract and return its dimensions.

    ``likelihood`` is the reconstruction class name (``Poisson``, ``Gamma``, ...; ``lfads_torch`` or our
    module path are accepted too). With it, recon_data values are checked against that likelihood's support
    (non-negative integers for Poisson, no zeros for Gamma, ...). Every failure is one DataError line that
    names the file and key.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such data file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an HDF5 data file")
    support = _support_for(likelihood)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as an HDF5 file ({_first_line(exc)})") from None
    with handle as f:
        return _inspect_open_file(path, f, likelihood, support, check_values)


def likelihood_name(target: str) -> str:
    """``lfads_torch.modules.recons.Poisson`` or ``autolfads.model.recons.Poisson`` → ``poisson``."""
    return target.rsplit(".", 1)[-1].lower()


def _support_for(likelihood: str | None) -> str | None:
    if likelihood is None:
        return None
    name = likelihood_name(likelihood)
    if name not in LIKELIHOOD_SUPPORT:
        # An unknown (e.g. user-written) reconstruction: no support check, the model decides.
        return None
    return LIKELIHOOD_SUPPORT[name]


def _inspect_open_file(
    path: Path, f: h5py.File, likelihood: str | None, support: str | None, check_values: bool
) -> DataSummary:
    keys = tuple(sorted(f.keys()))
    for key in REQUIRED_KEYS:
        if key not in f:
            raise DataError(f"{path}: missing required key '{key}'{_suggest(key, keys)}; {_keys_text(keys)}")
    shapes = {key: _array_shape(path, f, key) for key in keys if isinstance(f[key], h5py.Dataset)}
    for key in REQUIRED_KEYS:
        if key not in shapes:
            raise DataError(f"{path}: '{key}' is an HDF5 group, expected a dataset (an array)")
        _require_rank3(path, key, shapes[key])
    for key in sorted(shapes):
        if _is_contract_array(key):
            _require_real_numbers(path, key, f[key].dtype)

    encod = {split: shapes[f"{split}_encod_data"] for split in SPLITS}
    recon = {split: shapes[f"{split}_recon_data"] for split in SPLITS}
    for split in SPLITS:
        if encod[split][0] == 0:
            raise DataError(f"{path}: '{split}_encod_data' has 0 trials; the {split} split must not be empty")
        for key, shape in ((f"{split}_encod_data", encod[split]), (f"{split}_recon_data", recon[split])):
            if shape[1] == 0 or shape[2] == 0:
                raise DataError(f"{path}: '{key}' has shape {shape}; time steps and channels must be > 0")
        if recon[split][0] != encod[split][0]:
            raise DataError(
                f"{path}: '{split}_recon_data' has {recon[split][0]} trials but '{split}_encod_data' has "
                f"{encod[split][0]}; they must match"
            )
    for axis, what in ((2, "channels"), (1, "time steps")):
        for kind, dims in (("encod", encod), ("recon", recon)):
            if dims["train"][axis] != dims["valid"][axis]:
                raise DataError(
                    f"{path}: 'train_{kind}_data' has {dims['train'][axis]} {what} but "
                    f"'valid_{kind}_data' has {dims['valid'][axis]}; train and valid must match"
                )
    n_enc, t_enc = encod["train"][2], encod["train"][1]
    n_rec, t_rec = recon["train"][2], recon["train"][1]
    if t_enc < MIN_SEQ_LEN:
        raise DataError(
            f"{path}: 'train_encod_data' has {t_enc} time step; expected at least {MIN_SEQ_LEN} "
            "(LFADS models dynamics over time bins)"
        )
    if n_enc > n_rec:
        raise DataError(
            f"{path}: 'train_encod_data' has {n_enc} channels but 'train_recon_data' only {n_rec}; encod "
            "channels must be the first channels of recon_data (recon may be wider, never narrower)"
        )
    if t_enc > t_rec:
        raise DataError(
            f"{path}: 'train_encod_data' has {t_enc} time steps but 'train_recon_data' only {t_rec}; encod "
            "steps must be the first steps of recon_data (recon may be longer, never shorter)"
        )
    n_trials = {"train": encod["train"][0], "valid": encod["valid"][0]}

    n_test = 0
    if TEST_KEY in shapes:
        shape = shapes[TEST_KEY]
        _require_rank3(path, TEST_KEY, shape)
        if shape[1:] != (t_enc, n_enc):
            raise DataError(
                f"{path}: '{TEST_KEY}' is {shape[1]} steps x {shape[2]} channels but 'train_encod_data' is "
                f"{t_enc} x {n_enc}; they must match"
            )
        n_test = shape[0]
        n_trials["test"] = n_test

    ext_input_dim = _check_ext_input(path, shapes, n_trials, t_enc, t_rec)
    truth_splits, conversion_factor = _check_truth(path, f, shapes, n_trials, (t_rec, n_rec))
    for split in SPLITS:
        key = f"{split}_inds"
        if key in shapes and (len(shapes[key]) != 1 or shapes[key][0] != n_trials[split]):
            raise DataError(
                f"{path}: '{key}' has shape {shapes[key]} but the {split} split has {n_trials[split]} "
                f"trials; expected a 1-D array of {n_trials[split]} trial indices"
            )

    declared = _check_declared_size(path, shapes)
    notes: list[str] = []
    if check_values:
        for key in sorted(shapes):
            if len(shapes[key]) == 3 and _is_contract_array(key):
                note = _scan_values(path, f[key], key, _support_of_key(key, support))
                if note:
                    notes.append(note)

    known = {*REQUIRED_KEYS, TEST_KEY, CONVERSION_FACTOR, "train_inds", "valid_inds"}
    extra = {k: s for k, s in shapes.items() if k not in known and not _is_contract_array(k)}
    return DataSummary(
        path=path,
        n_train=n_trials["train"],
        n_valid=n_trials["valid"],
        n_test=n_test,
        encod_data_dim=n_enc,
        encod_seq_len=t_enc,
        recon_data_dim=n_rec,
        recon_seq_len=t_rec,
        ext_input_dim=ext_input_dim,
        has_truth=bool(truth_splits),
        conversion_factor=conversion_factor,
        truth_splits=truth_splits,
        keys=keys,
        likelihood=likelihood if check_values else None,
        values_checked=check_values,
        extra=extra,
        notes=tuple(notes),
        declared_bytes=declared,
    )


def _is_contract_array(key: str) -> bool:
    split, _, kind = key.partition("_")
    return split in ("train", "valid", "test") and kind in ("encod_data", "recon_data", "ext_input", "truth")


def _array_shape(path: Path, f: h5py.File, key: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in f[key].shape or ())
    except Exception as exc:  # h5py raises a mix of OSError/KeyError/RuntimeError on damaged files
        raise DataError(f"{path}: key '{key}' cannot be read ({_first_line(exc)})") from None


def _require_rank3(path: Path, key: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise DataError(
            f"{path}: '{key}' has shape {shape} ({len(shape)}-D); "
            "expected 3-D n_trials x n_timesteps x n_channels"
        )


def _check_ext_input(
    path: Path, shapes: dict[str, tuple[int, ...]], n_trials: dict[str, int], t_enc: int, t_rec: int
) -> int:
    present = [split for split in (*SPLITS, "test") if f"{split}_ext_input" in shapes]
    if not present:
        return 0
    for split in SPLITS:
        if split not in present:
            other = present[0]
            raise DataError(
                f"{path}: '{other}_ext_input' is present but '{split}_ext_input' is missing; external inputs "
                "must be given for both train and valid"
            )
    if "test" in n_trials and "test" not in present:
        raise DataError(f"{path}: '{TEST_KEY}' is present but 'test_ext_input' is missing")
    dims = set()
    for split in present:
        key = f"{split}_ext_input"
        shape = shapes[key]
        _require_rank3(path, key, shape)
        if split not in n_trials:
            continue  # test_ext_input without test_encod_data: unused, left alone
        if shape[0] != n_trials[split]:
            raise DataError(
                f"{path}: '{key}' has {shape[0]} trials but '{split}_encod_data' has {n_trials[split]}"
            )
        if shape[1] not in (t_enc, t_rec):
            raise DataError(
                f"{path}: '{key}' has {shape[1]} time steps; expected encod_seq_len {t_enc} or "
                f"recon_seq_len {t_rec}"
            )
        dims.add(shape[2])
    if len(dims) > 1:
        raise DataError(f"{path}: the *_ext_input arrays have different channel counts {sorted(dims)}")
    return dims.pop()


def _check_truth(
    path: Path,
    f: h5py.File,
    shapes: dict[str, tuple[int, ...]],
    n_trials: dict[str, int],
    recon_shape: tuple[int, int],
) -> tuple[tuple[str, ...], float | None]:
    splits = tuple(split for split in (*SPLITS, "test") if f"{split}_truth" in shapes)
    if not splits:
        return (), None
    if CONVERSION_FACTOR not in f:
        raise DataError(
            f"{path}: '{splits[0]}_truth' is present but the scalar '{CONVERSION_FACTOR}' is missing; "
            "truth is divided by it (write conversion_factor = 1.0 if truth is already in rates per bin)"
        )
    raw = np.asarray(f[CONVERSION_FACTOR][()])
    if raw.size != 1 or not np.issubdtype(raw.dtype, np.number):
        raise DataError(
            f"{path}: '{CONVERSION_FACTOR}' must be one number, found shape {raw.shape} {raw.dtype}"
        )
    factor = float(raw.reshape(()))
    if not math.isfinite(factor) or factor <= 0:
        raise DataError(f"{path}: '{CONVERSION_FACTOR}' must be a positive finite number, found {factor}")
    for split in splits:
        key = f"{split}_truth"
        shape = shapes[key]
        _require_rank3(path, key, shape)
        expected = (n_trials.get(split, shape[0]), *recon_shape)
        if shape != expected:
            raise DataError(
                f"{path}: '{key}' has shape {shape}; expected {expected} "
                "(n_trials x recon_seq_len x recon channels)"
            )
    return splits, factor


def _require_real_numbers(path: Path, key: str, dtype: np.dtype) -> None:
    """Integers or floats only: complex numbers and booleans are not counts, rates or inputs."""
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{path}: '{key}' has dtype {dtype} (complex); expected real numbers (int or float)")
    if dtype == np.bool_:
        raise DataError(f"{path}: '{key}' has dtype bool; expected numbers (int or float), e.g. spike counts")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise DataError(f"{path}: '{key}' has dtype {dtype}; expected numbers (int or float)")


def _check_declared_size(path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """Refuse a file whose arrays would not fit the memory budget as float32, before reading any value.

    The shapes come from the file's metadata: a tiny file may declare a huge, never-written array.
    """
    declared = sum(
        math.prod(shape) * FLOAT32_BYTES for key, shape in shapes.items() if _is_contract_array(key)
    )
    budget = memory_budget_bytes()
    if budget is not None and declared > budget:
        largest = max((k for k in shapes if _is_contract_array(k)), key=lambda k: math.prod(shapes[k]))
        raise DataError(
            f"{path}: the arrays declare {format_bytes(declared)} as float32 (largest '{largest}' "
            f"{shapes[largest]}); expected at most the memory budget of {format_bytes(budget)} "
            f"({budget_source()})"
        )
    return declared


def _support_of_key(key: str, support: str | None) -> str | None:
    """The likelihood's support applies to the targets; encod_data (the same counts) must not be negative."""
    if key.endswith("_recon_data"):
        return support
    if key.endswith("_encod_data") and support in ("counts", "nonnegative"):
        return "nonnegative"
    return None


def _blocks(dataset: h5py.Dataset) -> Iterator[tuple[tuple[int, int, int], np.ndarray]]:
    """Blocks of about _CHUNK_BYTES: whole trials, else time slices of one trial, else channel slices.

    A dataset whose storage was never allocated holds only its fill value: one block of that value.
    """
    if _never_written(dataset):
        yield (0, 0, 0), np.full((1, 1, 1), dataset.fillvalue, dtype=dataset.dtype)
        return
    shape = dataset.shape
    itemsize = dataset.dtype.itemsize
    per_step = max(1, shape[2] * itemsize)
    per_trial = max(1, shape[1] * per_step)
    if per_trial <= _CHUNK_BYTES:
        step = _CHUNK_BYTES // per_trial
        for start in range(0, shape[0], step):
            yield (start, 0, 0), dataset[start : start + step]
        return
    if per_step <= _CHUNK_BYTES:
        step = _CHUNK_BYTES // per_step
        for trial in range(shape[0]):
            for t in range(0, shape[1], step):
                yield (trial, t, 0), dataset[trial : trial + 1, t : t + step]
        return
    step = max(1, _CHUNK_BYTES // itemsize)
    for trial in range(shape[0]):
        for t in range(shape[1]):
            for c in range(0, shape[2], step):
                yield (trial, t, c), dataset[trial : trial + 1, t : t + 1, c : c + step]


def _never_written(dataset: h5py.Dataset) -> bool:
    """Declared but never written (not virtual, not external): every value is the fill value."""
    try:
        return dataset.id.get_storage_size() == 0 and not dataset.is_virtual and dataset.external is None
    except Exception:  # an unusual layout: scan it
        return False


def _scan_values(path: Path, dataset: h5py.Dataset, key: str, support: str | None) -> str | None:
    """Refuse values outside the support, one line; returns a note for accepted oddities."""
    is_float = np.issubdtype(dataset.dtype, np.floating)
    fractional: float | None = None
    for origin, block in _blocks(dataset):
        if is_float:
            finite = np.isfinite(block)
            if not finite.all():
                bad = block[~finite].flat[0]
                where = np.argwhere(~finite)[0] + np.array(origin)
                raise DataError(
                    f"{path}: '{key}' contains {'NaN' if np.isnan(bad) else 'Inf'} (first at trial, step, "
                    f"channel {tuple(int(i) for i in where)}); all values must be finite"
                )
        if support is None or support == "real":
            continue
        if support in ("counts", "nonnegative") and (block < 0).any():
            what = (
                "non-negative spike counts (the same counts as recon_data)"
                if key.endswith("_encod_data")
                else _SUPPORT_TEXT[support]
            )
            raise DataError(
                f"{path}: '{key}' has negative values (min {block.min():g}); the likelihood expects {what}"
            )
        if support == "counts" and is_float and fractional is None:
            off = block != np.round(block)
            if off.any():
                fractional = float(block[off].flat[0])
        if support == "positive" and (block <= 0).any():
            n_bad = int((block <= 0).sum())
            raise DataError(
                f"{path}: '{key}' has {n_bad} values <= 0 in one block (min {block.min():g}); the Gamma "
                f"likelihood expects {_SUPPORT_TEXT[support]}"
            )
    if fractional is not None:
        return (
            f"'{key}' has non-integer values (e.g. {fractional:g}); the Poisson likelihood uses them as they "
            "are (as lfads-torch does), e.g. for smoothed or resampled counts"
        )
    return None


def _suggest(key: str, keys: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, keys, n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""


def _keys_text(keys: Sequence[str]) -> str:
    if not keys:
        return "the file has no keys"
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    more = f", ... ({len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
    return f"keys in the file: {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
