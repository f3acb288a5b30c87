"""One check of a whole run config, shared by ``autolfads validate``/``train``/``run`` and the operator.

Every block is checked before anything is built, so a bad value is one line naming the key, the value
and what was expected (``model.lr_init: expected a finite number > 0, found -1.0``) instead of a
traceback from deep inside Hydra, Lightning or torch, and so that ``autolfads validate`` says OK exactly
when ``train``/``run`` will start:

- ``model``: every architecture size, rate, scale and switch by type and range; the parts
  (priors, augmentations, readin/readout, reconstructions) by their arguments; sizes against each other
  (``ic_enc_seq_len < encod_seq_len``, ``variational: false`` with Null priors);
- ``datamodule``, ``posterior_sampling``, ``seed``, ``ignore_warnings``;
- ``trainer``: only ``lightning.pytorch.Trainer`` arguments, not those autolfads sets itself, and
  ``max_epochs`` an integer ≥ 1 (``-1``, Lightning's "forever", is refused: a run must end);
- ``pbt``: ``autolfads.config.pbt.parse_pbt_block``, and every searched key must exist in the config;
- the memory training would need (parameters, gradients, Adam state and activations, from the sizes)
  against ``autolfads.budget``, so ``gen_dim: 1000000`` is refused instead of an out-of-memory kill.

Standard library only (plus OmegaConf for :func:`job_config_problems`): the Kubernetes operator imports
this module, and ``autolfads validate`` must answer without importing torch. Values whose class this
module does not know (a user's own ``_target_``) are left to that class.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from autolfads.budget import budget_source, format_bytes, memory_budget_bytes
from autolfads.config.pbt import parse_pbt_block
from autolfads.errors import AutoLFADSError, ConfigError

# lightning.pytorch.Trainer's keyword arguments (Lightning 2.6; tests/config/test_validate.py compares).
TRAINER_KEYS = (
    "accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks", "fast_dev_run",
    "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches",
    "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches",
    "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps",
    "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "accumulate_grad_batches",
    "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "benchmark", "inference_mode",
    "use_distributed_sampler", "profiler", "detect_anomaly", "barebones", "plugins", "sync_batchnorm",
    "reload_dataloaders_every_n_epochs", "default_root_dir", "enable_autolog_hparams", "model_registry",
)  # fmt: skip
# Trainer arguments autolfads sets itself (its checkpointing, logging and console); a value would be lost.
MANAGED_TRAINER_KEYS = ("callbacks", "logger", "default_root_dir", "enable_progress_bar", "barebones")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")
PRECISIONS = (
    "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true", "bf16-mixed",
    "32-true", "64-true", "64", "32", "16", "bf16", 64, 32, 16,
)  # fmt: skip
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range
# The operator has no data and does not know the machine a job lands on: only sizes no node could hold
# are refused there (a real run checks against its own machine's budget).
JOB_MEMORY_CEILING = 2**40

# Arguments of the parts the model builds itself, by class name (ours and the reference's share names).
PART_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "Null": (),
    "MultivariateNormal": ("mean", "variance", "shape"),
    "AutoregressiveMultivariateNormal": ("tau", "nvar", "shape"),
    "MultivariateStudentT": ("loc", "scale", "df", "shape"),
    "AugmentationStack": ("transforms", "batch_order", "loss_order"),
    "CoordinatedDropout": ("cd_rate", "cd_pass_rate", "ic_enc_seq_len"),
    "SampleValidation": ("sv_rate", "ic_enc_seq_len", "recon_reduce_mean"),
    "TemporalShift": ("std", "max_shift"),
    "SpikeJitter": ("width",),
    "Identity": (),
    "FanInLinear": ("in_features", "out_features", "bias", "device", "dtype"),
    "Linear": ("in_features", "out_features", "bias", "device", "dtype"),
    "Poisson": (),
    "PoissonBPS": (),
    "MSE": (),
    "Gaussian": (),
    "Gamma": (),
    "ZeroInflatedGamma": ("recon_dim", "gamma_loc", "scale_init", "scale_prior", "scale_penalty"),
}

_INF = math.inf
# model key: (lowest value, whether null means "read it from the data")
_MODEL_INTS = {
    "encod_data_dim": (1, True), "encod_seq_len": (2, True), "recon_seq_len": (2, True),
    "ext_input_dim": (0, True), "ic_enc_seq_len": (0, False), "ic_enc_dim": (1, False),
    "ci_enc_dim": (0, False), "ci_lag": (0, False), "con_dim": (0, False), "co_dim": (0, False),
    "ic_dim": (1, False), "gen_dim": (1, False), "fac_dim": (1, False), "lr_patience": (0, False),
    "l2_start_epoch": (0, False), "l2_increase_epoch": (0, False), "kl_start_epoch": (0, False),
    "kl_increase_epoch": (0, False),
}  # fmt: skip
_MODEL_NUMBERS = {  # key: (low, high, low_open, high_open)
    "lr_init": (0.0, _INF, True, True),
    "lr_stop": (0.0, _INF, False, True),
    "lr_decay": (0.0, 1.0, True, False),
    "lr_adam_beta1": (0.0, 1.0, False, True),
    "lr_adam_beta2": (0.0, 1.0, False, True),
    "lr_adam_epsilon": (0.0, _INF, True, True),
    "weight_decay": (0.0, _INF, False, True),
    "dropout_rate": (0.0, 1.0, False, True),
    "cell_clip": (0.0, _INF, True, True),
    "loss_scale": (0.0, _INF, True, True),
    "ic_post_var_min": (0.0, _INF, True, True),
    **{
        f"{kind}_{part}_scale": (0.0, _INF, False, True)
        for kind, parts in (("l2", ("ic_enc", "ci_enc", "gen", "con")), ("kl", ("ic", "co")))
        for part in parts
    },
}  # fmt: skip
_MODEL_BOOLS = ("variational", "lr_scheduler", "recon_reduce_mean")
_PART_NUMBERS = {  # (class, argument): (low, high, low_open, high_open)
    ("MultivariateNormal", "mean"): (-_INF, _INF, True, True),
    ("MultivariateNormal", "variance"): (0.0, _INF, True, True),
    ("AutoregressiveMultivariateNormal", "tau"): (0.0, _INF, True, True),
    ("AutoregressiveMultivariateNormal", "nvar"): (0.0, _INF, True, True),
    ("MultivariateStudentT", "loc"): (-_INF, _INF, True, True),
    ("MultivariateStudentT", "scale"): (0.0, _INF, True, True),
    ("MultivariateStudentT", "df"): (0.0, _INF, True, True),
    ("CoordinatedDropout", "cd_rate"): (0.0, 1.0, False, True),
    ("CoordinatedDropout", "cd_pass_rate"): (0.0, 1.0, False, False),
    ("SampleValidation", "sv_rate"): (0.0, 1.0, False, True),
    ("TemporalShift", "std"): (0.0, _INF, False, True),
}
_PART_INTS = {  # (class, argument): low
    ("CoordinatedDropout", "ic_enc_seq_len"): 0,
    ("SampleValidation", "ic_enc_seq_len"): 0,
    ("TemporalShift", "max_shift"): 0,
    ("SpikeJitter", "width"): 0,
    ("ZeroInflatedGamma", "recon_dim"): 1,
}


class _Problems(list[str]):
    """Problems found so far, one line each."""

    def expected(self, where: str, what: str, found: Any) -> None:
        self.append(f"{where}: expected {what}, found {_show(found)}")


# ------------------------------------------------------------------------------------------ public
def config_problems(cfg: Mapping[str, Any], memory_budget: int | None = None) -> list[str]:
    """Every problem of a composed run config (plain containers, interpolations resolved), one line each.

    Model sizes left ``null``/``???`` count as "read from the data later". ``memory_budget``: bytes the
    model may need to train (None: no memory check).
    """
    problems = _Problems()
    for block in ("model", "datamodule", "trainer"):
        if not isinstance(cfg.get(block), Mapping):
            problems.expected(block, "a mapping (the config block)", cfg.get(block))
    if problems:
        return list(problems)
    _check_model(cfg["model"], problems)
    _check_datamodule(cfg["datamodule"], problems)
    _check_trainer(cfg["trainer"], problems)
    _check_top_level(cfg, problems)
    if cfg.get("pbt") is not None:
        _check_pbt(cfg, problems)
    if not problems and memory_budget is not None:
        _check_memory(cfg["model"], cfg["datamodule"], memory_budget, problems)
    return list(problems)


def check_config(cfg: Mapping[str, Any], *, check_memory: bool = True) -> None:
    """Raise one ConfigError line for the first problem of ``cfg`` (see :func:`config_problems`).

    ``check_memory``: compare the model's training memory with this machine's budget (``autolfads.budget``).
    """
    budget = memory_budget_bytes() if check_memory else None
    problems = config_problems(cfg, memory_budget=budget)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


def job_config_problems(config: Mapping[str, Any] | None, overrides: Sequence[str] = ()) -> list[str]:
    """Problems of the config an AutoLFADSJob will run: shipped defaults ← ``config`` ← ``overrides``.

    What ``autolfads run`` checks before it reads the data, with the same composition (so an operator
    refuses a job in seconds that the run would refuse later); memory only against
    ``JOB_MEMORY_CEILING``, because the job's machines are not this one. One line per problem.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from autolfads.config.loader import compose_config

    try:
        with warnings.catch_warnings():  # "block ignored" notes are for a console; a job has none
            warnings.simplefilter("ignore")
            composed = compose_config(dict(config or {}), overrides)
        OmegaConf.resolve(composed)
        plain = OmegaConf.to_container(composed, throw_on_missing=False)
    except AutoLFADSError as exc:
        return [str(exc)]
    except OmegaConfBaseException as exc:
        return [f"config: {str(exc).strip().splitlines()[0]}"]
    return config_problems(plain, memory_budget=JOB_MEMORY_CEILING)  # type: ignore[arg-type]


def estimate_training_bytes(model: Mapping[str, Any], datamodule: Mapping[str, Any]) -> tuple[int, int]:
    """``(bytes, parameters)`` an LFADS of these sizes needs to train: weights, gradients and Adam's two
    moments (4 × 4 bytes per parameter) plus one batch's activations kept for the backward pass.

    A rough upper estimate for refusing impossible sizes, not a prediction; unknown sizes count as 0.
    """
    size = {key: _size(model.get(key)) for key in _MODEL_INTS}
    enc, ext = size["encod_data_dim"], size["ext_input_dim"]
    ic_enc, ci, con, co = size["ic_enc_dim"], size["ci_enc_dim"], size["con_dim"], size["co_dim"]
    gen, fac, ic = size["gen_dim"], size["fac_dim"], size["ic_dim"]
    out = max((_size(_get(r, "out_features")) for r in _entries(model.get("readout"))), default=0) or enc
    use_con = ci > 0 and con > 0 and co > 0

    def gru(inputs: int, hidden: int) -> int:
        return 3 * hidden * (inputs + hidden) + 6 * hidden

    params = (
        2 * gru(enc, ic_enc) + 2 * ic_enc * 2 * ic + gru(co + ext, gen) + ic * gen + gen * fac + fac * out
    )
    if use_con:
        params += 2 * gru(enc, ci) + gru(2 * ci + fac, con) + con * 2 * co
    steps = size["recon_seq_len"] or size["encod_seq_len"]
    batch = _size(datamodule.get("batch_size"))
    per_step = 2 * ic_enc + 2 * ci + 4 * con + 4 * gen + fac + out + 4 * co + enc
    activations = batch * steps * per_step * 4 * 2  # float32, forward values and their gradients
    return params * 16 + activations, params


# ------------------------------------------------------------------------------------------ blocks
def _check_model(model: Mapping[str, Any], problems: _Problems) -> None:
    for key, (low, inferred) in _MODEL_INTS.items():
        if key not in model:
            continue
        value = model[key]
        if inferred and (value is None or value == "???"):
            continue  # read from the data file
        _integer(problems, f"model.{key}", value, low)
    for key, bounds in _MODEL_NUMBERS.items():
        if key in model:
            _number(problems, f"model.{key}", model[key], *bounds)
    for key in _MODEL_BOOLS:
        if key in model and not isinstance(model[key], bool):
            problems.expected(f"model.{key}", "true or false", model[key])
    enc_len, ic_len = _known_int(model, "encod_seq_len"), _known_int(model, "ic_enc_seq_len")
    if enc_len is not None and ic_len is not None and ic_len >= enc_len:
        problems.expected("model.ic_enc_seq_len", f"an integer < encod_seq_len ({enc_len})", ic_len)
    rec_len = _known_int(model, "recon_seq_len")
    if enc_len is not None and rec_len is not None and rec_len < enc_len:
        problems.expected("model.recon_seq_len", f"an integer >= encod_seq_len ({enc_len})", rec_len)
    for key in ("readin", "readout", "reconstruction"):
        value = model.get(key)
        if value is None:
            problems.expected(f"model.{key}", "a list with one entry per session", None)
        elif not isinstance(value, list | Mapping):
            problems.expected(f"model.{key}", "a list with one entry per session", value)
        else:
            for i, entry in enumerate(_entries(value)):
                _check_part(
                    entry, f"model.{key}.{i}" if isinstance(value, list) else f"model.{key}", problems
                )
    for key in ("train_aug_stack", "infer_aug_stack", "ic_prior", "co_prior"):
        if model.get(key) is not None:
            _check_part(model[key], f"model.{key}", problems)
    if model.get("variational") is False:
        for key in ("ic_prior", "co_prior"):
            name = _class_name(model.get(key))
            if name not in (None, "Null"):
                problems.expected(f"model.{key}", "Null (model.variational is false)", name)


def _check_part(entry: Any, where: str, problems: _Problems) -> None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("_target_"), str):
        problems.expected(where, "a mapping with a _target_ class", entry)
        return
    name = _class_name(entry)
    known = PART_ARGUMENTS.get(name or "")
    if known is None:
        return  # a class this module does not know: its own constructor decides
    for key in entry:
        if key != "_target_" and key not in known:
            valid = ", ".join(known) or "none"
            problems.append(f"{where}.{key}: unknown argument of {name}; valid arguments are {valid}")
    for (cls, arg), bounds in _PART_NUMBERS.items():
        if cls == name and arg in entry:
            _number(problems, f"{where}.{arg}", entry[arg], *bounds)
    for (cls, arg), low in _PART_INTS.items():
        if cls == name and arg in entry:
            _integer(problems, f"{where}.{arg}", entry[arg], low)
    if name == "AugmentationStack":
        transforms = entry.get("transforms") or []
        if not isinstance(transforms, list):
            problems.expected(f"{where}.transforms", "a list of transforms", transforms)
            return
        for i, transform in enumerate(transforms):
            _check_part(transform, f"{where}.transforms.{i}", problems)
        for order in ("batch_order", "loss_order"):
            indices = entry.get(order)
            if indices is None:
                continue
            if not isinstance(indices, list):
                problems.expected(f"{where}.{order}", "a list of transform indices", indices)
                continue
            for j, index in enumerate(indices):
                _integer(problems, f"{where}.{order}.{j}", index, 0, high=len(transforms) - 1)


def _check_datamodule(dm: Mapping[str, Any], problems: _Problems) -> None:
    if "batch_size" in dm:
        _integer(problems, "datamodule.batch_size", dm["batch_size"], 1)
    if "sv_rate" in dm:
        _number(problems, "datamodule.sv_rate", dm["sv_rate"], 0.0, 1.0, False, True)
    for key in ("sv_seed", "reshuffle_tv_seed"):
        if dm.get(key) is not None:
            _integer(problems, f"datamodule.{key}", dm[key], 0, high=MAX_SEED)
    if dm.get("reshuffle_tv_ratio") is not None:
        _number(problems, "datamodule.reshuffle_tv_ratio", dm["reshuffle_tv_ratio"], 0.0, 1.0, True, True)
        if dm.get("reshuffle_tv_seed") is None:
            problems.expected("datamodule.reshuffle_tv_seed", "a seed (reshuffle_tv_ratio is set)", None)
    if "dm_ic_enc_seq_len" in dm:
        _integer(problems, "datamodule.dm_ic_enc_seq_len", dm["dm_ic_enc_seq_len"], 0)
    for key in ("batch_keys", "attr_keys"):
        value = dm.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.expected(f"datamodule.{key}", "a list of dataset names", value)
    if dm.get("attr_keys") and dm.get("reshuffle_tv_seed") is not None:
        problems.expected(
            "datamodule.attr_keys", "[] when reshuffle_tv_seed re-splits the trials", dm["attr_keys"]
        )
    paths = dm.get("data_paths")
    if paths is not None and not isinstance(paths, str | list):
        problems.expected("datamodule.data_paths", "a list of data files", paths)
    pattern = dm.get("datafile_pattern")
    if pattern is not None and not isinstance(pattern, str):
        problems.expected("datamodule.datafile_pattern", "a glob string", pattern)


def _check_trainer(trainer: Mapping[str, Any], problems: _Problems) -> None:
    for key in trainer:
        if key in MANAGED_TRAINER_KEYS:
            problems.append(f"trainer.{key}: set by autolfads itself; remove it from the config")
        elif key not in TRAINER_KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), TRAINER_KEYS, n=1, cutoff=0.7)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"trainer.{key}: not an argument of lightning.pytorch.Trainer{hint}")
        elif isinstance(trainer[key], Mapping):
            problems.expected(f"trainer.{key}", "a plain value", trainer[key])
    max_epochs = trainer.get("max_epochs")
    _integer(problems, "trainer.max_epochs", max_epochs, 1, what="an integer >= 1 (runs must end)")
    if trainer.get("min_epochs") is not None:
        high = max_epochs if isinstance(max_epochs, int) and not isinstance(max_epochs, bool) else None
        _integer(problems, "trainer.min_epochs", trainer["min_epochs"], 0, high=high)
    if "max_steps" in trainer and trainer["max_steps"] != -1:
        _integer(problems, "trainer.max_steps", trainer["max_steps"], 1, what="-1 or an integer >= 1")
    for key in ("log_every_n_steps", "accumulate_grad_batches", "num_nodes"):
        if key in trainer:
            _integer(problems, f"trainer.{key}", trainer[key], 1)
    if trainer.get("check_val_every_n_epoch") is not None:
        _integer(problems, "trainer.check_val_every_n_epoch", trainer["check_val_every_n_epoch"], 1)
    if "num_sanity_val_steps" in trainer:
        _integer(problems, "trainer.num_sanity_val_steps", trainer["num_sanity_val_steps"], -1)
    if trainer.get("gradient_clip_val") is not None:
        _number(problems, "trainer.gradient_clip_val", trainer["gradient_clip_val"], 0.0, _INF, False, True)
    if trainer.get("gradient_clip_algorithm") not in (None, "norm", "value"):
        problems.expected(
            "trainer.gradient_clip_algorithm", "norm or value", trainer["gradient_clip_algorithm"]
        )
    if "accelerator" in trainer and trainer["accelerator"] not in ACCELERATORS:
        problems.expected("trainer.accelerator", f"one of {', '.join(ACCELERATORS)}", trainer["accelerator"])
    if "precision" in trainer and trainer["precision"] not in (*PRECISIONS, None):
        shown = ", ".join(str(p) for p in PRECISIONS[:8])
        problems.expected("trainer.precision", f"one of {shown}, ...", trainer["precision"])
    for key in ("limit_train_batches", "limit_val_batches", "overfit_batches"):
        value = trainer.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            problems.expected(f"trainer.{key}", "a fraction in [0, 1] or a number of batches", value)
        elif isinstance(value, float) and value > 1:
            problems.expected(f"trainer.{key}", "a fraction in [0, 1] (or an integer count)", value)
    for key in ("enable_checkpointing", "enable_model_summary", "detect_anomaly", "inference_mode"):
        if key in trainer and not isinstance(trainer[key], bool):
            problems.expected(f"trainer.{key}", "true or false", trainer[key])
    fast = trainer.get("fast_dev_run")
    if fast is not None and not isinstance(fast, bool):
        _integer(problems, "trainer.fast_dev_run", fast, 0)


def _check_top_level(cfg: Mapping[str, Any], problems: _Problems) -> None:
    if cfg.get("seed") is not None:
        _integer(
            problems, "seed", cfg["seed"], 0, high=MAX_SEED, what=f"null or an integer in [0, {MAX_SEED}]"
        )
    if "ignore_warnings" in cfg and not isinstance(cfg["ignore_warnings"], bool):
        problems.expected("ignore_warnings", "true or false", cfg["ignore_warnings"])
    sampling = cfg.get("posterior_sampling")
    if sampling is None:
        return
    if not isinstance(sampling, Mapping):
        problems.expected("posterior_sampling", "a mapping (num_samples, use_best_ckpt)", sampling)
        return
    for key in sampling:
        if key not in ("num_samples", "use_best_ckpt"):
            problems.append(
                f"posterior_sampling.{key}: unknown key; valid keys are num_samples, use_best_ckpt"
            )
    if "num_samples" in sampling:
        _integer(problems, "posterior_sampling.num_samples", sampling["num_samples"], 1)
    if "use_best_ckpt" in sampling and not isinstance(sampling["use_best_ckpt"], bool):
        problems.expected("posterior_sampling.use_best_ckpt", "true or false", sampling["use_best_ckpt"])


def _check_pbt(cfg: Mapping[str, Any], problems: _Problems) -> None:
    try:
        settings = parse_pbt_block(cfg["pbt"])
    except ConfigError as exc:
        problems.append(str(exc))
        return
    for hp in settings.hps:
        found = _select(cfg, hp.key)
        if found is _ABSENT:
            problems.append(f"pbt.hps.{hp.key}: searches a key the config does not have")
        elif isinstance(found, bool) or not isinstance(found, int | float):
            problems.expected(f"pbt.hps.{hp.key}", "a key holding a number", found)


def _check_memory(model: Mapping[str, Any], dm: Mapping[str, Any], budget: int, problems: _Problems) -> None:
    needed, params = estimate_training_bytes(model, dm)
    if needed <= budget:
        return
    sizes = {
        key: _size(model.get(key))
        for key in (
            "gen_dim",
            "fac_dim",
            "ic_dim",
            "ic_enc_dim",
            "ci_enc_dim",
            "con_dim",
            "co_dim",
            "encod_data_dim",
        )
    }
    largest = max(sizes, key=lambda k: sizes[k])
    source = budget_source() if budget != JOB_MEMORY_CEILING else "more than any one machine"
    problems.append(
        f"model.{largest}: {sizes[largest]} makes a model of {params:.3g} parameters that needs about "
        f"{format_bytes(needed)} to train (batch_size {_size(dm.get('batch_size'))}); expected at most the "
        f"memory budget of {format_bytes(budget)} ({source})"
    )


# ------------------------------------------------------------------------------------------ values
_ABSENT = object()


def _select(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _integer(
    problems: _Problems, where: str, value: Any, low: int, *, high: int | None = None, what: str | None = None
) -> None:
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )
    if not ok:
        default = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        problems.expected(where, what or default, value)


def _number(
    problems: _Problems, where: str, value: Any, low: float, high: float, low_open: bool, high_open: bool
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.expected(
            where, f"a finite number {_range_text(low, high, low_open, high_open)}".rstrip(), value
        )
        return
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        problems.expected(where, f"a number {_range_text(low, high, low_open, high_open)}", value)


def _range_text(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if low == -_INF and high == _INF:
        return ""
    if high == _INF:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _known_int(node: Mapping[str, Any], key: str) -> int | None:
    value = node.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _entries(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value] if value is not None else []


def _get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, Mapping) else None


def _class_name(entry: Any) -> str | None:
    target = entry.get("_target_") if isinstance(entry, Mapping) else None
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = [
    "JOB_MEMORY_CEILING",
    "MANAGED_TRAINER_KEYS",
    "PART_ARGUMENTS",
    "TRAINER_KEYS",
    "check_config",
    "config_problems",
    "estimate_training_bytes",
    "job_config_problems",
]
