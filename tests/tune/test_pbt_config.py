"""Parsing the reference ``pbt`` block into frozen settings (lfads-spec §5.3–5.5)."""

import math

import pytest
import yaml

from autolfads.config.pbt import HyperParam, PBTSettings, Resources, parse_pbt_block
from autolfads.errors import ConfigError

REFERENCE = """
pbt:
  metric: valid/recon_smth
  resources_per_trial: {cpu: 2, gpu: 0.5}
  num_samples: 16
  perturbation_interval: 25
  burn_in_period: 105
  patience: 4
  min_improvement_ratio: 5e-4
  hps:
    model.lr_init:
      _target_: lfads_torch.extensions.tune.HyperParam
      min_samp: 1.0e-5
      max_samp: 5.0e-3
      init: 4.0e-3
      sample_fn: loguniform
      explore_wt: 0.3
      enforce_limits: True
    model.dropout_rate:
      _target_: lfads_torch.extensions.tune.HyperParam
      min_samp: 0.0
      max_samp: 0.6
      sample_fn: uniform
      explore_wt: 0.3
      enforce_limits: True
    model.train_aug_stack.transforms.0.cd_rate:
      _target_: lfads_torch.extensions.tune.HyperParam
      min_samp: 0.01
      max_samp: 0.7
      init: 0.5
      sample_fn: uniform
      explore_wt: 0.3
      enforce_limits: True
    model.kl_co_scale:
      _target_: lfads_torch.extensions.tune.HyperParam
      min_samp: 1.0e-6
      max_samp: 1.0e-4
      sample_fn: loguniform
      explore_wt: 0.8
"""


def _block():
    return yaml.safe_load(REFERENCE)["pbt"]


def test_reference_block_parses_to_the_reference_values():
    settings = parse_pbt_block(_block())
    assert settings.num_samples == 16 and settings.perturbation_interval == 25
    assert settings.burn_in_period == 105 and settings.patience == 4
    assert settings.min_improvement_ratio == 5e-4  # YAML 1.1 reads "5e-4" as a string
    assert settings.resources_per_trial == Resources(cpu=2.0, gpu=0.5)
    lr = settings.space["model.lr_init"]
    assert lr == HyperParam("model.lr_init", 1e-5, 5e-3, 4e-3, "loguniform", 0.3, True)
    assert settings.space["model.kl_co_scale"].enforce_limits is False
    assert settings.space["model.kl_co_scale"].bounds == (0.0, math.inf)
    assert settings.space["model.dropout_rate"].init is None
    assert settings.space["model.train_aug_stack.transforms.0.cd_rate"].short_name == "cd_rate"
    assert list(settings.space) == [
        "model.lr_init",
        "model.dropout_rate",
        "model.train_aug_stack.transforms.0.cd_rate",
        "model.kl_co_scale",
    ]


def test_nested_hps_flatten_to_dotted_paths():
    block = {"hps": {"model": {"lr_init": {"min_samp": 1e-4, "max_samp": 1e-2}}}}
    assert list(parse_pbt_block(block).space) == ["model.lr_init"]


def test_omegaconf_block_is_accepted():
    omegaconf = pytest.importorskip("omegaconf")
    settings = parse_pbt_block(omegaconf.OmegaConf.create(_block()))
    assert settings.space["model.lr_init"].max_samp == 5e-3


def test_defaults_are_the_reference_ones():
    settings = parse_pbt_block({"hps": {"model.lr_init": {"min_samp": 1e-5, "max_samp": 1e-2}}})
    assert settings == PBTSettings(hps=settings.hps)
    assert settings.metric == "valid/recon_smth" and settings.mode == "min"
    assert settings.resources_per_trial == Resources(cpu=2.0, gpu=0.5)
    assert settings.space["model.lr_init"].explore_wt == 0.2


def test_generation_boundaries_follow_burn_in_then_interval():
    settings = PBTSettings(hps=(), perturbation_interval=25, burn_in_period=105)
    assert [e for e in range(1, 200) if settings.is_boundary(e)] == [105, 130, 155, 180]
    assert settings.generation_of(104) == 0 and settings.generation_of(105) == 1
    assert PBTSettings(hps=(), perturbation_interval=3, burn_in_period=0).first_boundary == 3


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("hps", "model.lr_init", "min_samp"),
            0.1,
            "pbt.hps.model.lr_init.min_samp: expected a number < max_samp",
        ),
        (
            ("hps", "model.lr_init", "max_samp"),
            "big",
            "pbt.hps.model.lr_init.max_samp: expected a number, found 'big'",
        ),
        (("hps", "model.lr_init", "sample_fn"), "normal", "pbt.hps.model.lr_init.sample_fn: expected one of"),
        (
            ("hps", "model.lr_init", "explore_wt"),
            1.5,
            "pbt.hps.model.lr_init.explore_wt: expected a number in (0, 1)",
        ),
        (
            ("hps", "model.lr_init", "enforce_limits"),
            "yes",
            "pbt.hps.model.lr_init.enforce_limits: expected true",
        ),
        (("hps", "model.lr_init", "_target_"), "my.HP", "pbt.hps.model.lr_init._target_: expected one of"),
        (("hps", "model.lr_init", "init_value"), 1, "pbt.hps.model.lr_init.init_value: unknown key"),
        (("hps", "model.dropout_rate"), 0.3, "pbt.hps.model.dropout_rate: expected a HyperParam mapping"),
        (("num_samples",), 1, "pbt.num_samples: expected an integer >= 2, found 1"),
        (("perturbation_interval",), 2.5, "pbt.perturbation_interval: expected an integer >= 1, found 2.5"),
        (("burn_in_period",), -1, "pbt.burn_in_period: expected an integer >= 0"),
        (("mode",), "best", "pbt.mode: expected one of min, max, found 'best'"),
        (("resources_per_trial", "gpu"), "half", "pbt.resources_per_trial.gpu: expected a number"),
        (("resources_per_trial", "tpu"), 1, "pbt.resources_per_trial.tpu: unknown key"),
        (("min_improvement_ratio",), -0.1, "pbt.min_improvement_ratio: expected a number >= 0"),
        (("population",), 4, "pbt.population: unknown key"),
    ],
)
def test_bad_field_is_refused_with_its_path(path, value, message):
    block = _block()
    node = block
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        parse_pbt_block(block)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_loguniform_with_zero_minimum_is_refused():
    block = {"hps": {"model.kl_ic_scale": {"min_samp": 0.0, "max_samp": 1e-3, "sample_fn": "loguniform"}}}
    with pytest.raises(ConfigError, match=r"pbt.hps.model.kl_ic_scale.min_samp: expected a number > 0"):
        parse_pbt_block(block)


def test_zero_minimum_without_sample_fn_names_the_loguniform_default():
    block = {"hps": {"model.dropout_rate": {"min_samp": 0.0, "max_samp": 0.6}}}
    with pytest.raises(ConfigError) as info:
        parse_pbt_block(block)
    assert str(info.value) == (
        "pbt.hps.model.dropout_rate.min_samp: expected a number > 0 for sample_fn loguniform (the default; "
        "write sample_fn: uniform for a range from 0), found 0"
    )


def test_missing_hps_is_refused():
    with pytest.raises(ConfigError, match=r"^pbt.hps: expected at least one hyperparameter"):
        parse_pbt_block({"num_samples": 4})


def test_module_is_pure_no_torch_or_ray_import():
    import subprocess
    import sys

    code = (
        "import sys, autolfads.config.pbt;"
        "bad=[m for m in ('torch','ray','lightning','numpy') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_list_init_is_one_start_per_member():
    block = {"hps": {"model.lr_init": {"min_samp": 1e-5, "max_samp": 1e-2, "init": [4e-3, "1e-3"]}}}
    assert parse_pbt_block(block).space["model.lr_init"].init == (4e-3, 1e-3)
    block["hps"]["model.lr_init"]["init"] = [4e-3, "x"]
    with pytest.raises(ConfigError, match=r"^pbt.hps.model.lr_init.init.1: expected a number, found 'x'"):
        parse_pbt_block(block)
