"""Build the model's module-valued arguments from plain ``_target_`` mappings (contracts §2).

The model receives its readin, readout, reconstruction, augmentation stacks and priors as plain config data
and instantiates them itself, so ``save_hyperparameters()`` holds plain data and a checkpoint loads with
``LFADS.load_from_checkpoint(path)`` alone. Reference targets (``lfads_torch.…``) are mapped to ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

# The reference → ours table is plain data kept beside the config loader, which needs it without torch.
from autolfads.config.targets import TARGET_ALIASES
from autolfads.errors import ConfigError


def map_targets(cfg: Any) -> Any:
    """A copy of ``cfg`` (nested dicts/lists) with every reference ``_target_`` replaced by ours."""
    if isinstance(cfg, Mapping):
        out = {k: map_targets(v) for k, v in cfg.items()}
        target = out.get("_target_")
        if isinstance(target, str) and target in TARGET_ALIASES:
            out["_target_"] = TARGET_ALIASES[target]
        return out
    if isinstance(cfg, list | tuple):
        return [map_targets(v) for v in cfg]
    return cfg


def to_plain(cfg: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (resolved); anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return cfg
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_plain(v) for v in cfg]
    return cfg


def build_part(cfg: Any, field: str) -> Any:
    """Instantiate one module-valued argument; a bad config is one ConfigError naming ``model.<field>``."""
    if isinstance(cfg, nn.Module) or (cfg is not None and not isinstance(cfg, Mapping | list | tuple)):
        return cfg  # already built (tests, notebooks)
    from hydra.utils import instantiate

    try:
        return instantiate(map_targets(to_plain(cfg)), _convert_="all")
    except ConfigError:
        raise
    except Exception as exc:  # hydra wraps the real cause; show it on one line
        cause = exc.__cause__ or exc
        raise ConfigError(f"model.{field}: cannot build {cfg!r}: {type(cause).__name__}: {cause}") from exc


def build_session_modules(cfg: Any, field: str) -> nn.ModuleList:
    """A per-session list (``readin``, ``readout``, ``reconstruction``) as an ``nn.ModuleList``."""
    built = build_part(cfg, field)
    if isinstance(built, nn.ModuleList):
        return built
    if isinstance(built, nn.Module):
        return nn.ModuleList([built])
    if isinstance(built, list | tuple) and all(isinstance(m, nn.Module) for m in built):
        return nn.ModuleList(built)
    raise ConfigError(f"model.{field}: expected a list of modules, one per session; found {built!r}")
