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
@click.option(
    "--mean-rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="HZ",
    help="Firing rate in spikes/s, averaged over neurons and time (default 25; lower = sparser, noisier).",
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


def _already_finished(claim: Any, out: str) -> bool:
    """Print the claim's notes; when the run in ``out`` already finished (``--resume`` of a done run),
    say so: nothing is left to do."""
    _echo_notes(claim)
    if claim.mode != "finished":
        return False
    when = (claim.done or {}).get("finished_at", "?")
    click.echo(f"the run in {out} finished at {when} (DONE.json); nothing to resume")
    return True


def _echo_notes(claim: Any) -> None:
    for note in claim.notes:
        click.echo(f"Note: {note}", err=True)


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
        if _already_finished(claim, out):
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
    type=click.IntRange(min=0, max=65535),
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
    from autolfads.errors import RunInterrupted
    from autolfads.rundir import claim_out
    from autolfads.storage import check_writable

    if resume and force:
        raise click.UsageError("--resume and --force: choose one (continue the run in --out, or replace it)")
    inputs = _checked_inputs(config, overrides, data)
    if inputs.cfg.get("pbt") is None:
        raise ConfigError("pbt: the config has no pbt block; autolfads run needs one (see docs/pbt.md)")
    fingerprint = _fingerprint(inputs, config, overrides)
    check_writable(out)
    try:
        with claim_out(
            out,
            "autolfads run",
            resume=resume,
            force=force,
            fingerprint=fingerprint,
            inputs=_inputs_of(data, config),
        ) as claim:
            if _already_finished(claim, out):
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
    except RunInterrupted as interrupted:  # the state is saved; the message says how to continue
        click.echo(str(interrupted), err=True)
        sys.exit(130)  # the shell's code for a run stopped by Ctrl-C
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
