"""``autolfads merge``: per-segment model outputs of a chopped recording → one continuous file.

Input: an ``lfads_output_sess0.h5`` written by posterior sampling (``autolfads train``, ``run`` or
``infer``) on a file that ``autolfads prepare`` chopped. It carries the prepare record (``prepare_json``),
the segments' positions (``{split}_inds`` = segment index) and the 50-sample posterior means
``{split}_output_params`` (Poisson rates per bin) and ``{split}_factors``. Segments are put back in
order and merged with the overlap weighting of :mod:`autolfads.data.chop`.

Output (``CONTINUOUS.h5``), aligned to the NWB file's time base:

========================  ==============================================================================
``rates``                 ``(T, N)`` inferred firing rates in spikes/s (Hz), channels as ``unit_ids``
``factors``               ``(T, F)`` latent factors
``spikes``                ``(T, N)`` the binned spike counts (merging the segments' recon_data; exact)
``timestamps``            ``(T,)`` bin centres in seconds, in the NWB file's time base
``unit_ids``, ``held_out``  ``(N,)`` the units-table id of each channel; whether it was held out
``prepare_json``          the prepare record, copied
========================  ==============================================================================

Root attributes: ``bin_width_s``, ``t_start_s`` (left edge of bin 0), ``weighting``, ``source_identifier``,
``source_sha256``, ``model_output`` (the file merged).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from autolfads.data.chop import merge
from autolfads.data.prepare import RECORD_KEY, record_json
from autolfads.data.prepared import read_record
from autolfads.errors import DataError
from autolfads.outputs.atomic import atomic_path

WEIGHTING = (
    "linear cross-fade over each overlap, w(j) = min(1, (j+0.5)/lead, (L-j-0.5)/trail), "
    "weighted mean where segments overlap (autolfads.data.chop)"
)


@dataclass
class MergedOutput:
    """A chopped recording's outputs, continuous again."""

    rates_hz: np.ndarray  # (T, N)
    factors: np.ndarray  # (T, F)
    spikes: np.ndarray  # (T, N)
    timestamps: np.ndarray  # (T,) bin centres, s
    bin_s: float
    t_start_s: float
    unit_ids: np.ndarray  # (N,)
    held_out: np.ndarray  # (N,) bool
    record: dict[str, Any]
    source: Path  # the output file that was merged


def merge_output(output: str | os.PathLike[str], record: dict[str, Any] | None = None) -> MergedOutput:
    """Stitch the segments of ``output`` back together (the record from the file unless given)."""
    output = Path(output)
    if record is None:
        record = read_record(output)
    if record.get("mode") != "chop":
        raise DataError(
            f"{output}: was prepared from trials, not chopped; its outputs are already one per trial "
            "(merge stitches the segments of a chopped recording)"
        )
    layout = record["chop"]
    starts = np.asarray(layout["segment_starts_bins"], dtype=np.int64)
    seg_len, n_bins = int(layout["segment_bins"]), int(layout["n_bins"])
    unit_ids = np.asarray(record["units"]["channel_unit_ids"])
    bin_s = float(record["bin_ms"]) / 1000.0
    try:
        handle = h5py.File(output, "r")
    except OSError as exc:
        raise DataError(f"{output}: cannot be read as an HDF5 file ({exc})") from None
    with handle as f:
        pieces = {
            name: _gather(output, f, name, len(starts)) for name in ("output_params", "factors", "recon_data")
        }
    rates = pieces["output_params"]
    if rates.shape[1:] != (seg_len, len(unit_ids)):
        raise DataError(
            f"{output}: output_params are {rates.shape[1]} steps x {rates.shape[2]} channels per segment "
            f"but the record says {seg_len} x {len(unit_ids)}; merge needs one rate per channel (a Poisson "
            "model) on the file prepare wrote"
        )
    t_start = float(layout["t_start_s"])
    return MergedOutput(
        rates_hz=(merge(rates, starts, n_bins) / bin_s).astype(np.float32),
        factors=merge(pieces["factors"], starts, n_bins).astype(np.float32),
        spikes=np.rint(merge(pieces["recon_data"], starts, n_bins)).astype(np.float32),
        timestamps=t_start + (np.arange(n_bins) + 0.5) * bin_s,
        bin_s=bin_s,
        t_start_s=t_start,
        unit_ids=unit_ids,
        held_out=np.arange(len(unit_ids)) >= int(record["units"]["n_held_in"]),
        record=record,
        source=output,
    )


def _gather(path: Path, f: h5py.File, name: str, n_segments: int) -> np.ndarray:
    """``{split}_{name}`` of every split, put in segment order; each segment exactly once."""
    parts: dict[int, np.ndarray] = {}
    for split in ("train", "valid"):
        key, inds_key = f"{split}_{name}", f"{split}_inds"
        if key not in f:
            hint = (
                "; merge reads the lfads_output_sess0.h5 that train, run or infer write, not the "
                "prepared data file"
                if name != "recon_data"
                else ""
            )
            raise DataError(f"{path}: has no '{key}'{hint}")
        if inds_key not in f:
            raise DataError(f"{path}: has no '{inds_key}' (the segment index of each row)")
        values, inds = f[key][()], np.asarray(f[inds_key][()], dtype=np.int64)
        if len(values) != len(inds):
            raise DataError(f"{path}: '{key}' has {len(values)} rows but '{inds_key}' {len(inds)}")
        for row, segment in enumerate(inds):
            if segment in parts or not 0 <= segment < n_segments:
                raise DataError(
                    f"{path}: segment {segment} appears twice or is not one of the {n_segments} segments"
                )
            parts[int(segment)] = values[row]
    if len(parts) != n_segments:
        missing = sorted(set(range(n_segments)) - set(parts))
        raise DataError(f"{path}: segments {missing[:10]} are missing from train and valid")
    return np.stack([parts[s] for s in range(n_segments)])


def write_merged(merged: MergedOutput, out: str | os.PathLike[str]) -> Path:
    """Write the continuous file atomically (see the module docstring for its keys)."""
    out = Path(out)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        options = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        f.create_dataset("rates", data=merged.rates_hz, **options).attrs["unit"] = "Hz"
        f.create_dataset("factors", data=merged.factors, **options)
        f.create_dataset("spikes", data=merged.spikes, **options)
        f.create_dataset("timestamps", data=merged.timestamps).attrs["unit"] = "s (bin centres)"
        f.create_dataset("unit_ids", data=merged.unit_ids)
        f.create_dataset("held_out", data=merged.held_out)
        f.create_dataset(RECORD_KEY, data=record_json(merged.record))
        f.attrs["bin_width_s"] = merged.bin_s
        f.attrs["t_start_s"] = merged.t_start_s
        f.attrs["weighting"] = WEIGHTING
        f.attrs["source_identifier"] = merged.record["source"]["identifier"]
        f.attrs["source_sha256"] = merged.record["source"]["sha256"]
        f.attrs["model_output"] = str(merged.source)
    return out


__all__ = ["WEIGHTING", "MergedOutput", "merge_output", "write_merged"]
