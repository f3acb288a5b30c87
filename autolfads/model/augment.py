"""Batch and loss augmentations (lfads-spec §3).

Shapes: B trials, T time bins, N channels; ``enc`` = the encod_data shape, ``rec`` = the recon/loss shape.

A transform may implement ``process_batch(batch) -> batch`` and/or ``process_losses(losses, batch, log_fn,
split) -> losses``. Stateful transforms keep a FIFO of masks: the model pushes one per session (sorted order)
in ``process_batch`` and pops them in the same order in ``process_losses``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from autolfads.data.batch import SessionBatch
from autolfads.errors import ConfigError
from autolfads.model.dropout import keep_mask

LogFn = Callable[[str, torch.Tensor, int], None]


def _pad_to(mask: torch.Tensor, shape: torch.Size, value: float = 1.0) -> torch.Tensor:
    """Pad a (B, T_enc, N_enc) mask at the end of time and channels to (B, T_rec, N_rec)."""
    return F.pad(mask, (0, shape[-1] - mask.shape[-1], 0, shape[-2] - mask.shape[-2]), value=value)


class _MaskGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``mask``.

    The same value and gradient as ``x·m + detach(x·(1 − m))``, without four passes over the loss tensor in
    forward and three more in backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class CoordinatedDropout:
    """Drop input entries and let only the dropped ones carry gradient (lfads-spec §3.2).

    The first ``ic_enc_seq_len`` steps (what the IC encoder alone reads) are never dropped and passed on as
    they are; the rest is rescaled by 1/(1 − cd_rate), as the reference does, so the IC encoder sees the same
    input scale in training and inference. The loss VALUE is unchanged (``loss·m + detach(loss·(1 − m))``)
    so train and valid recon stay comparable; gradient flows through the dropped entries, through
    ``cd_pass_rate`` random extra ones, and through every held-out channel and forward-prediction step (the
    mask is padded with 1).
    """

    def __init__(self, cd_rate: float, cd_pass_rate: float = 0.0, ic_enc_seq_len: int = 0):
        self.cd_rate = float(cd_rate)
        self.cd_pass_rate = float(cd_pass_rate)
        self.ic_enc_seq_len = int(ic_enc_seq_len)
        self._grad_masks: deque[torch.Tensor] = deque()

    def process_batch(self, batch: SessionBatch) -> SessionBatch:
        data = batch.encod_data
        if self.cd_rate == 0:
            self._grad_masks.append(torch.ones_like(data))
            return batch
        ic = self.ic_enc_seq_len
        keep = keep_mask(data.shape, self.cd_rate, data.device).to(data.dtype)
        keep[:, :ic] = 1.0  # IC-encoder steps are always seen
        grad_mask = 1 - keep
        if self.cd_pass_rate > 0:
            passed = (~keep_mask(data.shape, self.cd_pass_rate, data.device)).to(data.dtype)
            grad_mask = torch.clamp(grad_mask + passed, max=1.0)
        self._grad_masks.append(grad_mask)
        dropped = data * keep / (1 - self.cd_rate)
        dropped[:, :ic] = data[:, :ic]  # ... and not rescaled: only the dropped part's sum needs restoring
        return batch._replace(encod_data=dropped)

    def process_losses(
        self, losses: torch.Tensor, batch: SessionBatch, log_fn: LogFn, split: str
    ) -> torch.Tensor:
        mask = _pad_to(self._grad_masks.popleft(), losses.shape)
        return _MaskGradient.apply(losses, mask)

    def reset(self) -> None:
        self._grad_masks.clear()


class SampleValidation:
    """Hold out a fixed random set of input entries (``sv_mask`` = 0) from training, and report their loss.

    Reads the batch's own ``sv_mask`` (fixing the reference, which read ``ext_input``; lfads-spec §11.5).
    The SV region is the encod channels × the encod steps after the first ``ic_enc_seq_len`` (the IC
    encoder's segment, always seen and never rescaled, as in the reference). In that region the input keeps
    the usable entries × 1/(1 − sv_rate) and the loss is weighted by mask/(1 − sv_rate); everywhere else
    (IC segment, held-out channels, forward-prediction steps) input and loss weights are 1: the weights are
    divided first and padded after, as the reference does. The held-out entries' loss × 1/sv_rate, averaged
    over the SV region, is logged as ``{split}/recon/sv``.
    """

    def __init__(self, sv_rate: float, ic_enc_seq_len: int = 0, recon_reduce_mean: bool = True):
        if not 0.0 <= sv_rate < 1.0:
            raise ConfigError(f"SampleValidation.sv_rate must be in [0, 1); found {sv_rate}")
        self.sv_rate = float(sv_rate)
        self.ic_enc_seq_len = int(ic_enc_seq_len)
        self.recon_reduce_mean = bool(recon_reduce_mean)
        self._masks: deque[torch.Tensor] = deque()

    def _mask(self, batch: SessionBatch) -> torch.Tensor:
        """(B, T_enc, N_enc), 1 = usable; the IC segment is always usable."""
        mask, data = batch.sv_mask, batch.encod_data
        if mask.numel() == 0:
            return torch.ones_like(data)
        # a datamodule that trimmed ic_enc_seq_len steps gives a shorter mask: those steps are usable
        mask = F.pad(mask, (0, 0, data.shape[1] - mask.shape[1], 0), value=1.0).to(data.dtype)
        mask[:, : self.ic_enc_seq_len] = 1.0
        return mask

    def _weights(self, mask: torch.Tensor) -> torch.Tensor:
        """mask/(1 − sv_rate) in the SV region, 1 on the IC segment (still at the encod shape)."""
        weights = mask / (1 - self.sv_rate)
        weights[:, : self.ic_enc_seq_len] = 1.0
        return weights

    def process_batch(self, batch: SessionBatch) -> SessionBatch:
        if self.sv_rate == 0:
            self._masks.append(torch.ones_like(batch.encod_data))
            return batch
        mask = self._mask(batch)
        self._masks.append(mask)
        return batch._replace(encod_data=batch.encod_data * self._weights(mask))

    def process_losses(
        self, losses: torch.Tensor, batch: SessionBatch, log_fn: LogFn, split: str
    ) -> torch.Tensor:
        enc_mask = self._masks.popleft()  # (B, T_enc, N_enc)
        if self.sv_rate == 0:
            return losses
        ic, t_enc, n_enc = self.ic_enc_seq_len, enc_mask.shape[1], enc_mask.shape[2]
        held_out = losses[:, ic:t_enc, :n_enc] * (1 - enc_mask[:, ic:]) / self.sv_rate  # the SV region
        sv_loss = held_out.mean() if self.recon_reduce_mean else held_out.sum(dim=(1, 2)).mean()
        log_fn(f"{split}/recon/sv", sv_loss, losses.shape[0])
        return losses * _pad_to(self._weights(enc_mask), losses.shape)

    def reset(self) -> None:
        self._masks.clear()


def _shift_traces(data: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move each (trial, channel) trace of (B, T, N) later by ``shifts`` (B, N) steps; edge values repeat."""
    steps = data.shape[1]
    t = torch.arange(steps, device=data.device).view(1, steps, 1)
    source = (t - shifts.unsqueeze(1)).clamp(0, steps - 1)  # (B, T, N)
    return torch.gather(data, 1, source)


class TemporalShift:
    """Shift each (trial, channel) trace by round(N(0, std)) steps, clamped to ±max_shift (lfads-spec §3.4).

    encod_data and recon_data get independent shifts, as the reference. Losses pass through unchanged.
    """

    def __init__(self, std: float = 3.0, max_shift: int = 6):
        self.std = float(std)
        self.max_shift = int(max_shift)

    def _shifts(self, data: torch.Tensor) -> torch.Tensor:
        draws = torch.randn(data.shape[0], data.shape[2], device=data.device) * self.std
        return draws.round().clamp(-self.max_shift, self.max_shift).long()

    def process_batch(self, batch: SessionBatch) -> SessionBatch:
        return batch._replace(
            encod_data=_shift_traces(batch.encod_data, self._shifts(batch.encod_data)),
            recon_data=_shift_traces(batch.recon_data, self._shifts(batch.recon_data)),
        )

    def process_losses(
        self, losses: torch.Tensor, batch: SessionBatch, log_fn: LogFn, split: str
    ) -> torch.Tensor:
        return losses


def _jitter_spikes(counts: torch.Tensor, width: int) -> torch.Tensor:
    """Move every unit of count in (B, T, N) by a random integer in [−width, width]; reflect at ends."""
    batch, steps, chans = counts.shape
    flat = counts.round().clamp_min(0).long().permute(0, 2, 1).reshape(-1, steps)  # (B·N, T)
    rows, times = torch.nonzero(flat, as_tuple=True)
    repeats = flat[rows, times]
    rows, times = rows.repeat_interleave(repeats), times.repeat_interleave(repeats)  # one entry per spike
    moved = times + torch.randint(-width, width + 1, times.shape, device=counts.device)
    moved = moved.abs()  # reflect below 0
    moved = torch.where(moved > steps - 1, 2 * (steps - 1) - moved, moved)  # reflect above T−1
    out = torch.zeros_like(flat)
    out.index_put_((rows, moved), torch.ones_like(moved), accumulate=True)
    return out.view(batch, chans, steps).permute(0, 2, 1).to(counts.dtype)


class SpikeJitter:
    """Jitter every spike in time by up to ``width`` bins (lfads-spec §3.4); encod and recon independently.

    Losses pass through unchanged.
    """

    def __init__(self, width: int = 2):
        self.width = int(width)

    def process_batch(self, batch: SessionBatch) -> SessionBatch:
        return batch._replace(
            encod_data=_jitter_spikes(batch.encod_data, self.width),
            recon_data=_jitter_spikes(batch.recon_data, self.width),
        )

    def process_losses(
        self, losses: torch.Tensor, batch: SessionBatch, log_fn: LogFn, split: str
    ) -> torch.Tensor:
        return losses


class AugmentationStack:
    """Applies ``transforms[i]`` for i in ``batch_order`` to batches and i in ``loss_order`` to losses.

    When an order is left out, every transform that implements the method runs, in list order.
    """

    def __init__(
        self,
        transforms: Sequence[Any] = (),
        batch_order: Sequence[int] | None = None,
        loss_order: Sequence[int] | None = None,
    ):
        self.transforms = list(transforms)
        n = len(self.transforms)
        if batch_order is None:
            batch_order = [i for i, t in enumerate(self.transforms) if hasattr(t, "process_batch")]
        if loss_order is None:
            loss_order = [i for i, t in enumerate(self.transforms) if hasattr(t, "process_losses")]
        for name, order, method in (
            ("batch_order", batch_order, "process_batch"),
            ("loss_order", loss_order, "process_losses"),
        ):
            for i in order:
                if not 0 <= i < n:
                    raise ConfigError(f"AugmentationStack.{name}: index {i} is outside the {n} transforms")
                if not hasattr(self.transforms[i], method):
                    name_i = type(self.transforms[i]).__name__
                    raise ConfigError(f"AugmentationStack.{name}: transform {i} ({name_i}) has no {method}")
        self.batch_transforms = [self.transforms[i] for i in batch_order]
        self.loss_transforms = [self.transforms[i] for i in loss_order]

    def process_batch(self, batch: SessionBatch) -> SessionBatch:
        for transform in self.batch_transforms:
            batch = transform.process_batch(batch)
        return batch

    def process_losses(
        self, losses: torch.Tensor, batch: SessionBatch, log_fn: LogFn, split: str
    ) -> torch.Tensor:
        for transform in self.loss_transforms:
            losses = transform.process_losses(losses, batch, log_fn, split)
        return losses

    def reset(self) -> None:
        for transform in self.transforms:
            if hasattr(transform, "reset"):
                transform.reset()
