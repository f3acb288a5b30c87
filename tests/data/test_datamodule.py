"""LFADSDataModule: sessions, batching, splits, masks and the reference arguments (lfads-spec §1.2)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from autolfads.data.batch import SessionBatch
from autolfads.data.datamodule import LFADSDataModule
from autolfads.errors import ConfigError, DataError
from tests.data.files import contract_arrays, write_contract_file, write_h5


@pytest.fixture
def two_sessions(tmp_path: Path) -> list[Path]:
    b = write_h5(tmp_path / "b.h5", contract_arrays(n_train=20, n_valid=6, seed=1))
    a = write_h5(tmp_path / "a.h5", contract_arrays(n_train=12, n_valid=4, seed=2))
    return [b, a]  # deliberately unsorted


def first_trials(batch: SessionBatch) -> list[int]:
    return batch.recon_data[:, 0, 0].int().tolist()  # files.py numbers trials there


def test_sessions_are_sorted_by_path(two_sessions: list[Path]) -> None:
    dm = LFADSDataModule(data_paths=[str(p) for p in two_sessions])
    assert [p.name for p in dm.data_paths] == ["a.h5", "b.h5"]
    dm.setup()
    assert [len(d["train"]) for d in dm.datasets] == [12, 20]


def test_glob_pattern_finds_the_sessions(two_sessions: list[Path]) -> None:
    dm = LFADSDataModule(datafile_pattern=str(two_sessions[0].parent / "*.h5"))
    assert [p.name for p in dm.data_paths] == ["a.h5", "b.h5"]


def test_glob_pattern_matching_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"datafile_pattern '.*none\*\.h5' matches no files"):
        LFADSDataModule(datafile_pattern=str(tmp_path / "none*.h5"))


def test_no_data_is_refused() -> None:
    with pytest.raises(ConfigError, match="give data_paths"):
        LFADSDataModule()


def test_train_batches_split_the_total_batch_size_across_sessions(two_sessions: list[Path]) -> None:
    dm = LFADSDataModule(data_paths=two_sessions, batch_size=8)
    loader = dm.train_dataloader()
    batches = [batch for batch, _, _ in loader]
    # max_size_cycle: the longer session (20 trials // 4) sets the epoch, the shorter one cycles
    assert len(batches) == 5
    for batch in batches:
        assert set(batch) == {0, 1}
        for sess_batch, extras in batch.values():
            assert isinstance(sess_batch, SessionBatch) and extras == ()
            assert sess_batch.encod_data.shape == (4, 8, 5)
            assert sess_batch.recon_data.shape == (4, 10, 7)
            assert all(t.dtype == torch.float32 for t in sess_batch)


def test_small_split_clamps_the_batch_size_with_a_warning(tmp_path: Path) -> None:
    dm = LFADSDataModule(data_paths=[write_contract_file(tmp_path / "d.h5")], batch_size=256)
    with pytest.warns(UserWarning, match="batch size 256 is larger than the 12 training trials; using 12"):
        loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 1
    assert sorted(first_trials(batches[0][0][0][0])) == list(range(12))


def test_valid_loader_keeps_every_trial_in_order(tmp_path: Path) -> None:
    dm = LFADSDataModule(data_paths=[write_contract_file(tmp_path / "d.h5")], batch_size=3)
    trials = [t for batch, _, _ in dm.val_dataloader() for t in first_trials(batch[0][0])]
    assert trials == [0, 1, 2, 3]


def test_predict_loaders_see_each_trial_once_in_file_order(two_sessions: list[Path]) -> None:
    dm = LFADSDataModule(data_paths=two_sessions, batch_size=8)
    loaders = dm.predict_dataloader()
    assert set(loaders) == {0, 1} and set(loaders[0]) == {"train", "valid"}
    trials = [t for batch, _ in loaders[1]["train"] for t in first_trials(batch)]
    assert trials == list(range(20))
    assert [len(batch.encod_data) for batch, _ in loaders[1]["train"]] == [8, 8, 4]


def test_test_split_appears_only_when_every_session_has_it(tmp_path: Path) -> None:
    test = np.ones((3, 8, 5), dtype=np.float32)
    with_test = write_contract_file(tmp_path / "a.h5", test_encod_data=test)
    without = write_contract_file(tmp_path / "b.h5")
    assert "test" not in LFADSDataModule(data_paths=[with_test, without]).predict_dataloader()[0]
    loaders = LFADSDataModule(data_paths=[with_test]).predict_dataloader()[0]
    batch, _ = next(iter(loaders["test"]))
    assert batch.encod_data.shape == (3, 8, 5)
    assert batch.recon_data.shape == (3, 10, 0)  # an empty placeholder
    assert torch.all(batch.sv_mask == 1)


def test_absent_optional_fields_are_empty_tensors(tmp_path: Path) -> None:
    dm = LFADSDataModule(data_paths=[write_contract_file(tmp_path / "d.h5")])
    dm.setup()
    batch = dm.datasets[0]["valid"].batch
    assert batch.ext_input.shape == (4, 8, 0)
    assert batch.truth.shape == (4, 10, 0)
    assert torch.all(batch.sv_mask == 1) and batch.sv_mask.shape == (4, 8, 5)


def test_truth_is_divided_by_the_conversion_factor(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5",
        train_truth=np.full((12, 10, 7), 50.0),
        valid_truth=np.full((4, 10, 7), 100.0),
        conversion_factor=100.0,
    )
    dm = LFADSDataModule(data_paths=[path])
    dm.setup()
    assert torch.allclose(dm.datasets[0]["train"].batch.truth, torch.full((12, 10, 7), 0.5))
    assert torch.allclose(dm.datasets[0]["valid"].batch.truth, torch.ones(4, 10, 7))


def test_sample_validation_mask_follows_rate_and_seed(tmp_path: Path) -> None:
    arrays = contract_arrays(n_train=200, n_valid=50)
    path = write_h5(tmp_path / "d.h5", arrays)

    def masks(seed: int) -> torch.Tensor:
        dm = LFADSDataModule(data_paths=[path], sv_rate=0.25, sv_seed=seed)
        dm.setup()
        return dm.datasets[0]["train"].batch.sv_mask

    first, again, other = masks(3), masks(3), masks(4)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert abs(first.mean().item() - 0.75) < 0.02


def test_dm_ic_enc_seq_len_trims_mask_inputs_and_truth_but_not_recon(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5",
        train_ext_input=np.zeros((12, 8, 2)),
        valid_ext_input=np.zeros((4, 8, 2)),
        train_truth=np.ones((12, 10, 7)),
        valid_truth=np.ones((4, 10, 7)),
        conversion_factor=1.0,
    )
    dm = LFADSDataModule(data_paths=[path], dm_ic_enc_seq_len=3)
    dm.setup()
    batch = dm.datasets[0]["train"].batch
    assert batch.sv_mask.shape == (12, 5, 5)
    assert batch.ext_input.shape == (12, 5, 2)
    assert batch.truth.shape == (12, 7, 7)
    assert batch.encod_data.shape == (12, 8, 5) and batch.recon_data.shape == (12, 10, 7)


def test_reshuffle_resplits_train_and_valid_reproducibly(tmp_path: Path) -> None:
    arrays = contract_arrays(n_train=12, n_valid=4)
    arrays["valid_recon_data"][:, 0, 0] += 100  # tell the original valid trials apart
    path = write_h5(tmp_path / "d.h5", arrays)

    def split(seed: int, ratio: float | None = None) -> tuple[list[int], list[int]]:
        dm = LFADSDataModule(data_paths=[path], reshuffle_tv_seed=seed, reshuffle_tv_ratio=ratio)
        dm.setup()
        return tuple(first_trials(dm.datasets[0][s].batch) for s in ("train", "valid"))  # type: ignore[return-value]

    train, valid = split(0)
    assert len(valid) == 4 and len(train) == 12
    assert sorted(train + valid) == sorted([*range(12), *range(100, 104)])
    assert split(0) == (train, valid) and split(1) != (train, valid)
    # sklearn's train_test_split(random_state=0) order: a RandomState permutation, valid taken first
    permutation = np.random.RandomState(0).permutation(16)
    everyone = [*range(12), *range(100, 104)]
    assert valid == [everyone[i] for i in permutation[:4]]
    assert len(split(0, ratio=0.5)[1]) == 8


def test_resplit_arrays_give_the_reshuffled_data(tmp_path: Path) -> None:
    arrays = contract_arrays()
    arrays["train_inds"], arrays["valid_inds"] = np.arange(12), np.arange(12, 16)
    dm = LFADSDataModule(data_paths=[write_h5(tmp_path / "d.h5", arrays)], reshuffle_tv_seed=5)
    dm.setup()
    resplit = dm.resplit_arrays(0)
    assert np.array_equal(resplit["valid_recon_data"], dm.datasets[0]["valid"].batch.recon_data.numpy())
    assert sorted([*resplit["train_inds"], *resplit["valid_inds"]]) == list(range(16))
    assert LFADSDataModule(data_paths=[tmp_path / "d.h5"]).resplit_arrays(0) == {}


def test_batch_keys_ride_along_as_extras(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5", train_behavior=np.zeros((12, 10, 2)), valid_behavior=np.ones((4, 10, 2))
    )
    dm = LFADSDataModule(data_paths=[path], batch_keys=["behavior"], batch_size=4)
    ((_, extras),) = next(iter(dm.val_dataloader()))[0].values()
    assert len(extras) == 1 and torch.equal(extras[0], torch.ones(4, 10, 2))


def test_missing_batch_key_is_refused(tmp_path: Path) -> None:
    dm = LFADSDataModule(data_paths=[write_contract_file(tmp_path / "d.h5")], batch_keys=["behavior"])
    with pytest.raises(DataError, match="batch key 'behavior' needs 'train_behavior', which is missing"):
        dm.setup()


def test_attr_keys_become_attributes(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", psth=np.ones((3, 10, 7)))
    dm = LFADSDataModule(data_paths=[path], attr_keys=["psth"])
    dm.setup()
    assert dm.psth.shape == (3, 10, 7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "datamodule.batch_size must be a positive integer, found 0"),
        ({"sv_rate": 1.0}, r"datamodule.sv_rate must be in \[0, 1\), found 1.0"),
        ({"reshuffle_tv_ratio": 0.2}, "reshuffle_tv_ratio is set but reshuffle_tv_seed is null"),
        (
            {"reshuffle_tv_seed": 0, "attr_keys": ["psth"]},
            "attr_keys \\['psth'\\] cannot be used with reshuffle",
        ),
        ({"dm_ic_enc_seq_len": -1}, "dm_ic_enc_seq_len must be a non-negative integer"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LFADSDataModule(data_paths=[write_contract_file(tmp_path / "d.h5")], **kwargs)


def test_sessions_of_different_lengths_are_refused(tmp_path: Path) -> None:
    a = write_h5(tmp_path / "a.h5", contract_arrays())
    b = write_h5(tmp_path / "b.h5", contract_arrays(t_enc=6, t_rec=9))
    with pytest.raises(DataError, match="sessions differ in encod_seq_len/recon_seq_len"):
        LFADSDataModule(data_paths=[a, b]).setup()


class _SeesBatches(L.LightningModule):
    """Records what Lightning hands to the step hooks; one weight so the optimizer has work."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[str, list] = {"train": [], "valid": []}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen["train"].append({s: b[0].encod_data.shape[0] for s, b in batch.items()})
        return self.weight**2

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.seen["valid"].append({s: b[0].encod_data.shape[0] for s, b in batch.items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_steps_receive_a_batch_per_session(two_sessions: list[Path]) -> None:
    module = _SeesBatches()
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, LFADSDataModule(data_paths=two_sessions, batch_size=8))
    assert module.seen["train"] == [{0: 4, 1: 4}] * 5
    assert module.seen["valid"] == [{0: 4, 1: 4}, {0: 4, 1: 2}]  # the shorter valid split cycles


def test_hyperparameters_are_plain_data(two_sessions: list[Path]) -> None:
    """They go into checkpoints, which load with torch.load(weights_only=True)."""
    hparams = LFADSDataModule(data_paths=two_sessions, batch_keys=("behavior",)).hparams
    assert hparams["data_paths"] == sorted(str(p) for p in two_sessions)
    assert hparams["batch_keys"] == ["behavior"] and hparams["batch_size"] == 64

    def plain(value: object) -> bool:
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | bool)

    assert all(plain(v) for v in hparams.values())


def test_a_second_datamodule_on_the_same_files_reuses_the_loaded_sessions(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5")
    first = LFADSDataModule(data_paths=[path], batch_size=4)
    first.setup()
    again = LFADSDataModule(data_paths=[path], batch_size=8)  # batch size does not change what is loaded
    again.setup()
    assert again.datasets[0]["train"].batch.encod_data is first.datasets[0]["train"].batch.encod_data
    assert again.summaries == first.summaries

    other_seed = LFADSDataModule(data_paths=[path], sv_rate=0.5, sv_seed=3)
    other_seed.setup()
    assert other_seed.datasets[0]["train"].batch.encod_data is not first.datasets[0]["train"].batch.encod_data

    # the file changed on disk: read again, never served stale
    write_contract_file(path, train_encod_data=np.full((12, 8, 5), 7.0))
    changed = LFADSDataModule(data_paths=[path])
    changed.setup()
    assert torch.all(changed.datasets[0]["train"].batch.encod_data == 7.0)
