"""A config written for the reference NeuroCAAS pipeline loads unchanged and maps onto our classes."""

from __future__ import annotations

import dataclasses
import math
import statistics
import textwrap
import warnings
from pathlib import Path

import pytest
from hydra.utils import instantiate

from autolfads.config import load_config
from autolfads.config.pbt import parse_pbt_block
from autolfads.config.reference import ConfigWarning
from autolfads.errors import ConfigError
from autolfads.tune.driver import initial_population
from tests.data.files import contract_arrays, write_h5

REFERENCE_CONFIG = Path(__file__).parent / "pbt_neurocaas.yaml"


@pytest.fixture
def mc_maze_shaped(tmp_path: Path) -> Path:
    """137 held-in of 182 channels, 35 observed + 10 forward steps: the shape the reference config names."""
    return write_h5(
        tmp_path / "mc_maze.h5",
        contract_arrays(n_train=8, n_valid=4, n_enc=137, n_rec=182, t_enc=35, t_rec=45),
    )


def load_reference(data: Path, *overrides: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(REFERENCE_CONFIG, overrides=overrides, data_paths=[data])
    return cfg, [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]


def test_reference_config_targets_map_onto_ours(mc_maze_shaped: Path) -> None:
    cfg, _ = load_reference(mc_maze_shaped)
    model = cfg.model
    assert model._target_ == "autolfads.model.lfads.LFADS"
    assert cfg.datamodule._target_ == "autolfads.data.datamodule.LFADSDataModule"
    assert model.readout[0]._target_ == "autolfads.model.readin_readout.FanInLinear"  # ModuleList → list
    assert model.readout[0].out_features == 182 and model.readout[0].in_features == 100
    assert model.reconstruction[0]._target_ == "autolfads.model.recons.Poisson"
    assert model.co_prior._target_ == "autolfads.model.priors.AutoregressiveMultivariateNormal"
    assert model.train_aug_stack.transforms[0]._target_ == "autolfads.model.augment.CoordinatedDropout"
    assert list(cfg.datamodule.data_paths) == [str(mc_maze_shaped)]
    assert cfg.seed is None and cfg.posterior_sampling.num_samples == 50
    assert not cfg.posterior_sampling.use_best_ckpt and "fn" not in cfg.posterior_sampling


def test_reference_pipeline_blocks_are_dropped_with_a_warning(mc_maze_shaped: Path) -> None:
    cfg, messages = load_reference(mc_maze_shaped)
    assert "callbacks" not in cfg and "logger" not in cfg
    assert "_target_" not in cfg.trainer and "gpus" not in cfg.trainer
    assert cfg.trainer.enable_checkpointing is False and cfg.trainer.max_epochs == 1000
    assert any("'callbacks' block is ignored" in m for m in messages)
    assert any("trainer.gpus (Lightning 1.x) is ignored" in m for m in messages)
    assert any("posterior_sampling.fn.filename is ignored" in m for m in messages)


def test_reference_pbt_block_parses(mc_maze_shaped: Path) -> None:
    cfg, _ = load_reference(mc_maze_shaped)
    settings = parse_pbt_block(cfg.pbt)
    assert len(settings.space) == 7 and settings.space["model.lr_init"].init == 4e-3


def test_reference_config_builds_our_datamodule_and_model(mc_maze_shaped: Path) -> None:
    cfg, _ = load_reference(mc_maze_shaped, "model.gen_dim=16", "model.fac_dim=8")
    datamodule = instantiate(cfg.datamodule, _convert_="all")
    datamodule.setup()
    assert len(datamodule.datasets[0]["train"]) == 8
    model = instantiate(cfg.model, _recursive_=False, _convert_="all")
    assert model.readout[0].out_features == 182 and model.hparams.encod_data_dim == 137


def test_reference_pbt_block_samples_the_initial_population_as_the_reference(mc_maze_shaped: Path) -> None:
    """lr_init, kl_* and l2_* leave sample_fn out: the reference's HyperParam default is loguniform."""
    cfg, _ = load_reference(mc_maze_shaped)
    settings = parse_pbt_block(cfg.pbt)
    space = settings.space
    for key in ("model.lr_init", "model.kl_co_scale", "model.kl_ic_scale", "model.l2_gen_scale"):
        assert space[key].sample_fn == "loguniform", key
    assert space["model.dropout_rate"].sample_fn == "uniform"
    l2_con = space["model.l2_con_scale"]
    assert (l2_con.explore_wt, l2_con.enforce_limits) == (0.8, False)
    population = initial_population(dataclasses.replace(settings, num_samples=4001))

    def median(key: str) -> float:
        return statistics.median(member[key] for member in population)

    # log-uniform on [a, b]: median sqrt(a·b); uniform: (a + b) / 2 (l2_gen would be ≈ 0.5, not 0.01)
    for key, low, high in (
        ("model.l2_gen_scale", 1e-4, 1.0),
        ("model.l2_con_scale", 1e-4, 1.0),
        ("model.kl_co_scale", 1e-6, 1e-4),
        ("model.kl_ic_scale", 1e-6, 1e-3),
    ):
        # the sample median's log10 has sd ≈ 0.03–0.05 decades here; 0.2 is ≥ 4 sd
        assert abs(math.log10(median(key)) - math.log10(math.sqrt(low * high))) < 0.2, key
    assert median("model.dropout_rate") == pytest.approx(0.3, abs=0.03)
    assert {m["model.lr_init"] for m in population} == {4e-3}
    assert {m["model.train_aug_stack.transforms.0.cd_rate"] for m in population} == {0.5}


def test_reference_hyperparam_entry_merges_field_by_field_with_the_default(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent(
            """
            pbt:
              hps:
                model.l2_gen_scale: {_target_: lfads_torch.extensions.tune.HyperParam, max_samp: 0.1}
                model.weight_decay: {_target_: lfads_torch.extensions.tune.HyperParam, min_samp: 1.0e-8,
                                     max_samp: 1.0e-2}
            """
        )
    )
    space = parse_pbt_block(load_config(config).pbt).space
    l2_gen = space["model.l2_gen_scale"]  # the shipped entry's other fields are kept
    assert (l2_gen.min_samp, l2_gen.max_samp, l2_gen.sample_fn, l2_gen.explore_wt) == (
        1e-4, 0.1, "loguniform", 0.8,
    )  # fmt: skip
    decay = space["model.weight_decay"]  # no default entry: the reference HyperParam's defaults
    assert (decay.sample_fn, decay.explore_wt, decay.enforce_limits, decay.init) == (
        "loguniform", 0.2, False, None,
    )  # fmt: skip


@pytest.mark.filterwarnings("ignore::autolfads.config.reference.ConfigWarning")
def test_reference_dims_that_contradict_the_file_name_both_values(tmp_path: Path) -> None:
    small = write_h5(tmp_path / "small.h5", contract_arrays())
    with pytest.raises(ConfigError) as info:
        load_config(REFERENCE_CONFIG, data_paths=[small])
    assert f"model.encod_seq_len is 35 but {small} has 8 time steps" in str(info.value)


def test_unknown_reference_target_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        textwrap.dedent(
            """
            model:
              ic_prior:
                _target_: lfads_torch.modules.priors.MultivariateNormalX
                mean: 0
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert (
        "model.ic_prior._target_: unknown reference target 'lfads_torch.modules.priors.MultivariateNormalX'"
        in message
    )
    assert "did you mean lfads_torch.modules.priors.MultivariateNormal" in message


def test_relpath_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    write_h5(tmp_path / "session.h5", contract_arrays())
    config = tmp_path / "c.yaml"
    config.write_text("datamodule:\n  datafile_pattern: ${relpath:./session*.h5}\n")
    cfg = load_config(config)
    assert cfg.datamodule.datafile_pattern == str(tmp_path / "session*.h5")
    assert cfg.model.encod_data_dim == 5
