"""``autolfads prepare`` on NWB files written by pynwb: the contract file, its counts and its record.

Counts are checked against a direct count of the spike times written into the NWB file (``(t >= a) &
(t < b)`` per bin), held-out units against the documented seeded rule, and the record against the file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result

from autolfads.cli import main
from autolfads.data import inspect_data_file
from autolfads.data.prepare import PrepareOptions
from autolfads.data.prepared import prepare_nwb, read_record
from tests.data.nwbfiles import Session, write_session

ALIGN = ["--align", "move_onset_time", "--window", "-250", "450"]


@pytest.fixture(scope="module")
def trials_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return write_session(
        tmp_path_factory.mktemp("nwb") / "trials.nwb", duration_s=40.0, n_trials=30, n_units=10
    )


@pytest.fixture(scope="module")
def continuous_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return write_session(tmp_path_factory.mktemp("nwb") / "continuous.nwb", duration_s=12.345, n_units=6)


def _prepare(session: Session, out: Path, *args: str) -> Result:
    result = CliRunner().invoke(main, ["prepare", str(session.path), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result


def _direct_count(times: np.ndarray, start: float, n_bins: int, bin_s: float) -> np.ndarray:
    return np.array(
        [((times >= start + k * bin_s) & (times < start + (k + 1) * bin_s)).sum() for k in range(n_bins)]
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_aligned_trials_count_every_spike_of_every_window(trials_session: Session, tmp_path: Path) -> None:
    out = tmp_path / "data.h5"
    args = [*ALIGN, "--heldout", "3", "--forward-ms", "50", "--ext-input", "hand_vel", "--seed", "7"]
    result = _prepare(trials_session, out, *args)
    assert "wrote" in result.output and "data.prepare.json" in result.output
    record = json.loads((tmp_path / "data.prepare.json").read_text())

    with h5py.File(out) as f:
        for split in ("train", "valid"):
            recon, encod = f[f"{split}_recon_data"][()], f[f"{split}_encod_data"][()]
            rows = f[f"{split}_inds"][()]
            assert recon.shape == (len(rows), 75, 10)  # 700 ms + 50 ms forward of 10 ms bins, 10 units
            assert encod.shape == (len(rows), 70, 7)  # the first 70 bins of the 7 held-in units
            np.testing.assert_array_equal(encod, recon[:, :70, :7])
            for sample, row in enumerate(rows):
                start = trials_session.trials[row]["move_onset_time"] - 0.25
                for channel, unit_id in enumerate(record["units"]["channel_unit_ids"]):
                    times = trials_session.spike_times[trials_session.unit_ids.index(unit_id)]
                    np.testing.assert_array_equal(
                        recon[sample, :, channel], _direct_count(times, start, 75, 0.01)
                    )
            # ext_input: hand_vel (sin/cos of known frequency) at the bin centres
            centres = np.array([trials_session.trials[r]["move_onset_time"] - 0.25 for r in rows])[:, None]
            centres = centres + (np.arange(75) + 0.5) * 0.01
            ext = f[f"{split}_ext_input"][()]
            np.testing.assert_allclose(ext[..., 0], np.sin(2 * np.pi * 0.5 * centres), atol=2e-3)
        assert "train_truth" not in f and "valid_truth" not in f  # never invented
        assert json.loads(f["prepare_json"][()]) == record

    # held-out units: the last channels, chosen by the documented seeded rule among the kept units
    expected = sorted(
        np.random.default_rng(7).choice(trials_session.unit_ids, size=3, replace=False).tolist()
    )
    assert record["units"]["held_out_unit_ids"] == expected
    assert record["units"]["channel_unit_ids"][7:] == expected
    assert record["bins"] == {"observed": 70, "forward": 5, "recon": 75}

    summary = inspect_data_file(out, "Poisson")
    assert (summary.n_held_out, summary.n_forward, summary.ext_input_dim) == (3, 5, 2)
    assert summary.n_train + summary.n_valid == 30


def test_the_record_names_the_source_and_every_choice(trials_session: Session, tmp_path: Path) -> None:
    _prepare(trials_session, tmp_path / "data.h5", *ALIGN, "--bin-ms", "20", "--valid-fraction", "0.3")
    record = read_record(tmp_path / "data.prepare.json")
    source = record["source"]
    assert source["identifier"] == "autolfads-synthetic-0"
    assert source["session_start_time"] == "2024-05-01T12:00:00+00:00"
    assert source["sha256"] == _sha256(trials_session.path)
    assert source["size_bytes"] == trials_session.path.stat().st_size
    assert Path(source["path"]) == trials_session.path.resolve()
    options = record["options"]
    assert (options["bin_ms"], options["align"], options["window_ms"]) == (
        20.0,
        "move_onset_time",
        [-250, 450],
    )
    assert record["trials"]["trial_ids"] == list(range(30))
    assert len(record["split"]["valid_inds"]) == 9  # round(0.3 · 30)
    assert sorted(record["split"]["train_inds"] + record["split"]["valid_inds"]) == list(range(30))


def test_the_same_options_rebuild_the_same_arrays(trials_session: Session, tmp_path: Path) -> None:
    options = PrepareOptions(align="move_onset_time", window_ms=(-250, 450), heldout=2, seed=3)
    first, _, _ = prepare_nwb(trials_session.path, tmp_path / "a.h5", options)
    second, _, _ = prepare_nwb(trials_session.path, tmp_path / "b.h5", options)
    for key, value in first.arrays.items():
        np.testing.assert_array_equal(value, second.arrays[key])
    other, _, _ = prepare_nwb(trials_session.path, tmp_path / "c.h5", replace(options, seed=4))
    assert other.record["split"]["valid_inds"] != first.record["split"]["valid_inds"]


def test_split_column_follows_the_nlb_convention(trials_session: Session, tmp_path: Path) -> None:
    _prepare(trials_session, tmp_path / "data.h5", *ALIGN, "--split-column", "split")
    with h5py.File(tmp_path / "data.h5") as f:
        valid_rows = f["valid_inds"][()].tolist()
    assert valid_rows == [k for k, row in enumerate(trials_session.trials) if row["split"] == "val"]


def test_whole_trials_are_cut_to_the_shortest_with_a_warning(trials_session: Session, tmp_path: Path) -> None:
    result = _prepare(trials_session, tmp_path / "data.h5")
    shortest = min(
        int(np.floor((t["stop_time"] - t["start_time"]) / 0.01 + 1e-6)) for t in trials_session.trials
    )
    assert "Warning: trials last" in result.output
    with h5py.File(tmp_path / "data.h5") as f:
        assert f["train_recon_data"].shape[1] == shortest
        row = int(f["train_inds"][0])
        start = trials_session.trials[row]["start_time"]
        counts = _direct_count(trials_session.spike_times[0], start, shortest, 0.01)
        np.testing.assert_array_equal(f["train_recon_data"][0, :, 0], counts)


def test_units_where_keeps_the_matching_units(trials_session: Session, tmp_path: Path) -> None:
    _prepare(trials_session, tmp_path / "data.h5", *ALIGN, "--units-where", "quality=good")
    record = read_record(tmp_path / "data.h5")
    good = [uid for k, uid in enumerate(trials_session.unit_ids) if k % 4]
    assert record["units"]["channel_unit_ids"] == good
    assert record["units"]["excluded_by_units_where"] == [100, 104, 108]


def test_units_without_spikes_are_dropped_listed_and_recorded(tmp_path: Path) -> None:
    session = write_session(tmp_path / "s.nwb", duration_s=15, n_trials=10, n_units=5, silent_units=(1, 3))
    result = _prepare(session, tmp_path / "data.h5", *ALIGN)
    assert (
        "Warning: 2 unit(s) have no spike in the prepared bins and were dropped: ids 101, 103"
        in result.output
    )
    record = read_record(tmp_path / "data.prepare.json")
    assert record["units"]["dropped_no_spikes"] == [101, 103]
    assert record["units"]["channel_unit_ids"] == [100, 102, 104]


def test_trials_with_no_align_time_are_left_out_with_a_warning(tmp_path: Path) -> None:
    def no_onset_for_trial_2(nwbfile) -> None:
        nwbfile.trials["move_onset_time"].data[2] = np.nan

    session = write_session(tmp_path / "s.nwb", duration_s=15, n_trials=10, edit=no_onset_for_trial_2)
    result = _prepare(session, tmp_path / "data.h5", *ALIGN)
    assert "1 trial(s) have no move_onset_time (NaN) and were left out: ids 2" in result.output
    record = read_record(tmp_path / "data.h5")
    assert 2 not in record["trials"]["trial_ids"] and record["trials"]["dropped_trial_ids"]["nan_align"] == [
        2
    ]


def test_a_continuous_recording_is_chopped_into_overlapping_segments(
    continuous_session: Session, tmp_path: Path
) -> None:
    result = _prepare(continuous_session, tmp_path / "rec.h5", "--chop-ms", "1000", "--overlap-ms", "200")
    assert "segments" in result.output
    record = read_record(tmp_path / "rec.prepare.json")
    layout = record["chop"]
    # 12.345 s → 1234 whole bins of 10 ms; 100-bin segments every 80 bins, the last flush with the end
    assert layout["n_bins"] == 1234 and layout["segment_bins"] == 100 and layout["overlap_bins"] == 20
    starts = layout["segment_starts_bins"]
    assert starts[:3] == [0, 80, 160] and starts[-1] == 1134 and len(starts) == 16
    with h5py.File(tmp_path / "rec.h5") as f:
        for split in ("train", "valid"):
            data, inds = f[f"{split}_recon_data"][()], f[f"{split}_inds"][()]
            for sample, segment in enumerate(inds):
                for unit in range(6):
                    times = continuous_session.spike_times[unit]
                    start = starts[segment] * 0.01
                    np.testing.assert_array_equal(
                        data[sample, :, unit], _direct_count(times, start, 100, 0.01)
                    )
    assert inspect_data_file(tmp_path / "rec.h5", "Poisson").n_train == len(record["split"]["train_inds"])


def test_chop_with_forward_bins_extends_each_segment(continuous_session: Session, tmp_path: Path) -> None:
    args = ["--chop-ms", "500", "--overlap-ms", "100", "--forward-ms", "50", "--heldout", "1"]
    _prepare(continuous_session, tmp_path / "rec.h5", *args)
    summary = inspect_data_file(tmp_path / "rec.h5")
    assert (summary.encod_seq_len, summary.recon_seq_len, summary.n_held_out) == (50, 55, 1)


def test_chop_ignores_the_trials_of_a_file_that_has_them(trials_session: Session, tmp_path: Path) -> None:
    _prepare(trials_session, tmp_path / "rec.h5", "--chop", "--chop-ms", "2000", "--overlap-ms", "500")
    assert read_record(tmp_path / "rec.h5")["mode"] == "chop"


def test_prepare_never_changes_the_source_and_refuses_to_overwrite(
    trials_session: Session, tmp_path: Path
) -> None:
    before = _sha256(trials_session.path)
    out = tmp_path / "data.h5"
    _prepare(trials_session, out, *ALIGN)
    again = CliRunner().invoke(main, ["prepare", str(trials_session.path), "--out", str(out), *ALIGN])
    assert again.exit_code == 1 and "already exist" in again.output and "--force" in again.output
    _prepare(trials_session, out, *ALIGN, "--force", "--bin-ms", "50")
    assert inspect_data_file(out).encod_seq_len == 14
    assert _sha256(trials_session.path) == before


def test_validate_accepts_the_prepared_file(trials_session: Session, tmp_path: Path) -> None:
    _prepare(trials_session, tmp_path / "data.h5", *ALIGN, "--heldout", "2")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "data.h5")])
    assert result.exit_code == 0, result.output
    assert "2 held-out channels" in result.output and "config OK" in result.output


def test_synth_nwb_writes_a_session_prepare_reads(tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "demo.nwb"
    result = runner.invoke(main, ["synth", "nwb", str(path), "--n-trials", "12", "--duration-s", "20"])
    assert result.exit_code == 0, result.output
    assert "20 units, 20 s, 12 trials" in result.output
    again = runner.invoke(main, ["synth", "nwb", str(path)])
    assert again.exit_code == 1 and "--force" in again.stderr
    too_many = runner.invoke(
        main, ["synth", "nwb", str(tmp_path / "x.nwb"), "--n-trials", "50", "--duration-s", "5"]
    )
    assert too_many.exit_code == 1 and "longer --duration-s" in too_many.stderr
    assert not (tmp_path / "x.nwb").exists()
    args = ["prepare", str(path), "--out", str(tmp_path / "demo.h5"), *ALIGN, "--heldout", "4"]
    assert runner.invoke(main, args).exit_code == 0
    assert inspect_data_file(tmp_path / "demo.h5").n_held_out == 4


def test_help_of_the_new_commands_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from autolfads.cli import main\n"
        "for args in (['prepare', '--help'], ['merge', '--help'], ['synth', 'nwb', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        "print('loaded:', [m for m in ('pynwb', 'hdmf', 'h5py', 'torch') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "loaded: []"
