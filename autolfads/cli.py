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


@synth.command("nwb")
@click.argument("out", metavar="OUT.nwb")
@click.option(
    "--seed", type=int, default=0, show_default=True, metavar="N", help="Random seed; same seed, same spikes."
)
@click.option(
    "--duration-s",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="S",
    help="Session length in seconds.",
)
@click.option(
    "--n-units", type=click.IntRange(min=1), default=20, show_default=True, metavar="N", help="Units."
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Back-to-back trials of about 1 s (with move_onset_time and an NLB split column); 0: a continuous "
    "recording without a trials table.",
)
@force_option
def synth_nwb(out: str, force: bool, **options: Any) -> None:
    """An NWB session (pynwb) of Poisson spikes from Lorenz-driven rates, to try `autolfads prepare` on.

    Units (with a quality column), optional trials, and a hand_vel TimeSeries in processing/behavior.

    \b
    Example:
      autolfads synth nwb session.nwb --n-trials 200 --duration-s 240
    """
    from autolfads.data.synthetic_nwb import write_synthetic_nwb

    path = Path(out)
    if path.exists() and not force:
        raise AutoLFADSError(f"{path} already exists; pass --force to overwrite it")
    try:
        session = write_synthetic_nwb(path, **options)
    except ValueError as error:  # trials that do not fit the session
        raise AutoLFADSError(f"{error}; give a longer --duration-s") from None
    trials = f", {len(session.trials)} trials" if session.trials else ", no trials (continuous)"
    click.echo(f"wrote {path}: {len(session.unit_ids)} units, {options['duration_s']:g} s{trials}")


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


# ---------------------------------------------------------------------------------------------- prepare
def _parse_heldout(ctx: click.Context, param: click.Parameter, value: str) -> int | tuple[int, ...]:
    """``N`` (a count, chosen by the seeded rule) or ``ID,ID,...`` (unit ids; ``17,`` for one id)."""
    text = value.strip()
    try:
        if "," in text:
            return tuple(int(part) for part in text.split(",") if part.strip())
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"'{value}' is neither a count (e.g. 5) nor a list of unit ids (e.g. 3,17,42)", param=param
        ) from None


@main.command()
@click.argument("nwb", metavar="NWB")
@click.option(
    "--out",
    "-o",
    metavar="DATA.h5",
    required=True,
    help="The data file to write; its record goes to DATA.prepare.json beside it.",
)
@click.option(
    "--bin-ms", type=float, default=10.0, show_default=True, metavar="MS", help="Bin width in milliseconds."
)
@click.option(
    "--align",
    metavar="COLUMN",
    default=None,
    help="Trials-table time column to align on (e.g. move_onset_time, start_time); needs --window. "
    "Default: whole trials from start_time, cut to the shortest.",
)
@click.option(
    "--window",
    nargs=2,
    type=float,
    default=None,
    metavar="START_MS END_MS",
    help="Window around --align, in ms (e.g. --window -250 450).",
)
@click.option(
    "--chop",
    is_flag=True,
    help="Ignore the trials and cut the whole recording into overlapping segments (automatic when the file "
    "has no trials table).",
)
@click.option(
    "--chop-ms", type=float, default=1000.0, show_default=True, metavar="MS", help="Segment length."
)
@click.option(
    "--overlap-ms",
    type=float,
    default=200.0,
    show_default=True,
    metavar="MS",
    help="Overlap of consecutive segments (merged back by a linear cross-fade).",
)
@click.option(
    "--forward-ms",
    type=float,
    default=0.0,
    show_default=True,
    metavar="MS",
    help="Forward-prediction time after each trial/segment (in recon_data only).",
)
@click.option(
    "--heldout",
    default="0",
    show_default=True,
    metavar="N|ID,ID,...",
    callback=_parse_heldout,
    help="Held-out units: a count N (chosen with --seed) or a list of unit ids (3,17,42; one id: 17,).",
)
@click.option(
    "--valid-fraction",
    type=float,
    default=0.2,
    show_default=True,
    metavar="F",
    help="Share of trials/segments drawn (with --seed) for validation, unless --split-column is given.",
)
@click.option(
    "--split-column",
    metavar="COLUMN",
    default=None,
    help="Trials-table column with train / val / test / none per trial (the NLB convention).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    metavar="N",
    help="Seed of the held-out and split draws.",
)
@click.option(
    "--ext-input",
    multiple=True,
    metavar="SERIES",
    help="A TimeSeries (name or path, e.g. hand_vel) to give the model as external input; repeatable.",
)
@click.option(
    "--units-where",
    multiple=True,
    metavar="COLUMN=VALUE[,VALUE]",
    help="Keep units whose COLUMN is one of the values (e.g. quality=good); repeatable.",
)
@click.option(
    "--trials-where",
    multiple=True,
    metavar="COLUMN=VALUE[,VALUE]",
    help="Keep trials whose COLUMN is one of the values (e.g. result=R); repeatable.",
)
@force_option
def prepare(nwb: str, out: str, force: bool, window: tuple[float, float] | None, **options: Any) -> None:
    """Bin an NWB recording's spikes into a data file for train/run, with a record of every choice.

    Trials are aligned on a trials-table column (or kept whole); a recording without trials (or with
    --chop) is cut into overlapping segments that `autolfads merge` puts back together after inference.

    \b
    Examples:
      autolfads prepare session.nwb --out session.h5 --align move_onset_time --window -250 450 --heldout 10
      autolfads prepare rec.nwb --out rec.h5 --chop --chop-ms 1000 --overlap-ms 200
    """
    from autolfads.data.prepare import PrepareOptions
    from autolfads.data.prepared import prepare_nwb

    for key in ("ext_input", "units_where", "trials_where"):
        options[key] = tuple(options[key])
    prepared, written, record = prepare_nwb(
        nwb, out, PrepareOptions(window_ms=window or None, **options), force=force
    )
    for warning in prepared.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"wrote {written}: {prepared.summary()}; record in {record}")


# ---------------------------------------------------------------------------------------------- merge
@main.command("merge")
@click.argument("output", metavar="OUTPUT.h5")
@click.option(
    "--out",
    "-o",
    metavar="CONTINUOUS.h5",
    required=True,
    help="The continuous file: rates (Hz), factors, spikes and timestamps in the NWB time base.",
)
@click.option(
    "--record",
    metavar="DATA.prepare.json",
    default=None,
    help="The prepare record, if OUTPUT.h5 does not carry it (it does when made from prepare's file).",
)
@click.option(
    "--nwb-out",
    metavar="COPY.nwb",
    default=None,
    help="Also write a copy of the source NWB file with the rates and factors in an 'lfads' processing "
    "module.",
)
@click.option(
    "--nwb",
    "nwb_source",
    metavar="SOURCE.nwb",
    default=None,
    help="Where the source NWB file is now (default: the path in the record; its checksum must match).",
)
@force_option
def merge_command(
    output: str, out: str, record: str | None, nwb_out: str | None, nwb_source: str | None, force: bool
) -> None:
    """Stitch the segment outputs of a chopped recording back into continuous rates and factors.

    OUTPUT.h5 is the lfads_output_sess0.h5 that train, run or infer wrote for a file that
    `autolfads prepare` chopped. Overlaps are merged by a linear cross-fade (docs/data.md).

    \b
    Example:
      autolfads merge runs/rec/lfads_output_sess0.h5 --out rec_rates.h5 --nwb-out rec_lfads.nwb
    """
    from autolfads.data.merge import merge_output, write_merged
    from autolfads.data.prepared import read_record, refuse_existing

    targets = [Path(out)] + ([Path(nwb_out)] if nwb_out else [])
    refuse_existing(targets, force)
    if Path(out).exists() and Path(out).resolve() == Path(output).resolve():
        raise AutoLFADSError(f"--out {out} is the file being merged; choose another name")
    merged = merge_output(output, read_record(record) if record else None)
    written: list[Any] = [write_merged(merged, out)]
    if nwb_out:
        from autolfads.data.nwb_export import write_nwb_copy

        copied_from = nwb_source or merged.record["source"]["path"]
        written.append(
            f"{write_nwb_copy(merged, nwb_out, nwb_source)} (a copy of {copied_from} + lfads module)"
        )
    n_segments = len(merged.record["chop"]["segment_starts_bins"])
    click.echo(
        f"merged {n_segments} segments into {len(merged.timestamps)} bins x {merged.rates_hz.shape[1]} "
        f"units; wrote {', '.join(map(str, written))}"
    )


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
    help="An existing Ray cluster, e.g. ray://head:10001 (also: RAY_ADDRESS). Default: local Ray.",
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
    help="Serve Prometheus /metrics on port N for this run (also: AUTOLFADS_METRICS_PORT; 0: any free "
    "port; off by default). A port that cannot be bound is a warning. On Kubernetes leave it off: the "
    "operator exports every job's metrics.",
)
@click.option(
    "--register-model",
    metavar="NAME",
    default=None,
    help="Register the best model in the MLflow model registry under NAME (a new version each run).",
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
    from autolfads.tune.driver import RunInterrupted

    try:
        result = run_command(data, out, config=config, overrides=overrides, **options)
    except RunInterrupted as interrupted:
        click.echo(str(interrupted), err=True)
        sys.exit(130)  # the shell's code for a run stopped by Ctrl-C
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
