"""``autolfads merge`` and the NWB copy, on output files made by hand from a prepared (chopped) recording.

The output files here are what posterior sampling writes (the prepared file plus ``{split}_output_params``
and ``{split}_factors``) with values chosen so that the merged result is known exactly; the end-to-end
test (tests/data/test_nwb_end_to_end.py) runs a real model.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from autolfads.data.binning import bin_spikes
from autolfads.data.chop import chop
from autolfads.data.merge import merge_output
from autolfads.data.prepare import PrepareOptions
from autolfads.data.prepared import prepare_nwb, read_record
from tests.data.nwbfiles import Session, write_session

BIN_S = 0.01


@pytest.fixture(scope="module")
def chopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, Path, dict]:
    root = tmp_path_factory.mktemp("merge")
    session = write_session(root / "rec.nwb", duration_s=6.0, n_units=5)
    options = PrepareOptions(chop=True, chop_ms=1000, overlap_ms=200, heldout=1)
    prepared, data, _ = prepare_nwb(session.path, root / "rec.h5", options)
    return session, data, prepared.record


def _fake_output(data: Path, out: Path, per_segment_rates, per_segment_factors) -> Path:
    """The prepared file plus output arrays, as posterior sampling lays them out (rows in *_inds order)."""
    shutil.copyfile(data, out)
    with h5py.File(out, "r+") as f:
        for split in ("train", "valid"):
            inds = f[f"{split}_inds"][()]
            f[f"{split}_output_params"] = per_segment_rates[inds].astype(np.float32)
            f[f"{split}_factors"] = per_segment_factors[inds].astype(np.float32)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_segments_cut_from_one_signal_merge_back_to_it(chopped, tmp_path: Path) -> None:
    session, data, record = chopped
    layout = record["chop"]
    starts, seg, n_bins = np.array(layout["segment_starts_bins"]), layout["segment_bins"], layout["n_bins"]
    assert n_bins == 600 and seg == 100 and starts.tolist() == [0, 80, 160, 240, 320, 400, 480, 500]
    truth = np.random.default_rng(0).gamma(2.0, 0.1, size=(n_bins, 5))  # rates per bin
    output = _fake_output(
        data, tmp_path / "out.h5", chop(truth, starts, seg), chop(truth[:, :2], starts, seg)
    )
    merged = merge_output(output)
    assert merged.rates_hz.shape == (600, 5) and merged.factors.shape == (600, 2)
    np.testing.assert_allclose(merged.rates_hz, truth / BIN_S, rtol=1e-5)
    np.testing.assert_allclose(merged.timestamps, (np.arange(600) + 0.5) * BIN_S)
    # the merged spikes are the whole recording binned at once, in the record's channel order
    order = [session.unit_ids.index(u) for u in record["units"]["channel_unit_ids"]]
    direct = bin_spikes([session.spike_times[u] for u in order], np.array([0.0]), 600, BIN_S)[0]
    np.testing.assert_array_equal(merged.spikes, direct)
    assert merged.held_out.tolist() == [False] * 4 + [True]


def test_overlaps_follow_the_hand_computed_cross_fade(chopped, tmp_path: Path) -> None:
    _, data, record = chopped
    starts = np.array(record["chop"]["segment_starts_bins"])
    n_segments = len(starts)
    # every bin of segment s holds the value s: an overlap bin then reads s + w_incoming
    constant = np.broadcast_to(np.arange(n_segments, dtype=float)[:, None, None], (n_segments, 100, 1))
    output = _fake_output(data, tmp_path / "out.h5", np.repeat(constant, 5, axis=2), constant)
    factors = merge_output(output).factors[:, 0]
    # overlap of segments 0 and 1: bins 80..99, incoming weight (k + 0.5) / 20
    np.testing.assert_allclose(factors[80:100], (np.arange(20) + 0.5) / 20, rtol=1e-6)
    np.testing.assert_allclose(factors[:80], 0.0)
    np.testing.assert_allclose(factors[100:160], 1.0)
    # the last segment starts at 500, only 20 bins after segment 6 (480): a 80-bin overlap, where
    # segment 6 fades over (100 - j - 0.5) / 80 and segment 7 rises over (j + 0.5) / 80 … capped at 1
    j = np.arange(80)
    w6, w7 = np.minimum(1, (80 - j - 0.5) / 80), np.minimum(1, (j + 0.5) / 80)
    # segment 6 also fades in over its leading 20-bin overlap with segment 5 (bins 480..499)
    lead = np.minimum(1, (j + 20 + 0.5) / 20)
    w6 = np.minimum(w6, lead)
    expected = (6 * w6 + 7 * w7) / (w6 + w7)
    np.testing.assert_allclose(factors[500:580], expected, rtol=1e-6)
    np.testing.assert_allclose(factors[580:], 7.0)


def test_merge_command_writes_a_continuous_file_and_an_nwb_copy(chopped, tmp_path: Path) -> None:
    import pynwb

    session, data, record = chopped
    starts = np.array(record["chop"]["segment_starts_bins"])
    truth = np.full((600, 5), 0.2)
    output = _fake_output(
        data, tmp_path / "out.h5", chop(truth, starts, 100), chop(truth[:, :3], starts, 100)
    )
    before = _sha256(session.path)
    args = ["merge", str(output), "--out", str(tmp_path / "cont.h5"), "--nwb-out", str(tmp_path / "copy.nwb")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "merged 8 segments into 600 bins x 5 units" in result.output
    with h5py.File(tmp_path / "cont.h5") as f:
        assert f["rates"].shape == (600, 5) and f["rates"].attrs["unit"] == "Hz"
        np.testing.assert_allclose(f["rates"][()], 20.0, rtol=1e-5)
        assert f.attrs["source_sha256"] == before and f.attrs["bin_width_s"] == BIN_S
        assert f["unit_ids"][()].tolist() == record["units"]["channel_unit_ids"]

    assert _sha256(session.path) == before  # the source is never touched
    assert pynwb.validate(path=str(tmp_path / "copy.nwb")) == []
    with pynwb.NWBHDF5IO(str(tmp_path / "copy.nwb"), "r") as io:
        nwbfile = io.read()
        module = nwbfile.processing["lfads"]
        rates = module["rates"]
        assert rates.data.shape == (600, 5) and rates.unit == "Hz"
        assert rates.starting_time == pytest.approx(0.005) and rates.rate == pytest.approx(100.0)
        assert module["factors"].data.shape == (600, 3)
        assert module["rates_units"]["unit_id"].data[:].tolist() == record["units"]["channel_unit_ids"]
        assert len(nwbfile.units) == 5  # everything else of the source is still there

    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "--force" in again.stderr
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


def test_the_nwb_copy_refuses_a_different_source(chopped, tmp_path: Path) -> None:
    _, data, record = chopped
    starts = np.array(record["chop"]["segment_starts_bins"])
    values = chop(np.ones((600, 5)), starts, 100)
    output = _fake_output(data, tmp_path / "out.h5", values, values)
    other = write_session(tmp_path / "other.nwb", duration_s=6.0, n_units=5, seed=9).path
    args = ["merge", str(output), "--out", str(tmp_path / "c.h5"), "--nwb-out", str(tmp_path / "x.nwb")]
    result = CliRunner().invoke(main, [*args, "--nwb", str(other)])
    assert result.exit_code == 1 and "is not the file the data was prepared from" in result.stderr
    assert not (tmp_path / "x.nwb").exists()


def test_merge_refuses_what_it_cannot_stitch(chopped, tmp_path: Path) -> None:
    _, data, record = chopped
    runner = CliRunner()
    # the prepared data file itself: no model outputs yet
    result = runner.invoke(main, ["merge", str(data), "--out", str(tmp_path / "c.h5")])
    assert (
        result.exit_code == 1
        and "train_output_params" in result.stderr
        and "lfads_output_sess0.h5" in result.stderr
    )
    # a segment missing
    starts = np.array(record["chop"]["segment_starts_bins"])
    values = chop(np.ones((600, 5)), starts, 100)
    output = _fake_output(data, tmp_path / "out.h5", values, values)
    with h5py.File(output, "r+") as f:
        for key in ("valid_inds", "valid_output_params", "valid_factors", "valid_recon_data"):
            value = f[key][()][1:]
            del f[key]
            f[key] = value
    result = runner.invoke(main, ["merge", str(output), "--out", str(tmp_path / "c.h5")])
    assert result.exit_code == 1 and "are missing from train and valid" in result.stderr
    # trials, not segments
    trials = write_session(tmp_path / "t.nwb", duration_s=10, n_trials=8, n_units=3)
    prepare_nwb(trials.path, tmp_path / "t.h5", PrepareOptions(align="start_time", window_ms=(0, 500)))
    result = runner.invoke(main, ["merge", str(tmp_path / "t.h5"), "--out", str(tmp_path / "c.h5")])
    assert result.exit_code == 1 and "was prepared from trials" in result.stderr
    assert not (tmp_path / "c.h5").exists()


def test_a_record_can_be_given_for_an_output_without_one(chopped, tmp_path: Path) -> None:
    _, data, record = chopped
    starts = np.array(record["chop"]["segment_starts_bins"])
    values = chop(np.ones((600, 5)), starts, 100)
    output = _fake_output(data, tmp_path / "out.h5", values, values)
    with h5py.File(output, "r+") as f:
        del f["prepare_json"]
    result = CliRunner().invoke(main, ["merge", str(output), "--out", str(tmp_path / "c.h5")])
    assert result.exit_code == 1 and "--record" in result.stderr
    record_file = data.with_name("rec.prepare.json")
    assert read_record(record_file) == record
    result = CliRunner().invoke(
        main, ["merge", str(output), "--out", str(tmp_path / "c.h5"), "--record", str(record_file)]
    )
    assert result.exit_code == 0, result.output
