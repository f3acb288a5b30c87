"""Readin/readout maps: fan-in init and multi-session PCR initialisation (lfads-spec §2.9)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from autolfads.errors import ConfigError
from autolfads.model.readin_readout import FanInLinear, MultisessionReadin, MultisessionReadout


def test_fan_in_linear_init() -> None:
    torch.manual_seed(0)
    layer = FanInLinear(400, 300)
    assert layer.weight.var().item() == pytest.approx(1 / 400, rel=0.05)
    assert torch.equal(layer.bias, torch.zeros(300))


def _session(path: Path, n_channels: int, n_pcs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight, bias = rng.normal(size=(n_channels, n_pcs)), rng.normal(size=n_channels)
    with h5py.File(path, "w") as h5:
        h5["readin_weight"], h5["readout_bias"] = weight, bias
        h5["train_encod_data"] = np.zeros((2, 3, n_channels))
        h5["train_recon_data"] = np.zeros((2, 4, n_channels + 1))
    return weight, bias


def test_pcr_init_maps_centred_data_to_pcs_and_back(tmp_path: Path) -> None:
    _, b1 = _session(tmp_path / "s1.h5", 6, 3, 1)
    w0, b0 = _session(tmp_path / "s0.h5", 5, 3, 0)
    readin = MultisessionReadin(str(tmp_path / "s*.h5"))
    readout = MultisessionReadout(str(tmp_path / "s*.h5"))
    assert [m.in_features for m in readin] == [5, 6]  # sorted by path: s0, s1
    x = torch.randn(4, 5, dtype=torch.float64).float()
    expected = (x.double() - torch.from_numpy(b0)) @ torch.from_numpy(w0)  # centred data onto the PCs
    torch.testing.assert_close(readin[0](x).double(), expected, rtol=1e-4, atol=1e-4)
    assert not readin[0].weight.requires_grad and readout[0].weight.requires_grad
    # the readout inverts the readin on the PC subspace: readout(readin(x)) projects x onto it
    pcs = torch.randn(4, 3)
    recon = readout[1](pcs)
    torch.testing.assert_close(readin[1](recon), pcs, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(readout[1].bias.double(), torch.from_numpy(b1))


def test_random_init_reads_widths_from_the_files(tmp_path: Path) -> None:
    _session(tmp_path / "a.h5", 5, 3, 0)
    readin = MultisessionReadin(str(tmp_path / "*.h5"), out_features=8, pcr_init=False)
    readout = MultisessionReadout(str(tmp_path / "*.h5"), in_features=8, pcr_init=False, recon_params=2)
    assert (readin[0].in_features, readin[0].out_features) == (5, 8)
    assert (readout[0].in_features, readout[0].out_features) == (8, 12)


def test_pattern_matching_nothing_or_both_inits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no file matches"):
        MultisessionReadin(str(tmp_path / "none*.h5"))
    _session(tmp_path / "a.h5", 5, 3, 0)
    with pytest.raises(ConfigError, match="not both"):
        MultisessionReadin(str(tmp_path / "*.h5"), out_features=3, pcr_init=True)
