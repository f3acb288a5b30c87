"""Load a run config: shipped defaults ← the user's YAML ← data paths ← ``key=value`` overrides.

Then reference (lfads-torch) conventions are mapped to ours, the whole config is checked
(``autolfads.config.validate``), dimensions are filled from the data files (and contradictions refused),
interpolations are resolved and the config is checked again with the data's sizes and the memory budget.
The result is one plain ``DictConfig`` that ``train``, ``tune`` and the saved ``config.yaml`` share. Every
problem is one ConfigError/DataError line. :func:`compose_config` is the first half alone (no data, no
h5py), for the Kubernetes operator; it also refuses what makes a config more than data (targets off the
allow-list, resolvers, unknown blocks: ``autolfads.config.safety``) before anything is resolved.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from autolfads.config.reference import adapt_reference, expand_relpath
from autolfads.config.safety import check_data, override_value_problems, top_level_problems
from autolfads.config.targets import DATAMODULE_TARGET, MODEL_TARGETS
from autolfads.config.validate import check_config
from autolfads.errors import ConfigError
from autolfads.outputs.atomic import atomic_write_text

if TYPE_CHECKING:
    from autolfads.data.contract import DataSummary

DEFAULTS_DIR = Path(__file__).parent / "defaults"
DEFAULT_CONFIG = DEFAULTS_DIR / "lfads.yaml"

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
_MISSING = object()


@dataclass(frozen=True)
class RunInputs:
    """A checked run config and what each of its data files holds (one summary per session, sorted)."""

    cfg: DictConfig
    summaries: tuple[DataSummary, ...]

    @property
    def notes(self) -> list[str]:
        """Accepted oddities of the data (non-integer Poisson targets, ...), one line each, file named."""
        return [f"{s.path}: {note}" for s in self.summaries for note in s.notes]


def load_config(
    config: str | Path | None = None, overrides: Sequence[str] = (), data_paths: Sequence[str | Path] = ()
) -> DictConfig:
    """The run config: defaults ← ``config`` file ← ``data_paths`` ← ``overrides``, validated and resolved.

    ``overrides`` are ``key=value`` strings (``model.gen_dim=128``, ``trainer.max_epochs=200``); the key
    must exist unless written ``+key=value``. ``data_paths`` (the CLI's DATA argument) replaces the config's
    ``datamodule.data_paths``/``datafile_pattern``. Model dimensions left out are read from the data files.
    Accepted oddities of the data are shown as ``DataWarning``s (``load_run_inputs`` returns them instead).
    """
    from autolfads.data.contract import DataWarning

    inputs = load_run_inputs(config, overrides, data_paths)
    for note in inputs.notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return inputs.cfg


def load_run_inputs(
    config: str | Path | None = None, overrides: Sequence[str] = (), data_paths: Sequence[str | Path] = ()
) -> RunInputs:
    """:func:`load_config` and the data files' summaries, for callers that show the data too.

    The config is checked twice: before any data is read (so a bad value never waits for a scan of a
    large file) and with the sizes read from the data, the memory budget included.
    """
    from autolfads.config.dims import infer_dims

    cfg = compose_config(config, overrides, data_paths)
    before = cfg.copy()
    try:
        OmegaConf.resolve(before)
        check_config(_plain(before), check_memory=False)
        summaries = infer_dims(cfg)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config: {_interpolation_site(cfg, exc) or _omegaconf_message(exc)}") from None
    check_config(_plain(cfg), check_memory=bool(summaries))
    return RunInputs(cfg, tuple(summaries))


def compose_config(
    config: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    data_paths: Sequence[str | Path] = (),
) -> DictConfig:
    """Defaults ← ``config`` (a file, or a mapping as an AutoLFADSJob carries it) ← ``data_paths`` ←
    ``overrides``, with reference conventions mapped and keys checked; not resolved, no data read.

    The config and each override are data (``autolfads.config.safety``): only allowed ``_target_`` values,
    no resolvers, known top-level keys; each is checked here, before anything resolves or imports it, so
    every caller (``load_config``, ``load_run_inputs``, the operator's ``job_config_problems``) gets it.
    """
    merged = read_yaml(DEFAULT_CONFIG)
    if isinstance(config, Mapping):
        user = adapt_reference(_container(OmegaConf.create(dict(config))))
        _check_user_keys(user, "the config")
        check_data(user, source="the config")
        merged = merge_configs(merged, user)
    elif config is not None:
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


def _interpolation_site(cfg: DictConfig, exc: BaseException) -> str | None:
    """``model.gen_dim: interpolation ${model.nope}: ...``: the key whose value failed to resolve."""
    if getattr(exc, "full_key", None):
        return None  # OmegaConf named it already
    for key, value in _strings(_container(cfg)):
        if "${" not in value:
            continue
        try:
            OmegaConf.create({"probe": value, **_container(cfg)}).probe  # noqa: B018 - resolve it alone
        except OmegaConfBaseException:
            return f"{key}: interpolation {value}: {_first_line(getattr(exc, 'msg', None) or exc)}"
    return None


def _strings(node: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _strings(v, f"{prefix}{k}.")]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _strings(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), node)] if isinstance(node, str) else []


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, throw_on_missing=False)  # type: ignore[return-value]


def save_resolved_config(cfg: DictConfig, path: str | Path) -> Path:
    """Write ``cfg`` with every interpolation resolved, atomically (a reader never sees half a file), with
    the permissions and durability of every other output (:mod:`autolfads.outputs.atomic`)."""
    return atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


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
        ("model", MODEL_KEYS, MODEL_TARGETS),
        ("datamodule", DATAMODULE_KEYS, (DATAMODULE_TARGET,)),
    ):
        node = cfg.get(block)
        if not isinstance(node, dict) or node.get("_target_", ours[0]) not in ours:
            continue  # another target: refused by the allow-list check (check_data) that follows
        for key in node:
            if key != "_target_" and key not in known:
                close = difflib.get_close_matches(str(key), known, n=2, cutoff=0.6)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown key '{block}.{key}'{hint}")


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
    "RunInputs",
    "apply_overrides",
    "compose_config",
    "load_config",
    "load_run_inputs",
    "load_saved_config",
    "merge_configs",
    "save_resolved_config",
]
