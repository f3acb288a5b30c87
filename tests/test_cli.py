"""The autolfads command: fast help, one-line errors with exit codes, train/validate/synth/infer paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from autolfads.errors import DataError
from tests.outputs.runs import TINY_OVERRIDES, tiny_data

HEAVY = ("torch", "lightning", "ray", "h5py", "omegaconf", "mlflow")


def console_script() -> list[str]:
    """The installed ``autolfads`` entry point beside this interpreter (or the module, if not installed)."""
    script = Path(sys.executable).parent / "autolfads"
    return [str(script)] if script.exists() else [sys.executable, "-m", "autolfads.cli"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tiny_data(tmp_path / "data.h5")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from autolfads.cli import main\n"
        "for args in (['--help'], ['train', '--help'], ['infer', '--help'], ['synth', 'lorenz', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (args, e.code)\n"
        f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "loaded: []"


def test_validate_checks_everything_without_importing_torch_lightning_or_ray(data: Path) -> None:
    code = (
        "import sys\n"
        "from autolfads.cli import main\n"
        "try:\n"
        f"    main(['validate', {str(data)!r}, 'model.gen_dim=16'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print('loaded:', [m for m in ('torch', 'lightning', 'ray') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "config OK" in done.stdout and done.stdout.strip().splitlines()[-1] == "loaded: []"


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "validate", "train", "infer"):
        assert command in result.output


def test_missing_file_is_one_error_line_from_the_console_script(tmp_path: Path) -> None:
    done = subprocess.run(
        [*console_script(), "validate", str(tmp_path / "missing.h5")], capture_output=True, text=True
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ") and "missing.h5" in lines[0]
    assert "Traceback" not in done.stderr


def test_bad_data_key_names_the_key_from_the_console_script(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["train_encod_data"] = [[[1.0]]]
        f["train_recon_data"] = [[[1.0]]]
        f["valid_encod_data"] = [[[1.0]]]
    command = [*console_script(), "train", str(path), "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "valid_recon_data" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


def test_validate_prints_the_dimensions(runner: CliRunner, data: Path) -> None:
    result = runner.invoke(main, ["validate", str(data), "model.gen_dim=16"])
    assert result.exit_code == 0, result.output
    assert "10 steps x 6 channels" in result.output  # encod_data
    assert "config OK: encod_data_dim 6, encod_seq_len 10, recon_seq_len 12" in result.output
    assert "gen_dim 16" in result.output


def test_validate_reports_a_contradicting_config_dim(runner: CliRunner, data: Path) -> None:
    result = runner.invoke(main, ["validate", str(data), "model.encod_data_dim=7"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "7" in result.stderr and "6" in result.stderr


def test_validate_checks_values_against_the_likelihood(runner: CliRunner, tmp_path: Path) -> None:
    path = tiny_data(tmp_path / "neg.h5")
    with h5py.File(path, "r+") as f:
        values = f["train_recon_data"][()]
        values[0, 0, 0] = -1.0
        f["train_recon_data"][...] = values
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "train_recon_data" in result.stderr


def test_override_without_equals_is_a_usage_error(runner: CliRunner, data: Path) -> None:
    result = runner.invoke(main, ["train", str(data), "--out", "x", "model.gen_dim"])
    assert result.exit_code == 2
    assert "is not KEY=VALUE" in result.stderr


def test_repeated_override_is_a_usage_error(runner: CliRunner, data: Path) -> None:
    result = runner.invoke(main, ["validate", str(data), "model.gen_dim=8", "model.gen_dim=9"])
    assert result.exit_code == 2
    assert "given more than once" in result.stderr


def test_unknown_config_key_is_one_line(runner: CliRunner, data: Path) -> None:
    result = runner.invoke(main, ["validate", str(data), "model.gen_dimm=8"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "gen_dimm" in result.stderr
    assert result.stderr.count("\n") == 1


def test_debug_flag_and_env_show_the_exception(runner: CliRunner, tmp_path: Path, monkeypatch) -> None:
    result = runner.invoke(main, ["--debug", "validate", str(tmp_path / "missing.h5")])
    assert isinstance(result.exception, DataError)
    monkeypatch.setenv("AUTOLFADS_DEBUG", "1")
    result = runner.invoke(main, ["validate", str(tmp_path / "missing.h5")])
    assert isinstance(result.exception, DataError)


def test_train_refuses_an_out_with_results(runner: CliRunner, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.ckpt").write_text("earlier run")
    result = runner.invoke(main, ["train", str(data), "--out", str(out)])
    assert result.exit_code == 1
    assert "already holds an unfinished run (model.ckpt)" in result.stderr and "--force" in result.stderr
    assert (out / "model.ckpt").read_text() == "earlier run"


@pytest.fixture
def keep_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_then_infer(runner: CliRunner, data: Path, tmp_path: Path, keep_threads) -> None:
    import torch

    out = tmp_path / "run"
    result = runner.invoke(main, ["train", str(data), "--out", str(out), "--threads", "1", *TINY_OVERRIDES])
    assert torch.get_num_threads() == 1
    assert result.exit_code == 0, result.output
    # not a TTY here: one plain line per epoch, then the summary
    assert "epoch 0/1  train/recon " in result.output and "valid/recon_smth" in result.output
    assert "best valid/recon_smth" in result.output and "model.ckpt" in result.output
    again = runner.invoke(main, ["train", str(data), "--out", str(out), "--force", *TINY_OVERRIDES])
    assert again.exit_code == 0, again.output

    new = tiny_data(tmp_path / "new.h5", seed=3)
    args = ["infer", str(out / "model.ckpt"), str(new), "--out", str(tmp_path / "inf"), "--num-samples", "2"]
    inferred = runner.invoke(main, args)
    assert inferred.exit_code == 0, inferred.output
    with h5py.File(tmp_path / "inf" / "lfads_output_sess0.h5") as f:
        assert f["valid_output_params"].shape == f["valid_recon_data"].shape


def test_infer_rejects_zero_samples(runner: CliRunner, data: Path, tmp_path: Path) -> None:
    result = runner.invoke(main, ["infer", "m.ckpt", str(data), "--out", str(tmp_path), "--num-samples", "0"])
    assert result.exit_code == 2


def test_synth_lorenz_writes_and_protects_the_file(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "l.h5"
    result = runner.invoke(
        main,
        [
            "synth",
            "lorenz",
            str(path),
            "--n-trials",
            "20",
            "--n-conditions",
            "2",
            "--n-neurons",
            "5",
            "--held-in",
            "4",
            "--encod-seq-len",
            "8",
            "--recon-seq-len",
            "9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "16 train / 4 valid trials, 4 of 5 channels held in, 8+1 bins" in result.output
    again = runner.invoke(main, ["synth", "lorenz", str(path)])
    assert again.exit_code == 1 and "--force" in again.stderr
    assert (
        runner.invoke(
            main, ["synth", "lorenz", str(path), "--force", "--n-trials", "20", "--n-conditions", "2"]
        ).exit_code
        == 0
    )


def test_synth_lorenz_mean_rate_sets_the_spike_count(runner: CliRunner, tmp_path: Path) -> None:
    means = {}
    for rate in ("5", "40"):
        path = tmp_path / f"rate{rate}.h5"
        args = ["synth", "lorenz", str(path), "--n-trials", "40", "--mean-rate", rate]
        assert runner.invoke(main, args).exit_code == 0
        with h5py.File(path, "r") as f:
            means[rate] = float(f["train_recon_data"][()].mean()) / 0.01  # spikes/s at 10 ms bins
    assert abs(means["5"] - 5) < 1.5 and abs(means["40"] - 40) < 6, means
    refused = runner.invoke(main, ["synth", "lorenz", str(tmp_path / "z.h5"), "--mean-rate", "0"])
    assert refused.exit_code == 2 and "--mean-rate" in refused.stderr


def test_unwritable_out_is_one_line(runner: CliRunner, data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(main, ["train", str(data), "--out", str(blocker / "sub"), *TINY_OVERRIDES])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
