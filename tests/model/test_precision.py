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
from tests.model.builders import make_batch, model_config

# bfloat16 keeps 8 significant bits (relative rounding 2⁻⁹ ≈ 0.2 %) in every matmul of a few recurrent
# steps; measured on these shapes: loss within 0.1 %, gradient directions cosine ≥ 0.9998. The bounds
# catch a term lost or computed differently under autocast; the dtype checks catch a state, output or
# loss left in bfloat16.
LOSS_RTOL, MIN_GRADIENT_COSINE = 1e-2, 0.99

SHAPES = {
    "separate encoders": {},
    "fused encoders": {"ic_enc_dim": 4},
    "external input": {"ext_input_dim": 2},
    "no controller": {"co_dim": 0, "co_prior": {"_target_": "autolfads.model.priors.Null"}},
}


def step(model: LFADS, batch: Any, autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)  # the same dropout, coordinated-dropout and sampling draws for both steps
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model.shared_step({0: batch}, "train").loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_an_autocast_training_step_is_close_to_the_float32_step(overrides: dict[str, Any]) -> None:
    cfg = model_config(**overrides)
    torch.manual_seed(0)
    model = LFADS(**cfg).train()
    batch = make_batch(cfg)
    loss, grads = step(model, batch, autocast=False)
    mixed_loss, mixed_grads = step(model, batch, autocast=True)
    assert mixed_loss.dtype == torch.float32
    torch.testing.assert_close(mixed_loss, loss, rtol=LOSS_RTOL, atol=0.0)
    assert sorted(mixed_grads) == sorted(grads)
    for name, grad in grads.items():
        assert mixed_grads[name].dtype == torch.float32, name
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), mixed_grads[name].flatten(), dim=0)
        assert cosine.item() >= MIN_GRADIENT_COSINE, f"{name}: cosine {cosine.item():.4f}"


@pytest.mark.parametrize("overrides", SHAPES.values(), ids=SHAPES.keys())
def test_autocast_outputs_are_float32(overrides: dict[str, Any]) -> None:
    cfg = model_config(**overrides)
    model = LFADS(**cfg).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model({0: make_batch(cfg)}, sample_posteriors=True)[0]
    for name, value in output._asdict().items():
        assert value.dtype == torch.float32, f"{name} is {value.dtype}"
