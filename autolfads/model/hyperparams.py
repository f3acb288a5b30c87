"""Live hyperparameter updates for PBT: ``hparams`` and the running state change together (contracts §2).

A trial that restores its winner's checkpoint calls ``LFADS.update_hyperparameters`` with the new values;
they take effect at once (dropout modules, transform attributes, optimiser param groups, the learning rate
included) and are saved in the next checkpoint's hyperparameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from autolfads.errors import ConfigError


def _set_path(tree: Any, path: Sequence[str], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]…`` where list indices are given as digit strings."""
    node = tree
    for key in path[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = path[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def update_hyperparameters(model: Any, updates: Mapping[str, float]) -> None:
    """Apply perturbed hyperparameters to ``hparams`` AND the live state (PBT, after a restore).

    Keys are paths relative to the ``model`` block (a leading ``model.`` is accepted), e.g. ``lr_init``,
    ``dropout_rate``, ``kl_co_scale``, ``train_aug_stack.transforms.0.cd_rate``.
    """
    for raw_key, value in updates.items():
        key = raw_key.removeprefix("model.")
        path = key.split(".")
        if path[0] not in model.hparams:
            raise ConfigError(f"update_hyperparameters: model has no hyperparameter {raw_key!r}")
        try:
            if len(path) == 1:
                model.hparams[key] = value
            else:
                _set_path(model.hparams[path[0]], path[1:], value)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ConfigError(f"update_hyperparameters: cannot set {raw_key!r}: {exc}") from exc
        _apply_live(model, path, value)


def _apply_live(model: Any, path: Sequence[str], value: float) -> None:
    name = path[0]
    if name == "dropout_rate":
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = float(value)
    elif name in ("train_aug_stack", "infer_aug_stack") and len(path) >= 4 and path[1] == "transforms":
        transform = getattr(model, name).transforms[int(path[2])]
        setattr(transform, path[3], value)
    elif name in ("lr_init", "weight_decay", "lr_adam_epsilon") and model._trainer is not None:
        group_key = {"lr_init": "lr", "weight_decay": "weight_decay", "lr_adam_epsilon": "eps"}[name]
        for optimizer in model.trainer.optimizers:
            for group in optimizer.param_groups:
                group[group_key] = float(value)
