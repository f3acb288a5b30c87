"""The LFADS module: forward shapes, loss wiring, config refusals, training, checkpoints, live HP updates."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from autolfads import constants as C
from autolfads.data.batch import SessionBatch
from autolfads.errors import ConfigError
from autolfads.model import LFADS, TARGET_ALIASES, SessionOutput, ramp_weight
from tests.model.builders import make_batch, model_config

FAN_IN = "autolfads.model.readin_readout.FanInLinear"


class _Trials(Dataset):
    """Per-trial items ``(SessionBatch, extras)`` as the datamodule yields them."""

    def __init__(self, batch: SessionBatch):
        self.batch = batch

    def __len__(self) -> int:
        return self.batch.encod_data.shape[0]

    def __getitem__(self, i: int) -> tuple[SessionBatch, tuple]:
        return SessionBatch(*(field[i] for field in self.batch)), ()


def _loader(batch: SessionBatch, shuffle: bool) -> CombinedLoader:
    return CombinedLoader(
        {0: DataLoader(_Trials(batch), batch_size=4, shuffle=shuffle)}, mode="max_size_cycle"
    )


def _trainer(tmp_path: Path, epochs: int = 2) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, default_root_dir=tmp_path, accelerator="cpu", logger=False,
        enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=200, num_sanity_val_steps=1, enable_checkpointing=False,
    )  # fmt: skip


def test_ramp_schedule() -> None:
    assert ramp_weight(0, 0, 80) == pytest.approx(1 / 81)
    assert ramp_weight(40, 0, 80) == pytest.approx(41 / 81)
    assert ramp_weight(80, 0, 80) == 1.0
    assert ramp_weight(200, 0, 80) == 1.0
    assert ramp_weight(3, 10, 5) == 0.0


def test_forward_returns_spec_shapes(tiny_lfads: LFADS, tiny_batch: SessionBatch) -> None:
    tiny_lfads.eval()
    out = tiny_lfads({0: tiny_batch})[0]
    assert isinstance(out, SessionOutput)
    b = 12
    expected = {
        "output_params": (b, 10, 9), "factors": (b, 10, 4), "ic_mean": (b, 3), "ic_std": (b, 3),
        "co_means": (b, 10, 2), "co_stds": (b, 10, 2), "gen_states": (b, 10, 7), "gen_init": (b, 7),
        "gen_inputs": (b, 10, 2), "con_states": (b, 10, 4),
    }  # fmt: skip
    assert {k: tuple(v.shape) for k, v in out._asdict().items()} == expected
    assert (out.output_params > 0).all()  # Poisson rates
    params = tiny_lfads({0: tiny_batch}, output_means=False)[0].output_params
    torch.testing.assert_close(out.output_params, torch.exp(params[..., 0]))


def test_posterior_sampling_varies_and_means_are_deterministic(
    tiny_lfads: LFADS, tiny_batch: SessionBatch
) -> None:
    tiny_lfads.eval()
    with torch.no_grad():
        a, b = tiny_lfads(tiny_batch)[0], tiny_lfads(tiny_batch)[0]
        s = tiny_lfads(tiny_batch, sample_posteriors=True)[0]
    torch.testing.assert_close(a.output_params, b.output_params)
    assert not torch.allclose(a.output_params, s.output_params)


def test_shared_step_total_is_scaled_sum_of_ramped_terms(tiny_lfads: LFADS, tiny_batch: SessionBatch) -> None:
    torch.manual_seed(0)
    r = tiny_lfads.shared_step({0: (tiny_batch, ())}, "train")
    expected = 1e4 * (r.recon + r.l2_ramp * r.wt_l2 + r.kl_ramp * (r.wt_kl_ic + r.wt_kl_co))
    torch.testing.assert_close(r.loss, expected)
    assert r.l2_ramp == pytest.approx(1 / 81) and r.kl_ramp == pytest.approx(1 / 81)
    assert r.wt_l2 > 0 and r.wt_kl_ic > 0
    assert not math.isnan(r.r2.item()) and not math.isnan(r.co_bps.item())
    assert r.batch_size == 12


def test_l2_is_weighted_mean_square_of_recurrent_kernels(tiny_config: dict) -> None:
    model = LFADS(**{**tiny_config, "l2_gen_scale": 2.0, "l2_con_scale": 0.0})
    w = model.decoder.gen_cell.weight_hh
    torch.testing.assert_close(model._l2_penalty(), 2.0 * 0.5 * w.pow(2).sum() / (w.numel() + 1e-8))


def test_reference_targets_are_accepted() -> None:
    cfg = model_config(
        readin={"_target_": "torch.nn.ModuleList", "modules": [{"_target_": "torch.nn.Identity"}]},
        readout={"_target_": "torch.nn.ModuleList", "modules": [
            {"_target_": "lfads_torch.modules.readin_readout.FanInLinear", "in_features": 4,
             "out_features": 9}]},
        reconstruction=[{"_target_": "lfads_torch.modules.recons.Poisson"}],
        ic_prior={"_target_": "lfads_torch.modules.priors.MultivariateNormal", "mean": 0, "variance": 0.1,
                  "shape": 3},
        train_aug_stack={"_target_": "lfads_torch.modules.augmentations.AugmentationStack", "transforms": [
            {"_target_": "lfads_torch.modules.augmentations.CoordinatedDropout", "cd_rate": 0.3}],
            "batch_order": [0], "loss_order": [0]},
    )  # fmt: skip
    model = LFADS(**cfg)
    assert type(model.readout[0]).__name__ == "FanInLinear"
    assert TARGET_ALIASES["lfads_torch.model.LFADS"] == "autolfads.model.lfads.LFADS"
    assert all(target.startswith("autolfads.model.") for target in TARGET_ALIASES.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"readout": []}, "one entry per session; found readin=1, readout=0"),
        ({"variational": False}, "variational is False"),
        ({"ic_enc_seq_len": 8}, "ic_enc_seq_len must be in"),
        ({"recon_seq_len": 5}, "recon_seq_len"),
        ({"readout": [{"_target_": FAN_IN, "no_such_argument": 4}]}, "model.readout: cannot build"),
        ({"readout": [{"_target_": "no.such.Module"}]}, "model.readout.0._target_: 'no.such.Module' is"),
        ({"fac_dim": 5}, r"readout\[0\] reads 4 features but fac_dim is 5"),
    ],
)
def test_configs_that_cannot_work_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LFADS(**model_config(**overrides))


def test_ext_input_dim_without_ext_data_is_refused_at_first_batch(tiny_batch: SessionBatch) -> None:
    model = LFADS(**model_config(ext_input_dim=2))
    with pytest.raises(
        ConfigError, match=r"ext_input_dim is 2 .* 0 channels \(the data has no \*_ext_input\)"
    ):
        model(tiny_batch)


def test_data_longer_than_config_is_refused(tiny_lfads: LFADS) -> None:
    batch = make_batch(model_config(encod_seq_len=9))
    with pytest.raises(ConfigError, match="encod_seq_len is 8 but session 0's encod_data has 9 steps"):
        tiny_lfads(batch)


def test_ext_input_reaches_generator() -> None:
    cfg = model_config(ext_input_dim=2)
    model = LFADS(**cfg).eval()
    batch = make_batch(cfg)
    out = model(batch)[0]
    assert out.gen_inputs.shape == (12, 10, 4)
    torch.testing.assert_close(out.gen_inputs[:, :8, 2:], batch.ext_input)
    assert torch.equal(out.gen_inputs[:, 8:, 2:], torch.zeros(12, 2, 2))


def test_two_sessions_with_different_widths() -> None:
    cfg = model_config(
        readin=[{"_target_": FAN_IN, "in_features": 6, "out_features": 6},
                {"_target_": FAN_IN, "in_features": 5, "out_features": 6}],
        readout=[{"_target_": FAN_IN, "in_features": 4, "out_features": 9},
                 {"_target_": FAN_IN, "in_features": 4, "out_features": 7}],
        reconstruction=[{"_target_": "autolfads.model.recons.Poisson"}] * 2,
    )  # fmt: skip
    model = LFADS(**cfg)
    s0 = make_batch(cfg, n_trials=4)
    s1 = make_batch({**cfg, "encod_data_dim": 5}, n_trials=3, n_recon=7)
    out = model({1: s1, 0: s0})
    assert out[0].output_params.shape == (4, 10, 9) and out[1].output_params.shape == (3, 10, 7)
    r = model.shared_step({0: (s0, ()), 1: (s1, ())}, "train")
    torch.testing.assert_close(r.recon, (r.sess_recon[0] + r.sess_recon[1]) / 2)


def test_non_variational_autonomous_model_trains_a_step() -> None:
    null = {"_target_": "autolfads.model.priors.Null"}
    cfg = model_config(variational=False, ic_prior=null, co_prior=null, ci_enc_dim=0, con_dim=0, co_dim=0)
    model = LFADS(**cfg)
    r = model.shared_step({0: (make_batch(cfg), ())}, "train")
    r.loss.backward()
    assert r.wt_kl.item() == 0.0 and not model.use_con


def test_gamma_and_gaussian_reconstructions_train_a_step() -> None:
    for target, n_params in (("Gaussian", 2), ("ZeroInflatedGamma", 3)):
        recon = {"_target_": f"autolfads.model.recons.{target}"}
        if target == "ZeroInflatedGamma":
            recon.update(recon_dim=9, gamma_loc=0.0, scale_init=1.0, scale_prior=1.0, scale_penalty=0.1)
        cfg = model_config(
            reconstruction=[recon],
            readout=[{"_target_": "autolfads.model.readin_readout.FanInLinear", "in_features": 4,
                      "out_features": 9 * n_params}],
        )  # fmt: skip
        model = LFADS(**cfg)
        r = model.shared_step({0: (make_batch(cfg), ())}, "train")
        r.loss.backward()
        assert torch.isfinite(r.loss)


def test_two_epochs_of_training_log_spec_metrics_and_checkpoint_round_trips(
    tiny_config: dict, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = LFADS(**tiny_config)
    train, valid = make_batch(tiny_config, 16, seed=1), make_batch(tiny_config, 8, seed=2)
    trainer = _trainer(tmp_path)
    trainer.fit(model, _loader(train, True), _loader(valid, False))
    logged = trainer.callback_metrics
    for split in C.SPLITS:
        for name in C.SPLIT_METRICS:
            assert C.split_metric(split, name) in logged, C.split_metric(split, name)
        assert C.session_metric(split, "recon", 0) in logged
    for name in (C.PBT_METRIC, C.HP_METRIC, C.CUR_EPOCH, "hp/lr_init", "hp/cd_rate", "hp/kl_co_scale"):
        assert name in logged, name
    assert logged[C.CUR_EPOCH].item() == 1.0
    assert math.isfinite(logged[C.PBT_METRIC].item())

    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = LFADS.load_from_checkpoint(path)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(valid)[0].output_params, model(valid)[0].output_params)
    prev = model.valid_recon_smth.prev.item()
    assert not math.isnan(prev)
    assert loaded.valid_recon_smth.prev.item() == prev  # smoothing state survives the checkpoint


def test_update_hyperparameters_changes_live_state(tiny_lfads: LFADS, tmp_path: Path) -> None:
    tiny_lfads.update_hyperparameters(
        {"dropout_rate": 0.5, "model.train_aug_stack.transforms.0.cd_rate": 0.6, "kl_co_scale": 1e-3}
    )
    assert all(m.p == 0.5 for m in tiny_lfads.modules() if isinstance(m, torch.nn.Dropout))
    assert tiny_lfads.train_aug_stack.transforms[0].cd_rate == 0.6
    assert tiny_lfads.hparams.train_aug_stack["transforms"][0]["cd_rate"] == 0.6
    assert tiny_lfads.hparams.kl_co_scale == 1e-3
    assert tiny_lfads.logged_hyperparameters()["cd_rate"] == 0.6
    with pytest.raises(ConfigError, match="no hyperparameter 'nope'"):
        tiny_lfads.update_hyperparameters({"nope": 1.0})

    # with an optimizer: the learning rate of the live param groups changes, and the checkpoint keeps it
    batch = make_batch(tiny_lfads.hparams, 8)
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(tiny_lfads, _loader(batch, True), _loader(batch, False))
    tiny_lfads.update_hyperparameters({"lr_init": 1e-3})
    assert trainer.optimizers[0].param_groups[0]["lr"] == 1e-3
    trainer.save_checkpoint(tmp_path / "hp.ckpt")
    reloaded = LFADS.load_from_checkpoint(tmp_path / "hp.ckpt")
    assert reloaded.hparams.lr_init == 1e-3
    assert reloaded.train_aug_stack.transforms[0].cd_rate == 0.6
    assert all(m.p == 0.5 for m in reloaded.modules() if isinstance(m, torch.nn.Dropout))


def test_every_trainable_parameter_gets_a_gradient(tiny_lfads: LFADS, tiny_batch: SessionBatch) -> None:
    torch.manual_seed(0)
    tiny_lfads.shared_step({0: (tiny_batch, ())}, "train").loss.backward()
    missing = [n for n, p in tiny_lfads.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    zero = [n for n, p in tiny_lfads.named_parameters() if p.requires_grad and not p.grad.abs().sum() > 0]
    assert zero == []


@pytest.mark.slow
def test_training_lowers_the_reconstruction_cost(tiny_config: dict) -> None:
    torch.manual_seed(0)
    model = LFADS(**{**tiny_config, "dropout_rate": 0.0})
    batch = make_batch(tiny_config, 16, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    costs = []
    for _ in range(40):
        optimizer.zero_grad()
        result = model.shared_step({0: (batch, ())}, "train")
        result.loss.backward()
        optimizer.step()
        costs.append(result.recon.item())
    # the cost of the true rates is the floor; training closes most of the gap from the start
    floor = model.recon[0].compute_loss(batch.recon_data, torch.log(batch.truth).unsqueeze(-1)).mean().item()
    start, end = sum(costs[:3]) / 3, sum(costs[-3:]) / 3
    assert end - floor < 0.5 * (start - floor), (start, end, floor)


def test_plateau_scheduler_monitors_the_smoothed_validation_cost(tiny_config: dict, tmp_path: Path) -> None:
    model = LFADS(**{**tiny_config, "lr_scheduler": True, "lr_patience": 0, "lr_decay": 0.5})
    batch = make_batch(tiny_config, 8)
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == C.PBT_METRIC
    trainer = _trainer(tmp_path, epochs=2)
    trainer.fit(model, _loader(batch, True), _loader(batch, False))
    assert trainer.lr_scheduler_configs[0].scheduler.best < float("inf")
