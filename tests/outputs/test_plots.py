"""Plots from a run directory laid out as a real run leaves it (contracts §6)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from autolfads.data.synthetic import write_lorenz
from autolfads.errors import AutoLFADSError
from autolfads.outputs.plots import make_plots, principal_components
from autolfads.tune.history import ExploitRecord, write_history_csv
from tests.services import list_keys

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_fitlog(run: Path, workers: int = 4, epochs: int = 12, generation_len: int = 4) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for worker in range(workers):
        lr = 0.004 * (1 + worker)
        smth = None
        for epoch in range(epochs):
            if epoch and epoch % generation_len == 0 and worker % 2:
                lr *= 0.8
            recon = 0.3 + 1.0 / (epoch + 1) + 0.02 * worker + rng.normal(0, 0.005)
            smth = recon if smth is None else 0.7 * smth + 0.3 * recon
            rows.append(
                {
                    "epoch": epoch,
                    "worker_id": worker,
                    "generation": epoch // generation_len,
                    "train/recon": recon - 0.02,
                    "valid/recon": recon,
                    "valid/recon_smth": smth,
                    "hp/lr_init": lr,
                    "hp/dropout_rate": 0.05 + 0.05 * worker,
                    "lr-AdamW": lr,
                }
            )
    pd.DataFrame(rows).to_csv(run / "fitlog.csv", index=False)


def _write_history(run: Path) -> None:
    records = [
        ExploitRecord(
            generation=gen,
            epoch=4 * (gen + 1),
            loser=loser,
            winner=loser - 1,
            loser_trial=f"t{loser}",
            winner_trial=f"t{loser - 1}",
            loser_score=1.0,
            winner_score=0.9,
            old={"lr_init": 0.008},
            winner_hps={"lr_init": 0.004},
            new={"lr_init": 0.0032},
            operations={"lr_init": "* 0.8"},
        )
        for gen in range(2)
        for loser in (1, 3)
    ]
    write_history_csv(records, run / "pbt_history.csv")


def _write_output(run: Path, truth: bool = True) -> None:
    """A posterior-sampling output: the data file plus ``*_output_params`` and ``*_factors``."""
    path = write_lorenz(run / "lfads_output_sess0.h5", n_trials=40, n_conditions=4, n_neurons=12)
    rng = np.random.default_rng(1)
    with h5py.File(path, "a") as h5:
        for split in ("train", "valid"):
            rates = h5[f"{split}_truth"][()] / h5["conversion_factor"][()]
            h5[f"{split}_output_params"] = (rates * rng.uniform(0.8, 1.2, rates.shape)).astype(np.float32)
            latents = h5[f"{split}_latents"][()]
            mixing = rng.normal(size=(latents.shape[2], 8))
            h5[f"{split}_factors"] = np.tanh(latents @ mixing).astype(np.float32)
            if not truth:
                del h5[f"{split}_truth"]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    _write_fitlog(run)
    _write_history(run)
    _write_output(run)
    return run


def _assert_png(path: Path, min_bytes: int = 10_000) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes, f"{path.name} is only {len(data)} bytes"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, f"{path.name} looks blank"
    return image.size


def test_a_full_run_gets_all_four_plots_as_real_pngs(run_dir: Path) -> None:
    paths = make_plots(run_dir)

    assert sorted(p.name for p in paths) == [
        "factors_sess0.png",
        "hp_trajectories.png",
        "rates_sess0.png",
        "recon.png",
    ]
    for path in paths:
        assert path.parent == run_dir / "plots"
        _assert_png(path)


def test_rates_plot_without_truth_has_one_panel_less(run_dir: Path, tmp_path: Path) -> None:
    with_truth = _assert_png(next(p for p in make_plots(run_dir) if p.name == "rates_sess0.png"))
    bare = tmp_path / "bare"
    bare.mkdir()
    _write_output(bare, truth=False)

    without = _assert_png(next(p for p in make_plots(bare) if p.name == "rates_sess0.png"))

    assert without[0] < with_truth[0]


def test_plots_are_drawn_from_the_zip_alone(run_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "autolfads.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in ("fitlog.csv", "lfads_output_sess0.h5", "pbt_history.csv"):
            archive.write(run_dir / name, arcname=name)

    paths = make_plots(bundle)

    assert len(paths) == 4
    assert all(p.parent == tmp_path / "plots" for p in paths)


def test_a_single_model_fitlog_without_pbt_columns_still_plots_recon(tmp_path: Path) -> None:
    pd.DataFrame({"epoch": range(5), "train/recon": np.linspace(1, 0.5, 5), "valid/recon": 0.6}).to_csv(
        tmp_path / "fitlog.csv", index=False
    )

    paths = make_plots(tmp_path)

    assert [p.name for p in paths] == ["recon.png"]
    _assert_png(paths[0], min_bytes=5_000)


def test_an_empty_directory_is_refused_with_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(AutoLFADSError, match=r"nothing to plot in .*: expected fitlog\.csv"):
        make_plots(tmp_path)
    with pytest.raises(AutoLFADSError, match=r"no such run directory"):
        make_plots(tmp_path / "missing")


def test_principal_components_find_a_planted_three_dimensional_structure() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(20, 30, 3)) * np.array([3.0, 2.0, 1.0])
    factors = latent @ rng.normal(size=(3, 10))

    projected, ratio = principal_components(factors)

    assert projected.shape == (20, 30, 3)
    assert ratio.sum() == pytest.approx(1.0, abs=1e-9)
    assert list(ratio) == sorted(ratio, reverse=True)


@pytest.mark.slow
def test_plots_for_a_run_in_object_storage_are_uploaded_next_to_it(run_dir: Path, s3_bucket: str) -> None:
    from autolfads import storage

    storage.copy_local_to_uri(run_dir, f"s3://{s3_bucket}/runs/demo")

    paths = make_plots(f"s3://{s3_bucket}/runs/demo")

    keys = list_keys(storage.endpoint_url() or "", s3_bucket, "runs/demo/plots/")
    assert sorted(keys) == sorted(f"runs/demo/plots/{p.name}" for p in paths)
    assert len(keys) == 4


def test_cli_plot_writes_the_pngs_and_refuses_an_empty_dir_in_one_line(run_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from autolfads.cli import main

    ok = CliRunner().invoke(main, ["plot", str(run_dir)])
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = CliRunner().invoke(main, ["plot", str(empty)])

    assert ok.exit_code == 0, ok.output
    assert f"wrote {run_dir / 'plots' / 'recon.png'}" in ok.output
    assert refused.exit_code == 1
    assert refused.output.strip().startswith("Error: nothing to plot in")
    assert len(refused.output.strip().splitlines()) == 1


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list:
    """The figures the plots save, kept for inspection (and still written)."""
    from autolfads.outputs import plots

    figures: list = []
    save = plots._save

    def keep(figure, path):  # type: ignore[no-untyped-def]
        figures.append(figure)
        return save(figure, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_the_best_worker_is_the_lowest_last_smoothed_valid_cost(run_dir: Path) -> None:
    from autolfads.outputs.plots import best_worker

    fitlog = pd.read_csv(run_dir / "fitlog.csv")
    assert best_worker(fitlog) == 0  # _write_fitlog makes worker 0 the lowest
    fitlog.loc[(fitlog.worker_id == 2) & (fitlog.epoch == 11), "valid/recon_smth"] = 0.01
    assert best_worker(fitlog) == 2
    assert best_worker(fitlog.drop(columns=["worker_id"])) is None


def test_recon_plot_names_workers_highlights_the_best_and_marks_every_exploit(
    run_dir: Path, drawn: list
) -> None:
    from autolfads.outputs.plots import plot_recon

    fitlog, history = pd.read_csv(run_dir / "fitlog.csv"), pd.read_csv(run_dir / "pbt_history.csv")
    assert plot_recon(fitlog, run_dir / "recon.png", history) is not None
    (figure,) = drawn
    valid = figure.axes[1]
    labels = [t.get_text() for t in valid.get_legend().get_texts()]
    assert labels[:4] == ["worker 0 (best)", "worker 1", "worker 2", "worker 3"]
    assert "exploit (took a winner's checkpoint)" in labels
    widths = {line.get_label(): line.get_linewidth() for line in valid.get_lines()}
    assert widths["worker 0 (best)"] > max(widths[f"worker {w}"] for w in (1, 2, 3))
    marks = [line for line in valid.get_lines() if line.get_marker() == "x"]
    assert len(marks) == len(history) == 4
    assert "best: worker 0" in figure.get_suptitle()


def test_hp_plot_has_a_worker_legend(run_dir: Path, drawn: list) -> None:
    make_plots(run_dir)
    (figure,) = [f for f in drawn if "Hyperparameters" in f.get_suptitle()]
    legends = [a.get_legend() for a in figure.axes if a.get_legend() is not None] + figure.legends
    texts = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert {"worker 0 (best)", "worker 1", "worker 2", "worker 3"} <= texts


def test_rates_plot_labels_colour_bars_and_gives_r2_against_the_truth(run_dir: Path, drawn: list) -> None:
    from autolfads.outputs.quality import r2_score

    make_plots(run_dir)
    (figure,) = [f for f in drawn if "valid trials" in f.get_suptitle()]
    title = figure.get_suptitle()
    with h5py.File(run_dir / "lfads_output_sess0.h5") as h5:
        n = int(title.split("(")[-1].split()[0])
        truth = h5["valid_truth"][:n] / h5["conversion_factor"][()]
        expected = r2_score(h5["valid_output_params"][:n], truth)
    assert f"rates vs truth R² = {expected:.3f} ({n} trials)" in title
    bar_labels = {a.get_ylabel() for a in figure.axes}
    assert {"spikes per bin", "rate (spikes per bin)"} <= bar_labels
