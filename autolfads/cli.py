"""The ``autolfads`` command: one click group; each sub-command is a thin function, its docstring the help.

Heavy libraries (torch, Lightning, Ray) are imported inside the command bodies, and only after the inputs
were checked and the output location claimed, so ``autolfads --help``, ``autolfads validate`` and every
refusal are fast. Every :class:`~autolfads.errors.AutoLFADSError` (bad data, config, storage, tracking),
also when a library wrapped it, is printed as one ``Error: ...`` line on stderr with exit code 1; usage
mistakes exit with 2; anything else is one ``Error: unexpected ...`` line. ``--debug`` (or
``AUTOLFADS_DEBUG=1``) shows the full traceback instead. Our own warnings are one ``Warning: ...`` line.

Shared options are defined once below (``config_option``, ``overrides_argument``, ...) so that commands
added later (``run``, ``plot``) take the same flags with the same help.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from autolfads.errors import AutoLFADSError, ConfigError, find_user_error

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---------------------------------------------------------------------------------------------- group
class AutoLFADSGroup(click.Group):
    """A click group that turns every error into one line instead of a traceback (unless ``--debug``)."""

    def main(
        self, args: Sequence[str] | None = None, *pos: Any, standalone_mode: bool = True, **kw: Any
    ) -> Any:
        """Click's own usage errors as one ``Error: ...`` line too (exit 2), not usage + hint + error."""
        if not standalone_mode:
            return super().main(args, *pos, standalone_mode=False, **kw)
        try:
            code = super().main(args, *pos, standalone_mode=False, **kw)
        except click.exceptions.ClickException as error:
            where = f" (see: {error.ctx.command_path} --help)" if getattr(error, "ctx", None) else ""
            click.echo(f"Error: {_one_line(Exception(error.format_message()))}{where}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {_error_line(error)}", err=True)
            ctx.exit(1)


def _error_line(error: BaseException) -> str:
    """Ours (even wrapped by Hydra/Lightning/Ray) and OS errors as they are; anything else named as a bug."""
    ours = find_user_error(error)
    if ours is not None:
        return _one_line(ours)
    if isinstance(error, OSError):
        return _one_line(error)
    return (
        f"unexpected {type(error).__name__}: {_one_line(error)} "
        "(rerun with --debug for the traceback, and please report it)"
    )


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, AutoLFADSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines())


@click.group(cls=AutoLFADSGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="autolfads", message="%(prog)s %(version)s")
@click.option(
    "--debug",
    is_flag=True,
    envvar="AUTOLFADS_DEBUG",
    help="Show the full traceback of an error instead of one line (also: AUTOLFADS_DEBUG=1).",
)
def main(debug: bool) -> None:
    """AutoLFADS: LFADS models of neural population dynamics, tuned by population-based training.

    \b
    Quick start:
      autolfads synth lorenz demo.h5
      autolfads validate demo.h5
      autolfads train demo.h5 --out runs/demo trainer.max_epochs=40
    """
    _one_line_warnings()


def _one_line_warnings() -> None:
    """Show autolfads' own warnings (ConfigWarning, DataWarning) as one ``Warning: ...`` line."""
    original = warnings.showwarning
    if getattr(original, "autolfads", False):
        return

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if category.__module__.startswith("autolfads."):
            click.echo(f"Warning: {_one_line(Exception(str(message)))}", err=True)
        else:
            original(message, category, *args, **kwargs)

    show.autolfads = True  # type: ignore[attr-defined]
    warnings.showwarning = show


# ---------------------------------------------------------------------------------------------- options
def _check_overrides(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> tuple[str, ...]:
    """KEY=VALUE pairs, each key once (a repeated key is almost always a typo)."""
    seen: set[str] = set()
    for value in values:
        key, sep, _ = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"'{value}' is not KEY=VALUE; example: model.gen_dim=64 trainer.max_epochs=200", param=param
            )
        if key in seen:
            raise click.BadParameter(f"'{key}' is given more than once", param=param)
        seen.add(key)
    return tuple(values)


data_argument = click.argument("data", metavar="DATA.h5")

config_option = click.option(
    "--config",
    "-c",
    metavar="CFG.yaml",
    default=None,
    help="YAML config with model/datamodule/trainer blocks (a lfads-torch NeuroCAAS config works too). "
    "Default: the shipped defaults (the reference nlb_mc_maze model), dims inferred from DATA.",
)

overrides_argument = click.argument(
    "overrides", nargs=-1, metavar="[KEY=VALUE]...", callback=_check_overrides
)

force_option = click.option(
    "--force", is_flag=True, help="Overwrite earlier results at the output location (default: refuse)."
)

replace_option = click.option(
    "--force",
    is_flag=True,
    help="Replace the results already in --out: this run writes into a staging folder there and takes "
    "their place only when it completes (a failed run leaves them as they were). Default: refuse.",
)


def resume_option(what: str) -> Callable[[F], F]:
    return click.option(
        "--resume",
        is_flag=True,
        envvar="AUTOLFADS_RESUME",
        help=f"Continue the {what} in --out. Refused if DATA, --config or the overrides differ from those "
        "it started with (the difference is listed); a new run if --out holds none (also: "
        "AUTOLFADS_RESUME=1).",
    )


threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    envvar="AUTOLFADS_THREADS",
    help="CPU threads for torch (default: torch's choice). 1 is often far faster for small models on a "
    "busy machine.",
)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def out_option(help_text: str) -> Callable[[F], F]:
    return click.option("--out", "-o", "out", metavar="DIR", required=True, help=help_text)


# ---------------------------------------------------------------------------------------------- synth
@main.group()
def synth() -> None:
    """Write synthetic datasets with known ground truth (for demos and tests)."""


@synth.command("lorenz")
@click.argument("out", metavar="OUT.h5")
@click.option(
    "--seed", type=int, default=0, show_default=True, metavar="N", help="Random seed; same seed, same file."
)
@click.option("--n-trials", type=click.IntRange(min=2), metavar="N", help="Trials in total (default 400).")
@click.option(
    "--n-conditions",
    type=click.IntRange(min=1),
    metavar="N",
    help="Distinct Lorenz trajectories; trial i follows condition i % N (default 20).",
)
@click.option(
    "--n-neurons", type=click.IntRange(min=1), metavar="N", help="Channels in recon_data (default 30)."
)
@click.option(
    "--held-in",
    type=click.IntRange(min=1),
    metavar="N",
    help="Channels in encod_data; the rest are held-out neurons (default: all).",
)
@click.option("--encod-seq-len", type=click.IntRange(min=1), metavar="T", help="Observed bins (default 50).")
@click.option(
    "--recon-seq-len",
    type=click.IntRange(min=1),
    metavar="T",
    help="Bins in recon_data; more than --encod-seq-len adds forward-prediction bins (default: the same).",
)
@force_option
def synth_lorenz(out: str, force: bool, **options: Any) -> None:
    """Spikes from Lorenz-driven firing rates, with the true rates as *_truth.

    \b
    Example:
      autolfads synth lorenz demo.h5 --n-neurons 50 --held-in 40
    """
    from autolfads.data import inspect_data_file
    from autolfads.data.synthetic import write_lorenz

    path = Path(out)
    if path.exists() and not force:
        raise AutoLFADSError(f"{path} already exists; pass --force to overwrite it")
    # Unset options keep the generator's own defaults (docs/data.md), so they are stated in one place.
    written = write_lorenz(path, **{key: value for key, value in options.items() if value is not None})
    summary = inspect_data_file(written, check_values=False)
    click.echo(
        f"wrote {written}: {summary.n_train} train / {summary.n_valid} valid trials, "
        f"{summary.encod_data_dim} of {summary.recon_data_dim} channels held in, "
        f"{summary.encod_seq_len}+{summary.n_forward} bins"
    )


# ---------------------------------------------------------------------------------------------- validate
@main.command()
@data_argument
@config_option
@overrides_argument
def validate(data: str, config: str | None, overrides: tuple[str, ...]) -> None:
    """Check a data file (and a config) and print the dimensions the model will use.

    The same checks `train` and `run` make before they start (the data contract, every config block and
    value, the memory the data and the model would need): exit code 0 exactly when they would start, 1
    with one line naming the problem otherwise.

    \b
    Example:
      autolfads validate data.h5 --config cfg.yaml model.gen_dim=64
    """
    inputs = _checked_inputs(config, overrides, data, show_notes=False)
    for summary in inputs.summaries:
        click.echo(summary.describe())
    model = inputs.cfg.model
    dims = ", ".join(
        f"{key} {model[key]}"
        for key in (
            "encod_data_dim",
            "encod_seq_len",
            "recon_seq_len",
            "ext_input_dim",
            "gen_dim",
            "fac_dim",
            "ic_dim",
            "co_dim",
        )
        if key in model
    )
    click.echo(f"config OK: {dims}")
    if inputs.cfg.get("pbt") is None:
        click.echo("note: the config has no pbt block, which `autolfads run` needs (`train` does not)")


def _checked_inputs(config: str | None, overrides: Sequence[str], data: str, show_notes: bool = True) -> Any:
    """Config and data checked (``autolfads.config.loader.load_run_inputs``), without torch; the data's
    accepted oddities shown as notes on stderr."""
    from autolfads.config.loader import load_run_inputs

    inputs = load_run_inputs(config, overrides, data_paths=[data])
    if show_notes:
        for note in inputs.notes:
            click.echo(f"Note: {note}", err=True)
    return inputs


def _fingerprint(inputs: Any, config: str | None, overrides: Sequence[str]) -> dict[str, Any]:
    """What this command line runs (``autolfads.rundir.fingerprint``), for the output location's claim."""
    from omegaconf import OmegaConf

    from autolfads.rundir.fingerprint import compute_fingerprint
    from autolfads.storage import download_to_local

    plain = OmegaConf.to_container(inputs.cfg, resolve=True)
    uris = plain["datamodule"].get("data_paths") or []  # type: ignore[index,union-attr]
    pairs = [(str(uri), download_to_local(uri)) for uri in uris]
    seen = {Path(local).resolve() for _, local in pairs}
    pairs += [(str(s.path), s.path) for s in inputs.summaries if Path(s.path).resolve() not in seen]
    config_file = str(Path(config).resolve()) if config else None
    return compute_fingerprint(pairs, plain, config_file=config_file, overrides=overrides)  # type: ignore[arg-type]


def _inputs_of(data: str, config: str | None) -> list[str]:
    return [data, *([config] if config else [])]


def _echo_notes(claim: Any) -> None:
    for note in claim.notes:
        click.echo(f"Note: {note}", err=True)


# ---------------------------------------------------------------------------------------------- train
@main.command()
@data_argument
@out_option("Directory for model.ckpt, lfads_output_sess0.h5, fitlog.csv, config.yaml and DONE.json.")
@config_option
@replace_option
@resume_option("interrupted fit")
@threads_option
@overrides_argument
def train(
    data: str,
    out: str,
    config: str | None,
    force: bool,
    resume: bool,
    threads: int | None,
    overrides: tuple[str, ...],
) -> None:
    """Train one LFADS model on DATA (no population) and write its outputs to --out.

    Overrides are dotted config keys, applied after --config. The best epoch (lowest valid/recon_smth)
    becomes model.ckpt, and its 50-sample posterior means are written to lfads_output_sess0.h5; DONE.json,
    written last, marks a finished run. Epochs are numbered from 0, as in fitlog.csv. Ctrl-C stops after
    the current epoch and writes the outputs of the best checkpoint so far; --resume continues the fit.

    \b
    Example:
      autolfads train data.h5 --out runs/demo model.gen_dim=64 trainer.max_epochs=200
      autolfads train data.h5 --out runs/demo model.gen_dim=64 trainer.max_epochs=200 --resume
    """
    from autolfads.rundir import claim_out

    if resume and force:
        raise click.UsageError("--resume and --force: choose one (continue the run in --out, or replace it)")
    inputs = _checked_inputs(config, overrides, data)
    cfg = inputs.cfg
    fingerprint = _fingerprint(inputs, config, overrides)
    with claim_out(
        out,
        "autolfads train",
        resume=resume,
        force=force,
        fingerprint=fingerprint,
        inputs=_inputs_of(data, config),
    ) as claim:
        _echo_notes(claim)
        if claim.mode == "finished":
            when = (claim.done or {}).get("finished_at", "?")
            click.echo(f"the run in {out} finished at {when} (DONE.json); nothing to resume")
            return
        size = ", ".join(f"{key} {cfg.model[key]}" for key in ("gen_dim", "fac_dim", "ic_dim", "co_dim"))
        epochs = int(cfg.trainer.max_epochs)
        how = "resuming training" if claim.resume else "training"
        click.echo(f"{how} on {data} ({size}), epochs 0-{epochs - 1}")
        if claim.staging:
            click.echo("--force: the earlier results in --out are replaced when this run completes")

        from autolfads.outputs.quality import rate_r2
        from autolfads.train import fit_and_write

        _set_threads(threads)
        result = fit_and_write(cfg, claim.local_target, resume=claim.resume)
        if result.interrupted:
            _report_interrupted(result, out, claim.staging)
            raise click.exceptions.Exit(130)
        claim.complete(claim.local_target, result.names, "autolfads train")
    result = result.moved_to(Path(out))
    best = "n/a" if result.best_epoch is None else f"{result.best_metric:.5g} at epoch {result.best_epoch}"
    click.echo(f"best valid/recon_smth {best}")
    r2 = rate_r2(result.outputs[0]) if result.outputs else None
    if r2 is not None:
        click.echo(f"valid rate R² vs truth (posterior means): {r2:.3f}")
    names = ", ".join(p.name for p in (result.checkpoint, *result.outputs, result.fitlog, result.config))
    click.echo(f"wrote {names}, DONE.json in {result.out_dir}")


def _report_interrupted(result: Any, out: str, staging: bool) -> None:
    """After Ctrl-C: what was written and how to go on (stderr; the exit code is 130)."""
    if staging:
        click.echo(
            f"interrupted at epoch {result.epochs}: --force keeps the earlier results in {out} as they were; "
            "this run is discarded",
            err=True,
        )
    elif result.best_epoch is None and not result.outputs:
        click.echo(
            f"interrupted at epoch {result.epochs}, before any epoch was validated: nothing to write; "
            "run the same command with --resume to continue",
            err=True,
        )
    else:
        click.echo(
            f"interrupted at epoch {result.epochs}: wrote the outputs of the best checkpoint so far "
            f"(epoch {result.best_epoch}, valid/recon_smth {result.best_metric:.5g}) to {out}; "
            "run the same command with --resume to continue the fit",
            err=True,
        )


# ---------------------------------------------------------------------------------------------- run
@main.command()
@data_argument
@out_option("Run directory (or s3://bucket/prefix): autolfads.zip, fitlog.csv, pbt_history.csv, trials/.")
@config_option
@click.option(
    "--name", metavar="NAME", default=None, help="Run name (Ray experiment, MLflow run). Default: autolfads."
)
@resume_option("run from its last completed generation")
@replace_option
@click.option(
    "--address",
    metavar="RAY_ADDRESS",
    envvar="RAY_ADDRESS",
    default=None,
    help="An existing Ray cluster, e.g. ray://head:10001 (also: RAY_ADDRESS). Default: local Ray.",
)
@click.option(
    "--mlflow-uri", metavar="URI", default=None, help="MLflow tracking URI (also: MLFLOW_TRACKING_URI)."
)
@click.option("--mlflow-experiment", metavar="NAME", default=None, help="MLflow experiment name.")
@click.option("--no-mlflow", is_flag=True, help="Do not track the run in MLflow.")
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    metavar="N",
    default=None,
    envvar="AUTOLFADS_METRICS_PORT",
    help="Serve Prometheus /metrics on port N (also: AUTOLFADS_METRICS_PORT; off by default, "
    "9090 in the container image).",
)
@overrides_argument
def run(
    data: str,
    out: str,
    config: str | None,
    overrides: tuple[str, ...],
    resume: bool,
    force: bool,
    **options: Any,
) -> None:
    """Tune a population of LFADS models with population-based training on Ray (AutoLFADS).

    The member with the lowest valid/recon_smth becomes model.ckpt; its posterior means are written to
    lfads_output_sess0.h5 and bundled with fitlog.csv in autolfads.zip; DONE.json, written last, marks a
    finished run. Ctrl-C stops after saving state; --resume continues.

    \b
    Example:
      autolfads run data.h5 --config cfg.yaml --out runs/x pbt.num_samples=4 trainer.max_epochs=60
      autolfads run data.h5 --config cfg.yaml --out runs/x pbt.num_samples=4 trainer.max_epochs=60 --resume
    """
    from autolfads.rundir import claim_out
    from autolfads.storage import check_writable

    if resume and force:
        raise click.UsageError("--resume and --force: choose one (continue the run in --out, or replace it)")
    inputs = _checked_inputs(config, overrides, data)
    if inputs.cfg.get("pbt") is None:
        raise ConfigError("pbt: the config has no pbt block; autolfads run needs one (see docs/pbt.md)")
    fingerprint = _fingerprint(inputs, config, overrides)
    check_writable(out)
    with claim_out(
        out,
        "autolfads run",
        resume=resume,
        force=force,
        fingerprint=fingerprint,
        inputs=_inputs_of(data, config),
    ) as claim:
        _echo_notes(claim)
        if claim.mode == "finished":
            when = (claim.done or {}).get("finished_at", "?")
            click.echo(f"the run in {out} finished at {when} (DONE.json); nothing to resume")
            return
        from autolfads.tune.command import run_command

        result = run_command(
            data,
            claim.target,
            config=config,
            overrides=overrides,
            resume=claim.resume,
            cfg=inputs.cfg,
            store_dir=out,
            **options,
        )
        claim.complete(result.out_dir, result.output_names, "autolfads run")
    from autolfads.storage import join_uri

    click.echo(
        f"best member: worker {result.best_worker}, valid/recon_smth {result.best_metric:.5g}; "
        f"{result.exploits} exploits; wrote {join_uri(out, result.zip_path.name)}, DONE.json"
    )


# ---------------------------------------------------------------------------------------------- infer
@main.command()
@click.argument("checkpoint", metavar="MODEL.ckpt")
@data_argument
@out_option("Directory for lfads_output_sess0.h5.")
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    metavar="N",
    help="Posterior samples averaged per trial.",
)
@force_option
@threads_option
def infer(checkpoint: str, data: str, out: str, num_samples: int, force: bool, threads: int | None) -> None:
    """Rates and latents for the trials in DATA from a trained model (e.g. a run's model.ckpt).

    DATA follows the same HDF5 contract with the model's dimensions; the output is DATA plus the
    {split}_{output_params,factors,...} datasets, as training writes them.

    \b
    Example:
      autolfads infer runs/demo/model.ckpt new_trials.h5 --out runs/demo/new
    """
    from autolfads.train import infer_model

    _set_threads(threads)
    written = infer_model(checkpoint, data, out, num_samples=num_samples, force=force)
    click.echo(f"wrote {', '.join(str(p) for p in written)}")


# ---------------------------------------------------------------------------------------------- plot
@main.command()
@click.argument("out", metavar="OUT")
def plot(out: str) -> None:
    """Draw a run's plots into OUT/plots/ (a run directory, an autolfads.zip, or an s3:// run).

    recon.png (train/valid recon per worker), hp_trajectories.png (hyperparameters over generations,
    exploits marked), rates_sess{s}.png (inferred rates vs spikes and truth), factors_sess{s}.png
    (latent factors, first 3 PCs). `autolfads run` draws them at the end as well.

    \b
    Example:
      autolfads plot runs/demo
    """
    from autolfads.outputs.plots import make_plots

    for path in make_plots(out):
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
