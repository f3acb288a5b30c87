"""autolfads.zip holds the NeuroCAAS trio at the top level."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from autolfads.errors import AutoLFADSError
from autolfads.outputs.bundle import write_autolfads_zip


def test_zip_holds_fitlog_outputs_and_checkpoint(tmp_path: Path) -> None:
    for name in ("fitlog.csv", "model.ckpt", "lfads_output_sess0.h5", "pbt_history.csv"):
        (tmp_path / name).write_text(name)
    path = write_autolfads_zip(tmp_path, extra=["pbt_history.csv", "absent.png"])
    with zipfile.ZipFile(path) as bundle:
        assert sorted(bundle.namelist()) == [
            "fitlog.csv",
            "lfads_output_sess0.h5",
            "model.ckpt",
            "pbt_history.csv",
        ]
        assert bundle.read("model.ckpt") == b"model.ckpt"


def test_zip_refuses_an_unfinished_run(tmp_path: Path) -> None:
    (tmp_path / "fitlog.csv").write_text("")
    with pytest.raises(AutoLFADSError, match=r"missing model\.ckpt, lfads_output_sess\*\.h5"):
        write_autolfads_zip(tmp_path)
