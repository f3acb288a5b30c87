"""``autolfads.zip``: the NeuroCAAS bundle of a finished run (lfads-spec §6.4).

It holds ``fitlog.csv``, ``lfads_output_sess*.h5`` and ``model.ckpt`` (plus any extra files a caller
names, e.g. PBT's history) at the top level of the archive, as the reference service delivered them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from autolfads.errors import AutoLFADSError
from autolfads.outputs.atomic import atomic_path

ZIP_NAME = "autolfads.zip"
BUNDLED = ("fitlog.csv", "model.ckpt")
OUTPUT_GLOB = "lfads_output_sess*.h5"


def write_autolfads_zip(out_dir: str | os.PathLike[str], extra: Iterable[str] = ()) -> Path:
    """Write ``out_dir/autolfads.zip`` atomically from the run's outputs in ``out_dir``.

    ``extra`` names further files in ``out_dir`` to include when they exist (e.g. ``pbt_history.csv``).
    """
    out_dir = Path(out_dir)
    outputs = sorted(out_dir.glob(OUTPUT_GLOB))
    missing = [name for name in BUNDLED if not (out_dir / name).is_file()]
    if missing or not outputs:
        missing += [] if outputs else [OUTPUT_GLOB]
        raise AutoLFADSError(f"cannot bundle {out_dir / ZIP_NAME}: missing {', '.join(missing)} in {out_dir}")
    members = [out_dir / name for name in BUNDLED] + outputs
    members += [out_dir / name for name in extra if (out_dir / name).is_file()]
    with atomic_path(out_dir / ZIP_NAME) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        for member in members:
            bundle.write(member, arcname=member.name)
    return out_dir / ZIP_NAME


__all__ = ["ZIP_NAME", "write_autolfads_zip"]
