"""Coordinated dropout, sample validation and the augmentation stack (lfads-spec §3)."""

from __future__ import annotations

import pytest
import torch

from autolfads.data.batch import SessionBatch
from autolfads.errors import ConfigError
from autolfads.model.augment import (
    AugmentationStack,
    CoordinatedDropout,
    LogFn,
    SampleValidation,
    SpikeJitter,
    TemporalShift,
)


def _batch(b: int = 6, t_enc: int = 8, t_rec: int = 10, n_enc: int = 5, n_rec: int = 7) -> SessionBatch:
    torch.manual_seed(0)
    recon = torch.poisson(torch.full((b, t_rec, n_rec), 2.0))
    return SessionBatch(
        recon[:, :t_enc, :n_enc].clone(), recon, torch.zeros(b, t_enc, 0), torch.zeros(b, t_rec, 0),
        torch.ones(b, t_enc, n_enc),
    )  # fmt: skip


def _nonlog(name: str, value: torch.Tensor, batch_size: int) -> None:
    raise AssertionError("nothing should be logged")


def test_cd_keeps_loss_value_and_passes_gradient_only_through_dropped_entries() -> None:
    batch = _batch()
    cd = CoordinatedDropout(cd_rate=0.4)
    out = cd.process_batch(batch)
    dropped = out.encod_data == 0  # inputs were ≥ 1 almost everywhere
    kept = batch.encod_data > 0
    # kept entries are rescaled by 1/(1 − rate)
    torch.testing.assert_close(out.encod_data[kept & ~dropped], batch.encod_data[kept & ~dropped] / 0.6)
    losses = torch.rand(6, 10, 7, requires_grad=True)
    new = cd.process_losses(losses, out, _nonlog, "train")
    torch.testing.assert_close(new, losses)  # the VALUE is unchanged
    new.sum().backward()
    grad = losses.grad
    enc_grad = grad[:, :8, :5]
    assert torch.equal(enc_grad[dropped & kept], torch.ones_like(enc_grad[dropped & kept]))
    assert torch.equal(enc_grad[~dropped & kept], torch.zeros_like(enc_grad[~dropped & kept]))
    # held-out channels and forward-prediction steps always get gradient
    assert torch.equal(grad[:, :, 5:], torch.ones_like(grad[:, :, 5:]))
    assert torch.equal(grad[:, 8:], torch.ones_like(grad[:, 8:]))


def test_cd_never_drops_or_rescales_ic_encoder_steps() -> None:
    batch = _batch()
    out = CoordinatedDropout(cd_rate=0.9, ic_enc_seq_len=3).process_batch(batch)
    # the IC encoder reads its segment as in inference: unchanged, not × 1/(1 − 0.9) = 10
    assert torch.equal(out.encod_data[:, :3], batch.encod_data[:, :3])
    kept = out.encod_data[:, 3:] != 0
    assert kept.float().mean() < 0.5
    torch.testing.assert_close(out.encod_data[:, 3:][kept], batch.encod_data[:, 3:][kept] * 10)


def test_cd_rate_zero_changes_nothing() -> None:
    batch = _batch()
    cd = CoordinatedDropout(cd_rate=0.0)
    out = cd.process_batch(batch)
    assert torch.equal(out.encod_data, batch.encod_data)
    losses = torch.rand(6, 10, 7, requires_grad=True)
    cd.process_losses(losses, out, _nonlog, "train").sum().backward()
    assert torch.equal(losses.grad, torch.ones_like(losses))


def test_cd_masks_are_first_in_first_out_per_session() -> None:
    cd = CoordinatedDropout(cd_rate=0.5)
    a, b = _batch(b=2), _batch(b=3)
    cd.process_batch(a)
    cd.process_batch(b)
    first = cd.process_losses(torch.ones(2, 10, 7), a, _nonlog, "train")
    second = cd.process_losses(torch.ones(3, 10, 7), b, _nonlog, "train")
    assert first.shape[0] == 2 and second.shape[0] == 3


def _sv_batch(ic_trimmed: int = 0) -> SessionBatch:
    """_batch() with channel 0 held out for SV at every step (minus the first ``ic_trimmed`` steps)."""
    batch = _batch()
    mask = torch.ones_like(batch.sv_mask[:, ic_trimmed:])
    mask[:, :, 0] = 0.0
    return batch._replace(sv_mask=mask, ext_input=torch.ones(6, 8, 0))


def _logger(logged: dict[str, float]) -> LogFn:
    return lambda name, value, batch_size: logged.update({name: float(value)})


def test_sample_validation_reads_its_own_sv_mask() -> None:
    batch = _sv_batch()
    sv = SampleValidation(sv_rate=0.2)
    out = sv.process_batch(batch)
    assert torch.equal(out.encod_data[:, :, 0], torch.zeros(6, 8))
    torch.testing.assert_close(out.encod_data[:, :, 1:], batch.encod_data[:, :, 1:] / 0.8)


@pytest.mark.parametrize("reduce_mean, sv_value", [(True, 1.0), (False, 8 * 5.0)])
def test_sample_validation_weights_divide_first_then_pad(reduce_mean: bool, sv_value: float) -> None:
    """Hand values: unit losses, 6 trials, 8 + 2 steps, 5 held-in + 2 held-out channels, sv_rate 0.2."""
    sv = SampleValidation(sv_rate=0.2, recon_reduce_mean=reduce_mean)
    out = sv.process_batch(_sv_batch())
    logged: dict[str, float] = {}
    new = sv.process_losses(torch.ones(6, 10, 7), out, _logger(logged), "valid")
    assert torch.equal(new[:, :8, 0], torch.zeros(6, 8))  # SV-held-out entries: no training loss
    torch.testing.assert_close(new[:, :8, 1:5], torch.full((6, 8, 4), 1.25))  # usable: × 1/(1 − 0.2)
    assert torch.equal(new[:, :, 5:], torch.ones(6, 10, 2))  # held-out neurons: weight 1, not 1.25
    assert torch.equal(new[:, 8:], torch.ones(6, 2, 7))  # forward-prediction steps: weight 1
    # the held-out loss × 1/0.2 = 5 on 8 of the 8·5 encod entries of a trial, averaged over the encod
    # region (8·5), not the whole (10·7) shape; or summed per trial without recon_reduce_mean
    assert logged["valid/recon/sv"] == pytest.approx(sv_value)


@pytest.mark.parametrize("trimmed", [0, 3], ids=["full-length mask", "mask trimmed by the datamodule"])
def test_sample_validation_leaves_the_ic_segment_seen_and_unscaled(trimmed: int) -> None:
    batch = _sv_batch(ic_trimmed=trimmed)
    sv = SampleValidation(sv_rate=0.2, ic_enc_seq_len=3)
    out = sv.process_batch(batch)
    assert torch.equal(out.encod_data[:, :3], batch.encod_data[:, :3])  # every entry, as in inference
    assert torch.equal(out.encod_data[:, 3:, 0], torch.zeros(6, 5))
    torch.testing.assert_close(out.encod_data[:, 3:, 1:], batch.encod_data[:, 3:, 1:] / 0.8)
    logged: dict[str, float] = {}
    new = sv.process_losses(torch.ones(6, 10, 7), out, _logger(logged), "train")
    assert torch.equal(new[:, :3], torch.ones(6, 3, 7))
    assert torch.equal(new[:, 3:8, 0], torch.zeros(6, 5))
    torch.testing.assert_close(new[:, 3:8, 1:5], torch.full((6, 5, 4), 1.25))
    # SV region = steps 3..7 × 5 channels: 5 held-out entries of 5.0 in 25
    assert logged["train/recon/sv"] == pytest.approx(1.0)


def test_stack_applies_transforms_in_order_and_refuses_bad_orders() -> None:
    cd = CoordinatedDropout(cd_rate=0.5)
    stack = AugmentationStack([cd], batch_order=[0], loss_order=[0])
    out = stack.process_batch(_batch())
    assert (out.encod_data == 0).any()
    stack.reset()
    assert not cd._grad_masks
    with pytest.raises(ConfigError, match="batch_order: index 3"):
        AugmentationStack([cd], batch_order=[3])

    class OnlyBatch:
        def process_batch(self, batch: SessionBatch) -> SessionBatch:
            return batch

    with pytest.raises(ConfigError, match=r"OnlyBatch.*process_losses"):
        AugmentationStack([OnlyBatch()], batch_order=[0], loss_order=[0])


def test_temporal_shift_moves_whole_traces_with_edge_values_repeated() -> None:
    torch.manual_seed(0)
    data = torch.arange(6.0).view(1, 6, 1).repeat(1, 1, 50)  # every channel counts 0..5
    batch = SessionBatch(data, data.clone(), torch.zeros(1, 6, 0), torch.zeros(1, 6, 0), torch.ones(1, 6, 50))
    out = TemporalShift(std=2.0, max_shift=2).process_batch(batch)
    for trace in out.encod_data[0].T:
        shift = int(data[0, 3, 0] - trace[3])  # interior values move as one block
        assert -2 <= shift <= 2
        expected = (torch.arange(6.0) - shift).clamp(0, 5)
        torch.testing.assert_close(trace, expected)
    assert not torch.equal(out.encod_data, out.recon_data)  # independent shifts
    losses = torch.rand(1, 6, 50)
    assert TemporalShift().process_losses(losses, out, _nonlog, "train") is losses


def test_spike_jitter_keeps_spike_counts_and_moves_them_within_width() -> None:
    torch.manual_seed(1)
    counts = torch.poisson(torch.full((3, 20, 4), 1.5))
    batch = SessionBatch(
        counts, counts.clone(), torch.zeros(3, 20, 0), torch.zeros(3, 20, 0), torch.ones(3, 20, 4)
    )
    out = SpikeJitter(width=2).process_batch(batch)
    torch.testing.assert_close(out.encod_data.sum(dim=1), counts.sum(dim=1))  # per trial and channel
    assert not torch.equal(out.encod_data, counts)
    # a single spike at t=0 can only land on t ∈ {0, 1, 2} (reflection at the start)
    one = torch.zeros(200, 20, 1)
    one[:, 0] = 1.0
    moved = SpikeJitter(width=2).process_batch(batch._replace(encod_data=one, recon_data=one)).encod_data
    landed = moved.squeeze(-1).argmax(dim=1)
    assert set(landed.tolist()) == {0, 1, 2}
