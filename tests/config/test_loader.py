"""load_config: defaults ← file ← data ← overrides, dimensions from the data, one-line refusals."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from autolfads.config import load_config, save_resolved_config
from autolfads.config.dims import RECON_N_PARAMS
from autolfads.config.loader import DATAMODULE_KEYS, MODEL_KEYS
from autolfads.config.pbt import parse_pbt_block
from autolfads.data.contract import DataWarning
from autolfads.errors import ConfigError, DataError
from tests.data.files import contract_arrays, write_contract_file, write_h5


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """5 held-in of 7 channels, 8 observed of 10 steps, Poisson counts."""
    return write_contract_file(tmp_path / "data.h5")


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_defaults_are_the_reference_values() -> None:
    cfg = load_config()
    model = cfg.model
    assert (model.gen_dim, model.fac_dim, model.con_dim, model.co_dim, model.ic_dim) == (200, 100, 64, 4, 64)
    assert (model.ic_enc_dim, model.ci_enc_dim, model.ci_lag) == (64, 64, 1)
    assert (model.lr_init, model.kl_ic_scale, model.kl_increase_epoch, model.dropout_rate) == (
        4e-3,
        1e-7,
        80,
        0.3,
    )
    assert model.train_aug_stack.transforms[0].cd_rate == 0.3
    assert model.co_prior.shape == 4 and model.ic_prior.shape == 64  # interpolations resolved
    assert cfg.datamodule.batch_size == 256
    assert (cfg.trainer.max_epochs, cfg.trainer.gradient_clip_val, cfg.trainer.log_every_n_steps) == (
        1000,
        200,
        5,
    )
    assert cfg.posterior_sampling.num_samples == 50
    assert model.encod_data_dim is None  # no data given: nothing inferred


def test_default_pbt_block_parses_with_the_reference_search_space() -> None:
    settings = parse_pbt_block(load_config().pbt)
    assert (settings.num_samples, settings.perturbation_interval, settings.burn_in_period) == (16, 25, 105)
    space = settings.space
    assert space["model.lr_init"].init == 4e-3 and space["model.lr_init"].enforce_limits
    assert space["model.train_aug_stack.transforms.0.cd_rate"].init == 0.5
    assert space["model.l2_con_scale"].max_samp == 1.0 and space["model.kl_co_scale"].explore_wt == 0.8


def test_dims_are_inferred_from_the_file(data: Path) -> None:
    model = load_config(data_paths=[data]).model
    assert (model.encod_data_dim, model.encod_seq_len, model.recon_seq_len, model.ext_input_dim) == (
        5,
        8,
        10,
        0,
    )
    assert model.readout[0].out_features == 7 and model.readout[0].in_features == 100


def test_config_dim_contradicting_file_is_refused(data: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["model.encod_data_dim=137"], data_paths=[data])
    assert f"model.encod_data_dim is 137 but {data} has 5 encod channels" in str(info.value)


def test_readout_width_contradicting_file_is_refused(tmp_path: Path, data: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.readout.0.out_features is 182 but .* has 7 recon channels"):
        load_config(overrides=["model.readout.0.out_features=182"], data_paths=[data])


def test_missing_marker_and_absent_dims_are_inferred(tmp_path: Path, data: Path) -> None:
    config = write_yaml(
        tmp_path / "c.yaml",
        """
        model:
          encod_seq_len: ???
          recon_seq_len: 10
        """,
    )
    model = load_config(config, data_paths=[data]).model
    assert (model.encod_seq_len, model.recon_seq_len) == (8, 10)


def test_readout_width_counts_the_reconstruction_parameters(data: Path) -> None:
    cfg = load_config(
        overrides=[
            "model.reconstruction=[{_target_: autolfads.model.recons.ZeroInflatedGamma, gamma_loc: 0.0}]"
        ],
        data_paths=[data],
    )
    assert cfg.model.readout[0].out_features == 7 * 3
    assert cfg.model.reconstruction[0].recon_dim == 7


def test_n_params_table_matches_the_model_classes() -> None:
    from autolfads.model import recons

    for name, n_params in RECON_N_PARAMS.items():
        cls = next(getattr(recons, attr) for attr in dir(recons) if attr.lower() == name)
        assert cls.n_params == n_params, name


def test_known_keys_match_the_constructors() -> None:
    from autolfads.data.datamodule import LFADSDataModule
    from autolfads.model.lfads import LFADS

    assert set(MODEL_KEYS) == set(inspect.signature(LFADS.__init__).parameters) - {"self"}
    assert set(DATAMODULE_KEYS) == set(inspect.signature(LFADSDataModule.__init__).parameters) - {"self"}


def test_ext_input_dim_without_ext_input_data_is_refused(data: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.ext_input_dim is 3 but .* has no \*_ext_input data"):
        load_config(overrides=["model.ext_input_dim=3"], data_paths=[data])


def test_ext_input_dim_is_inferred_when_the_file_has_inputs(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5", train_ext_input=np.zeros((12, 8, 2)), valid_ext_input=np.zeros((4, 8, 2))
    )
    assert load_config(data_paths=[path]).model.ext_input_dim == 2


def test_gamma_on_data_with_zeros_is_refused(data: Path) -> None:
    with pytest.raises(DataError, match=r"values <= 0 .* Gamma"):
        load_config(
            overrides=["model.reconstruction=[{_target_: autolfads.model.recons.Gamma}]"], data_paths=[data]
        )


def test_non_integer_data_is_accepted_with_a_note_for_the_default_poisson(tmp_path: Path) -> None:
    arrays = contract_arrays()
    arrays["train_recon_data"] = arrays["train_recon_data"] + 0.25
    with pytest.warns(DataWarning, match="'train_recon_data' has non-integer values"):
        load_config(data_paths=[write_h5(tmp_path / "d.h5", arrays)])


def test_ic_enc_seq_len_as_long_as_the_data_is_refused(data: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.ic_enc_seq_len 8 must be smaller than encod_seq_len 8"):
        load_config(overrides=["model.ic_enc_seq_len=8"], data_paths=[data])


def test_file_overrides_defaults_and_command_line_overrides_win(tmp_path: Path, data: Path) -> None:
    config = write_yaml(
        tmp_path / "c.yaml",
        """
        model:
          gen_dim: 100
          fac_dim: 20
        trainer:
          max_epochs: 50
        """,
    )
    cfg = load_config(config, overrides=["model.gen_dim=128", "model.lr_init=1e-3"], data_paths=[data])
    assert (cfg.model.gen_dim, cfg.model.fac_dim, cfg.trainer.max_epochs) == (128, 20, 50)
    assert cfg.model.lr_init == pytest.approx(1e-3) and isinstance(cfg.model.lr_init, float)
    assert cfg.model.readout[0].in_features == 20  # ${model.fac_dim} follows the file
    assert cfg.model.ic_dim == 64  # untouched defaults stay


def test_override_of_an_unknown_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["model.gen_dims=64"])
    message = str(info.value)
    assert "override 'model.gen_dims=64': the config has no key 'model.gen_dims'" in message
    assert "did you mean model.gen_dim" in message and "+model.gen_dims=..." in message


def test_plus_override_adds_a_key() -> None:
    cfg = load_config(overrides=["+trainer.limit_val_batches=2"])
    assert cfg.trainer.limit_val_batches == 2


def test_plus_override_cannot_add_a_top_level_block() -> None:
    with pytest.raises(ConfigError, match=r"unknown top-level key 'notes' \(known: model, datamodule"):
        load_config(overrides=["+notes=hello"])


def test_override_without_a_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"override 'model.gen_dim': expected KEY=VALUE"):
        load_config(overrides=["model.gen_dim"])


def test_override_values_are_typed() -> None:
    cfg = load_config(overrides=["model.lr_scheduler=true", "datamodule.reshuffle_tv_seed=3", "seed=null"])
    assert cfg.model.lr_scheduler is True and cfg.datamodule.reshuffle_tv_seed == 3 and cfg.seed is None


def test_list_index_override_reaches_the_augmentation() -> None:
    cfg = load_config(overrides=["model.train_aug_stack.transforms.0.cd_rate=0.5"])
    assert cfg.model.train_aug_stack.transforms[0].cd_rate == 0.5


def test_unknown_model_key_in_the_file_is_refused(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", "model:\n  gen_size: 64\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'model.gen_size' \(did you mean gen_dim"):
        load_config(config)


def test_misspelled_block_is_refused(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", "trainr:\n  max_epochs: 5\n")
    with pytest.raises(ConfigError, match=r"unknown top-level key 'trainr' \(did you mean 'trainer'\?\)"):
        load_config(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [("model: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "expected a mapping")],
)
def test_unreadable_config_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path / "c.yaml", text))


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")


def test_a_part_with_another_target_replaces_the_default(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "c.yaml",
        """
        model:
          variational: false
          co_prior: {_target_: autolfads.model.priors.Null}
          ic_prior: {_target_: autolfads.model.priors.Null}
        """,
    )
    cfg = load_config(config)
    assert OmegaConf.to_container(cfg.model.co_prior) == {"_target_": "autolfads.model.priors.Null"}


def test_data_argument_replaces_the_configured_files(tmp_path: Path, data: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", "datamodule:\n  datafile_pattern: /nowhere/*.h5\n")
    cfg = load_config(config, data_paths=[data])
    assert list(cfg.datamodule.data_paths) == [str(data)] and cfg.datamodule.datafile_pattern is None


def test_datafile_pattern_is_accepted(tmp_path: Path, data: Path) -> None:
    cfg = load_config(overrides=[f"datamodule.datafile_pattern={tmp_path}/*.h5"])
    assert cfg.model.encod_data_dim == 5


def test_missing_data_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data file"):
        load_config(data_paths=[tmp_path / "absent.h5"])


def test_each_session_gets_its_own_readout(tmp_path: Path) -> None:
    a = write_h5(tmp_path / "a.h5", contract_arrays(n_rec=7))
    b = write_h5(tmp_path / "b.h5", contract_arrays(n_rec=9))
    model = load_config(data_paths=[b, a]).model
    assert [r.out_features for r in model.readout] == [7, 9]  # sorted: a.h5 is session 0
    assert len(model.readin) == 2 and len(model.reconstruction) == 2


def test_identity_readin_needs_equal_widths_across_sessions(tmp_path: Path) -> None:
    a = write_h5(tmp_path / "a.h5", contract_arrays(n_enc=5))
    b = write_h5(tmp_path / "b.h5", contract_arrays(n_enc=6))
    with pytest.raises(
        ConfigError, match=r"model.readin is Identity but .* give each session a Linear readin"
    ):
        load_config(data_paths=[a, b])


def test_saved_config_reloads_to_the_same_config(tmp_path: Path, data: Path) -> None:
    cfg = load_config(overrides=["model.gen_dim=32"], data_paths=[data])
    saved = save_resolved_config(cfg, tmp_path / "out" / "config.yaml")
    assert saved.read_text().startswith("seed: 0")
    assert load_config(saved) == cfg
    assert [p.name for p in saved.parent.iterdir()] == ["config.yaml"]  # no temporary file left


def test_saved_config_is_readable_as_every_output_is(tmp_path: Path, data: Path) -> None:
    """config.yaml in OUT gets the umask's permissions, as fitlog.csv and the zip do, not a temp file's 0600
    (a lab colleague or the operator's reader must be able to open it)."""
    umask = os.umask(0o022)
    try:
        saved = save_resolved_config(load_config(data_paths=[data]), tmp_path / "out" / "config.yaml")
    finally:
        os.umask(umask)
    assert saved.stat().st_mode & 0o777 == 0o644


def test_importing_the_pbt_parser_stays_light() -> None:
    code = (
        "import sys, autolfads.config.pbt\n"
        "heavy = [m for m in ('torch', 'lightning', 'omegaconf', 'h5py', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
