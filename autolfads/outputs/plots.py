"""The plots people look at first, drawn from a run's output directory (``autolfads plot OUT``).

=========================  ===================================================  ==============================
file (in ``OUT/plots/``)   shows                                                from
=========================  ===================================================  ==============================
``recon.png``              train and valid reconstruction cost per worker over  ``fitlog.csv``
                           epochs (the AutoLFADS FAQ's first check)
``hp_trajectories.png``    each PBT hyperparameter per worker over epochs,      ``fitlog.csv`` +
                           generation boundaries, exploits marked               ``pbt_history.csv``
``rates_sess{s}.png``      inferred rates against the spikes (and the true      ``lfads_output_sess{s}.h5``
                           rates when the data has them) for a few trials
``factors_sess{s}.png``    latent factor trajectories in their first 3 PCs      ``lfads_output_sess{s}.h5``
=========================  ===================================================  ==============================

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, no display, safe
in a Ray driver thread). A plot whose inputs are missing is skipped; ``make_plots`` fails only when there
is nothing at all to draw. ``OUT`` may be an ``s3://`` prefix: the inputs are staged locally and the
PNGs uploaded to ``OUT/plots/``.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolfads.constants import GENERATION, HP_PREFIX, PBT_METRIC, WORKER_ID, split_metric
from autolfads.errors import AutoLFADSError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

log = logging.getLogger("autolfads.outputs")

PLOTS_DIR = "plots"
FITLOG = "fitlog.csv"
HISTORY = "pbt_history.csv"
OUTPUT_GLOB = "lfads_output_sess*.h5"
N_EXAMPLE_TRIALS = 3
N_TRAJECTORIES = 12
DPI = 110


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Write the PNG through a temporary name, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    figure.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _workers(frame: pd.DataFrame) -> list[tuple[Any, pd.DataFrame]]:
    if WORKER_ID not in frame.columns:
        return [(None, frame.sort_values("epoch"))]
    return [(w, part.sort_values("epoch")) for w, part in frame.groupby(WORKER_ID, sort=True)]


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


# --- fitlog plots -----------------------------------------------------------------------------------------


def best_worker(fitlog: pd.DataFrame, mode: str = "min") -> Any:
    """The member with the best last-reported ``valid/recon_smth`` (the run's selection rule); None
    without PBT columns."""
    if WORKER_ID not in fitlog.columns or PBT_METRIC not in fitlog.columns:
        return None
    last = fitlog.dropna(subset=[PBT_METRIC]).sort_values("epoch").groupby(WORKER_ID)[PBT_METRIC].last()
    if last.empty:
        return None
    return last.idxmin() if mode == "min" else last.idxmax()


def _style(worker: Any, best: Any) -> dict[str, Any]:
    """The best worker stands out: thick and on top; the others thinner and a little faded."""
    if best is None:
        return {"lw": 1.2}
    if worker == best:
        return {"lw": 2.6, "zorder": 5}
    return {"lw": 1.0, "alpha": 0.7}


def _label(worker: Any, best: Any) -> str:
    if worker is None:
        return "model"
    return f"worker {worker}" + (" (best)" if worker == best else "")


def _wants_log(values: Any) -> bool:
    """A log axis when positive costs span a lot: early epochs would squash the rest of the curves."""
    values = values[np.isfinite(values)]
    return bool(len(values) and (values > 0).all() and values.max() > 3 * np.median(values))


def plot_recon(fitlog: pd.DataFrame, path: Path, history: pd.DataFrame | None = None) -> Path | None:
    """Train and valid reconstruction cost per worker over epochs; ``valid/recon_smth`` dashed; the best
    worker highlighted; each exploit marked where the loser's valid curve jumps to the winner's."""
    columns = [split_metric(s, "recon") for s in ("train", "valid")]
    if "epoch" not in fitlog.columns or not any(c in fitlog.columns for c in columns):
        return None
    figure = _figure(11, 4.4)
    axes = figure.subplots(1, 2, sharey=True)
    workers = _workers(fitlog)
    colors = _colors(len(workers))
    best = best_worker(fitlog)
    for ax, column in zip(axes, columns, strict=True):
        for (worker, part), color in zip(workers, colors, strict=True):
            style = _style(worker, best)
            if column in part.columns:
                ax.plot(part["epoch"], part[column], color=color, label=_label(worker, best), **style)
            if column.startswith("valid") and PBT_METRIC in part.columns:
                ax.plot(
                    part["epoch"],
                    part[PBT_METRIC],
                    color=color,
                    ls="--",
                    **{**style, "lw": style["lw"] * 0.7},
                )
        if column.startswith("valid"):
            _mark_recon_exploits(
                ax, fitlog, history, column, dict(zip([w for w, _ in workers], colors, strict=True))
            )
        ax.set_title(column + (f" (dashed: {PBT_METRIC})" if column.startswith("valid") else ""))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    present = [c for c in columns if c in fitlog.columns]
    if _wants_log(fitlog[present].to_numpy(dtype=float).ravel()):
        for ax in axes:
            ax.set_yscale("log")
    axes[0].set_ylabel("reconstruction cost (NLL per bin)")
    if len(workers) <= 16:
        axes[1].legend(fontsize="small", ncols=2 if len(workers) > 4 else 1)
    title = "Reconstruction cost per worker"
    if best is not None:
        title += f" (best: worker {best})"
    figure.suptitle(title)
    return _save(figure, path)


def _mark_recon_exploits(
    ax: Any, fitlog: pd.DataFrame, history: pd.DataFrame | None, column: str, colors: dict[Any, Any]
) -> None:
    """An ``x`` on the loser's curve at the first epoch after each exploit (where its curve jumps)."""
    if history is None or not len(history) or not {"epoch", "loser"} <= set(history.columns):
        return
    marked = False
    for _, row in history.iterrows():
        loser = _as_int(row["loser"])
        rows = fitlog[(fitlog.get(WORKER_ID) == loser) & (fitlog["epoch"] == int(row["epoch"]))]
        if rows.empty or column not in rows.columns:
            continue
        ax.plot(
            [int(row["epoch"])],
            [float(rows[column].iloc[0])],
            marker="x",
            ms=8,
            mew=2,
            color=colors.get(loser, "k"),
            ls="none",
            zorder=6,
            label=None if marked else "exploit (took a winner's checkpoint)",
        )
        marked = True


def plot_hp_trajectories(fitlog: pd.DataFrame, history: pd.DataFrame | None, path: Path) -> Path | None:
    """Each ``hp/*`` per worker over epochs; generation boundaries as lines; exploits as markers.

    An exploit (a ``pbt_history.csv`` row) is drawn at the boundary epoch on the loser's new value, with
    a thin line from the winner's value it cloned.
    """
    # Hyperparameters PBT never touched (one value everywhere) would be flat lines: left out.
    hp_columns = [c for c in fitlog.columns if c.startswith(HP_PREFIX) and fitlog[c].nunique() > 1]
    if "epoch" not in fitlog.columns or not hp_columns:
        return None
    ncols = min(3, len(hp_columns))
    nrows = math.ceil(len(hp_columns) / ncols)
    figure = _figure(4.2 * ncols, 3.0 * nrows)
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False)).ravel()
    workers = _workers(fitlog)
    colors = dict(zip([w for w, _ in workers], _colors(len(workers)), strict=True))
    boundaries = _boundaries(fitlog, history)
    best = best_worker(fitlog)
    for ax, column in zip(axes, hp_columns, strict=False):
        name = column.removeprefix(HP_PREFIX)
        for worker, part in workers:
            style = {**_style(worker, best), "lw": _style(worker, best)["lw"] * 0.9}
            ax.step(
                part["epoch"],
                part[column],
                where="post",
                color=colors[worker],
                label=_label(worker, best),
                **style,
            )
        for epoch in boundaries:
            ax.axvline(epoch, color="0.6", lw=0.6, ls=":")
        if history is not None:
            _mark_exploits(ax, history, name, colors)
        values = fitlog[column].dropna()
        if len(values) and (values > 0).all() and values.max() / values.min() > 20:
            ax.set_yscale("log")
        ax.set_title(column)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[len(hp_columns) :]:
        ax.set_axis_off()
    if len(workers) <= 16:
        handles, labels = axes[0].get_legend_handles_labels()
        if len(axes) > len(hp_columns):  # an empty panel holds the legend
            axes[len(hp_columns)].legend(handles, labels, loc="center", fontsize="small", title="workers")
        else:
            figure.legend(
                handles, labels, loc="outside lower center", fontsize="small", ncols=min(len(labels), 6)
            )
    n_exploits = 0 if history is None else len(history)
    best_text = f"; best: worker {best}" if best is not None else ""
    figure.suptitle(
        f"Hyperparameters per worker ({n_exploits} exploits marked x; dotted: generations{best_text})"
    )
    return _save(figure, path)


def _boundaries(fitlog: pd.DataFrame, history: pd.DataFrame | None) -> list[float]:
    if history is not None and "epoch" in history.columns and len(history):
        return sorted({float(e) for e in history["epoch"].dropna()})
    if GENERATION in fitlog.columns:
        starts = fitlog.groupby(GENERATION)["epoch"].min().sort_index()
        return [float(e) for e in starts.iloc[1:]]
    return []


def _history_column(history: pd.DataFrame, prefix: str, name: str) -> str | None:
    """``new/model.lr_init`` (or ``new/lr_init``, ``new/hp/lr_init``) for the fitlog's ``hp/lr_init``."""
    for column in history.columns:
        if column.startswith(prefix) and column[len(prefix) :].rsplit(".", 1)[-1].rsplit("/", 1)[-1] == name:
            return str(column)
    return None


def _mark_exploits(ax: Any, history: pd.DataFrame, name: str, colors: dict[Any, Any]) -> None:
    new_col = _history_column(history, "new/", name)
    if new_col is None or "epoch" not in history.columns:
        return
    winner_col = _history_column(history, "winner/", name)
    for _, row in history.iterrows():
        loser = row.get("loser")
        color = colors.get(loser, colors.get(_as_int(loser), "k"))
        ax.plot([row["epoch"]], [row[new_col]], marker="x", ms=7, mew=2, color=color, ls="none")
        if winner_col is not None and not _isnan(row[winner_col]):
            ax.plot([row["epoch"], row["epoch"]], [row[winner_col], row[new_col]], color=color, lw=0.8)


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


# --- posterior-sampling output plots ------------------------------------------------------------------


def _read_output(path: Path, split: str = "valid") -> dict[str, np.ndarray]:
    """The arrays the plots need from one ``lfads_output_sess*.h5`` (valid split, else train)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        if f"{split}_output_params" not in h5:
            split = "train"
        for name in ("output_params", "recon_data", "truth", "factors"):
            key = f"{split}_{name}"
            if key in h5:
                arrays[name] = np.asarray(h5[key][: max(N_TRAJECTORIES, N_EXAMPLE_TRIALS) * 4])
        if "conversion_factor" in h5:
            arrays["conversion_factor"] = np.asarray(h5["conversion_factor"][()])
    arrays["split"] = np.asarray(split)
    return arrays


def plot_rates(arrays: dict[str, np.ndarray], path: Path, title: str) -> Path | None:
    """Per example trial: spikes, inferred rates and true rates as heatmaps (neurons × time), plus the
    busiest neuron's spikes, rate and truth as lines."""
    rates, spikes = arrays.get("output_params"), arrays.get("recon_data")
    if rates is None or spikes is None or rates.ndim != 3:
        return None
    truth = arrays.get("truth")
    if truth is not None:
        truth = truth / float(arrays.get("conversion_factor", 1.0))
        if not np.isfinite(truth).any() or truth.shape[:2] != rates.shape[:2]:
            truth = None
    n_channels = min(rates.shape[2], spikes.shape[2])
    n_steps = min(rates.shape[1], spikes.shape[1])
    panels = ["spikes", "inferred rates"] + (["true rates"] if truth is not None else []) + ["busiest neuron"]
    n_trials = min(N_EXAMPLE_TRIALS, rates.shape[0])
    figure = _figure(3.6 * len(panels), 2.6 * n_trials)
    axes = figure.subplots(n_trials, len(panels), squeeze=False)
    for row in range(n_trials):
        data = {
            "spikes": spikes[row, :n_steps, :n_channels],
            "inferred rates": rates[row, :n_steps, :n_channels],
        }
        if truth is not None:
            data["true rates"] = truth[row, :n_steps, :n_channels]
        vmax = float(np.nanmax(data["inferred rates"])) or 1.0
        for col, panel in enumerate(panels[:-1]):
            ax = axes[row, col]
            image = ax.imshow(
                data[panel].T,
                aspect="auto",
                origin="lower",
                interpolation="nearest",
                cmap="Greys" if panel == "spikes" else "viridis",
                vmin=0,
                vmax=None if panel == "spikes" else vmax,
            )
            bar = figure.colorbar(image, ax=ax, fraction=0.05)
            bar.set_label(
                "spikes per bin" if panel == "spikes" else "rate (spikes per bin)", fontsize="small"
            )
            ax.set_title(f"trial {row}: {panel}", fontsize="small")
            ax.set_ylabel("neuron")
            ax.set_xlabel("time bin")
        neuron = int(np.nanargmax(spikes[row, :n_steps, :n_channels].sum(axis=0)))
        ax = axes[row, -1]
        ax.bar(np.arange(n_steps), spikes[row, :n_steps, neuron], color="0.75", width=1.0, label="spikes")
        ax.plot(rates[row, :n_steps, neuron], color="C0", lw=1.5, label="inferred rate")
        if truth is not None:
            ax.plot(truth[row, :n_steps, neuron], color="C3", lw=1.2, ls="--", label="true rate")
        ax.set_title(f"trial {row}: neuron {neuron}", fontsize="small")
        ax.set_xlabel("time bin")
        ax.set_ylabel("count / rate per bin")
        if row == 0:
            ax.legend(fontsize="x-small")
    if truth is not None:
        title += f"; rates vs truth R² = {_r2(arrays['output_params'], truth):.3f} ({len(truth)} trials)"
    figure.suptitle(title)
    return _save(figure, path)


def _r2(rates: np.ndarray, truth: np.ndarray) -> float:
    """R² of the inferred rates against the true rates over the plotted split (the trials read)."""
    from autolfads.outputs.quality import r2_score

    n = min(rates.shape[0], truth.shape[0])
    channels = min(rates.shape[2], truth.shape[2])
    return r2_score(rates[:n, :, :channels], truth[:n, :, :channels])


def principal_components(factors: np.ndarray, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Project ``(B, T, F)`` factors onto their first ``n`` PCs (fitted on all time points).

    Returns the ``(B, T, n)`` projection and the explained-variance ratio of each component.
    """
    batch, steps, dim = factors.shape
    flat = factors.reshape(batch * steps, dim).astype(np.float64)
    flat = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    k = min(n, vt.shape[0])
    variance = singular**2
    ratio = variance[:k] / variance.sum() if variance.sum() > 0 else np.zeros(k)
    return (flat @ vt[:k].T).reshape(batch, steps, k), ratio


def plot_factors(arrays: dict[str, np.ndarray], path: Path, title: str) -> Path | None:
    """Factor trajectories of a dozen trials in 3-D PC space: green starts, red ends."""
    factors = arrays.get("factors")
    if factors is None or factors.ndim != 3 or factors.shape[0] == 0:
        return None
    import mpl_toolkits.mplot3d  # noqa: F401 - registers the 3-D projection

    projected, ratio = principal_components(factors[:N_TRAJECTORIES])
    if projected.shape[2] < 3:
        projected = np.concatenate(
            [projected, np.zeros((*projected.shape[:2], 3 - projected.shape[2]))], axis=2
        )
    figure = _figure(6.5, 5.5)
    ax = figure.add_subplot(projection="3d")
    for trial in projected:
        ax.plot(trial[:, 0], trial[:, 1], trial[:, 2], color="0.4", lw=0.9)
        ax.scatter(*trial[0], color="tab:green", s=14)
        ax.scatter(*trial[-1], color="tab:red", s=14)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_zlabel("PC 3")
    explained = ", ".join(f"{r:.0%}" for r in ratio)
    ax.set_title(f"{title}\nexplained variance {explained} (total {ratio.sum():.0%})", fontsize="small")
    return _save(figure, path)


# --- the entry point --------------------------------------------------------------------------------------


def _read_csv(path: Path) -> pd.DataFrame | None:
    import pandas as pd

    from autolfads.outputs.fitlog import read_fitlog

    if not path.is_file():
        return None
    try:
        return read_fitlog(path) if path.name == FITLOG else pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        log.warning("cannot read %s for plots: %s", path, exc)
        return None


def _read_fitlog(path: Path) -> pd.DataFrame | None:
    """``fitlog.csv`` through its own reader (which knows every layout it was written in)."""
    import pandas as pd

    from autolfads.outputs.fitlog import read_fitlog

    if not path.is_file():
        return None
    try:
        return read_fitlog(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        log.warning("cannot read %s for plots: %s", path, exc)
        return None


def _plots_from_local(run_dir: Path, plots_dir: Path) -> list[Path]:
    written: list[Path | None] = []
    fitlog = _read_fitlog(run_dir / FITLOG)
    history = _read_csv(run_dir / HISTORY)
    if fitlog is not None:
        written.append(plot_recon(fitlog, plots_dir / "recon.png", history))
        written.append(plot_hp_trajectories(fitlog, history, plots_dir / "hp_trajectories.png"))
    for output in sorted(run_dir.glob(OUTPUT_GLOB)):
        session = output.stem.rsplit("_sess", 1)[-1]
        try:
            arrays = _read_output(output)
        except OSError as exc:
            log.warning("cannot read %s for plots: %s", output, exc)
            continue
        split = str(arrays["split"])
        written.append(
            plot_rates(arrays, plots_dir / f"rates_sess{session}.png", f"{output.name}, {split} trials")
        )
        written.append(
            plot_factors(arrays, plots_dir / f"factors_sess{session}.png", f"{output.name}, {split} factors")
        )
    return [p for p in written if p is not None]


def _stage_zip(zip_path: Path, into: Path) -> None:
    import zipfile

    with zipfile.ZipFile(zip_path) as bundle:
        for member in bundle.namelist():
            name = Path(member).name
            if name in (FITLOG, HISTORY) or Path(name).match(OUTPUT_GLOB):
                (into / name).write_bytes(bundle.read(member))


def make_plots(
    out_dir: str | os.PathLike[str], plots_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Draw every plot the run's outputs allow into ``OUT/plots/`` (or ``plots_dir``); return the PNGs.

    ``out_dir`` is a run directory, an ``autolfads.zip``, or an ``s3://`` run prefix (inputs staged, PNGs
    uploaded to ``OUT/plots/``; the returned paths are then the local copies). Raises AutoLFADSError when
    there is nothing to plot.
    """
    from autolfads import storage

    text = str(out_dir)
    if storage.is_remote(text):
        with tempfile.TemporaryDirectory(prefix="autolfads-plots-") as tmp:
            staged = Path(tmp)
            for name in (FITLOG, HISTORY, "lfads_output_sess0.h5", "autolfads.zip"):
                uri = storage.join_uri(text, name)
                if storage.exists(uri):
                    (staged / name).write_bytes(
                        Path(storage.download_to_local(uri, staged / ".cache")).read_bytes()
                    )
            if not (staged / FITLOG).exists() and (staged / "autolfads.zip").exists():
                _stage_zip(staged / "autolfads.zip", staged)
            local_plots = Path(plots_dir) if plots_dir else Path(tempfile.mkdtemp(prefix="autolfads-plots-"))
            paths = _plots_or_fail(staged, local_plots, text)
            for path in paths:
                storage.atomic_upload(path, storage.join_uri(text, PLOTS_DIR, path.name))
            return paths
    source = Path(text)
    if source.is_file() and source.suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="autolfads-plots-") as tmp:
            _stage_zip(source, Path(tmp))
            return _plots_or_fail(Path(tmp), Path(plots_dir or source.parent / PLOTS_DIR), text)
    if not source.is_dir():
        raise AutoLFADSError(f"cannot plot {text}: no such run directory or autolfads.zip")
    if not (source / FITLOG).exists() and (source / "autolfads.zip").is_file():
        with tempfile.TemporaryDirectory(prefix="autolfads-plots-") as tmp:
            _stage_zip(source / "autolfads.zip", Path(tmp))
            return _plots_or_fail(Path(tmp), Path(plots_dir or source / PLOTS_DIR), text)
    return _plots_or_fail(source, Path(plots_dir or source / PLOTS_DIR), text)


def _plots_or_fail(run_dir: Path, plots_dir: Path, shown: str) -> list[Path]:
    paths = _plots_from_local(run_dir, plots_dir)
    if not paths:
        raise AutoLFADSError(
            f"nothing to plot in {shown}: expected {FITLOG} (with epoch and recon columns) or "
            f"{OUTPUT_GLOB} (with *_output_params)"
        )
    return paths


def draw_run_plots(out_dir: str | os.PathLike[str]) -> list[Path]:
    """``make_plots`` for the end of a run: a plot that fails is a warning, never the run's failure."""
    try:
        return make_plots(out_dir)
    except Exception as exc:  # plotting is a convenience; the model and outputs are already written
        log.warning("plots for %s were not drawn: %s", out_dir, exc)
        return []


def plot_names(paths: Sequence[Path]) -> list[str]:
    """Relative names for the zip/MLflow (``plots/recon.png``)."""
    return [f"{PLOTS_DIR}/{p.name}" for p in paths]


__all__ = [
    "PLOTS_DIR",
    "best_worker",
    "draw_run_plots",
    "make_plots",
    "plot_factors",
    "plot_hp_trajectories",
    "plot_names",
    "plot_rates",
    "plot_recon",
    "principal_components",
]
