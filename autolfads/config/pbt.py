"""The ``pbt`` block of a run config, parsed into frozen settings (lfads-spec §5.3–5.5).

PURE on purpose: standard library only (an OmegaConf ``DictConfig`` is accepted through its ``Mapping``
interface, never imported), because the Kubernetes operator imports this module to refuse a bad
``AutoLFADSJob`` config before anything is scheduled. Sampling and perturbation need an RNG and live in
``autolfads.tune.explore``.

The reference NeuroCAAS block works unchanged::

    pbt:
      metric: valid/recon_smth
      resources_per_trial: {cpu: 2, gpu: 0.5}
      num_samples: 16
      perturbation_interval: 25
      burn_in_period: 105
      patience: 4
      min_improvement_ratio: 5.0e-4
      hps:
        model.lr_init:
          _target_: lfads_torch.extensions.tune.HyperParam
          min_samp: 1.0e-5
          max_samp: 5.0e-3
          init: 4.0e-3
          sample_fn: loguniform
          explore_wt: 0.3
          enforce_limits: true

HP keys are dotted config paths (``model.train_aug_stack.transforms.0.cd_rate``); a nested spelling
(``model: {lr_init: {...}}``) is flattened to the same keys. A field left out takes the reference
``HyperParam``'s default: ``sample_fn: loguniform``, ``explore_wt: 0.2``, ``enforce_limits: false``, no
``init`` (sampled); ``pbt_neurocaas.yaml`` relies on the log-uniform default for its scales. (In a run
config, an entry is first merged field by field with the shipped default entry of the same key, see
``autolfads.config.reference``.) Every problem is a ``ConfigError`` that names the field
(``pbt.hps.model.lr_init.min_samp: expected a number < max_samp (5e-3), found 0.1``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autolfads.constants import PBT_METRIC
from autolfads.errors import ConfigError

SAMPLE_FNS = ("loguniform", "uniform", "randint")
DEFAULT_SAMPLE_FN = "loguniform"  # the reference HyperParam's default (lfads-spec §5.5)
HYPERPARAM_TARGET = "autolfads.config.pbt.HyperParam"  # what the shipped defaults name
HYPERPARAM_TARGETS = (
    "lfads_torch.extensions.tune.HyperParam",
    "autolfads.config.pbt.HyperParam",
    "autolfads.tune.HyperParam",
)
_HP_FIELDS = ("_target_", "min_samp", "max_samp", "init", "sample_fn", "explore_wt", "enforce_limits")
_TOP_FIELDS = (
    "hps",
    "metric",
    "mode",
    "num_samples",
    "perturbation_interval",
    "burn_in_period",
    "patience",
    "min_improvement_ratio",
    "resources_per_trial",
    "max_failures",
    "seed",
)


@dataclass(frozen=True)
class HyperParam:
    """One searched hyperparameter (lfads-spec §5.5).

    ``init`` is a constant start value, or None to sample the start from ``sample_fn``; ours also takes a
    list, one start value per population member (member i gets ``init[i % len(init)]``). Exploration
    stays within ``[min_samp, max_samp]`` when ``enforce_limits``, else within ``[0, +inf)``.
    """

    key: str
    min_samp: float
    max_samp: float
    init: float | tuple[float, ...] | None = None
    sample_fn: str = DEFAULT_SAMPLE_FN
    explore_wt: float = 0.2
    enforce_limits: bool = False

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval an explored value must land in (spec 5.5, last bullet)."""
        return (self.min_samp, self.max_samp) if self.enforce_limits else (0.0, math.inf)

    @property
    def short_name(self) -> str:
        """The last path component: ``model.train_aug_stack.transforms.0.cd_rate`` → ``cd_rate``."""
        return self.key.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for; the GPU share only applies where GPUs exist."""

    cpu: float = 2.0
    gpu: float = 0.5


@dataclass(frozen=True)
class PBTSettings:
    """The whole ``pbt`` block, validated. Defaults are the reference's (spec 5.3)."""

    hps: tuple[HyperParam, ...]
    metric: str = PBT_METRIC
    mode: str = "min"
    num_samples: int = 16
    perturbation_interval: int = 25
    burn_in_period: int = 105
    patience: int = 4
    min_improvement_ratio: float = 5.0e-4
    resources_per_trial: Resources = field(default_factory=Resources)
    max_failures: int = 3  # ours: restarts of a crashed trial from its last checkpoint
    seed: int = 0  # ours: the reference seeds its variant generator with 0

    @property
    def space(self) -> dict[str, HyperParam]:
        """HPs by config path, in block order."""
        return {hp.key: hp for hp in self.hps}

    @property
    def first_boundary(self) -> int:
        """Epochs completed at the first generation boundary: Ray PBT's max(interval, burn-in)."""
        return max(self.perturbation_interval, self.burn_in_period)

    def is_boundary(self, epochs_done: int) -> bool:
        """Whether a trial that has completed ``epochs_done`` epochs ends a generation there."""
        first = self.first_boundary
        return epochs_done >= first and (epochs_done - first) % self.perturbation_interval == 0

    def generation_of(self, epoch: int) -> int:
        """The generation (0-based) that trains the 0-based ``epoch``."""
        first = self.first_boundary
        if epoch < first:
            return 0
        return 1 + (epoch - first) // self.perturbation_interval


def parse_pbt_block(block: Mapping[str, Any], where: str = "pbt") -> PBTSettings:
    """Validate a ``pbt`` mapping (plain dict or OmegaConf DictConfig) into ``PBTSettings``."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {_show(block)}")
    unknown = sorted(str(k) for k in block if k not in _TOP_FIELDS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys are {', '.join(_TOP_FIELDS)}")
    kwargs: dict[str, Any] = {}
    if "metric" in block:
        kwargs["metric"] = _string(block["metric"], f"{where}.metric")
    if "mode" in block:
        kwargs["mode"] = _choice(block["mode"], ("min", "max"), f"{where}.mode")
    for name, low in (("num_samples", 2), ("perturbation_interval", 1), ("patience", 1)):
        if name in block:
            kwargs[name] = _integer(block[name], f"{where}.{name}", low)
    for name in ("burn_in_period", "max_failures", "seed"):
        if name in block:
            kwargs[name] = _integer(block[name], f"{where}.{name}", 0)
    if "min_improvement_ratio" in block:
        kwargs["min_improvement_ratio"] = _number(
            block["min_improvement_ratio"], f"{where}.min_improvement_ratio", low=0.0
        )
    if "resources_per_trial" in block:
        kwargs["resources_per_trial"] = _resources(
            block["resources_per_trial"], f"{where}.resources_per_trial"
        )
    if "hps" not in block or not block["hps"]:
        raise ConfigError(f"{where}.hps: expected at least one hyperparameter to search, found none")
    kwargs["hps"] = _hyperparams(block["hps"], f"{where}.hps")
    return PBTSettings(**kwargs)


def _hyperparams(hps: Any, where: str) -> tuple[HyperParam, ...]:
    if not isinstance(hps, Mapping):
        raise ConfigError(f"{where}: expected a mapping of config path to HyperParam, found {_show(hps)}")
    flat: dict[str, Mapping[str, Any]] = {}
    _flatten(hps, "", flat, where)
    return tuple(_hyperparam(key, spec, f"{where}.{key}") for key, spec in flat.items())


def _flatten(node: Mapping[str, Any], prefix: str, out: dict[str, Mapping[str, Any]], where: str) -> None:
    """Collect HP specs under their dotted paths; a spec is a mapping with a HyperParam field."""
    for key, value in node.items():
        path = f"{prefix}{key}"
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{where}.{path}: expected a HyperParam mapping (min_samp, max_samp, …), found {_show(value)}"
            )
        if any(k in value for k in _HP_FIELDS):
            out[path] = value
        else:
            _flatten(value, f"{path}.", out, where)


def _hyperparam(key: str, spec: Mapping[str, Any], where: str) -> HyperParam:
    unknown = sorted(str(k) for k in spec if k not in _HP_FIELDS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys are {', '.join(_HP_FIELDS)}")
    if "_target_" in spec and spec["_target_"] not in HYPERPARAM_TARGETS:
        raise ConfigError(
            f"{where}._target_: expected one of {', '.join(HYPERPARAM_TARGETS)}, "
            f"found {_show(spec['_target_'])}"
        )
    for required in ("min_samp", "max_samp"):
        if required not in spec:
            raise ConfigError(f"{where}.{required}: required, missing")
    max_samp = _number(spec["max_samp"], f"{where}.max_samp")
    min_samp = _number(spec["min_samp"], f"{where}.min_samp")
    if not min_samp < max_samp:
        raise ConfigError(
            f"{where}.min_samp: expected a number < max_samp ({max_samp:g}), found {min_samp:g}"
        )
    sample_fn = _choice(spec.get("sample_fn", DEFAULT_SAMPLE_FN), SAMPLE_FNS, f"{where}.sample_fn")
    if sample_fn == "loguniform" and min_samp <= 0:
        default = "" if "sample_fn" in spec else " (the default; write sample_fn: uniform for a range from 0)"
        raise ConfigError(
            f"{where}.min_samp: expected a number > 0 for sample_fn loguniform{default}, found {min_samp:g}"
        )
    init = spec.get("init")
    if isinstance(init, Sequence) and not isinstance(init, str):
        if not init:
            raise ConfigError(f"{where}.init: expected a number or a non-empty list of numbers, found []")
        init = tuple(_number(v, f"{where}.init.{i}") for i, v in enumerate(init))
    elif init is not None:
        init = _number(init, f"{where}.init")
    explore_wt = _number(spec.get("explore_wt", 0.2), f"{where}.explore_wt", low=0.0)
    if not 0.0 < explore_wt < 1.0:
        raise ConfigError(f"{where}.explore_wt: expected a number in (0, 1), found {explore_wt:g}")
    enforce = spec.get("enforce_limits", False)
    if not isinstance(enforce, bool):
        raise ConfigError(f"{where}.enforce_limits: expected true or false, found {_show(enforce)}")
    return HyperParam(key, min_samp, max_samp, init, sample_fn, explore_wt, enforce)


def _resources(value: Any, where: str) -> Resources:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{cpu: 2, gpu: 0.5}}, found {_show(value)}")
    unknown = sorted(str(k) for k in value if k not in ("cpu", "gpu"))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; valid keys are cpu, gpu")
    defaults = Resources()
    cpu = _number(value.get("cpu", defaults.cpu), f"{where}.cpu", low=0.0)
    gpu = _number(value.get("gpu", defaults.gpu), f"{where}.gpu", low=0.0)
    if cpu <= 0:
        raise ConfigError(f"{where}.cpu: expected a number > 0, found {cpu:g}")
    return Resources(cpu=cpu, gpu=gpu)


def _number(value: Any, where: str, low: float | None = None) -> float:
    """A finite float; YAML 1.1 reads ``5e-4`` as a string, so numeric strings are accepted."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, found {_show(value)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number, found {_show(value)}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, found {_show(value)}")
    if low is not None and number < low:
        raise ConfigError(f"{where}: expected a number >= {low:g}, found {number:g}")
    return number


def _integer(value: Any, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{where}: expected an integer >= {low}, found {_show(value)}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: expected an integer >= {low}, found {_show(value)}") from None
    if not number.is_integer() or number < low:
        raise ConfigError(f"{where}: expected an integer >= {low}, found {_show(value)}")
    return int(number)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, found {_show(value)}")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, found {_show(value)}")
    return str(value)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


__all__ = [
    "DEFAULT_SAMPLE_FN",
    "HYPERPARAM_TARGET",
    "HYPERPARAM_TARGETS",
    "SAMPLE_FNS",
    "HyperParam",
    "PBTSettings",
    "Resources",
    "parse_pbt_block",
]
