"""fitlog.csv: one row per epoch, spec column names, PBT identity columns, empty columns dropped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autolfads.outputs.fitlog import fitlog_frame, read_fitlog, write_fitlog

# The shape of a Lightning 2.x CSVLogger file: the LR monitor row has no epoch, and train and valid
# metrics of one epoch arrive on separate rows.
LIGHTNING_CSV = """cur_epoch,epoch,hp/lr_init,lr-AdamW,step,train/recon,valid/recon,valid/recon_smth,valid/r2
,,,0.004,0,,,,
0.0,0,0.004,,3,,0.5,0.5,
,0,,,3,0.6,,,
,,,0.002,4,,,,
1.0,1,0.004,,7,,0.4,0.43,
,1,,,7,0.45,,,
"""


@pytest.fixture
def metrics_csv(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.csv"
    path.write_text(LIGHTNING_CSV)
    return path


def test_lightning_rows_fold_into_one_row_per_epoch(metrics_csv: Path, tmp_path: Path) -> None:
    path = write_fitlog(metrics_csv, tmp_path / "fitlog.csv")
    frame = pd.read_csv(path)
    assert list(frame["epoch"]) == [0, 1]
    assert list(frame["train/recon"]) == [0.6, 0.45]
    assert list(frame["valid/recon_smth"]) == [0.5, 0.43]
    # the learning rate logged at the start of an epoch lands on that epoch
    assert list(frame["lr-AdamW"]) == [0.004, 0.002]


def test_fitlog_columns_start_with_epoch_and_drop_empty_metrics(metrics_csv: Path) -> None:
    frame = fitlog_frame(metrics_csv)
    assert frame.columns[0] == "epoch"
    assert "valid/r2" not in frame.columns  # all-NaN (no truth) is dropped
    assert {"lr-AdamW", "hp/lr_init", "cur_epoch", "step"} <= set(frame.columns)
    assert not frame.columns.str.startswith("Unnamed").any()


def test_pbt_sources_get_persistent_worker_and_generation(metrics_csv: Path) -> None:
    frame = fitlog_frame([metrics_csv, metrics_csv, metrics_csv], worker_ids=[0, 1, 0], generations=[0, 0, 1])
    assert list(frame.columns[:3]) == ["epoch", "worker_id", "generation"]
    # worker 0 logged epochs 0-1 in generation 0 and again in generation 1: the later rows win
    worker0 = frame[frame["worker_id"] == 0]
    assert list(worker0["epoch"]) == [0, 1]
    assert list(worker0["generation"]) == [1, 1]
    assert len(frame[frame["worker_id"] == 1]) == 2


def test_prelabelled_rows_from_tune_keep_trials_apart() -> None:
    rows = [
        {"epoch": 0, "worker_id": 0, "generation": 0, "valid/recon_smth": 1.0},
        {"epoch": 0, "worker_id": 1, "generation": 0, "valid/recon_smth": 2.0},
        {"epoch": 1, "worker_id": 1, "generation": 1, "valid/recon_smth": 1.5, "hp/lr_init": 0.01},
    ]
    frame = fitlog_frame(rows)
    assert list(zip(frame["worker_id"], frame["epoch"], strict=True)) == [(0, 0), (1, 0), (1, 1)]
    assert frame.loc[0, "valid/recon_smth"] == 1.0
    assert math.isnan(frame.loc[0, "hp/lr_init"])


def test_label_count_must_match_sources(metrics_csv: Path) -> None:
    with pytest.raises(ValueError, match="2 worker_id values for 1"):
        fitlog_frame([metrics_csv], worker_ids=[0, 1])


def test_float32_noise_is_not_written(tmp_path: Path) -> None:
    rows = [{"epoch": 0, "hp/dropout_rate": float(np.float32(0.3)), "train/loss": 12236.287109375}]
    text = write_fitlog(rows, tmp_path / "fitlog.csv").read_text()
    assert text.splitlines()[1] == "0,0,0.3,12236.29"  # row number, epoch, values


def test_file_starts_with_unnamed_row_numbers_as_the_reference(tmp_path: Path) -> None:
    rows = [{"epoch": e, "worker_id": w, "valid/recon_smth": 1.0 + e} for w in (0, 1) for e in (0, 1)]
    path = write_fitlog(rows, tmp_path / "fitlog.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",epoch,worker_id,valid/recon_smth"
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "3"]
    documented = pd.read_csv(path, index_col=0)  # the NeuroCAAS way: epoch stays a column
    assert list(documented.columns) == ["epoch", "worker_id", "valid/recon_smth"]
    pd.testing.assert_frame_equal(read_fitlog(path), documented)


def test_read_fitlog_also_reads_files_without_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "fitlog.csv"
    path.write_text("epoch,worker_id,valid/recon_smth\n0,0,1.5\n")
    frame = read_fitlog(path)
    assert list(frame.columns) == ["epoch", "worker_id", "valid/recon_smth"] and frame.iloc[0]["epoch"] == 0
