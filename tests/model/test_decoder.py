"""The fast decoder against a step-by-step transcription of lfads-spec §2.4, and factor normalisation."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from autolfads.model.decoder import Decoder


def reference_decode(
    dec: Decoder, ic: torch.Tensor, ci: torch.Tensor, ext: torch.Tensor
) -> list[torch.Tensor]:
    """No dropout, no sampling; concatenations as the spec writes them."""
    steps = ci.shape[1]
    ext = F.pad(ext, (0, 0, 0, steps - ext.shape[1]))
    gen_h = dec.ic_to_g0(ic)
    w_fac = dec.fac_weight / dec.fac_weight.norm(dim=1, keepdim=True)
    factor = gen_h @ w_fac.T
    con_h = dec.con_h0.expand(ic.shape[0], -1)
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in ("gen", "con", "mean", "std", "inp", "fac")}
    for t in range(steps):
        con_h = dec.con_cell(torch.cat([ci[:, t], factor], dim=-1), con_h)
        mean, logvar = dec.co_linear(con_h).chunk(2, dim=-1)
        gen_input = torch.cat([mean, ext[:, t]], dim=-1)
        gen_h = dec.gen_cell(gen_input, gen_h)
        factor = gen_h @ w_fac.T
        for key, val in zip(
            outs, (gen_h, con_h, mean, torch.exp(0.5 * logvar), gen_input, factor), strict=True
        ):
            outs[key].append(val)
    return [torch.stack(v, dim=1) for v in outs.values()]


def test_decoder_matches_reference_with_controller_and_ext_input() -> None:
    torch.manual_seed(0)
    dec = Decoder(ic_dim=3, ci_dim=4, ext_input_dim=2, con_dim=5, co_dim=2, gen_dim=6, fac_dim=3,
                  use_con=True, dropout_rate=0.0, cell_clip=5.0)  # fmt: skip
    ic, ci, ext = torch.randn(4, 3), torch.randn(4, 7, 4), torch.randn(4, 5, 2)  # ext shorter: padded
    gen_init, gen, con, mean, std, inp, fac = dec(ic, ci, ext, sample_posteriors=False)
    ref = reference_decode(dec, ic, ci, ext)
    for got, want in zip((gen, con, mean, std, inp, fac), ref, strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(gen_init, dec.ic_to_g0(ic))


def test_sampling_draws_controller_outputs_around_the_mean() -> None:
    torch.manual_seed(1)
    dec = Decoder(3, 4, 0, 5, 2, 6, 3, True, 0.0, 5.0)
    ic, ci, ext = torch.randn(4, 3), torch.randn(4, 7, 4), torch.zeros(4, 7, 0)
    _, _, _, mean, _, inputs_mean, _ = dec(ic, ci, ext, sample_posteriors=False)
    torch.testing.assert_close(inputs_mean, mean)
    _, _, _, _, _, inputs_sampled, _ = dec(ic, ci, ext, sample_posteriors=True)
    assert not torch.allclose(inputs_sampled, inputs_mean)


def test_factor_weights_have_unit_norm_rows() -> None:
    torch.manual_seed(2)
    dec = Decoder(3, 0, 0, 0, 0, 6, 4, False, 0.0, 5.0)
    with torch.no_grad():
        dec.fac_weight.mul_(7.0)
    norms = dec.factor_weight().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(4))
    _, gen, con, _, _, inputs, fac = dec(torch.randn(2, 3), torch.zeros(2, 5, 0), torch.zeros(2, 5, 0), False)
    torch.testing.assert_close(fac, gen @ dec.factor_weight().T)
    assert con.shape == (2, 5, 0) and inputs.shape == (2, 5, 0)


def test_training_mode_decoder_drops_generator_state_before_factors_only() -> None:
    torch.manual_seed(4)
    dec = Decoder(3, 4, 0, 5, 2, 6, 3, True, 0.5, 5.0).train()
    _, gen, _, _, _, _, fac = dec(torch.randn(8, 3), torch.randn(8, 7, 4), torch.zeros(8, 7, 0), False)
    # factors are not the undropped projection of the states, but each is a projection of a masked state
    assert not torch.allclose(fac, gen @ dec.factor_weight().T)
    assert torch.isfinite(fac).all() and (gen.abs() <= 5.0).all()
