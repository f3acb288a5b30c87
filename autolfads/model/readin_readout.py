"""Per-session maps between data channels and the shared latent space (lfads-spec §2.9).

Single session: readin = Identity, readout = ``FanInLinear(fac_dim -> n_channels * n_params)``.
Multi-session: one linear map per data file matched by a glob, in sorted order, either random or initialised
from a principal-components regression stored in each file (``readin_weight`` (N, P), ``readout_bias`` (N)).
"""

from __future__ import annotations

import glob
import math

import h5py
import torch
from torch import nn

from autolfads.errors import ConfigError


class FanInLinear(nn.Linear):
    """``nn.Linear`` with weights N(0, 1/in_features) and zero bias (the LFADS fan-in initialisation)."""

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=1 / math.sqrt(self.in_features))
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def _session_files(datafile_pattern: str, field: str) -> list[str]:
    paths = sorted(glob.glob(datafile_pattern))
    if not paths:
        raise ConfigError(f"model.{field}.datafile_pattern: no file matches {datafile_pattern!r}")
    return paths


def _read(path: str, key: str) -> torch.Tensor:
    with h5py.File(path, "r") as h5:
        if key not in h5:
            raise ConfigError(f"{path}: PCR initialisation needs the dataset {key!r}; found {sorted(h5)}")
        return torch.as_tensor(h5[key][()], dtype=torch.float32)


def _width(path: str, key: str) -> int:
    with h5py.File(path, "r") as h5:
        return int(h5[key].shape[-1])


class MultisessionReadin(nn.ModuleList):
    """One ``nn.Linear`` (channels -> out_features, or -> n_pcs with PCR) per session file.

    PCR: weight = readin_weightᵀ, bias = −(readout_bias · readin_weight), frozen unless ``requires_grad``.
    """

    def __init__(
        self,
        datafile_pattern: str,
        out_features: int | None = None,
        pcr_init: bool = True,
        requires_grad: bool = False,
    ):
        paths = _session_files(datafile_pattern, "readin")
        if pcr_init == (out_features is not None):
            raise ConfigError("model.readin: give out_features for random init or pcr_init=True, not both")
        layers = []
        for path in paths:
            if pcr_init:
                weight, bias = _read(path, "readin_weight"), _read(path, "readout_bias")  # (N, P), (N,)
                layer = nn.Linear(weight.shape[0], weight.shape[1])
                with torch.no_grad():
                    layer.weight.copy_(weight.T)
                    layer.bias.copy_(-(bias @ weight))
            else:
                layer = nn.Linear(_width(path, "train_encod_data"), int(out_features))  # type: ignore[arg-type]
            layer.requires_grad_(requires_grad)
            layers.append(layer)
        super().__init__(layers)


class MultisessionReadout(nn.ModuleList):
    """One ``nn.Linear`` (in_features or n_pcs -> channels × recon_params) per session file.

    PCR: weight = pinv(readin_weight)ᵀ (the least-squares inverse of the readin), bias = readout_bias.
    """

    def __init__(
        self,
        datafile_pattern: str,
        in_features: int | None = None,
        pcr_init: bool = True,
        requires_grad: bool = True,
        recon_params: int = 1,
    ):
        paths = _session_files(datafile_pattern, "readout")
        if pcr_init == (in_features is not None):
            raise ConfigError("model.readout: give in_features for random init or pcr_init=True, not both")
        layers = []
        for path in paths:
            if pcr_init:
                if recon_params != 1:
                    raise ConfigError("model.readout: PCR initialisation supports recon_params=1 only")
                weight, bias = _read(path, "readin_weight"), _read(path, "readout_bias")
                layer = nn.Linear(weight.shape[1], weight.shape[0])
                with torch.no_grad():
                    layer.weight.copy_(torch.linalg.pinv(weight).T)  # pinv (P, N) -> weight (N, P)
                    layer.bias.copy_(bias)
            else:
                width = _width(path, "train_recon_data") * recon_params
                layer = FanInLinear(int(in_features), width)  # type: ignore[arg-type]
            layer.requires_grad_(requires_grad)
            layers.append(layer)
        super().__init__(layers)
