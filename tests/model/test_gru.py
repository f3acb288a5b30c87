"""The clipped GRU against hand-computed values and a step-by-step transcription of lfads-spec §2.2."""

from __future__ import annotations

import math

import pytest
import torch

from autolfads.model.gru import BidirectionalClippedGRU, ClippedGRU, ClippedGRUCell


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def reference_step(cell: ClippedGRUCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The spec's equations, one gate at a time, with no fusing."""
    hid = cell.hidden_size
    w_z, w_r, w_n = cell.weight_ih.split(hid)
    u_z, u_r, u_n = cell.weight_hh.split(hid)
    b_z, b_r, b_n = cell.bias_ih.split(hid)
    z = torch.sigmoid(x @ w_z.T + b_z + h @ u_z.T)
    r = torch.sigmoid(x @ w_r.T + b_r + h @ u_r.T)
    n = torch.tanh(x @ w_n.T + b_n + (r * h) @ u_n.T)
    return torch.clamp(z * h + (1 - z) * n, -cell.clip_value, cell.clip_value)


def test_cell_step_matches_hand_computed_values() -> None:
    cell = ClippedGRUCell(1, 1, clip_value=5.0)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[0.5], [-0.5], [1.0]]))
        cell.weight_hh.copy_(torch.tensor([[0.2], [0.3], [-0.4]]))
    x, h = 2.0, 0.5
    z = _sigmoid(0.5 * x + 1.0 + 0.2 * h)  # update bias starts at 1
    r = _sigmoid(-0.5 * x + 1.0 + 0.3 * h)  # reset bias starts at 1
    n = math.tanh(1.0 * x + 0.0 + (r * h) * -0.4)  # candidate bias 0, reset before the recurrent matmul
    expected = z * h + (1 - z) * n
    out = cell(torch.tensor([[x]]), torch.tensor([[h]]))
    assert out.item() == pytest.approx(expected, rel=1e-6)


def test_reset_gate_multiplies_state_before_recurrent_matmul() -> None:
    torch.manual_seed(0)
    cell = ClippedGRUCell(3, 4)
    x, h = torch.randn(5, 3), torch.randn(5, 4)
    torch.testing.assert_close(cell(x, h), reference_step(cell, x, h))
    # the PyTorch convention r ⊙ (h U_n) gives a different answer, so the test above could fail
    hid = 4
    u_n = cell.weight_hh[2 * hid :]
    r = torch.sigmoid(
        x @ cell.weight_ih[hid : 2 * hid].T
        + cell.bias_ih[hid : 2 * hid]
        + h @ cell.weight_hh[hid : 2 * hid].T
    )
    assert not torch.allclose((r * h) @ u_n.T, r * (h @ u_n.T))


def test_state_is_clipped_to_cell_clip() -> None:
    cell = ClippedGRUCell(1, 2, clip_value=0.3)
    with torch.no_grad():
        cell.weight_ih.fill_(0.0)
        cell.weight_hh.fill_(0.0)
        cell.bias_ih.fill_(-50.0)  # z ≈ 0, so h' ≈ n = tanh(−50) = −1, beyond the clip
    out = cell(torch.zeros(1, 1), torch.zeros(1, 2))
    torch.testing.assert_close(out, torch.full((1, 2), -0.3))
    big = cell(torch.zeros(1, 1), torch.full((1, 2), 10.0))
    assert big.abs().max().item() <= 0.3 + 1e-7


def test_initialisation_gives_forget_bias_and_fan_in_variances() -> None:
    torch.manual_seed(0)
    enc = ClippedGRUCell(300, 200, is_encoder=True)
    dec = ClippedGRUCell(300, 200, is_encoder=False)
    torch.testing.assert_close(enc.bias_ih, torch.cat([torch.ones(400), torch.zeros(200)]))
    assert enc.weight_ih.var().item() == pytest.approx(1 / 500, rel=0.05)
    assert enc.weight_hh.var().item() == pytest.approx(1 / 500, rel=0.05)
    assert dec.weight_ih.var().item() == pytest.approx(1 / 300, rel=0.05)
    assert dec.weight_hh.var().item() == pytest.approx(1 / 200, rel=0.05)


@pytest.mark.parametrize("clip", [0.5, 1.0, 5.0])
def test_sequence_runner_matches_step_by_step_reference(clip: float) -> None:
    # the runner clips only where the clip can bind; the reference clips every step, from a start beyond it
    torch.manual_seed(1)
    gru = ClippedGRU(3, 4, clip_value=clip)
    x, h0 = torch.randn(2, 6, 3) * 3, torch.randn(2, 4) * 8
    out, last = gru(x, h0)
    h, expected = h0, []
    for t in range(6):
        h = reference_step(gru.cell, x[:, t], h)
        expected.append(h)
    torch.testing.assert_close(out, torch.stack(expected, dim=1))
    torch.testing.assert_close(last, h)


def test_bidirectional_matches_two_reference_directions() -> None:
    torch.manual_seed(2)
    gru = BidirectionalClippedGRU(3, 4, clip_value=5.0)
    x, h0 = torch.randn(2, 5, 3), torch.randn(2, 2, 4)
    out, h_n = gru(x, h0)
    hf, hb, fwd, bwd = h0[0], h0[1], [], []
    for t in range(5):
        hf = reference_step(gru.fwd, x[:, t], hf)
        hb = reference_step(gru.bwd, x[:, 4 - t], hb)
        fwd.append(hf)
        bwd.append(hb)
    expected = torch.cat([torch.stack(fwd, 1), torch.stack(bwd[::-1], 1)], dim=-1)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(h_n, torch.stack([hf, hb]))


def test_bidirectional_gradients_match_reference() -> None:
    torch.manual_seed(3)
    gru = BidirectionalClippedGRU(3, 4)
    x, h0 = torch.randn(2, 5, 3), torch.zeros(2, 2, 4)
    out, _ = gru(x, h0)
    out.square().sum().backward()
    fast = [p.grad.clone() for p in gru.parameters()]
    gru.zero_grad()
    hf, hb, outs = h0[0], h0[1], []
    for t in range(5):
        hf, hb = reference_step(gru.fwd, x[:, t], hf), reference_step(gru.bwd, x[:, 4 - t], hb)
        outs += [hf, hb]
    torch.stack(outs).square().sum().backward()
    for a, b in zip(fast, [p.grad for p in gru.parameters()], strict=True):
        torch.testing.assert_close(a, b)
