"""A PBT member's (re)starts without Ray: each generation draws its own masks and batch order, reproducibly.

``fit_member`` is what a Ray trial runs between Ray's hand-over of a checkpoint and its reports; here it
trains worker 0 through three 1-epoch generations of a tiny LFADS, each restart from the previous one's
checkpoint, as the scheduler does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import DictConfig, open_dict

from autolfads.config import load_config
from autolfads.data.batch import SessionBatch
from autolfads.train import quiet_lightning
from autolfads.tune.trainable import fit_member, member_seed
from tests.tune.tiny import tiny_config, tiny_data

EPOCHS_PER_GENERATION = 1


class FirstBatchRecorder(pl.Callback):
    """The first training batch of this start: as loaded (batch order) and after coordinated dropout."""

    def __init__(self) -> None:
        self.loaded: torch.Tensor | None = None
        self.augmented: torch.Tensor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        stack = pl_module.train_aug_stack
        process_batch = stack.process_batch

        def recording(batch: SessionBatch) -> SessionBatch:
            out = process_batch(batch)
            if self.loaded is None:
                self.loaded, self.augmented = batch.encod_data.clone(), out.encod_data.clone()
            return out

        stack.process_batch = recording


@pytest.fixture(scope="module")
def member_cfg(tmp_path_factory: pytest.TempPathFactory) -> DictConfig:
    root = tmp_path_factory.mktemp("member")
    return load_config(tiny_config(root / "cfg.yaml"), data_paths=[tiny_data(root / "data.h5")])


@pytest.fixture(scope="module")
def generation0(member_cfg: DictConfig, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Worker 0's checkpoint at the end of generation 0."""
    return _generation(member_cfg, 0, 0, None, tmp_path_factory.mktemp("generation0"))[1]


def _generation(
    cfg: DictConfig, worker: int, generation: int, start: str | None, root: Path
) -> tuple[FirstBatchRecorder, str]:
    """Train ``worker`` through ``generation`` from checkpoint ``start``; returns its record, checkpoint."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.trainer.max_epochs = EPOCHS_PER_GENERATION * (generation + 1)
    recorder = FirstBatchRecorder()
    work = root / f"w{worker}g{generation}-{len(list(root.iterdir()))}"
    with quiet_lightning():
        trainer = fit_member(cfg, worker, work, start, [recorder])
    checkpoint = str(work / "end.ckpt")
    trainer.save_checkpoint(checkpoint)
    return recorder, checkpoint


def _same(a: FirstBatchRecorder, b: FirstBatchRecorder) -> tuple[bool, bool]:
    """(same batch order, same coordinated-dropout mask) of two records."""
    assert a.loaded is not None and b.loaded is not None and a.augmented is not None
    assert b.augmented is not None
    return torch.equal(a.loaded, b.loaded), torch.equal(a.augmented == 0, b.augmented == 0)


def test_each_generation_of_a_member_draws_its_own_masks_and_batch_order(
    member_cfg, generation0, tmp_path
) -> None:
    gen0 = generation0
    first, gen1 = _generation(member_cfg, 0, 1, gen0, tmp_path)
    second, _ = _generation(member_cfg, 0, 2, gen1, tmp_path)
    assert _same(first, second) == (False, False)  # the old seed + worker_id at every start: (True, True)
    # a loser restoring the same checkpoint at the same epoch is another member: its own draws too
    other, _ = _generation(member_cfg, 1, 1, gen0, tmp_path)
    assert _same(first, other) == (False, False)


def test_a_generation_trained_again_from_its_checkpoint_draws_the_same(
    member_cfg, generation0, tmp_path
) -> None:
    """A restarted trial or a resumed run repeats its generation exactly (an integer seed)."""
    gen0 = generation0
    once, end_once = _generation(member_cfg, 0, 1, gen0, tmp_path)
    again, end_again = _generation(member_cfg, 0, 1, gen0, tmp_path)
    assert _same(once, again) == (True, True)
    weights = [
        torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (end_once, end_again)
    ]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


def test_member_seeds_differ_per_member_and_start_epoch_and_null_draws_entropy() -> None:
    seeds = {member_seed(0, worker, epoch) for worker in range(16) for epoch in (0, 105, 130, 155)}
    assert len(seeds) == 64 and all(0 <= s < 2**32 for s in seeds)
    assert member_seed(0, 3, 130) == member_seed(0, 3, 130) != member_seed(1, 3, 130)
    assert member_seed(None, 3, 130) != member_seed(None, 3, 130)  # 1 in 2³² to fail
