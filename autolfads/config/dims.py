"""Fill the model's data dimensions from the data files, and refuse values that contradict them.

A dimension the config leaves out (null, absent or ``???``) is taken from the file; one it gives must match,
or the ConfigError names both values (DESIGN.md §3). The files are validated on the way, with each session's
reconstruction deciding which values are allowed (integer counts for Poisson, no zeros for Gamma, ...).
"""

from __future__ import annotations

import copy
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from autolfads.config.targets import checked_target
from autolfads.data.contract import DataSummary, inspect_data_file, likelihood_name
from autolfads.data.paths import resolve_data_paths
from autolfads.errors import ConfigError, DataError

# Parameters per channel of each reconstruction (lfads-spec §2.6); the model's classes carry the same
# number as ``n_params``, which is used for targets not listed here.
RECON_N_PARAMS = {"poisson": 1, "poissonbps": 1, "mse": 1, "gaussian": 2, "gamma": 2, "zeroinflatedgamma": 3}
IDENTITY_TARGETS = ("torch.nn.Identity", "torch.nn.modules.linear.Identity")


def data_paths_of(cfg: DictConfig) -> list[str]:
    """The configured session files (sorted), or [] when the config names none."""
    dm = cfg.get("datamodule") or {}
    paths, pattern = dm.get("data_paths"), dm.get("datafile_pattern")
    if not paths and not pattern:
        return []
    if isinstance(paths, ListConfig):
        paths = list(paths)
    return [str(p) for p in resolve_data_paths(paths, pattern)]


def infer_dims(cfg: DictConfig) -> list[DataSummary]:
    """Validate the data files against the config and fill the model's dimensions in place."""
    paths = data_paths_of(cfg)
    model = cfg.get("model")
    if not paths or not isinstance(model, DictConfig):
        return []
    n = len(paths)
    recons = session_list(model, "reconstruction", n)
    targets = [str(r.get("_target_")) if isinstance(r, DictConfig) else None for r in recons or [None] * n]
    summaries = [inspect_data_file(p, likelihood=t) for p, t in zip(paths, targets, strict=True)]
    first = summaries[0]
    for other in summaries[1:]:
        for key in ("encod_seq_len", "recon_seq_len", "ext_input_dim"):
            if getattr(other, key) != getattr(first, key):
                raise DataError(
                    f"sessions disagree on {key}: {first.path} has {getattr(first, key)}, "
                    f"{other.path} has {getattr(other, key)}; every session must match"
                )
    source = str(first.path)
    set_or_check(model, "encod_seq_len", first.encod_seq_len, "model.encod_seq_len", source, "time steps")
    set_or_check(model, "recon_seq_len", first.recon_seq_len, "model.recon_seq_len", source, "time steps")
    configured_ext = _value(model, "ext_input_dim")
    if configured_ext and first.ext_input_dim == 0:
        raise ConfigError(
            f"model.ext_input_dim is {configured_ext} but {source} has no *_ext_input data; set it to 0 "
            "(or null) or add train_ext_input/valid_ext_input to the file"
        )
    set_or_check(
        model, "ext_input_dim", first.ext_input_dim, "model.ext_input_dim", source, "ext_input channels"
    )
    _infer_readin(model, summaries)
    _infer_readout(model, summaries, targets)
    ic_enc_seq_len = _value(model, "ic_enc_seq_len") or 0
    if ic_enc_seq_len >= first.encod_seq_len:
        raise ConfigError(
            f"model.ic_enc_seq_len {ic_enc_seq_len} must be smaller than encod_seq_len {first.encod_seq_len}"
        )
    return summaries


def session_list(model: DictConfig, key: str, n_sessions: int) -> ListConfig | None:
    """``model.<key>`` as one entry per session (a single entry is repeated), or None if not a list."""
    value = model.get(key)
    if not isinstance(value, ListConfig):
        return None
    if len(value) == 1 and n_sessions > 1:
        model[key] = [copy.deepcopy(OmegaConf.to_container(value[0])) for _ in range(n_sessions)]
        value = model[key]
    if len(value) != n_sessions:
        raise ConfigError(f"model.{key} has {len(value)} entries but there are {n_sessions} data files")
    return value


def set_or_check(node: DictConfig, key: str, found: int, where: str, source: str, what: str) -> None:
    """Fill ``node[key]`` with ``found`` when it is not set; refuse a different value."""
    current = _value(node, key)
    if current is None:
        node[key] = found
        return
    if not isinstance(current, int) or isinstance(current, bool) or current != found:
        raise ConfigError(
            f"{where} is {current!r} but {source} has {found} {what}; remove it from the config to use "
            "the file's value, or fix the data"
        )


def n_params_of(target: str, where: str) -> int:
    """Parameters per channel of a reconstruction target (its class's ``n_params``)."""
    name = likelihood_name(target)
    if name in RECON_N_PARAMS:
        return RECON_N_PARAMS[name]
    checked_target(target, f"{where}._target_")  # imported below: only an allowed class
    try:
        from hydra.utils import get_class

        return int(get_class(target).n_params)
    except Exception as exc:
        raise ConfigError(
            f"{where}: cannot tell how many parameters per channel '{target}' needs ({type(exc).__name__}); "
            "set the readout's out_features yourself"
        ) from None


def _value(node: DictConfig, key: str) -> Any:
    """The value at ``node[key]``, or None when absent, null or ``???``."""
    if key not in node or OmegaConf.is_missing(node, key):
        return None
    return node[key]


def _is_identity(entry: Any) -> bool:
    return isinstance(entry, DictConfig) and entry.get("_target_") in IDENTITY_TARGETS


def _infer_readin(model: DictConfig, summaries: list[DataSummary]) -> None:
    readins = session_list(model, "readin", len(summaries))
    if readins is not None and all(_is_identity(r) for r in readins):
        first = summaries[0]
        for other in summaries[1:]:
            if other.encod_data_dim != first.encod_data_dim:
                raise ConfigError(
                    f"model.readin is Identity but {first.path} has {first.encod_data_dim} encod channels "
                    f"and {other.path} {other.encod_data_dim}; give each session a Linear readin"
                )
        set_or_check(
            model,
            "encod_data_dim",
            first.encod_data_dim,
            "model.encod_data_dim",
            str(first.path),
            "encod channels",
        )
        return
    if readins is not None:
        for i, (entry, summary) in enumerate(zip(readins, summaries, strict=True)):
            if isinstance(entry, DictConfig) and "in_features" in entry:
                where = f"model.readin.{i}.in_features"
                set_or_check(
                    entry, "in_features", summary.encod_data_dim, where, str(summary.path), "encod channels"
                )
    if _value(model, "encod_data_dim") is None:
        width = (
            _value(readins[0], "out_features")
            if readins is not None and isinstance(readins[0], DictConfig)
            else None
        )
        if width is None:
            raise ConfigError(
                "model.encod_data_dim is not set and cannot be inferred with a non-Identity readin; "
                "set it to the readin's output width"
            )
        model["encod_data_dim"] = width


def _infer_readout(model: DictConfig, summaries: list[DataSummary], targets: list[str | None]) -> None:
    readouts = session_list(model, "readout", len(summaries))
    recons = model.get("reconstruction")
    for i, summary in enumerate(summaries):
        target = targets[i]
        if isinstance(recons, ListConfig) and target and likelihood_name(target) == "zeroinflatedgamma":
            where = f"model.reconstruction.{i}.recon_dim"
            set_or_check(
                recons[i], "recon_dim", summary.recon_data_dim, where, str(summary.path), "recon channels"
            )
        if readouts is None or not isinstance(readouts[i], DictConfig):
            continue
        entry = readouts[i]
        if "in_features" in entry and _value(entry, "in_features") is None:
            entry["in_features"] = "${model.fac_dim}"
        if "out_features" not in entry and entry.get("_target_") not in _LINEAR_TARGETS:
            continue  # a readout that sizes itself (e.g. MultisessionReadout)
        n_params = n_params_of(target, f"model.reconstruction.{i}") if target else 1
        expected = summary.recon_data_dim * n_params
        what = f"recon channels x {n_params} parameters" if n_params > 1 else "recon channels"
        where = f"model.readout.{i}.out_features"
        set_or_check(entry, "out_features", expected, where, str(summary.path), what)


_LINEAR_TARGETS = ("autolfads.model.readin_readout.FanInLinear", "torch.nn.Linear")
