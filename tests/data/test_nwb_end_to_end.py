"""NWB → prepare → train / run / infer → merge → NWB, end to end with real LFADS (small models).

- trials: prepare with alignment, held-out units, forward bins, ext_input and the NLB split column; then
  ``autolfads train`` in-process and ``autolfads run`` (PBT on real local Ray, population 2) as a user
  runs them;
- continuous: a 60 s recording chopped into 500 ms segments, a small model trained on them, posterior
  sampling by ``infer``, the outputs merged back into 6000 bins whose overlaps follow the cross-fade and
  whose rates follow the true ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from autolfads.cli import main
from tests.data.nwbfiles import write_session
from tests.outputs.runs import TINY_OVERRIDES
from tests.tune.tiny import tiny_config

pytestmark = pytest.mark.slow

# A model small enough for ~0.3 s epochs on one core that still learns the Lorenz rates in 50 epochs.
SMALL = (
    "model.ic_enc_dim=16",
    "model.ci_enc_dim=8",
    "model.con_dim=8",
    "model.co_dim=0",
    "model.ic_dim=16",
    "model.gen_dim=32",
    "model.fac_dim=6",
    "model.l2_increase_epoch=5",
    "model.kl_increase_epoch=5",
    "model.lr_init=0.02",
    "model.dropout_rate=0.05",
    "datamodule.batch_size=32",
    "trainer.max_epochs=50",
    "trainer.accelerator=cpu",
    "posterior_sampling.num_samples=10",
)


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trials_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trials")
    session = write_session(root / "session.nwb", duration_s=40.0, n_trials=30, n_units=8)
    data = root / "session.h5"
    _invoke(
        "prepare", str(session.path), "--out", str(data),
        "--align", "move_onset_time", "--window", "-200", "300",
        "--heldout", "2", "--forward-ms", "40", "--ext-input", "hand_vel", "--split-column", "split",
    )  # fmt: skip
    _invoke("validate", str(data))
    return data


def test_train_on_prepared_trials(trials_data: Path, tmp_path: Path, one_thread) -> None:
    out = _invoke(
        "train", str(trials_data), "--out", str(tmp_path / "train"), "--threads", "1", *TINY_OVERRIDES
    )
    assert "best valid/recon_smth" in out
    with h5py.File(tmp_path / "train" / "lfads_output_sess0.h5") as f:
        assert f["valid_output_params"].shape == f["valid_recon_data"].shape == (6, 54, 8)
        assert f["train_factors"].shape == (24, 54, 3)
        assert "prepare_json" in f  # the record travels with the outputs


def test_run_on_prepared_trials(trials_data: Path, tmp_path: Path) -> None:
    """AutoLFADS proper: the CLI in a subprocess, as a user starts it (real Ray, 2 members, 2 generations)."""
    config = tiny_config(tmp_path / "cfg.yaml", num_samples=2, max_epochs=2, interval=1)
    isolated = ("AWS_", "MLFLOW_", "RAY_ADDRESS", "KUBECONFIG", "AUTOLFADS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(isolated)}
    env.update(RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true")
    command = [sys.executable, "-m", "autolfads.cli", "run", str(trials_data), "--config", str(config)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "pbt"), "--no-mlflow"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with h5py.File(tmp_path / "pbt" / "lfads_output_sess0.h5") as f:
        assert f["valid_output_params"].shape == (6, 54, 8)
    assert (tmp_path / "pbt" / "autolfads.zip").is_file()


def test_chop_train_merge_returns_truth_correlated_rates_of_the_original_length(
    tmp_path: Path, one_thread
) -> None:
    session = write_session(tmp_path / "rec.nwb", duration_s=60.0, n_units=20, behaviour=False)
    data = tmp_path / "rec.h5"
    _invoke("prepare", str(session.path), "--out", str(data), "--chop-ms", "500", "--overlap-ms", "100")
    _invoke("train", str(data), "--out", str(tmp_path / "run"), "--threads", "1", *SMALL)
    # posterior sampling by `infer`, as for a model trained elsewhere (train and run write the same file)
    checkpoint = str(tmp_path / "run" / "model.ckpt")
    _invoke(
        "infer",
        checkpoint,
        str(data),
        "--out",
        str(tmp_path / "inf"),
        "--num-samples",
        "10",
        "--threads",
        "1",
    )
    output = tmp_path / "inf" / "lfads_output_sess0.h5"
    merged_path, copy = tmp_path / "rates.h5", tmp_path / "rec_lfads.nwb"
    _invoke("merge", str(output), "--out", str(merged_path), "--nwb-out", str(copy))

    with h5py.File(merged_path) as f:
        rates, unit_ids, timestamps = f["rates"][()], f["unit_ids"][()].tolist(), f["timestamps"][()]
    assert rates.shape == (6000, 20)  # the original length: 60 s of 10 ms bins
    np.testing.assert_allclose(timestamps[[0, -1]], [0.005, 59.995])

    # overlap of segments 0 and 1 (bins 40..49): the hand-computed cross-fade of their own outputs
    with h5py.File(output) as f:
        by_segment = {}
        for split in ("train", "valid"):
            for row, segment in enumerate(f[f"{split}_inds"][()]):
                by_segment[int(segment)] = f[f"{split}_output_params"][row]
    incoming = (np.arange(10) + 0.5) / 10
    expected = (1 - incoming)[:, None] * by_segment[0][40:50] + incoming[:, None] * by_segment[1][:10]
    np.testing.assert_allclose(rates[40:50] * 0.01, expected, rtol=1e-4)

    # truth: the generating rates averaged over each 10 ms bin
    truth = session.rates_hz.reshape(6000, 10, -1).mean(1)[:, [session.unit_ids.index(u) for u in unit_ids]]
    with h5py.File(merged_path) as f:
        spikes = f["spikes"][()]
    corr = [np.corrcoef(rates[:, k], truth[:, k])[0, 1] for k in range(20)]
    raw = [np.corrcoef(spikes[:, k], truth[:, k])[0, 1] for k in range(20)]
    assert np.mean(corr) > 0.7, (np.mean(corr), np.mean(raw))  # measured 0.86; raw binned counts 0.40
    assert np.mean(corr) > np.mean(raw) + 0.25

    import pynwb

    with pynwb.NWBHDF5IO(str(copy), "r") as io:
        written = io.read().processing["lfads"]["rates"].data[:]
    np.testing.assert_allclose(written, rates)
