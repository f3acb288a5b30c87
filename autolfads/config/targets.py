"""Which ``_target_`` a config may name: the allow-list, and the check every loader runs before Hydra.

A ``_target_`` is an import path that ``hydra.utils.instantiate`` imports and calls, so a config that may
name any target is a program, not data: Hydra refuses ``os.system`` itself, but many other importable
callables (one that unpickles from a URL, say) run code wherever the config is loaded — the driver and
every trial, which on a cluster hold storage keys. So a config names only classes of this project, the
lfads-torch names that map onto them (reference configs run unchanged), ``torch.nn.Identity`` (the default
readin) and ``torch.nn.ModuleList`` (the reference's spelling of a per-session list); everything else is
refused before anything is imported (docs/security.md).

PURE on purpose: standard library and the torch-free ``autolfads.config.pbt`` (the pbt block's
``HyperParam`` targets are only compared with its list, never imported or called). The Kubernetes operator
imports this module to refuse a job whose config, ConfigMap or override names another target, and must
never import torch (import-linter contract); ``autolfads validate`` maps a reference config's targets
without torch too. ``autolfads.model.parts`` and ``autolfads.config.reference`` read their alias tables
from here (``autolfads.model`` re-exports ``TARGET_ALIASES``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from autolfads.config.pbt import HYPERPARAM_TARGET, HYPERPARAM_TARGETS
from autolfads.errors import ConfigError, clipped

TARGET_KEY = "_target_"

_OURS = "autolfads.model"
# Class names per model module. Our class names are the reference's, so for aliases only modules differ.
_PRIORS = ("MultivariateNormal", "AutoregressiveMultivariateNormal", "MultivariateStudentT", "Null")
_READIN_READOUT = ("FanInLinear", "MultisessionReadin", "MultisessionReadout")
_RECONS = ("Poisson", "PoissonBPS", "MSE", "Gaussian", "Gamma", "ZeroInflatedGamma")
_AUGMENTATIONS = (
    "AugmentationStack",
    "CoordinatedDropout",
    "SampleValidation",
    "TemporalShift",
    "SpikeJitter",
)
_OUR_MODULES = (
    ("priors", _PRIORS),
    ("readin_readout", _READIN_READOUT),
    ("recons", (*_RECONS, "MultisessionReconstruction")),
    ("augment", _AUGMENTATIONS),
)
# (reference module, our module, class names): the current paths and the old ones that the stale
# single_neurocaas config still names (lfads-spec §0.3).
_REFERENCE_MODULES = (
    ("modules.priors", "priors", _PRIORS),
    ("models.modules.priors", "priors", _PRIORS),
    ("modules.recons", "recons", (*_RECONS, "MultisessionReconstruction")),
    ("models.modules.recons", "recons", _RECONS),
    ("modules.augmentations", "augment", _AUGMENTATIONS),
    ("models.modules.augmentations", "augment", _AUGMENTATIONS),
    ("modules.readin_readout", "readin_readout", _READIN_READOUT),
    ("models.modules.readin_readout", "readin_readout", ("FanInLinear",)),
)

MODEL_TARGETS = ("autolfads.model.LFADS", "autolfads.model.lfads.LFADS")
DATAMODULE_TARGET = "autolfads.data.datamodule.LFADSDataModule"
TORCH_TARGETS = ("torch.nn.Identity", "torch.nn.modules.linear.Identity", "torch.nn.ModuleList")

# lfads-torch model-part target -> ours (docs/config.md, "Configs written for lfads-torch").
TARGET_ALIASES: dict[str, str] = {
    "lfads_torch.model.LFADS": f"{_OURS}.lfads.LFADS",
    "lfads_torch.models.base_model.LFADS": f"{_OURS}.lfads.LFADS",
    **{
        f"lfads_torch.{module}.{name}": f"{_OURS}.{ours}.{name}"
        for module, ours, names in _REFERENCE_MODULES
        for name in names
    },
}
DATAMODULE_ALIASES = {
    "lfads_torch.datamodules.BasicDataModule": DATAMODULE_TARGET,
    "lfads_torch.datamodules.basic_datamodule.BasicDataModule": DATAMODULE_TARGET,
}

OUR_TARGETS: frozenset[str] = frozenset(
    {
        *MODEL_TARGETS,
        DATAMODULE_TARGET,
        *(f"{_OURS}.{module}.{name}" for module, names in _OUR_MODULES for name in names),
        HYPERPARAM_TARGET,
    }
)
ALLOWED_TARGETS: frozenset[str] = frozenset(
    {*OUR_TARGETS, *TARGET_ALIASES, *DATAMODULE_ALIASES, *HYPERPARAM_TARGETS, *TORCH_TARGETS}
)
ALLOWED_SUMMARY = (
    "allowed are the autolfads model/data classes (e.g. autolfads.model.recons.Poisson), their lfads_torch.* "
    "names, torch.nn.Identity and torch.nn.ModuleList (the list: docs/config.md, 'Allowed targets')"
)


def is_allowed_target(target: object) -> bool:
    """Whether ``target`` is a string on the allow-list (exact match: no prefixes, no attributes)."""
    return isinstance(target, str) and target in ALLOWED_TARGETS


def iter_targets(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(config path, value)`` of every ``_target_`` in a tree of mappings and lists, depth first."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == TARGET_KEY:
                yield path, value
            else:
                yield from iter_targets(value, path)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from iter_targets(value, f"{where}.{i}" if where else str(i))


def target_problem(path: str, value: Any) -> str | None:
    """One line naming the key, the value and what is allowed, or None when ``value`` is allowed."""
    if is_allowed_target(value):
        return None
    if not isinstance(value, str):
        return f"{path}: expected a class name, found {value!r}; {ALLOWED_SUMMARY}"
    close = difflib.get_close_matches(value, sorted(ALLOWED_TARGETS), n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{path}: '{clipped(value)}' is not an allowed target{hint}; {ALLOWED_SUMMARY}"


def target_problems(node: Any, where: str = "") -> list[str]:
    """Every ``_target_`` in ``node`` that is not allowed, one line each (empty when all are)."""
    return [p for path, value in iter_targets(node, where) if (p := target_problem(path, value))]


def check_targets(node: Any, where: str = "", source: str = "config") -> None:
    """Raise one ConfigError (the first problem, prefixed with ``source``) unless every target is allowed."""
    problems = target_problems(node, where)
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")


def checked_target(target: Any, where: str) -> str:
    """``target`` itself when allowed; else a ConfigError. For code that imports a single target string."""
    problem = target_problem(where, target)
    if problem is not None:
        raise ConfigError(problem)
    return str(target)


__all__ = [
    "ALLOWED_TARGETS",
    "DATAMODULE_ALIASES",
    "DATAMODULE_TARGET",
    "HYPERPARAM_TARGETS",
    "MODEL_TARGETS",
    "OUR_TARGETS",
    "TARGET_ALIASES",
    "check_targets",
    "checked_target",
    "is_allowed_target",
    "iter_targets",
    "target_problem",
    "target_problems",
]
