"""Encoder lag, padding and the nonzero ic_enc_seq_len decision (lfads-spec §2.3, PR #18)."""

from __future__ import annotations

import torch

from autolfads.model.encoders import Encoder


def _encoder(ic_enc_seq_len: int = 0, ci_lag: int = 1) -> Encoder:
    torch.manual_seed(0)
    return Encoder(
        encod_data_dim=3, encod_seq_len=6, recon_seq_len=9, ic_enc_seq_len=ic_enc_seq_len, ic_enc_dim=4,
        ci_enc_dim=2, ci_lag=ci_lag, ic_dim=3, use_con=True, dropout_rate=0.0, cell_clip=5.0,
        ic_post_var_min=1e-4,
    )  # fmt: skip


def test_ci_is_lagged_and_zero_padded_to_recon_length() -> None:
    enc = _encoder(ci_lag=2)
    data = torch.randn(2, 6, 3)
    _, _, ci = enc(data)
    raw, _ = enc.ci_enc(data, enc.ci_enc_h0.expand(-1, 2, -1).contiguous())
    assert ci.shape == (2, 9, 4)
    torch.testing.assert_close(ci[:, 2:6, :2], raw[:, :4, :2])  # forward half two steps later
    torch.testing.assert_close(ci[:, :4, 2:], raw[:, 2:, 2:])  # backward half two steps earlier
    assert torch.equal(ci[:, :2, :2], torch.zeros(2, 2, 2))
    assert torch.equal(ci[:, 6:], torch.zeros(2, 3, 4))  # forward-prediction steps get no data


def test_nonzero_ic_enc_seq_len_splits_the_data_and_pads_ci_at_the_front() -> None:
    enc = _encoder(ic_enc_seq_len=2, ci_lag=0)
    data = torch.randn(2, 6, 3)
    ic_mean, ic_std, ci = enc(data)
    assert ci.shape == (2, 9, 4)
    assert torch.equal(ci[:, :2], torch.zeros(2, 2, 4))
    raw, _ = enc.ci_enc(data[:, 2:], enc.ci_enc_h0.expand(-1, 2, -1).contiguous())
    torch.testing.assert_close(ci[:, 2:6], raw)
    # the IC depends only on the first two steps
    changed = data.clone()
    changed[:, 2:] += 1.0
    torch.testing.assert_close(enc(changed)[0], ic_mean)
    assert (ic_std >= 1e-2).all()  # sqrt(exp(logvar) + 1e-4) is floored


def test_fused_four_direction_path_equals_separate_encoders() -> None:
    enc = _encoder(ci_lag=1)
    enc.ci_enc = type(enc.ic_enc)(3, 4)  # same hidden size as the IC encoder: the fused path applies
    enc.ci_enc_dim = 4
    enc.ci_enc_h0 = torch.nn.Parameter(torch.randn(2, 1, 4))
    assert enc._fusable()
    data = torch.randn(2, 6, 3)
    fused = enc(data)
    enc._fusable = lambda: False  # force the two-encoder path
    separate = enc(data)
    for a, b in zip(fused, separate, strict=True):
        torch.testing.assert_close(a, b)
