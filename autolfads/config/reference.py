"""Read a config written for the reference pipeline (lfads-torch, NeuroCAAS ``pbt_neurocaas.yaml``) as ours.

Everything here works on plain dicts/lists (interpolation strings such as ``${model.fac_dim}`` are kept as
text), before the config is merged with the defaults:

- ``_target_: lfads_torch.…`` → our classes: the datamodule here, model parts through
  ``autolfads.config.targets.TARGET_ALIASES`` (plain data, no torch); an unknown reference
  target is a ConfigError naming the key;
- ``pytorch_lightning.…`` → ``lightning.pytorch.…``; the trainer's own ``_target_`` is dropped (the trainer
  block is keyword arguments), as are Lightning 1.x trainer flags that no longer exist;
- ``readin``/``readout``/``reconstruction`` given as ``torch.nn.ModuleList(modules=[…])`` → the plain list;
- the ``callbacks`` and ``logger`` blocks are dropped: autolfads builds its own checkpointing, LR monitor,
  CSV log and Tune reporting (docs/config.md says which);
- ``posterior_sampling.fn`` (the reference's function target) → ``posterior_sampling.num_samples``;
- ``${relpath:x}`` → an absolute path, relative to the config file's folder.

In the ``pbt`` block only the ``HyperParam`` targets change: every accepted spelling
(``lfads_torch.extensions.tune.HyperParam`` and ours) becomes the one the shipped defaults name, so that an
entry merges field by field with the default entry of the same key instead of replacing it;
``autolfads.config.pbt`` parses the rest.
"""

from __future__ import annotations

import difflib
import re
import warnings
from pathlib import Path
from typing import Any

from autolfads.config.pbt import HYPERPARAM_TARGET, HYPERPARAM_TARGETS
from autolfads.errors import ConfigError

DATAMODULE_TARGET = "autolfads.data.datamodule.LFADSDataModule"
DATAMODULE_ALIASES = {
    "lfads_torch.datamodules.BasicDataModule": DATAMODULE_TARGET,
    "lfads_torch.datamodules.basic_datamodule.BasicDataModule": DATAMODULE_TARGET,
}
DROPPED_BLOCKS = {
    "callbacks": "autolfads adds its own checkpointing, learning-rate monitor and Tune reporting",
    "logger": "autolfads writes csv_logs/fitlog.csv itself and logs to MLflow",
}
# Lightning 1.x Trainer flags the reference configs may carry: (replacement key, value mapping) or None.
LEGACY_TRAINER_KEYS: dict[str, tuple[str, Any] | None] = {
    "gpus": None,  # devices are chosen automatically (all local GPUs, else CPU)
    "auto_select_gpus": None,
    "resume_from_checkpoint": None,
    "progress_bar_refresh_rate": ("enable_progress_bar", lambda v: bool(v)),
    "weights_summary": ("enable_model_summary", lambda v: v is not None),
}
SESSION_LISTS = ("readin", "readout", "reconstruction")
_RELPATH = re.compile(r"\$\{relpath:\s*([^}]*)\}")


class ConfigWarning(UserWarning):
    """Something in the config was adapted or ignored; the run goes on."""


def adapt_reference(cfg: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """A copy of a user config with the reference pipeline's conventions turned into ours (see module doc)."""
    cfg = _expand_relpath(cfg, base_dir or Path.cwd())
    for block, why in DROPPED_BLOCKS.items():
        if block in cfg:
            cfg.pop(block)
            warnings.warn(f"config: the '{block}' block is ignored ({why})", ConfigWarning, stacklevel=3)
    sampling = cfg.get("posterior_sampling")
    if isinstance(sampling, dict) and isinstance(sampling.get("fn"), dict):
        fn = sampling.pop("fn")
        if "num_samples" in fn:
            sampling.setdefault("num_samples", fn["num_samples"])
        if "filename" in fn:
            warnings.warn(
                "config: posterior_sampling.fn.filename is ignored; outputs are lfads_output_sess{i}.h5",
                ConfigWarning,
                stacklevel=3,
            )
    cfg = {k: (_same_hyperparam_target(v) if k == "pbt" else map_targets(v, k)) for k, v in cfg.items()}
    model = cfg.get("model")
    if isinstance(model, dict):
        for key in SESSION_LISTS:
            value = model.get(key)
            if isinstance(value, dict) and value.get("_target_") == "torch.nn.ModuleList":
                model[key] = list(value.get("modules") or [])
    trainer = cfg.get("trainer")
    if isinstance(trainer, dict):
        cfg["trainer"] = _adapt_trainer(trainer)
    return cfg


def map_targets(node: Any, where: str) -> Any:
    """A copy of ``node`` with every reference ``_target_`` replaced by ours; ``where`` is its config path."""
    if isinstance(node, dict):
        out = {k: map_targets(v, f"{where}.{k}") for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            out["_target_"] = map_target(target, f"{where}._target_")
        return out
    if isinstance(node, list):
        return [map_targets(v, f"{where}.{i}") for i, v in enumerate(node)]
    return node


def map_target(target: str, where: str) -> str:
    """One target string: a reference name → ours; anything else unchanged."""
    if target in DATAMODULE_ALIASES:
        return DATAMODULE_ALIASES[target]
    if target.startswith("pytorch_lightning."):
        return "lightning.pytorch." + target.removeprefix("pytorch_lightning.")
    if not target.startswith("lfads_torch."):
        return target
    aliases = model_target_aliases()
    if target in aliases:
        return aliases[target]
    known = [*DATAMODULE_ALIASES, *aliases]
    close = difflib.get_close_matches(target, known, n=2, cutoff=0.7)
    hint = (
        f" (did you mean {' or '.join(close)}?)" if close else f" ({len(known)} reference targets are mapped)"
    )
    raise ConfigError(f"{where}: unknown reference target '{target}'; autolfads has no equivalent{hint}")


def model_target_aliases() -> dict[str, str]:
    """Reference model-part targets → ours (``autolfads.config.targets``, torch-free)."""
    from autolfads.config.targets import TARGET_ALIASES

    return dict(TARGET_ALIASES)


def _same_hyperparam_target(node: Any) -> Any:
    """A copy of the ``pbt`` block with every accepted ``HyperParam`` target spelled as the defaults spell it.

    The config merge replaces a mapping whose ``_target_`` differs from the default's; a reference entry
    (``lfads_torch.extensions.tune.HyperParam``) would then lose the default entry's fields, so one that
    leaves ``sample_fn`` out would no longer be the log-uniform search the reference runs. Unknown targets
    are kept, for ``autolfads.config.pbt`` to refuse by name.
    """
    if isinstance(node, dict):
        out = {k: _same_hyperparam_target(v) for k, v in node.items()}
        if out.get("_target_") in HYPERPARAM_TARGETS:
            out["_target_"] = HYPERPARAM_TARGET
        return out
    if isinstance(node, list):
        return [_same_hyperparam_target(v) for v in node]
    return node


def _adapt_trainer(trainer: dict[str, Any]) -> dict[str, Any]:
    out = dict(trainer)
    target = out.pop("_target_", None)
    if target is not None and not str(target).endswith(".Trainer"):
        raise ConfigError(f"trainer._target_: expected a Lightning Trainer, found '{target}'")
    for key, replacement in LEGACY_TRAINER_KEYS.items():
        if key not in out:
            continue
        value = out.pop(key)
        if replacement is None:
            note = "ignored"
        else:
            new_key, convert = replacement
            out.setdefault(new_key, convert(value))
            note = f"replaced by {new_key}={out[new_key]}"
        warnings.warn(f"config: trainer.{key} (Lightning 1.x) is {note}", ConfigWarning, stacklevel=4)
    return out


def _expand_relpath(node: Any, base_dir: Path) -> Any:
    if isinstance(node, dict):
        return {k: _expand_relpath(v, base_dir) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_relpath(v, base_dir) for v in node]
    if isinstance(node, str) and "${relpath:" in node:
        return _RELPATH.sub(lambda m: str((base_dir / m.group(1).strip()).resolve()), node)
    return node
