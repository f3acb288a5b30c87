"""The ``autolfads`` command: one click group; each sub-command is a thin function, its docstring the help.

Heavy libraries (torch, Lightning, Ray) are imported inside the command bodies, so ``autolfads --help`` and
``autolfads validate`` start fast. Every :class:`~autolfads.errors.AutoLFADSError` (bad data, config,
storage, tracking) is printed as one ``Error: ...`` line on stderr with exit code 1; usage mistakes exit
with 2. ``--debug`` (or ``AUTOLFADS_DEBUG=1``) shows the full traceback instead.

Shared options are defined once below (``config_option``, ``overrides_argument``, ...) so that commands
added later (``run``, ``plot``) take the same flags with the same help.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from autolfads.errors import AutoLFADSError

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---------------------------------------------------------------------------------------------- group
class AutoLFADSGroup(click.Group):
    """A click group that turns user errors into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AutoLFADSError, OSError) as error:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {_one_line(error)}", err=True)
            ctx.exit(1)


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

    Exit code 0 when training could start, 1 with one line naming the problem otherwise.

    \b
    Example:
      autolfads validate data.h5 --config cfg.yaml model.gen_dim=64
    """
    from autolfads.config import load_config

    cfg = load_config(config, overrides, data_paths=[data])
    summary = _inspect_for(cfg, data)
    click.echo(summary.describe())
    model = cfg.model
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


def _inspect_for(cfg: Any, data: str) -> Any:
    """Inspect ``data`` with the value checks of the config's likelihood (session 0's reconstruction)."""
    from omegaconf import OmegaConf

    from autolfads.data import inspect_data_file

    recon = OmegaConf.to_container(cfg.model, resolve=True).get("reconstruction") or [{}]
    first = recon[0] if isinstance(recon, list) else recon
    return inspect_data_file(data, first.get("_target_") if isinstance(first, dict) else None)


# ---------------------------------------------------------------------------------------------- train
@main.command()
@data_argument
@out_option("Directory for model.ckpt, lfads_output_sess0.h5, fitlog.csv and config.yaml.")
@config_option
@force_option
@threads_option
@overrides_argument
def train(
    data: str, out: str, config: str | None, force: bool, threads: int | None, overrides: tuple[str, ...]
) -> None:
    """Train one LFADS model on DATA (no population) and write its outputs to --out.

    Overrides are dotted config keys, applied after --config. The best epoch (lowest valid/recon_smth)
    becomes model.ckpt, and its 50-sample posterior means are written to lfads_output_sess0.h5.

    \b
    Example:
      autolfads train data.h5 --out runs/demo model.gen_dim=64 trainer.max_epochs=200
    """
    from autolfads.config import load_config
    from autolfads.train import existing_results

    if existing_results(Path(out)) and not force:  # fail before any slow work
        raise AutoLFADSError(f"--out {out} already holds results; choose another directory or pass --force")
    cfg = load_config(config, overrides, data_paths=[data])
    size = ", ".join(f"{key} {cfg.model[key]}" for key in ("gen_dim", "fac_dim", "ic_dim", "co_dim"))
    click.echo(f"training on {data} ({size}), up to {cfg.trainer.get('max_epochs', '?')} epochs")

    from autolfads.outputs.quality import rate_r2
    from autolfads.train import train_model

    _set_threads(threads)
    result = train_model(cfg, out, force=force)
    best = "n/a" if result.best_epoch is None else f"{result.best_metric:.5g} at epoch {result.best_epoch}"
    click.echo(f"best valid/recon_smth {best}")
    r2 = rate_r2(result.outputs[0]) if result.outputs else None
    if r2 is not None:
        click.echo(f"valid rate R² vs truth (posterior means): {r2:.3f}")
    names = ", ".join(p.name for p in (result.checkpoint, *result.outputs, result.fitlog, result.config))
    click.echo(f"wrote {names} in {result.out_dir}")


# ---------------------------------------------------------------------------------------------- run
@main.command()
@data_argument
@out_option("Run directory (or s3://bucket/prefix): autolfads.zip, fitlog.csv, pbt_history.csv, trials/.")
@config_option
@click.option(
    "--name", metavar="NAME", default=None, help="Run name (Ray experiment, MLflow run). Default: autolfads."
)
@click.option(
    "--resume",
    is_flag=True,
    envvar="AUTOLFADS_RESUME",
    help="Continue the run in --out from its last completed generation (a new run if none).",
)
@click.option(
    "--address",
    metavar="RAY_ADDRESS",
    envvar="RAY_ADDRESS",
    default=None,
    help="An existing Ray cluster's GCS address, e.g. head:6379 (also: RAY_ADDRESS; a Ray job's driver "
    "gets it). Default: local Ray. A cluster with token auth takes RAY_AUTH_MODE=token and RAY_AUTH_TOKEN.",
)
@click.option(
    "--mlflow-uri", metavar="URI", default=None, help="MLflow tracking URI (also: MLFLOW_TRACKING_URI)."
)
@click.option("--mlflow-experiment", metavar="NAME", default=None, help="MLflow experiment name.")
@click.option("--no-mlflow", is_flag=True, help="Do not track the run in MLflow.")
@click.option(
    "--metrics-port",
    type=int,
    metavar="N",
    default=None,
    envvar="AUTOLFADS_METRICS_PORT",
    help="Serve Prometheus /metrics on port N (also: AUTOLFADS_METRICS_PORT; off by default, "
    "9090 in the container image).",
)
@overrides_argument
def run(data: str, out: str, config: str | None, overrides: tuple[str, ...], **options: Any) -> None:
    """Tune a population of LFADS models with population-based training on Ray (AutoLFADS).

    The member with the lowest valid/recon_smth becomes model.ckpt; its posterior means are written to
    lfads_output_sess0.h5 and bundled with fitlog.csv in autolfads.zip. Ctrl-C stops after saving state.

    \b
    Example:
      autolfads run data.h5 --config cfg.yaml --out runs/x pbt.num_samples=4 trainer.max_epochs=60
      autolfads run data.h5 --out runs/x --resume
    """
    from autolfads.tune.command import run_command

    result = run_command(data, out, config=config, overrides=overrides, **options)
    click.echo(
        f"best member: worker {result.best_worker}, valid/recon_smth {result.best_metric:.5g}; "
        f"{result.exploits} exploits; wrote {result.zip_path}"
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
