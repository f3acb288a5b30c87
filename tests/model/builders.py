"""Small valid model configs and synthetic batches for the model tests (and anyone who needs a tiny LFADS).

``model_config(**overrides)`` returns the plain ``model`` block (``_target_`` mappings, as a YAML would give)
for a tiny model; ``make_batch(cfg)`` draws Poisson spikes whose shapes fit it, with held-out channels and
forward-prediction steps; ``train_step`` runs one seeded step and returns the loss and gradients, and
``assert_within_bf16_rounding`` compares two such steps where one ran its matmuls in bfloat16.
"""

from __future__ import annotations

from typing import Any

import torch

from autolfads.data.batch import SessionBatch

M = "autolfads.model"


def model_config(**overrides: Any) -> dict[str, Any]:
    n_recon = overrides.pop("n_recon", 9)
    cfg: dict[str, Any] = {
        "encod_data_dim": 6,
        "encod_seq_len": 8,
        "recon_seq_len": 10,
        "ext_input_dim": 0,
        "ic_enc_seq_len": 0,
        "ic_enc_dim": 5,
        "ci_enc_dim": 4,
        "ci_lag": 1,
        "con_dim": 4,
        "co_dim": 2,
        "ic_dim": 3,
        "gen_dim": 7,
        "fac_dim": 4,
        "readin": [{"_target_": "torch.nn.Identity"}],
        "readout": [
            {"_target_": f"{M}.readin_readout.FanInLinear", "in_features": 4, "out_features": n_recon}
        ],
        "reconstruction": [{"_target_": f"{M}.recons.Poisson"}],
        "train_aug_stack": {
            "_target_": f"{M}.augment.AugmentationStack",
            "transforms": [
                {
                    "_target_": f"{M}.augment.CoordinatedDropout",
                    "cd_rate": 0.3,
                    "cd_pass_rate": 0.0,
                    "ic_enc_seq_len": 0,
                },
            ],
            "batch_order": [0],
            "loss_order": [0],
        },
        "infer_aug_stack": {"_target_": f"{M}.augment.AugmentationStack"},
        "co_prior": {
            "_target_": f"{M}.priors.AutoregressiveMultivariateNormal",
            "tau": 10.0,
            "nvar": 0.1,
            "shape": 2,
        },
        "ic_prior": {"_target_": f"{M}.priors.MultivariateNormal", "mean": 0, "variance": 0.1, "shape": 3},
        "variational": True,
        "ic_post_var_min": 1e-4,
        "dropout_rate": 0.1,
        "cell_clip": 5.0,
        "loss_scale": 1.0e4,
        "recon_reduce_mean": True,
        "lr_scheduler": False,
        "lr_init": 4e-3,
        "lr_stop": 1e-5,
        "lr_decay": 0.95,
        "lr_patience": 6,
        "lr_adam_beta1": 0.9,
        "lr_adam_beta2": 0.999,
        "lr_adam_epsilon": 1e-8,
        "weight_decay": 0.0,
        "l2_start_epoch": 0,
        "l2_increase_epoch": 80,
        "l2_ic_enc_scale": 0.0,
        "l2_ci_enc_scale": 0.0,
        "l2_gen_scale": 1e-3,
        "l2_con_scale": 1e-3,
        "kl_start_epoch": 0,
        "kl_increase_epoch": 80,
        "kl_ic_scale": 1e-5,
        "kl_co_scale": 1e-5,
    }
    cfg.update(overrides)
    return cfg


def make_batch(
    cfg: dict[str, Any], n_trials: int = 12, seed: int = 0, n_recon: int = 9, with_truth: bool = True
) -> SessionBatch:
    gen = torch.Generator().manual_seed(seed)
    t_enc, t_rec, n_enc = cfg["encod_seq_len"], cfg["recon_seq_len"], cfg["encod_data_dim"]
    rates = 0.5 + torch.rand(n_trials, t_rec, n_recon, generator=gen)
    recon = torch.poisson(rates, generator=gen)
    return SessionBatch(
        encod_data=recon[:, :t_enc, :n_enc].clone(),
        recon_data=recon,
        ext_input=torch.randn(n_trials, t_enc, cfg["ext_input_dim"], generator=gen),
        truth=rates if with_truth else torch.full((n_trials, t_rec, 0), float("nan")),
        sv_mask=torch.ones(n_trials, t_enc, n_enc),
    )


def train_step(
    model: Any, batch: SessionBatch, seed: int, autocast: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training step's loss and gradients. ``autocast``: the forward and loss under bfloat16 autocast,
    the backward outside it, as Lightning's ``bf16-mixed`` runs a step."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks, CD masks and sampling noise for every run of a seed
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model.shared_step({0: batch}, "train").loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# bfloat16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 0.2 %) in every matmul of a few recurrent
# steps; measured on the tiny shapes: loss within 0.1 %, gradient directions cosine ≥ 0.9998. The bounds
# catch a term lost or computed differently under autocast; dtype checks catch a value left in bfloat16.
BF16_LOSS_RTOL, BF16_MIN_GRADIENT_COSINE = 1e-2, 0.99


def assert_within_bf16_rounding(
    loss: torch.Tensor,
    grads: dict[str, torch.Tensor],
    want_loss: torch.Tensor,
    want_grads: dict[str, torch.Tensor],
) -> None:
    """A float32 loss within bf16 rounding of ``want_loss``; the same float32 gradients, each pointing the
    same way as its twin."""
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want_loss, rtol=BF16_LOSS_RTOL, atol=0.0)
    assert sorted(grads) == sorted(want_grads)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, name
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), want_grads[name].flatten(), dim=0)
        assert cosine.item() >= BF16_MIN_GRADIENT_COSINE, f"{name}: cosine {cosine.item():.4f}"
