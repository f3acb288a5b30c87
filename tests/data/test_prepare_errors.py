"""Bad NWB input and bad flags: ``autolfads prepare`` refuses each with one line and writes nothing."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from tests.data.nwbfiles import write_session

ALIGN = ["--align", "move_onset_time", "--window", "-250", "450"]


def _bare_nwb(path: Path, build: Callable[[object], None]) -> Path:
    from pynwb import NWBHDF5IO, NWBFile

    nwbfile = NWBFile("bad", "bad-file", datetime(2024, 1, 1, tzinfo=UTC))
    build(nwbfile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwbfile)
    return path


_templates: dict[str, Path] = {}  # plain files written once per module, copied into each test


@pytest.fixture(scope="module", autouse=True)
def _template_dir(tmp_path_factory: pytest.TempPathFactory):
    _templates["dir"] = tmp_path_factory.mktemp("templates")
    yield
    _templates.clear()


def _copy_of(name: str, tmp: Path, write: Callable[[Path], object]) -> Path:
    if name not in _templates:
        _templates[name] = _templates["dir"] / name
        write(_templates[name])
    return Path(shutil.copyfile(_templates[name], tmp / name))


def _trials_file(tmp: Path, **kwargs) -> Path:
    if kwargs:
        return write_session(tmp / "s.nwb", duration_s=12, n_trials=8, n_units=4, **kwargs).path
    return _copy_of("s.nwb", tmp, lambda path: write_session(path, duration_s=12, n_trials=8, n_units=4))


def _continuous_file(tmp: Path) -> Path:
    return _copy_of("c.nwb", tmp, lambda path: write_session(path, duration_s=3, n_units=3))


def _no_units(tmp: Path) -> Path:
    def build(nwbfile) -> None:
        nwbfile.add_trial(start_time=0.0, stop_time=1.0)

    return _bare_nwb(tmp / "no_units.nwb", build)


def _emptied(path: Path, group: str) -> Path:
    """Every dataset of ``group`` cut to 0 rows (hdmf cannot write an empty table; a file can hold one)."""
    with h5py.File(path, "r+") as f:
        saved = {}
        for name, dataset in list(f[group].items()):
            # references (a VectorIndex's 'target') are kept as the name they point to, re-pointed below
            attrs = {k: f[v].name if isinstance(v, h5py.Reference) else v for k, v in dataset.attrs.items()}
            refs = {k for k, v in dataset.attrs.items() if isinstance(v, h5py.Reference)}
            saved[name] = (attrs, refs, dataset.dtype)
        for name in saved:
            del f[group][name]
        for name, (_, _, dtype) in saved.items():
            f[group].create_dataset(name, shape=(0,), dtype=dtype)
        for name, (attrs, refs, _) in saved.items():
            for key, value in attrs.items():
                f[group][name].attrs[key] = f[value].ref if key in refs else value
    return path


def _empty_units(tmp: Path) -> Path:
    path = _bare_nwb(tmp / "empty_units.nwb", lambda nwbfile: nwbfile.add_unit(spike_times=[0.5]))
    return _emptied(path, "units")


def _units_without_spike_times(tmp: Path) -> Path:
    return _bare_nwb(tmp / "no_spike_times.nwb", lambda nwbfile: nwbfile.add_unit(obs_intervals=[[0.0, 1.0]]))


def _trials(rows: list[tuple[float, float]]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        def build(nwbfile) -> None:
            nwbfile.add_unit(spike_times=np.linspace(0.01, 9.9, 200))
            for start, stop in rows:
                nwbfile.add_trial(start_time=start, stop_time=stop)

        return _bare_nwb(tmp / "trials.nwb", build)

    return make


def _not_hdf5(tmp: Path) -> Path:
    path = tmp / "notes.nwb"
    path.write_text("spike times, honest\n")
    return path


def _hdf5_not_nwb(tmp: Path) -> Path:
    path = tmp / "plain.nwb"
    with h5py.File(path, "w") as f:
        f["spikes"] = np.zeros(3)
    return path


def _set_trial_value(column: str, row: int, value) -> Callable[[object], None]:
    def edit(nwbfile) -> None:
        nwbfile.trials[column].data[row] = value

    return edit


def _nan_hand_vel(nwbfile) -> None:
    nwbfile.processing["behavior"]["hand_vel"].data[300:310] = np.nan


# (id, file builder, extra flags, a fragment the one error line must contain)
CASES = [
    ("missing file", lambda tmp: tmp / "nope.nwb", [], "no such NWB file"),
    ("a directory", lambda tmp: tmp, [], "is a directory"),
    ("not HDF5", _not_hdf5, [], "cannot be read as an NWB (HDF5) file"),
    ("HDF5 but not NWB", _hdf5_not_nwb, [], "not NWB (no 'nwb_version'"),
    ("no units table", _no_units, [], "has no units table"),
    ("units table with no rows", _empty_units, [], "has no units (0 rows)"),
    ("units without spike_times", _units_without_spike_times, [], "no 'spike_times' column"),
    ("every unit silent", lambda tmp: _trials_file(tmp, silent_units=(0, 1, 2, 3)), ALIGN, "has a spike"),
    ("empty trial", _trials([(0.0, 1.0), (1.0, 1.0), (2.0, 3.0)]), [], "trial 1 is empty"),
    ("overlapping trials", _trials([(0.0, 1.5), (1.0, 2.0)]), [], "overlap"),
    (
        "empty trials table",
        lambda t: _emptied(_trials([(0.0, 1.0)])(t), "intervals/trials"),
        [],
        "is empty (0 trials)",
    ),
    (
        "window off the recording",
        _trials_file,
        ["--align", "start_time", "--window", "-500", "300"],
        "runs off",
    ),
    ("bin bigger than the window", _trials_file, [*ALIGN, "--bin-ms", "1000"], "makes no bin"),
    ("bin bigger than a trial", _trials_file, ["--bin-ms", "5000"], "makes no bin"),
    (
        "bin bigger than the recording",
        _continuous_file,
        ["--bin-ms", "5000", "--chop-ms", "5000", "--overlap-ms", "0"],
        "makes no bin",
    ),
    ("window not whole bins", _trials_file, [*ALIGN, "--bin-ms", "30"], "not a whole number of --bin-ms"),
    (
        "window end before start",
        _trials_file,
        ["--align", "start_time", "--window", "100", "-100"],
        "end must",
    ),
    (
        "unknown align column",
        _trials_file,
        ["--align", "move_onset", "--window", "0", "100"],
        "move_onset_time",
    ),
    ("align column of text", _trials_file, ["--align", "split", "--window", "0", "100"], "expected times"),
    (
        "align without trials",
        _continuous_file,
        ["--align", "start_time", "--window", "0", "100"],
        "no trials",
    ),
    (
        "unknown units column",
        _trials_file,
        [*ALIGN, "--units-where", "qualty=good"],
        "did you mean 'quality'",
    ),
    (
        "units filter keeps none",
        _trials_file,
        [*ALIGN, "--units-where", "quality=excellent"],
        "leaves no unit",
    ),
    ("malformed filter", _trials_file, [*ALIGN, "--trials-where", "split"], "not COLUMN=VALUE"),
    (
        "unknown ext-input",
        _trials_file,
        [*ALIGN, "--ext-input", "hand_velocity"],
        "no TimeSeries 'hand_velocity'",
    ),
    (
        "NaN in ext-input",
        lambda t: _trials_file(t, edit=_nan_hand_vel),
        [*ALIGN, "--ext-input", "hand_vel"],
        "NaN",
    ),
    ("too many held out", _trials_file, [*ALIGN, "--heldout", "4"], "leaves no held-in unit"),
    ("held-out id unknown", _trials_file, [*ALIGN, "--heldout", "100,999"], "999 (not in the units table)"),
    ("held-out not a number", _trials_file, [*ALIGN, "--heldout", "some"], "neither a count"),
    (
        "bad split value",
        lambda t: _trials_file(t, edit=_set_trial_value("split", 0, "dev")),
        [*ALIGN, "--split-column", "split"],
        "'dev'",
    ),
    (
        "split leaves valid empty",
        _trials_file,
        [*ALIGN, "--trials-where", "split=train", "--split-column", "split"],
        "valid split empty",
    ),
    ("overlap not shorter", _continuous_file, ["--chop-ms", "500", "--overlap-ms", "500"], "must be shorter"),
    ("recording shorter than a segment", _continuous_file, ["--chop-ms", "5000"], "shorter than one segment"),
    ("valid fraction out of range", _trials_file, [*ALIGN, "--valid-fraction", "1.5"], "between 0 and 1"),
]


@pytest.mark.parametrize(("build", "flags", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, build, flags, fragment) -> None:
    source = build(tmp_path)
    out = tmp_path / "out" / "data.h5"
    result = CliRunner().invoke(main, ["prepare", str(source), "--out", str(out), *flags])
    assert result.exit_code in (1, 2), result.output  # 2: click's own usage errors (--heldout some)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 if result.exit_code == 1 else lines, result.stderr
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_suffix(".prepare.json").exists()


def test_out_may_not_be_the_source(tmp_path: Path) -> None:
    source = _trials_file(tmp_path)
    result = CliRunner().invoke(main, ["prepare", str(source), "--out", str(source), *ALIGN, "--force"])
    assert result.exit_code == 1 and "would overwrite the source NWB file" in result.stderr
    assert h5py.is_hdf5(source)
