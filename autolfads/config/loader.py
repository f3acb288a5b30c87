"""Load a run config: shipped defaults ← the user's YAML ← data paths ← ``key=value`` overrides.

Then reference (lfads-torch) conventions are mapped to ours, dimensions are filled from the data files
(and contradictions refused), interpolations are resolved, and the result is one plain ``DictConfig`` that
``train``, ``tune`` and the saved ``config.yaml`` share. Every problem is one ConfigError/DataError line.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autolfads.config.dims import infer_dims
from autolfads.config.reference import adapt_reference, expand_relpath
from autolfads.config.safety import check_data, override_value_problems, top_level_problems
from autolfads.errors import ConfigError

DEFAULTS_DIR = Path(__file__).parent / "defaults"
DEFAULT_CONFIG = DEFAULTS_DIR / "lfads.yaml"

OUR_MODEL_TARGETS = ("autolfads.model.LFADS", "autolfads.model.lfads.LFADS")
# Constructor arguments of the model (lfads-spec §2.1) and of the datamodule (§1.2): a key outside these
# lists would only fail later, deep inside instantiation, so it is refused here with a suggestion.
MODEL_KEYS = (
    "encod_data_dim", "encod_seq_len", "recon_seq_len", "ext_input_dim", "ic_enc_seq_len", "ic_enc_dim",
    "ci_enc_dim", "ci_lag", "con_dim", "co_dim", "ic_dim", "gen_dim", "fac_dim",
    "readin", "readout", "reconstruction", "train_aug_stack", "infer_aug_stack", "co_prior", "ic_prior",
    "variational", "ic_post_var_min", "dropout_rate", "cell_clip", "loss_scale", "recon_reduce_mean",
    "lr_scheduler", "lr_init", "lr_stop", "lr_decay", "lr_patience", "lr_adam_beta1", "lr_adam_beta2",
    "lr_adam_epsilon", "weight_decay", "l2_start_epoch", "l2_increase_epoch", "l2_ic_enc_scale",
    "l2_ci_enc_scale", "l2_gen_scale", "l2_con_scale", "kl_start_epoch", "kl_increase_epoch", "kl_ic_scale",
    "kl_co_scale",
)  # fmt: skip
DATAMODULE_KEYS = (
    "data_paths", "datafile_pattern", "batch_keys", "attr_keys", "batch_size", "reshuffle_tv_seed",
    "reshuffle_tv_ratio", "sv_rate", "sv_seed", "dm_ic_enc_seq_len",
)  # fmt: skip
_DATAMODULE_TARGET = "autolfads.data.datamodule.LFADSDataModule"
_MISSING = object()


def load_config(
    config: str | Path | None = None, overrides: Sequence[str] = (), data_paths: Sequence[str | Path] = ()
) -> DictConfig:
    """The run config: defaults ← ``config`` file ← ``data_paths`` ← ``overrides``, validated and resolved.

    ``overrides`` are ``key=value`` strings (``model.gen_dim=128``, ``trainer.max_epochs=200``); the key
    must exist unless written ``+key=value``. ``data_paths`` (the CLI's DATA argument) replaces the config's
    ``datamodule.data_paths``/``datafile_pattern``. Model dimensions left out are read from the data files.

    The file and each override are data (``autolfads.config.safety``): only allowed ``_target_`` values,
    no resolvers, known top-level keys; each is checked before anything resolves or imports it.
    """
    merged = read_yaml(DEFAULT_CONFIG)
    if config is not None:
        path = Path(config)
        user = adapt_reference(read_yaml(path), base_dir=path.resolve().parent)
        _check_user_keys(user, str(path))
        check_data(user, source=str(path))
        merged = merge_configs(merged, user)
    cfg = OmegaConf.create(merged)
    if data_paths:
        cfg.datamodule.data_paths = [str(p) for p in data_paths]
        cfg.datamodule.datafile_pattern = None
    apply_overrides(cfg, overrides)
    cfg = OmegaConf.create(adapt_reference(_container(cfg)))  # overrides may name reference targets too
    _check_user_keys(_container(cfg), "the config")
    check_data(_container(cfg))
    _check_types(cfg)
    try:
        infer_dims(cfg)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config: {_omegaconf_message(exc)}") from None
    return cfg


def load_saved_config(path: str | Path) -> DictConfig:
    """A run's saved ``config.yaml`` (what ``--resume`` continues with), read back as untrusted data.

    It was resolved and checked when written, but it lives in OUT, which outlives this process: the same
    rules as for a user's file apply again (known blocks, allowed targets, no resolvers).
    """
    data = read_yaml(path)
    _check_user_keys(data, str(path))
    check_data(data, source=str(path))
    return OmegaConf.create(data)


def save_resolved_config(cfg: DictConfig, path: str | Path) -> Path:
    """Write ``cfg`` with every interpolation resolved, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(cfg, resolve=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping as plain containers (interpolations kept as text)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        loaded = OmegaConf.load(path)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as exc:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    if loaded is None or isinstance(loaded, ListConfig):
        raise ConfigError(f"{path}: expected a mapping with model/datamodule/trainer blocks")
    return _container(loaded)


def merge_configs(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """``user`` over ``base``, recursively; lists, and mappings with another ``_target_``, are replaced."""
    out = dict(base)
    for key, value in user.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and _same_target(old, value):
            out[key] = merge_configs(old, value)
        else:
            out[key] = value
    return out


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Apply ``key=value`` strings in order; ``+key=value`` may add a key, plain keys must exist."""
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        add = key.startswith("+")
        key = key.lstrip("+")
        if not sep or not key:
            raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. model.gen_dim=128")
        raw = expand_relpath(raw, Path.cwd())
        problems = override_value_problems(key, raw)
        if problems:
            raise ConfigError(f"override '{item}': {problems[0]}")
        value = _parse_value(raw, item)
        if not add and _select(cfg, key) is _MISSING:
            raise ConfigError(
                f"override '{item}': the config has no key '{key}'{_suggest_key(cfg, key)}; "
                f"write +{key}=... to add a new key"
            )
        try:
            OmegaConf.update(cfg, key, value, merge=False, force_add=add)
        except (OmegaConfBaseException, ValueError, IndexError) as exc:
            raise ConfigError(f"override '{item}': {_omegaconf_message(exc)}") from None


def _container(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _same_target(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return "_target_" not in new or old.get("_target_") == new["_target_"]


def _parse_value(raw: str, item: str) -> Any:
    # Not resolved here: a reference (${model.fac_dim}) is resolved with the whole config, at the end.
    try:
        return _container(OmegaConf.from_dotlist([f"value={raw}"]))["value"]
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"override '{item}': cannot parse the value ({_first_line(exc)})") from None


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False)
    except OmegaConfBaseException:
        return _MISSING


def _suggest_key(cfg: DictConfig, key: str) -> str:
    parent, _, last = key.rpartition(".")
    node = _select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(last, [str(k) for k in node], n=2, cutoff=0.6)
    prefix = f"{parent}." if parent else ""
    return f" (did you mean {' or '.join(prefix + c for c in close)}?)" if close else ""


def _check_user_keys(cfg: dict[str, Any], source: str) -> None:
    # A typo of a block name would silently drop the block; any other stray block would ride along
    # unchecked into config.yaml and MLflow: every unknown top-level key is refused.
    problems = top_level_problems(cfg, source)
    if problems:
        raise ConfigError(problems[0])
    for block, known, ours in (
        ("model", MODEL_KEYS, OUR_MODEL_TARGETS),
        ("datamodule", DATAMODULE_KEYS, (_DATAMODULE_TARGET,)),
    ):
        node = cfg.get(block)
        if not isinstance(node, dict) or node.get("_target_", ours[0]) not in ours:
            continue  # a user-provided class: its own arguments
        for key in node:
            if key != "_target_" and key not in known:
                close = difflib.get_close_matches(str(key), known, n=2, cutoff=0.6)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown key '{block}.{key}'{hint}")


def _check_types(cfg: DictConfig) -> None:
    for block in ("model", "datamodule", "trainer"):
        if not isinstance(cfg.get(block), DictConfig):
            raise ConfigError(f"config: '{block}' must be a mapping, found {cfg.get(block)!r}")
    model = cfg.model
    for key in ("readin", "readout", "reconstruction"):
        value = model.get(key)
        if value is not None and not isinstance(value, ListConfig | DictConfig):
            raise ConfigError(f"config: model.{key} must be a list (one entry per session), found {value!r}")
    for key in (
        "ic_enc_dim",
        "ci_enc_dim",
        "con_dim",
        "co_dim",
        "ic_dim",
        "gen_dim",
        "fac_dim",
        "ic_enc_seq_len",
    ):
        value = model.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"config: model.{key} must be a non-negative integer, found {value!r}")
    for key in ("gen_dim", "fac_dim", "ic_dim"):
        if model[key] == 0:
            raise ConfigError(f"config: model.{key} must be positive, found 0")


def _omegaconf_message(exc: BaseException) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    key = getattr(exc, "full_key", None)
    line = _first_line(msg)
    return f"{key}: {line}" if key else line


def _first_line(exc: Any) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


__all__ = [
    "DEFAULT_CONFIG",
    "apply_overrides",
    "load_config",
    "load_saved_config",
    "merge_configs",
    "save_resolved_config",
]
