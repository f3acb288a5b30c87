"""Inferred rates and factors back into NWB: a copy of the source file with an ``lfads`` processing module.

The source NWB file is never opened for writing. It is checked against the record (SHA-256: the file
prepare read, unchanged), copied to a temporary file beside the target, the module is appended there with
pynwb (``NWBHDF5IO(mode="a")``), and only then is the copy renamed into place. The module holds:

- ``rates``: TimeSeries ``(T, N)`` in Hz, ``starting_time`` = the first bin's centre, ``rate`` = 1/bin;
- ``factors``: TimeSeries ``(T, F)``, same timing;
- ``rates_units``: a DynamicTable with one row per rates column: ``unit_id`` (the units-table id) and
  ``held_out``.

so NWB-native tools (pynwb, MatNWB, NWB Widgets) open them next to the spikes they came from.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from autolfads.data.merge import WEIGHTING, MergedOutput
from autolfads.data.nwb import check_nwb_file, file_sha256, import_pynwb
from autolfads.errors import AutoLFADSError, DataError
from autolfads.outputs.atomic import atomic_path

MODULE_NAME = "lfads"


def write_nwb_copy(
    merged: MergedOutput, out: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> Path:
    """Write a copy of the source NWB file (``source``, default: the path in the record) with the module."""
    recorded = merged.record["source"]
    source = Path(source or recorded["path"])
    out = Path(out)
    check_nwb_file(source)
    if out.exists() and out.resolve() == source.resolve():
        raise AutoLFADSError(f"--nwb-out {out} is the source NWB file; the source is never modified")
    digest = file_sha256(source)
    if digest != recorded["sha256"]:
        raise DataError(
            f"{source}: is not the file the data was prepared from (sha256 {digest[:12]}…, the record "
            f"says {recorded['sha256'][:12]}… for identifier '{recorded['identifier']}'); give the "
            "original with --nwb"
        )
    pynwb = import_pynwb()
    from hdmf.common import DynamicTable, VectorData

    with atomic_path(out) as tmp:
        shutil.copyfile(source, tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pynwb's notes on optional metadata of the source file
            with pynwb.NWBHDF5IO(str(tmp), mode="a") as io:
                nwbfile = io.read()
                if MODULE_NAME in nwbfile.processing:
                    raise DataError(f"{source}: already has a processing module '{MODULE_NAME}'")
                module = nwbfile.create_processing_module(
                    name=MODULE_NAME,
                    description=f"LFADS inference by autolfads {merged.record.get('autolfads_version', '')}"
                    f": posterior-mean rates and factors of {merged.source.name}; segments merged by "
                    f"{WEIGHTING}",
                )
                timing = {"starting_time": merged.t_start_s + merged.bin_s / 2, "rate": 1.0 / merged.bin_s}
                module.add(
                    pynwb.TimeSeries(
                        name="rates",
                        data=merged.rates_hz,
                        unit="Hz",
                        description="inferred firing rate of each unit (columns: rates_units)",
                        **timing,
                    )
                )
                module.add(
                    pynwb.TimeSeries(
                        name="factors",
                        data=merged.factors,
                        unit="a.u.",
                        description="LFADS latent factors",
                        **timing,
                    )
                )
                module.add(
                    DynamicTable(
                        name="rates_units",
                        description="the unit behind each column of rates",
                        columns=[
                            VectorData(
                                name="unit_id", description="units-table id", data=merged.unit_ids.tolist()
                            ),
                            VectorData(
                                name="held_out",
                                description="held out of the model's input (predicted from the others)",
                                data=merged.held_out.tolist(),
                            ),
                        ],
                    )
                )
                io.write(nwbfile)
    return out


__all__ = ["MODULE_NAME", "write_nwb_copy"]
