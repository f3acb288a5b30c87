import pytest
import torch

from autolfads.model.dropout import FastDropout, keep_mask, scaled_keep_mask


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_keep_mask_keeps_each_entry_with_probability_one_minus_p(p: float) -> None:
    torch.manual_seed(0)
    mask = keep_mask((300, 7, 101), p, torch.device("cpu"))  # numel not a multiple of 4
    assert mask.dtype == torch.bool and mask.shape == (300, 7, 101)
    assert mask.float().mean().item() == pytest.approx(1 - p, abs=0.005)
    # entries are independent: neighbours (which share a 64-bit draw) agree no more often than chance
    a, b = mask[..., :-1].float(), mask[..., 1:].float()
    assert (a * b).mean().item() == pytest.approx((1 - p) ** 2, abs=0.005)


def test_keep_mask_edges_and_seeding() -> None:
    cpu = torch.device("cpu")
    assert keep_mask((10, 10), 0.0, cpu).all()
    assert not keep_mask((10, 10), 1.0, cpu).any()
    assert keep_mask((0, 3), 0.5, cpu).shape == (0, 3)
    torch.manual_seed(5)
    first = keep_mask((64, 64), 0.5, cpu)
    torch.manual_seed(5)
    assert torch.equal(first, keep_mask((64, 64), 0.5, cpu))


def test_scaled_keep_mask_is_zero_or_inverse_keep_rate() -> None:
    torch.manual_seed(1)
    like = torch.zeros(2, dtype=torch.float64)
    mask = scaled_keep_mask((50, 40), 0.2, like)
    assert mask.dtype == torch.float64
    torch.testing.assert_close(torch.unique(mask), torch.tensor([0.0, 1.25], dtype=torch.float64))


def test_fast_dropout_is_inverted_dropout() -> None:
    torch.manual_seed(3)
    drop = FastDropout(0.25)
    x = torch.ones(200, 500)
    y = drop(x)
    torch.testing.assert_close(torch.unique(y), torch.tensor([0.0, 1 / 0.75]))
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert torch.equal(drop.eval()(x), x)
