"""Mixed precision (Lightning's ``bf16-mixed``: the step under ``torch.autocast``): the matmuls run in
bfloat16, while the recurrent states, every output and every loss stay float32 — so a step lands close to
the float32 step, and the outputs can be written (numpy has no bfloat16).

Before the model kept its states' dtype, an autocast step failed at the first GRU update (``torch.lerp``
of a bfloat16 gate with a float32 state), i.e. a run configured with ``trainer.precision: bf16-mixed``
crashed at its first batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autolfads.model import LFADS
from tests.model.builders import assert_within_bf16_rounding, make_batch, model_config, train_step

SHAPES = {
    "separate encoders": {},
    "fused encoders": {"ic_enc_dim": 4},
    "external input": {"ext_input_dim": 2},
    "no controller": {"co_dim": 0, "co_prior": {"_target_": "autolfads.model.priors.Null"}},
}


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_an_autocast_training_step_is_close_to_the_float32_step(overrides: dict[str, Any]) -> None:
    cfg = model_config(**overrides)
    torch.manual_seed(0)
    model = LFADS(**cfg).train()
    batch = make_batch(cfg)
    loss, grads = train_step(model, batch, seed=3)
    mixed_loss, mixed_grads = train_step(model, batch, seed=3, autocast=True)
    assert_within_bf16_rounding(mixed_loss, mixed_grads, loss, grads)


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_autocast_outputs_are_float32(overrides: dict[str, Any]) -> None:
    cfg = model_config(**overrides)
    model = LFADS(**cfg).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model({0: make_batch(cfg)}, sample_posteriors=True)[0]
    for name, value in output._asdict().items():
        assert value.dtype == torch.float32, f"{name} is {value.dtype}"
