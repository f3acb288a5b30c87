"""Compiled recurrent loops: the same values and gradients as eager, one graph for every batch size, the
same state dict, and eager whenever no compiler works (autolfads.model.compiled).

The compiled model is shared by the module (compiling costs seconds); shapes are tiny.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from autolfads.model import LFADS
from autolfads.model import compiled as C
from autolfads.model.decoder import DECODER_LOOP
from autolfads.model.gru import LOCKSTEP_LOOP
from tests.model.builders import assert_within_bf16_rounding, make_batch, model_config, train_step

# float32 through a few recurrent steps: the compiled kernels reassociate sums and use their own tanh and
# sigmoid (eager tanh is 2·σ(2x) − 1, within 2e-7 of torch.tanh), so results agree to a few ulps, not to
# the bit; measured: gradient differences up to 2e-7 of each tensor's largest entry. Allowed: 1e-5 of it
# (atol, so entries near zero that collect rounding from large terms pass) plus 1e-4 relative — still far
# below any modelling difference: a wrong gate, a missing clip or a misplaced mask changes values by 1e-2
# or more of their scale (the decoder and GRU tests compare eager against the spec's equations).
RTOL, SCALED_ATOL = 1e-4, 1e-5


def assert_close(got: torch.Tensor, want: torch.Tensor, name: str) -> None:
    atol = SCALED_ATOL * max(want.abs().max().item(), 1e-3)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=atol, msg=lambda m: f"{name}: {m}")


def config() -> dict[str, Any]:
    """Controller, coordinated dropout, dropout, sampling: every loop input; few steps, as compiling
    unrolls the loops and its time grows with their length."""
    return model_config(encod_seq_len=3, recon_seq_len=4)


@pytest.fixture(scope="module")
def compile_on() -> Iterator[None]:
    """Loops compiled by inductor, its CPU kernels in scalar C++: what is tested is that our loops trace,
    lower and differentiate to the eager values; inductor's SIMD code generation is inductor's to test,
    and skipping it saves a third of the ≈ 100 CPU-seconds of g++ this module costs on a cold cache."""
    C.set_compile_setting("on")
    with torch._inductor.config.patch({"cpp.vec_isa_ok": False}):
        yield
    C.set_compile_setting(None)


def run_eager(fn: Any) -> Any:
    C.set_compile_setting("off")
    try:
        return fn()
    finally:
        C.set_compile_setting("on")


@pytest.fixture(scope="module")
def model(compile_on: None) -> LFADS:
    torch.manual_seed(0)
    return LFADS(**config()).train()


def test_compiled_training_step_matches_eager_values_and_gradients(model: LFADS) -> None:
    batch = make_batch(config())
    loss, grads = train_step(model, batch, seed=3)
    assert LOCKSTEP_LOOP.backend("cpu") == "compiled" and DECODER_LOOP.backend("cpu") == "compiled"
    eager_loss, eager_grads = run_eager(lambda: train_step(model, batch, seed=3))
    assert_close(loss, eager_loss, "loss")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert sorted(grads) == sorted(eager_grads) == sorted(trainable)
    for name, grad in grads.items():
        assert_close(grad, eager_grads[name], name)


def test_compiled_sampling_forward_matches_eager_without_grad(model: LFADS) -> None:
    batch = make_batch(config(), n_trials=7, seed=1)
    model.eval()
    try:

        def outputs() -> Any:
            torch.manual_seed(5)
            with torch.no_grad():
                return model.predict_step({0: batch}, 0)[0]

        compiled, eager = outputs(), run_eager(outputs)
    finally:
        model.train()
    for name, value in compiled._asdict().items():
        assert_close(value, getattr(eager, name), name)


def test_compiled_loop_samples_controller_outputs_from_the_student_t_family(compile_on: None) -> None:
    """The noise is drawn outside the loop from the co prior's ``standard_noise``: compiled and eager read
    the same Student-t draws (heavy tails: P(|ε| > 3) is 0.058 for t₃, 0.003 for a Normal)."""
    student = {"_target_": "autolfads.model.priors.MultivariateStudentT", "loc": 0.0, "scale": 1.0,
               "df": 3.0, "shape": 2}  # fmt: skip
    cfg = {**config(), "co_prior": student}
    torch.manual_seed(0)
    model = LFADS(**cfg).eval()  # the shapes of the shared model: the no-grad graph is reused
    batch = make_batch(cfg, n_trials=1500, seed=2)

    def outputs() -> Any:
        torch.manual_seed(9)
        with torch.no_grad():
            return model({0: batch}, sample_posteriors=True)[0]

    compiled, eager = outputs(), run_eager(outputs)
    assert DECODER_LOOP.backend("cpu") == "compiled"
    for name in ("gen_inputs", "factors", "co_means"):
        assert_close(getattr(compiled, name), getattr(eager, name), name)
    co = compiled.gen_inputs[..., : cfg["co_dim"]]
    eps = ((co - compiled.co_means) / compiled.co_stds).flatten()  # 1500 × 4 steps × 2 = 12000 draws
    assert (eps.abs() > 3).float().mean().item() > 0.03


@pytest.mark.slow  # a graph of its own: ≈ 50 s of compiling on a cold cache
def test_compiled_autocast_step_matches_eager_autocast(model: LFADS) -> None:
    """``bf16-mixed`` with compiled loops (the CUDA default): the loops trace under autocast, and their
    bfloat16 matmuls and float32 states give the eager autocast step. Compiled kernels need not round a
    fused intermediate to bfloat16 as eager does: the bounds are those of bf16 rounding (builders.py)."""
    batch = make_batch(config())
    loss, grads = train_step(model, batch, seed=4, autocast=True)
    eager_loss, eager_grads = run_eager(lambda: train_step(model, batch, seed=4, autocast=True))
    assert_within_bf16_rounding(loss, grads, eager_loss, eager_grads)


def test_other_batch_sizes_reuse_the_compiled_graphs(model: LFADS) -> None:
    train_step(model, make_batch(config(), n_trials=12), seed=0)  # compiled (or cached) at this size
    counters = torch._dynamo.utils.counters
    before = counters["stats"]["unique_graphs"]
    for n_trials in (5, 9):
        loss, _ = train_step(model, make_batch(config(), n_trials=n_trials), seed=n_trials)
        assert torch.isfinite(loss)
    assert counters["stats"]["unique_graphs"] == before


def test_state_dict_and_checkpoints_are_those_of_the_eager_model(model: LFADS) -> None:
    torch.manual_seed(0)
    eager = LFADS(**config())
    assert list(model.state_dict()) == list(eager.state_dict())
    assert not any("_orig_mod" in key for key in model.state_dict())


def test_a_compiler_that_fails_leaves_the_loop_eager_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_backend(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("no compiler today")

    calls = []

    def loop(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return x * 2

    monkeypatch.setattr(C, "_override", "on")
    monkeypatch.setattr(C, "BACKEND", failing_backend)
    wrapped = C.CompiledLoop(loop, "test loop", lambda x: [(x, 0)])
    with caplog.at_level(logging.INFO, logger="autolfads.model"):
        for _ in range(2):
            torch.testing.assert_close(wrapped(torch.ones(3, 2)), torch.full((3, 2), 2.0))
    assert wrapped.backend("cpu") == "eager"
    failures = [r for r in caplog.records if "compiling failed" in r.getMessage()]
    assert len(failures) == 1 and "no compiler today" in failures[0].getMessage()
    assert failures[0].levelno == logging.WARNING


def test_inputs_that_are_wrong_raise_the_eager_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "_override", "on")
    monkeypatch.setattr(C, "BACKEND", "eager")  # dynamo without inductor: cheap, and it works
    wrapped = C.CompiledLoop(lambda a, b: a @ b, "test matmul", lambda a, b: [])
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        wrapped(torch.ones(2, 3), torch.ones(2, 3))
    assert wrapped.backend("cpu") == "compiled"  # the compiler was not blamed


def test_no_cpp_compiler_means_eager_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "_override", "on")
    with torch._inductor.config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        assert "no C++ compiler" in (C.compiler_problem("cpu") or "")
        wrapped = C.CompiledLoop(lambda x: x + 1, "test loop", lambda x: [])
        torch.testing.assert_close(wrapped(torch.zeros(2)), torch.ones(2))
    assert wrapped.backend("cpu") == "eager"


def test_auto_without_a_compiler_is_eager_with_a_note_not_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The image ships no C compiler: a GPU run there under the default runs eager, and says so quietly."""
    monkeypatch.setattr(C, "_override", "auto")
    monkeypatch.setattr(C, "AUTO_DEVICES", ("cpu",))  # stands in for CUDA, which this machine lacks
    wrapped = C.CompiledLoop(lambda x: x + 1, "test auto loop", lambda x: [])
    with (
        torch._inductor.config.patch({"cpp.cxx": ("no-such-c++-compiler",)}),
        caplog.at_level(logging.INFO, logger="autolfads.model"),
    ):
        torch.testing.assert_close(wrapped(torch.zeros(2)), torch.ones(2))
    assert wrapped.backend("cpu") == "eager"
    (record,) = [r for r in caplog.records if r.name == "autolfads.model"]
    assert record.levelno == logging.INFO and "no C++ compiler" in record.getMessage()


@pytest.mark.parametrize(
    ("value", "setting", "cpu", "cuda"),
    [("", "auto", False, True), ("auto", "auto", False, True), ("1", "on", True, True),
     ("off", "off", False, False)],
)  # fmt: skip
def test_setting_picks_devices(
    monkeypatch: pytest.MonkeyPatch, value: str, setting: str, cpu: bool, cuda: bool
) -> None:
    monkeypatch.setattr(C, "_override", None)
    monkeypatch.setenv(C.ENV_VAR, value)
    assert C.compile_setting() == setting
    assert (C.wants_compiled("cpu"), C.wants_compiled("cuda")) == (cpu, cuda)


def test_unknown_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "_override", None)
    monkeypatch.setenv(C.ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match="AUTOLFADS_COMPILE='sometimes'"):
        C.compile_setting()
