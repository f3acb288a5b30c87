"""Every bad input is refused in one line naming it, the same way by ``validate``, ``train`` and ``run``.

One table: data files, configs, overrides and CLI arguments. For each row and each command that takes it,
the CLI (in-process, stderr kept apart) must exit with the row's code, print exactly one line on stderr
naming the row's key, show no traceback and leave ``--out`` untouched (it is never even created). For
data and config rows the three commands must print the very same line: ``validate`` says OK exactly when
``train``/``run`` would start. A few rows also go through the installed console script, which must refuse
them without importing torch, Lightning or Ray.
"""

# ruff: noqa: E501  (the table reads best one row per line)
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from tests.data.files import contract_arrays, write_h5

COMMANDS = ("validate", "train", "run")
HEAVY = ("torch", "lightning", "ray")


@dataclass(frozen=True)
class Row:
    """One bad input: how to make it, the key its refusal must name, the exit code, who takes it."""

    id: str
    key: str
    overrides: tuple[str, ...] = ()
    data: Callable[[Path], Path] | None = None  # writes a data file in the given folder (default: a good one)
    config: str | None = None  # YAML text of --config
    args: tuple[str, ...] = ()  # extra CLI arguments
    code: int = 1
    commands: tuple[str, ...] = COMMANDS
    env: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ data files
def _arrays(**edits: Any) -> dict[str, Any]:
    arrays = contract_arrays()
    arrays.update(edits)
    return arrays


def _file(drop: tuple[str, ...] = (), **edits: Any) -> Callable[[Path], Path]:
    return lambda folder: write_h5(folder / "data.h5", _arrays(**edits), drop)


def _edited(key: str, edit: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        arrays = contract_arrays()
        arrays[key] = edit(arrays[key].copy())
        return write_h5(folder / "data.h5", arrays)

    return make


def _set(index: tuple[int, int, int], value: float) -> Callable[[np.ndarray], np.ndarray]:
    def edit(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a

    return edit


def _not_hdf5(folder: Path) -> Path:
    path = folder / "data.h5"
    path.write_text("trial,neuron,count\n")
    return path


def _directory(folder: Path) -> Path:
    path = folder / "data.h5"
    path.mkdir()
    return path


def _group_instead_of_array(folder: Path) -> Path:
    path = write_h5(folder / "data.h5", contract_arrays(), drop=("valid_encod_data",))
    with h5py.File(path, "a") as f:
        f.create_group("valid_encod_data")
    return path


def _declared_huge(folder: Path) -> Path:
    """2 KB on disk, 640 GB declared: must be refused from the metadata alone."""
    path = write_h5(folder / "data.h5", contract_arrays(), drop=("train_recon_data", "valid_recon_data"))
    with h5py.File(path, "a") as f:
        f.create_dataset("train_recon_data", shape=(12, 10, 10**9), dtype="f4")
        f.create_dataset("valid_recon_data", shape=(4, 10, 10**9), dtype="f4")
    return path


def _one_step(folder: Path) -> Path:
    return write_h5(folder / "data.h5", {k: v[:, :1] for k, v in contract_arrays().items()})


def _truth(**extra: Any) -> Callable[[Path], Path]:
    return _file(train_truth=np.ones((12, 10, 7)), valid_truth=np.ones((4, 10, 7)), **extra)


DATA_ROWS = [
    Row("data-missing", "missing.h5", data=lambda folder: folder / "missing.h5"),
    Row("data-directory", "is a directory", data=_directory),
    Row("data-not-hdf5", "cannot be read as an HDF5 file", data=_not_hdf5),
    Row("data-key-missing", "'train_recon_data'", data=_file(drop=("train_recon_data",))),
    Row("data-key-is-group", "'valid_encod_data'", data=_group_instead_of_array),
    Row("data-2d", "'train_encod_data'", data=_edited("train_encod_data", lambda a: a[:, :, 0])),
    Row("data-empty-split", "'valid_encod_data' has 0 trials", data=_file(valid_encod_data=np.zeros((0, 8, 5)), valid_recon_data=np.zeros((0, 10, 7)))),
    Row("data-trial-mismatch", "'train_recon_data' has 11 trials", data=_edited("train_recon_data", lambda a: a[:11])),
    Row("data-channels-train-valid", "'valid_encod_data'", data=_edited("valid_encod_data", lambda a: a[:, :, :4])),
    Row("data-encod-wider", "'train_recon_data' only", data=_file(train_encod_data=np.zeros((12, 8, 9)), valid_encod_data=np.zeros((4, 8, 9)))),
    Row("data-encod-longer", "'train_recon_data' only", data=_file(train_encod_data=np.zeros((12, 11, 5)), valid_encod_data=np.zeros((4, 11, 5)))),
    Row("data-nan", "'valid_recon_data' contains NaN", data=_edited("valid_recon_data", _set((1, 2, 3), np.nan))),
    Row("data-inf", "'train_encod_data' contains Inf", data=_edited("train_encod_data", _set((0, 0, 1), np.inf))),
    Row("data-negative-counts", "'train_recon_data' has negative values", data=_edited("train_recon_data", _set((0, 5, 6), -1))),
    Row("data-negative-encod", "'train_encod_data' has negative values", data=_edited("train_encod_data", _set((2, 1, 1), -3))),
    Row("data-complex", "'train_recon_data' has dtype complex64", data=_edited("train_recon_data", lambda a: a.astype(np.complex64))),
    Row("data-bool", "'train_encod_data' has dtype bool", data=_edited("train_encod_data", lambda a: a > 1)),
    Row("data-text", "'valid_recon_data' has dtype", data=_edited("valid_recon_data", lambda a: a.astype("S4"))),
    Row("data-one-step", "'train_encod_data' has 1 time step", data=_one_step),
    Row("data-declared-huge", "'train_recon_data'", data=_declared_huge, env={"AUTOLFADS_MEMORY_BUDGET": "8G"}),
    Row("data-truth-no-factor", "'conversion_factor' is missing", data=_truth()),
    Row("data-truth-shape", "'valid_truth' has shape", data=_file(valid_truth=np.ones((4, 8, 7)), conversion_factor=1.0)),
    Row("data-factor-zero", "'conversion_factor' must be a positive", data=_truth(conversion_factor=0.0)),
    Row("data-ext-one-split", "'valid_ext_input' is missing", data=_file(train_ext_input=np.zeros((12, 8, 2)))),
    Row("data-ext-length", "'train_ext_input' has 9 time steps", data=_file(train_ext_input=np.zeros((12, 9, 2)), valid_ext_input=np.zeros((4, 9, 2)))),
    Row("data-inds-length", "'train_inds'", data=_file(train_inds=np.arange(11))),
    Row("data-test-width", "'test_encod_data'", data=_file(test_encod_data=np.zeros((3, 8, 4)))),
    Row("data-zeros-under-gamma", "values <= 0", overrides=("model.reconstruction=[{_target_: autolfads.model.recons.Gamma}]",)),
    Row("data-contradicts-dim", "model.encod_data_dim", overrides=("model.encod_data_dim=7",)),
    Row("data-no-ext-input", "model.ext_input_dim", overrides=("model.ext_input_dim=2",)),
    Row("data-ic-segment-too-long", "model.ic_enc_seq_len", overrides=("model.ic_enc_seq_len=8",)),
]  # fmt: skip

OVERRIDE_ROWS = [
    Row("lr-negative", "model.lr_init: expected a number > 0, found -1", overrides=("model.lr_init=-1",)),
    Row("lr-nan", "model.lr_init: expected a finite number > 0, found nan", overrides=("model.lr_init=.nan",)),
    Row("lr-inf", "model.lr_init", overrides=("model.lr_init=.inf",)),
    Row("batch-size-zero", "datamodule.batch_size", overrides=("datamodule.batch_size=0",)),
    Row("batch-size-negative", "datamodule.batch_size", overrides=("datamodule.batch_size=-3",)),
    Row("dropout-above-one", "model.dropout_rate: expected a number in [0, 1), found 1.5", overrides=("model.dropout_rate=1.5",)),
    Row("epsilon-string", "model.lr_adam_epsilon", overrides=("model.lr_adam_epsilon=abc",)),
    Row("gen-dim-huge", "model.gen_dim: 1000000 makes a model of", overrides=("model.gen_dim=1000000",)),
    Row("gen-dim-overflow", "model.gen_dim: 99999999999999999999", overrides=("model.gen_dim=99999999999999999999",)),
    Row("gen-dim-zero", "model.gen_dim", overrides=("model.gen_dim=0",)),
    Row("gen-dim-fraction", "model.gen_dim", overrides=("model.gen_dim=2.5",)),
    Row("fac-dim-negative", "model.fac_dim", overrides=("model.fac_dim=-1",)),
    Row("max-epochs-forever", "trainer.max_epochs", overrides=("trainer.max_epochs=-1",)),
    Row("max-epochs-zero", "trainer.max_epochs", overrides=("trainer.max_epochs=0",)),
    Row("max-epochs-null", "trainer.max_epochs: expected an integer >= 1 (runs must end), found null", overrides=("trainer.max_epochs=null",)),
    Row("trainer-unknown-key", "trainer.foo", overrides=("+trainer.foo=1",)),
    Row("trainer-managed-key", "trainer.callbacks", overrides=("+trainer.callbacks=[]",)),
    Row("trainer-accelerator", "trainer.accelerator", overrides=("trainer.accelerator=quantum",)),
    Row("trainer-clip-negative", "trainer.gradient_clip_val", overrides=("trainer.gradient_clip_val=-1",)),
    Row("pbt-population-one", "pbt.num_samples", overrides=("pbt.num_samples=1",)),
    Row("pbt-interval-zero", "pbt.perturbation_interval", overrides=("pbt.perturbation_interval=0",)),
    Row("pbt-mode", "pbt.mode: expected one of min, max", overrides=("+pbt.mode=sideways",)),
    Row("seed-negative", "seed", overrides=("seed=-3",)),
    Row("seed-text", "seed", overrides=("seed=abc",)),
    Row("variational-text", "model.variational", overrides=("model.variational=maybe",)),
    Row("cd-rate-above-one", "model.train_aug_stack.transforms.0.cd_rate", overrides=("model.train_aug_stack.transforms.0.cd_rate=1.2",)),
    Row("co-prior-tau", "model.co_prior.tau", overrides=("model.co_prior.tau=-1",)),
    Row("ic-prior-variance", "model.ic_prior.variance", overrides=("model.ic_prior.variance=0",)),
    Row("sv-rate-one", "datamodule.sv_rate", overrides=("datamodule.sv_rate=1.0",)),
    Row("reshuffle-without-seed", "datamodule.reshuffle_tv_seed", overrides=("datamodule.reshuffle_tv_ratio=0.2",)),
    Row("posterior-samples-zero", "posterior_sampling.num_samples", overrides=("posterior_sampling.num_samples=0",)),
    Row("kl-scale-negative", "model.kl_co_scale", overrides=("model.kl_co_scale=-0.1",)),
    Row("lr-decay-above-one", "model.lr_decay", overrides=("model.lr_decay=1.5",)),
    Row("ci-lag-negative", "model.ci_lag", overrides=("model.ci_lag=-1",)),
    Row("override-unknown-key", "model.gen_dimm", overrides=("model.gen_dimm=8",)),
    Row("override-unparseable", "model.gen_dim", overrides=("model.gen_dim=[1",)),
    Row("override-missing-interpolation", "model.nope", overrides=("model.ic_dim=${model.nope}",)),
]  # fmt: skip

CONFIG_ROWS = [
    Row("config-missing", "nope.yaml", args=("--config", "{tmp}/nope.yaml")),
    Row("config-not-yaml", "cfg.yaml: not valid YAML", config="model: [unclosed\n"),
    Row("config-a-list", "cfg.yaml: expected a mapping", config="- model\n- trainer\n"),
    Row("config-block-typo", "'modle'", config="modle:\n  gen_dim: 8\n"),
    Row("config-unknown-model-key", "model.gen_size", config="model:\n  gen_size: 64\n"),
    Row("config-missing-interpolation", "model.gen_dim: interpolation ${model.nope}", config="model:\n  gen_dim: ${model.nope}\n"),
    Row("config-pbt-searches-missing-key", "pbt.hps.model.lr_inti", config=textwrap.dedent("""\
        pbt:
          hps:
            model.lr_inti: {min_samp: 1.0e-4, max_samp: 1.0e-2}
        """)),
    Row("config-unknown-reference-target", "lfads_torch.modules.priors.Cauchy", config=textwrap.dedent("""\
        model:
          co_prior: {_target_: lfads_torch.modules.priors.Cauchy}
        """)),
    Row("config-trainer-a-list", "trainer", config="trainer: [1, 2]\n"),
    Row("config-readout-not-a-list", "model.readout", config="model:\n  readout: 3\n"),
    Row("config-prior-unknown-argument", "model.co_prior.taux", config="model:\n  co_prior:\n    taux: 3\n"),
    Row("config-trainer-target", "trainer._target_", config="trainer:\n  _target_: sklearn.Pipeline\n"),
    Row("config-string-number", "model.lr_init", config="model:\n  lr_init: 'fast'\n"),
]  # fmt: skip

CLI_ROWS = [
    Row("cli-override-without-equals", "model.gen_dim", overrides=("model.gen_dim",), code=2),
    Row("cli-override-repeated", "model.gen_dim", overrides=("model.gen_dim=8", "model.gen_dim=9"), code=2),
    Row("cli-threads-zero", "--threads", args=("--threads", "0"), code=2, commands=("train",)),
    Row("cli-metrics-port", "--metrics-port", args=("--metrics-port", "70000"), code=2, commands=("run",)),
    Row("cli-resume-and-force", "--resume and --force", args=("--resume", "--force"), code=2, commands=("train", "run")),
    Row("cli-unknown-option", "--frobnicate", args=("--frobnicate",), code=2),
]  # fmt: skip

ROWS = [*DATA_ROWS, *OVERRIDE_ROWS, *CONFIG_ROWS, *CLI_ROWS]


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 60
    assert len({row.id for row in ROWS}) == len(ROWS)


@pytest.fixture(scope="module")
def good_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_h5(tmp_path_factory.mktemp("good") / "data.h5", contract_arrays())


def _arguments(row: Row, command: str, folder: Path, data: Path) -> tuple[list[str], Path]:
    out = folder / "out"
    args = [command, str(data)]
    if command != "validate":
        args += ["--out", str(out)]
    if command == "run":
        args.append("--no-mlflow")
    if row.config is not None:
        config = folder / "cfg.yaml"
        config.write_text(row.config)
        args += ["--config", str(config)]
    args += [a.replace("{tmp}", str(folder)) for a in row.args]
    return [*args, *row.overrides], out


def refusal(row: Row, command: str, folder: Path, data: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Invoke ``command`` on the row's input in-process; assert the contract; return the one line."""
    for key, value in row.env.items():
        monkeypatch.setenv(key, value)
    args, out = _arguments(row, command, folder, data)
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    where = f"{command} {row.id}: exit {result.exit_code}, stderr {result.stderr!r}"
    assert result.exit_code == row.code, where
    assert len(lines) == 1, where
    assert lines[0].startswith("Error: ") and row.key in lines[0], where
    assert "Traceback" not in result.stderr + result.stdout, where
    assert not out.exists(), f"{where}: --out was touched"
    return lines[0]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input_is_refused_in_one_line_by_every_command_alike(
    row: Row, good_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = row.data(tmp_path) if row.data is not None else good_data
    lines = {command: refusal(row, command, tmp_path, data, monkeypatch) for command in row.commands}
    if row.code == 1:  # data and config: the same check, so the same words
        assert len(set(lines.values())) == 1, lines


SUBPROCESS_ROWS = (
    ("data-declared-huge", "validate"),
    ("lr-negative", "train"),
    ("config-unknown-model-key", "run"),
    ("cli-override-repeated", "run"),
)


@pytest.mark.parametrize(("row_id", "command"), SUBPROCESS_ROWS)
def test_the_console_script_refuses_without_importing_torch_or_ray(
    row_id: str, command: str, good_data: Path, tmp_path: Path
) -> None:
    row = next(r for r in ROWS if r.id == row_id)
    data = row.data(tmp_path) if row.data is not None else good_data
    args, out = _arguments(row, command, tmp_path, data)
    code = (
        "import sys\n"
        "from autolfads.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        f"    print('loaded', [m for m in {HEAVY!r} if m in sys.modules], 'exit', exit.code)\n"
    )
    env = {**_base_env(), **row.env}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == f"loaded [] exit {row.code}", (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and row.key in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not out.exists()


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "RAY_ADDRESS"))}
