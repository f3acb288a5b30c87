"""Posterior sampling: every input key kept, 10 output fields per split, spec shapes, input trial order."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from autolfads.data.batch import SessionBatch
from autolfads.outputs.posterior import OUTPUT_FIELDS, run_posterior_sampling, sample_batch
from autolfads.train import build_datamodule, build_model
from tests.outputs.runs import DIMS, N_NEURONS, RECON_LEN, tiny_config, tiny_data


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("posterior")
    data = tiny_data(base / "data.h5")
    cfg = tiny_config(data)
    torch.manual_seed(0)
    model, datamodule = build_model(cfg), build_datamodule(cfg)
    written = run_posterior_sampling(model, datamodule, base / "out", num_samples=4)
    return data, model, datamodule, written


def expected_shapes(n: int) -> dict[str, tuple[int, ...]]:
    """lfads-spec §6.2 item 4, for the tiny model (ext_input_dim 0; recon is longer and wider than encod)."""
    t = RECON_LEN
    return {
        "output_params": (n, t, N_NEURONS),
        "factors": (n, t, DIMS["fac_dim"]),
        "ic_mean": (n, DIMS["ic_dim"]),
        "ic_std": (n, DIMS["ic_dim"]),
        "co_means": (n, t, DIMS["co_dim"]),
        "co_stds": (n, t, DIMS["co_dim"]),
        "gen_states": (n, t, DIMS["gen_dim"]),
        "gen_init": (n, DIMS["gen_dim"]),
        "gen_inputs": (n, t, DIMS["co_dim"]),
        "con_states": (n, t, DIMS["con_dim"]),
    }


def test_output_file_is_the_input_plus_twenty_datasets_with_spec_shapes(setup) -> None:
    data, _, _, written = setup
    assert [p.name for p in written] == ["lfads_output_sess0.h5"]
    with h5py.File(data) as source, h5py.File(written[0]) as out:
        assert set(out) - set(source) == {f"{s}_{f}" for s in ("train", "valid") for f in OUTPUT_FIELDS}
        for key in source:  # every input key survives, unchanged
            np.testing.assert_array_equal(out[key][()], source[key][()])
        for split in ("train", "valid"):
            n = source[f"{split}_encod_data"].shape[0]
            for field, shape in expected_shapes(n).items():
                assert out[f"{split}_{field}"].shape == shape, f"{split}_{field}"
                assert out[f"{split}_{field}"].dtype == np.float32


def test_trials_are_in_input_order(setup) -> None:
    """ic_mean does not depend on sampling (eval mode): it must match a direct forward of the file order."""
    data, model, _, written = setup
    model.eval()
    with h5py.File(data) as source, h5py.File(written[0]) as out:
        for split in ("train", "valid"):
            encod = torch.from_numpy(source[f"{split}_encod_data"][()])
            batch = next(iter(build_loader_batch(setup[2], split)))
            assert torch.equal(batch[0].encod_data, encod)  # the loader sees the file order
            with torch.no_grad():
                direct = model.predict_step({0: batch}, 0, sample_posteriors=False)[0].ic_mean
            np.testing.assert_allclose(out[f"{split}_ic_mean"][()], direct.numpy(), rtol=1e-5, atol=1e-6)


def build_loader_batch(datamodule, split: str):
    """The whole split as one batch, in file order."""
    from autolfads.data.datamodule import batch_loader

    dataset = datamodule.datasets[0][split]
    return batch_loader(dataset, len(dataset), shuffle=False, drop_last=False)


def test_one_pass_or_one_pass_per_sample_agree_on_deterministic_fields(setup) -> None:
    """Repeating the batch along the trial axis is only a speed-up: the posterior means do not change."""
    _, model, datamodule, _ = setup
    model.eval()
    batch = next(iter(datamodule.predict_dataloader()[0]["valid"]))
    one_pass = sample_batch(model, 0, batch, num_samples=6, max_trials=10_000)
    many_passes = sample_batch(model, 0, batch, num_samples=6, max_trials=1)
    torch.testing.assert_close(one_pass["ic_mean"], many_passes["ic_mean"])
    torch.testing.assert_close(one_pass["ic_std"], many_passes["ic_std"])
    assert one_pass["output_params"].shape == many_passes["output_params"].shape
    assert (one_pass["output_params"] > 0).all()  # Poisson rates per bin


def test_model_mode_is_restored(setup, tmp_path: Path) -> None:
    _, model, datamodule, _ = setup
    model.train()
    run_posterior_sampling(model, datamodule, tmp_path, num_samples=1)
    assert model.training


def test_rate_r2_reads_truth_and_conversion_factor(tmp_path: Path) -> None:
    from autolfads.outputs.quality import r2_score, rate_r2

    truth = np.random.default_rng(0).gamma(2.0, size=(5, 4, 3))
    path = tmp_path / "o.h5"
    with h5py.File(path, "w") as f:
        f["valid_truth"] = truth * 100.0  # spikes/s
        f["conversion_factor"] = 100.0
        f["valid_output_params"] = truth  # per bin: a perfect model
        f["train_output_params"] = truth
    assert rate_r2(path) == pytest.approx(1.0)
    assert rate_r2(path, split="train") is None  # no train_truth
    assert r2_score(np.full_like(truth, truth.mean()), truth) < 0.0 + 1e-9


def test_samples_are_spread_evenly_over_as_few_passes_as_fit() -> None:
    from autolfads.outputs.posterior import sample_counts

    assert sample_counts(50, 256, 2048) == [8, 7, 7, 7, 7, 7, 7]
    assert sample_counts(50, 10, 10_000) == [50]
    assert sample_counts(3, 5000, 2048) == [1, 1, 1]  # a batch larger than a pass: one sample per pass
    assert sum(sample_counts(17, 33, 100)) == 17


def test_encoding_once_draws_from_the_same_distribution_as_independent_passes(setup) -> None:
    """The encoders are deterministic in eval mode, so sharing them across samples changes nothing in
    distribution: the 400-sample means of both ways agree within Monte-Carlo error."""
    _, model, datamodule, _ = setup
    model.eval()
    batch = next(iter(datamodule.predict_dataloader()[0]["valid"]))
    n = 400
    torch.manual_seed(1)
    shared = sample_batch(model, 0, batch, num_samples=n)
    torch.manual_seed(2)
    trials = batch[0].encod_data.shape[0]
    repeated = SessionBatch(*(t.repeat(n, *([1] * (t.dim() - 1))) for t in batch[0]))
    with torch.no_grad():  # every row a full forward pass of its own: encoders included
        full = model.predict_step({0: (repeated, ())}, 0)[0]
    for name in ("output_params", "factors", "gen_inputs"):
        values = getattr(full, name).view(n, trials, *getattr(full, name).shape[1:])
        standard_error = values.std(dim=0) / n**0.5
        gap = (shared[name] - values.mean(dim=0)).abs()
        assert (gap <= 5 * 2**0.5 * standard_error + 1e-6).all(), name
        assert (standard_error > 0).any(), name  # the fields do vary between samples


def test_sampling_refuses_a_model_in_training_mode(setup) -> None:
    from autolfads.errors import AutoLFADSError

    _, model, datamodule, _ = setup
    batch = next(iter(datamodule.predict_dataloader()[0]["valid"]))
    model.train()
    with pytest.raises(AutoLFADSError, match="eval mode"):
        sample_batch(model, 0, batch, num_samples=2)


def test_progress_counts_the_trials_of_every_split_up_to_the_total(setup, tmp_path: Path) -> None:
    data, model, datamodule, _ = setup
    calls: list[tuple[int, int | None, str]] = []
    run_posterior_sampling(
        model, datamodule, tmp_path, num_samples=2, progress=lambda *call: calls.append(call)
    )
    with h5py.File(data) as source:
        sizes = [source[f"{split}_encod_data"].shape[0] for split in ("train", "valid")]
    total = sum(sizes)
    batches = sum(len(loader) for loader in datamodule.predict_dataloader()[0].values())
    assert calls[0] == (0, total, "trials") and calls[-1] == (total, total, "trials")
    assert len(calls) == 1 + batches  # once at the start, then after every batch
    done = [call[0] for call in calls]
    assert done == sorted(done) and sizes[0] in done  # the train split's end is one of the steps
