"""The LFADS LightningModule: wiring of the parts and the loss math (lfads-spec §2.1, §2.5, §2.10-2.12).

Shapes: B trials (all sessions concatenated), T = recon_seq_len, T_enc = encod_seq_len, N channels.
The parts live in their own modules; this file only connects them, computes the loss, logs and optimises.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from autolfads import constants as C
from autolfads.data.batch import SessionBatch
from autolfads.errors import CheckpointError, ConfigError
from autolfads.model.augment import AugmentationStack
from autolfads.model.checkpoint import refusal, weights_only_loading
from autolfads.model.checks import check_batch, check_construction
from autolfads.model.compiled import mark_step_begin
from autolfads.model.decoder import Decoder
from autolfads.model.encoders import Encoder
from autolfads.model.hyperparams import update_hyperparameters
from autolfads.model.metrics import ExpSmoothedMetric, r2_score, regional_bits_per_spike
from autolfads.model.parts import build_part, build_session_modules, to_plain
from autolfads.model.priors import Null
from autolfads.model.types import Encoding, SessionOutput, StepResult

SMOOTHING_PREV_WEIGHT = 0.3  # valid/recon_smth = 0.3·previous + 0.7·this epoch (lfads-spec §2.10)


def ramp_weight(epoch: int, start: int, increase: int) -> float:
    """Linear warm-up of the KL and L2 weights: clamp((epoch + 1 − start) / (increase + 1), 0, 1)."""
    return min(max((epoch + 1 - start) / (increase + 1), 0.0), 1.0)


def _as_session_batch(item: Any) -> SessionBatch:
    """Accept a SessionBatch or a loader's ``(SessionBatch, extras)`` pair (collation may make it a list)."""
    if isinstance(item, SessionBatch):
        return item
    return item[0] if isinstance(item[0], SessionBatch) else SessionBatch(*item[0])


class LFADS(L.LightningModule):
    """Latent Factor Analysis via Dynamical Systems, one model over one or more sessions."""

    def __init__(
        self,
        # architecture
        encod_data_dim: int,
        encod_seq_len: int,
        recon_seq_len: int,
        ext_input_dim: int,
        ic_enc_seq_len: int,
        ic_enc_dim: int,
        ci_enc_dim: int,
        ci_lag: int,
        con_dim: int,
        co_dim: int,
        ic_dim: int,
        gen_dim: int,
        fac_dim: int,
        # module-valued (plain `_target_` configs; lists for the per-session ones)
        readin: Any,
        readout: Any,
        reconstruction: Any,
        train_aug_stack: Any = None,
        infer_aug_stack: Any = None,
        co_prior: Any = None,
        ic_prior: Any = None,
        variational: bool = True,
        ic_post_var_min: float = 1e-4,
        # misc
        dropout_rate: float = 0.3,
        cell_clip: float = 5.0,
        loss_scale: float = 1e4,
        recon_reduce_mean: bool = True,
        # learning rate
        lr_scheduler: bool = False,
        lr_init: float = 4e-3,
        lr_stop: float = 1e-5,
        lr_decay: float = 0.95,
        lr_patience: int = 6,
        lr_adam_beta1: float = 0.9,
        lr_adam_beta2: float = 0.999,
        lr_adam_epsilon: float = 1e-8,
        # regularisation
        weight_decay: float = 0.0,
        l2_start_epoch: int = 0,
        l2_increase_epoch: int = 80,
        l2_ic_enc_scale: float = 0.0,
        l2_ci_enc_scale: float = 0.0,
        l2_gen_scale: float = 0.0,
        l2_con_scale: float = 0.0,
        kl_start_epoch: int = 0,
        kl_increase_epoch: int = 80,
        kl_ic_scale: float = 1e-7,
        kl_co_scale: float = 1e-7,
    ):
        super().__init__()
        args = {k: to_plain(v) for k, v in locals().items() if k not in ("self", "__class__")}
        self.save_hyperparameters(args)
        self.use_con = ci_enc_dim > 0 and con_dim > 0 and co_dim > 0
        self.readin = build_session_modules(readin, "readin")
        self.readout = build_session_modules(readout, "readout")
        self.recon = build_session_modules(reconstruction, "reconstruction")
        self.train_aug_stack = build_part(train_aug_stack, "train_aug_stack") or AugmentationStack()
        self.infer_aug_stack = build_part(infer_aug_stack, "infer_aug_stack") or AugmentationStack()
        self.ic_prior = build_part(ic_prior, "ic_prior") or Null()
        self.co_prior = build_part(co_prior, "co_prior") or Null()
        check_construction(self)
        self.encoder = Encoder(
            encod_data_dim, encod_seq_len, recon_seq_len, ic_enc_seq_len, ic_enc_dim, ci_enc_dim, ci_lag,
            ic_dim, self.use_con, dropout_rate, cell_clip, ic_post_var_min,
        )  # fmt: skip
        self.decoder = Decoder(
            ic_dim, 2 * ci_enc_dim, ext_input_dim, con_dim, co_dim, gen_dim, fac_dim, self.use_con,
            dropout_rate, cell_clip,
        )  # fmt: skip
        self.valid_recon_smth = ExpSmoothedMetric(coef=SMOOTHING_PREV_WEIGHT)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        batch: Mapping[int, SessionBatch] | SessionBatch,
        sample_posteriors: bool = False,
        output_means: bool = True,
    ) -> dict[int, SessionOutput]:
        return self.decode(self.encode(batch), sample_posteriors, output_means)

    def encode(self, batch: Mapping[int, SessionBatch] | SessionBatch) -> Encoding:
        """Readins and encoders: everything of the forward pass before the IC and controller samples."""
        if isinstance(batch, SessionBatch):
            if len(self.readin) != 1:
                raise ConfigError("a bare SessionBatch is accepted only for single-session models")
            batch = {0: batch}
        sessions = sorted(batch)
        encods, exts = [], []
        for s in sessions:
            encod = self.readin[s](batch[s].encod_data)  # (B_s, T_enc, encod_data_dim)
            check_batch(self, s, batch[s], encod)
            encods.append(encod)
            exts.append(batch[s].ext_input)
        encod, ext = torch.cat(encods), torch.cat(exts)  # (B, T_enc, N), (B, T_ext, E)
        mark_step_begin(encod.device)  # CUDA graphs: the previous pass's loop outputs are no longer read
        ic_mean, ic_std, ci = self.encoder(encod)
        return Encoding(sessions, [e.shape[0] for e in encods], ic_mean, ic_std, ci, ext)

    def decode(
        self, enc: Encoding, sample_posteriors: bool = False, output_means: bool = True, repeats: int = 1
    ) -> dict[int, SessionOutput]:
        """Sample (or take the means of) the posteriors, run the generator, read out; per session.

        ``repeats`` = k decodes every trial k times in one pass (independent samples; sample-major rows:
        each session's output is (k·B_s, ...), the B_s trials once per sample).
        """
        ic_mean, ic_std, ext = (_repeat_rows(t, repeats) for t in (enc.ic_mean, enc.ic_std, enc.ext_input))
        posterior = self.ic_prior.make_posterior(ic_mean, ic_std)
        ic_sample = posterior.rsample() if sample_posteriors and posterior is not None else ic_mean
        gen_init, gen_states, con_states, co_means, co_stds, gen_inputs, factors = self.decoder(
            ic_sample, enc.ci, ext, sample_posteriors and self.hparams.variational,
            co_noise=getattr(self.co_prior, "standard_noise", None),  # the co posterior's family
            ci_repeats=repeats,
        )  # fmt: skip
        outputs = {}
        parts = [_split_sessions(t, enc.sizes, repeats) for t in (
            factors, ic_mean, ic_std, co_means, co_stds, gen_states, gen_init, gen_inputs, con_states
        )]  # fmt: skip
        for i, s in enumerate(enc.sessions):
            fields = [p[i] for p in parts]
            readout = self.readout[s](fields[0]).to(fields[0].dtype)  # autocast: the losses read float32
            params = self.recon[s].reshape_output_params(readout)  # (k·B_s, T, N, P)
            if output_means:
                params = self.recon[s].compute_means(params)  # (k·B_s, T, N)
            outputs[s] = SessionOutput(params, *fields)
        return outputs

    # ------------------------------------------------------------------ loss
    def _l2_penalty(self) -> torch.Tensor:
        """Σ w_k · ½‖U_k‖² / Σ numel(U_k) over the recurrent kernels with w_k > 0, plus recon penalties."""
        hp = self.hparams
        kernels = [(hp.l2_ic_enc_scale, w) for w in self.encoder.ic_enc.recurrent_weights]
        kernels.append((hp.l2_gen_scale, self.decoder.gen_cell.weight_hh))
        if self.use_con:
            kernels += [(hp.l2_ci_enc_scale, w) for w in self.encoder.ci_enc.recurrent_weights]
            kernels.append((hp.l2_con_scale, self.decoder.con_cell.weight_hh))
        kernels = [(scale, w) for scale, w in kernels if scale > 0]
        total = self.decoder.fac_weight.new_zeros(())
        if kernels:
            numel = sum(w.numel() for _, w in kernels)
            total = sum(scale * 0.5 * w.pow(2).sum() for scale, w in kernels) / (numel + 1e-8)
        return total + sum(r.compute_l2().to(total) for r in self.recon)

    def shared_step(self, batch: Mapping[int, Any], split: str) -> StepResult:
        """Augment, run forward with posterior sampling, and compute every loss term and metric of a step."""
        hp = self.hparams
        stack = self.train_aug_stack if split == "train" else self.infer_aug_stack
        stack.reset()
        sessions = sorted(batch)
        raw = {s: _as_session_batch(batch[s]) for s in sessions}
        augmented = {s: stack.process_batch(raw[s]) for s in sessions}
        outputs = self(augmented, sample_posteriors=hp.variational, output_means=False)
        sess_recon, bps_parts, r2_parts = {}, [], []
        for s in sessions:
            params, target = outputs[s].output_params, augmented[s].recon_data  # (B, T, N, P), (B, T, N)
            if params.shape[:3] != target.shape:
                raise ConfigError(
                    f"model output for session {s} has shape {tuple(params.shape[:3])} but recon_data is "
                    f"{tuple(target.shape)}: check recon_seq_len and the readout's out_features"
                )
            losses = self.recon[s].compute_loss(target, params)  # (B, T, N)
            losses = stack.process_losses(losses, augmented[s], self._log_extra, split)
            per_trial = losses.mean(dim=(1, 2)) if hp.recon_reduce_mean else losses.sum(dim=(1, 2))
            sess_recon[s] = per_trial.mean()
            with torch.no_grad():
                bps_parts.append(regional_bits_per_spike(
                    params[..., 0], target, raw[s].encod_data.shape[-1], hp.encod_seq_len
                ))  # fmt: skip
                truth = raw[s].truth
                if truth.numel() > 0 and truth.shape == target.shape:
                    r2_parts.append(r2_score(self.recon[s].compute_means(params), truth))
        recon = torch.stack(list(sess_recon.values())).mean()
        ic_mean = torch.cat([outputs[s].ic_mean for s in sessions])
        ic_std = torch.cat([outputs[s].ic_std for s in sessions])
        wt_kl_ic = hp.kl_ic_scale * self.ic_prior(ic_mean, ic_std)
        if self.use_con:
            co_means = torch.cat([outputs[s].co_means for s in sessions])
            co_stds = torch.cat([outputs[s].co_stds for s in sessions])
            wt_kl_co = hp.kl_co_scale * self.co_prior(co_means, co_stds)
        else:
            wt_kl_co = torch.zeros_like(wt_kl_ic)
        wt_l2 = self._l2_penalty()
        l2_ramp = ramp_weight(self.current_epoch, hp.l2_start_epoch, hp.l2_increase_epoch)
        kl_ramp = ramp_weight(self.current_epoch, hp.kl_start_epoch, hp.kl_increase_epoch)
        wt_kl = wt_kl_ic + wt_kl_co
        loss = hp.loss_scale * (recon + l2_ramp * wt_l2 + kl_ramp * wt_kl)
        bps = torch.stack([torch.stack(p) for p in bps_parts]).nanmean(dim=0).clamp_min(-1.0)
        r2 = torch.stack(r2_parts).mean() if r2_parts else recon.new_tensor(float("nan"))
        return StepResult(
            loss, recon, sess_recon, bps[0], bps[1], bps[2], r2, wt_l2, l2_ramp, wt_kl, wt_kl_ic, wt_kl_co,
            kl_ramp, sum(raw[s].encod_data.shape[0] for s in sessions),
        )  # fmt: skip

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: Mapping[int, Any], batch_idx: int) -> torch.Tensor:
        result = self.shared_step(batch, "train")
        self._log_step(result, "train")
        return result.loss

    def validation_step(
        self, batch: Mapping[int, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> torch.Tensor:
        result = self.shared_step(batch, "valid")
        self._log_step(result, "valid")
        if not self.trainer.sanity_checking:  # sanity batches must not seed the smoother
            self.valid_recon_smth.update(result.recon.detach(), result.batch_size)
        return result.loss

    def predict_step(
        self,
        batch: Mapping[int, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
        sample_posteriors: bool = True,
    ) -> dict[int, SessionOutput]:
        batch = batch if isinstance(batch, Mapping) else {0: batch}
        augmented = {
            s: self.infer_aug_stack.process_batch(_as_session_batch(batch[s])) for s in sorted(batch)
        }
        self.infer_aug_stack.reset()
        return self(
            augmented, sample_posteriors=self.hparams.variational and sample_posteriors, output_means=True
        )

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        curr, smth = self.valid_recon_smth.compute()
        log = {C.PBT_METRIC: smth, C.HP_METRIC: curr, C.CUR_EPOCH: float(self.current_epoch)}
        log.update({C.HP_PREFIX + name: value for name, value in self.logged_hyperparameters().items()})
        self.log_dict(log, on_step=False, on_epoch=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Weight decay ramps like the L2 term (lfads-spec §2.11)."""
        hp = self.hparams
        ramp = ramp_weight(self.current_epoch, hp.l2_start_epoch, hp.l2_increase_epoch)
        optimizer.param_groups[0]["weight_decay"] = ramp * hp.weight_decay

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=hp.lr_init,
            betas=(hp.lr_adam_beta1, hp.lr_adam_beta2),
            eps=hp.lr_adam_epsilon,
            weight_decay=hp.weight_decay,
        )
        if not hp.lr_scheduler:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=hp.lr_decay,
            patience=hp.lr_patience,
            threshold=0.0,
            min_lr=hp.lr_stop,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": C.PBT_METRIC}}

    # ------------------------------------------------------------------ logging
    def _log_extra(self, name: str, value: torch.Tensor, batch_size: int) -> None:
        self.log(name, value, on_step=False, on_epoch=True, batch_size=batch_size)

    def _log_step(self, r: StepResult, split: str) -> None:
        values = {
            "loss": r.loss, "recon": r.recon, "bps": r.bps, "co_bps": r.co_bps, "fp_bps": r.fp_bps,
            "r2": r.r2,
            "wt_l2": r.wt_l2, "wt_l2/ramp": r.l2_ramp, "wt_kl": r.wt_kl, "wt_kl/ic": r.wt_kl_ic,
            "wt_kl/co": r.wt_kl_co, "wt_kl/ramp": r.kl_ramp,
        }  # fmt: skip
        # loss and recon go to the progress bar too, in the second call; NaN metrics (no truth, no held-out
        # neurons) are left out rather than logged as NaN
        metrics = {C.split_metric(split, k): v for k, v in values.items() if k not in ("loss", "recon")}
        metrics = {k: v for k, v in metrics.items() if not _is_nan(v)}
        metrics.update({C.session_metric(split, "recon", s): v for s, v in r.sess_recon.items()})
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=r.batch_size)
        self.log_dict(
            {C.split_metric(split, "loss"): r.loss, C.split_metric(split, "recon"): r.recon},
            on_step=False, on_epoch=True, batch_size=r.batch_size, prog_bar=True,
        )  # fmt: skip

    # ------------------------------------------------------------------ hyperparameters
    def cd_transforms(self) -> list[Any]:
        return [t for t in self.train_aug_stack.transforms if hasattr(t, "cd_rate")]

    def logged_hyperparameters(self) -> dict[str, float]:
        """The ``hp/<name>`` values (constants.LOGGED_HPS); cd_rate only when a transform has one."""
        out = {name: float(self.hparams[name]) for name in C.LOGGED_HPS if name in self.hparams}
        cds = self.cd_transforms()
        if cds:
            out["cd_rate"] = float(cds[0].cd_rate)
        return out

    def update_hyperparameters(self, updates: Mapping[str, float]) -> None:
        """Apply perturbed hyperparameters to ``hparams`` AND the live state (PBT, after a restore).

        Keys are paths relative to the ``model`` block (a leading ``model.`` is accepted), e.g. ``lr_init``,
        ``dropout_rate``, ``kl_co_scale``, ``train_aug_stack.transforms.0.cd_rate``; see ``hyperparams.py``.
        """
        update_hyperparameters(self, updates)

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
        strict: bool | None = None, weights_only: bool | None = True, **kwargs: Any,
    ) -> LFADS:  # fmt: skip
        """Lightning's loader, always weights-only with our allow-list of globals (``model.checkpoint``):
        a checkpoint is data, and its ``hyper_parameters`` pass the config allow-list when the parts are
        built. ``LFADS.load_from_checkpoint(path)`` alone rebuilds the model."""
        if weights_only is False:
            raise CheckpointError(f"{checkpoint_path}: LFADS checkpoints are only loaded weights-only")
        try:
            with weights_only_loading():
                return super().load_from_checkpoint(
                    checkpoint_path, map_location, hparams_file, strict, weights_only=True, **kwargs
                )
        except pickle.UnpicklingError as error:
            raise CheckpointError(refusal(checkpoint_path, error)) from None


def _repeat_rows(t: torch.Tensor, times: int) -> torch.Tensor:
    """(B, ...) -> (times·B, ...): the B rows once per repeat."""
    return t if times == 1 else t.repeat(times, *([1] * (t.dim() - 1)))


def _split_sessions(t: torch.Tensor, sizes: list[int], repeats: int) -> list[torch.Tensor]:
    """(repeats·B, ...) sample-major rows -> per session (repeats·B_s, ...), each still sample-major."""
    if repeats == 1:
        return list(t.split(sizes))
    per_repeat = t.view(repeats, sum(sizes), *t.shape[1:])
    return [part.reshape(repeats * part.shape[1], *t.shape[1:]) for part in per_repeat.split(sizes, dim=1)]


def _is_nan(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isnan(value).all()) if value.numel() else True
    return isinstance(value, float) and math.isnan(value)
