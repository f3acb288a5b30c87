"""The HDF5 contract: a valid file gives its dimensions; each bad input is one DataError naming it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from autolfads.data import contract
from autolfads.data.contract import inspect_data_file
from autolfads.errors import DataError
from tests.data.files import contract_arrays, write_contract_file, write_h5


def refused(path: Path, likelihood: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        inspect_data_file(path, likelihood)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert str(path) in message, "errors name the file"
    return message


def test_valid_file_gives_its_dimensions(tmp_path: Path) -> None:
    summary = inspect_data_file(write_contract_file(tmp_path / "d.h5"), "Poisson")
    assert (summary.n_train, summary.n_valid, summary.n_test) == (12, 4, 0)
    assert (summary.encod_data_dim, summary.encod_seq_len) == (5, 8)
    assert (summary.recon_data_dim, summary.recon_seq_len) == (7, 10)
    assert (summary.n_held_out, summary.n_forward, summary.ext_input_dim) == (2, 2, 0)
    assert not summary.has_truth and summary.values_checked
    text = summary.describe()
    assert "train 12, valid 4" in text and "2 held-out channels, 2 forward steps" in text


def test_optional_keys_are_reported(tmp_path: Path) -> None:
    arrays = contract_arrays()
    path = write_contract_file(
        tmp_path / "d.h5",
        train_ext_input=np.zeros((12, 8, 3)),
        valid_ext_input=np.zeros((4, 8, 3)),
        train_truth=np.ones((12, 10, 7)),
        valid_truth=np.ones((4, 10, 7)),
        conversion_factor=100.0,
        test_encod_data=arrays["train_encod_data"][:3],
        test_ext_input=np.zeros((3, 8, 3)),
        train_behavior=np.zeros((12, 10, 2)),
    )
    summary = inspect_data_file(path)
    assert summary.ext_input_dim == 3 and summary.n_test == 3
    assert summary.has_truth and summary.conversion_factor == 100.0
    assert summary.truth_splits == ("train", "valid")
    assert "train_behavior" in summary.extra
    assert "conversion_factor 100" in summary.describe()


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "no such data file" in refused(tmp_path / "absent.h5")


def test_non_hdf5_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not an HDF5 file\n")
    assert "cannot be read as an HDF5 file" in refused(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    assert "is a directory" in refused(tmp_path)


def test_missing_key_lists_existing_keys(tmp_path: Path) -> None:
    message = refused(write_contract_file(tmp_path / "d.h5", drop=("valid_recon_data",)))
    assert "missing required key 'valid_recon_data'" in message
    assert "keys in the file: train_encod_data, train_recon_data, valid_encod_data" in message


def test_misnamed_key_suggests_the_close_name(tmp_path: Path) -> None:
    arrays = contract_arrays()
    arrays["train_encode_data"] = arrays.pop("train_encod_data")
    message = refused(write_h5(tmp_path / "d.h5", arrays))
    assert "missing required key 'train_encod_data'" in message
    assert "did you mean 'train_encode_data'" in message


def test_wrong_rank_is_refused(tmp_path: Path) -> None:
    message = refused(write_contract_file(tmp_path / "d.h5", train_recon_data=np.zeros((12, 70))))
    assert "'train_recon_data' has shape (12, 70) (2-D)" in message
    assert "expected 3-D n_trials x n_timesteps x n_channels" in message


def test_train_valid_channel_mismatch_is_refused(tmp_path: Path) -> None:
    valid = contract_arrays()["valid_recon_data"][:, :, :6]
    message = refused(write_contract_file(tmp_path / "d.h5", valid_recon_data=valid))
    assert "'train_recon_data' has 7 channels but 'valid_recon_data' has 6" in message


def test_train_valid_length_mismatch_is_refused(tmp_path: Path) -> None:
    valid = contract_arrays()["valid_encod_data"][:, :6]
    message = refused(write_contract_file(tmp_path / "d.h5", valid_encod_data=valid))
    assert "'train_encod_data' has 8 time steps but 'valid_encod_data' has 6" in message


def test_encod_wider_than_recon_is_refused(tmp_path: Path) -> None:
    arrays = contract_arrays(n_enc=7, n_rec=5)
    message = refused(write_h5(tmp_path / "d.h5", arrays))
    assert "'train_encod_data' has 7 channels but 'train_recon_data' only 5" in message


def test_encod_longer_than_recon_is_refused(tmp_path: Path) -> None:
    arrays = contract_arrays(t_enc=10, t_rec=8)
    message = refused(write_h5(tmp_path / "d.h5", arrays))
    assert "'train_encod_data' has 10 time steps but 'train_recon_data' only 8" in message


def test_trial_count_mismatch_is_refused(tmp_path: Path) -> None:
    recon = contract_arrays()["train_recon_data"][:10]
    message = refused(write_contract_file(tmp_path / "d.h5", train_recon_data=recon))
    assert "'train_recon_data' has 10 trials but 'train_encod_data' has 12" in message


def test_empty_split_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5", valid_encod_data=np.zeros((0, 8, 5)), valid_recon_data=np.zeros((0, 10, 7))
    )
    assert "'valid_encod_data' has 0 trials; the valid split must not be empty" in refused(path)


@pytest.mark.parametrize(("bad", "word"), [(np.nan, "NaN"), (np.inf, "Inf")])
def test_non_finite_values_are_refused(tmp_path: Path, bad: float, word: str) -> None:
    encod = contract_arrays()["valid_encod_data"]
    encod[2, 3, 1] = bad
    message = refused(write_contract_file(tmp_path / "d.h5", valid_encod_data=encod))
    assert f"'valid_encod_data' contains {word}" in message and "(2, 3, 1)" in message


def test_nan_in_a_late_chunk_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contract, "_CHUNK_BYTES", 64)  # one trial per read
    recon = contract_arrays()["train_recon_data"]
    recon[-1, -1, -1] = np.nan
    message = refused(write_contract_file(tmp_path / "d.h5", train_recon_data=recon))
    assert "'train_recon_data' contains NaN" in message and "(11, 9, 6)" in message


def test_negative_counts_are_refused_for_poisson(tmp_path: Path) -> None:
    recon = contract_arrays()["train_recon_data"]
    recon[0, 5, 6] = -1
    path = write_contract_file(tmp_path / "d.h5", train_recon_data=recon)
    message = refused(path, "Poisson")
    assert "'train_recon_data' has negative values (min -1)" in message
    assert "non-negative spike counts" in message
    inspect_data_file(path, "Gaussian")  # a real-valued likelihood takes them


def test_non_integer_counts_are_accepted_for_poisson_with_a_note(tmp_path: Path) -> None:
    recon = contract_arrays()["valid_recon_data"] + 0.5
    path = write_contract_file(tmp_path / "d.h5", valid_recon_data=recon)
    summary = inspect_data_file(path, "lfads_torch.modules.recons.Poisson")  # as lfads-torch: accepted
    assert len(summary.notes) == 1
    assert "'valid_recon_data' has non-integer values (e.g. 0.5)" in summary.notes[0]
    assert "note          'valid_recon_data' has non-integer values" in summary.describe()
    assert inspect_data_file(path, "MSE").notes == ()
    assert inspect_data_file(path).notes == ()  # no likelihood given: no support check


def test_negative_encod_data_is_refused_for_poisson(tmp_path: Path) -> None:
    encod = contract_arrays()["train_encod_data"]
    encod[1, 2, 3] = -2
    path = write_contract_file(tmp_path / "d.h5", train_encod_data=encod)
    assert "'train_encod_data' has negative values (min -2)" in refused(path, "Poisson")
    inspect_data_file(path, "Gaussian")


@pytest.mark.parametrize(
    ("dtype", "word"), [(np.complex64, "complex"), (np.bool_, "bool"), ("S3", "expected numbers")]
)
def test_complex_bool_and_text_arrays_are_refused(tmp_path: Path, dtype: object, word: str) -> None:
    recon = contract_arrays()["train_recon_data"].astype(dtype)
    path = write_contract_file(tmp_path / "d.h5", train_recon_data=recon)
    message = refused(path)
    assert "'train_recon_data' has dtype" in message and word in message
    with pytest.raises(DataError, match="train_recon_data"):
        inspect_data_file(path, check_values=False)  # a dtype is metadata: refused without the scan


def test_one_time_step_is_refused(tmp_path: Path) -> None:
    arrays = contract_arrays()
    arrays = {k: v[:, :1] for k, v in arrays.items()}
    path = write_h5(tmp_path / "d.h5", arrays)
    assert "'train_encod_data' has 1 time step; expected at least 2" in refused(path)


def test_a_declared_array_beyond_the_memory_budget_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.h5"
    arrays = contract_arrays()
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
        for split, n in (("train", 12), ("valid", 4)):
            del f[f"{split}_recon_data"]  # declared, never written:
            f.create_dataset(f"{split}_recon_data", shape=(n, 10, 10**9), dtype="f4")
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("AUTOLFADS_MEMORY_BUDGET", "8G")
    message = refused(path)
    assert "declare 596.0 GiB as float32 (largest 'train_recon_data' (12, 10, 1000000000))" in message
    assert "memory budget of 7.5 GiB (AUTOLFADS_MEMORY_BUDGET=8G)" in message


def test_a_trial_larger_than_a_block_is_scanned_in_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contract, "_CHUNK_BYTES", 16)  # less than one trial (10 x 7 x 8 bytes)
    recon = contract_arrays()["train_recon_data"]
    recon[3, 7, 5] = np.inf
    message = refused(write_contract_file(tmp_path / "d.h5", train_recon_data=recon))
    assert "'train_recon_data' contains Inf" in message and "(3, 7, 5)" in message
    monkeypatch.setattr(contract, "_CHUNK_BYTES", 4)  # less than one time step: channel slices
    message = refused(write_contract_file(tmp_path / "e.h5", train_recon_data=recon))
    assert "(3, 7, 5)" in message


def test_zeros_are_refused_for_gamma(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5")  # Poisson counts contain zeros
    message = refused(path, "autolfads.model.recons.Gamma")
    assert "'train_recon_data' has" in message and "values <= 0" in message and "Gamma" in message
    inspect_data_file(path, "ZeroInflatedGamma")


def test_truth_without_conversion_factor_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", valid_truth=np.ones((4, 10, 7)))
    message = refused(path)
    assert "'valid_truth' is present but the scalar 'conversion_factor' is missing" in message


def test_truth_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", valid_truth=np.ones((4, 8, 7)), conversion_factor=1.0)
    assert "'valid_truth' has shape (4, 8, 7); expected (4, 10, 7)" in refused(path)


def test_non_positive_conversion_factor_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", valid_truth=np.ones((4, 10, 7)), conversion_factor=0.0)
    assert "'conversion_factor' must be a positive finite number, found 0.0" in refused(path)


def test_ext_input_for_one_split_only_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", train_ext_input=np.zeros((12, 8, 2)))
    assert "'train_ext_input' is present but 'valid_ext_input' is missing" in refused(path)


def test_ext_input_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(
        tmp_path / "d.h5", train_ext_input=np.zeros((12, 9, 2)), valid_ext_input=np.zeros((4, 9, 2))
    )
    assert "'train_ext_input' has 9 time steps; expected encod_seq_len 8 or recon_seq_len 10" in refused(path)


def test_test_data_of_another_width_is_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", test_encod_data=np.zeros((3, 8, 4)))
    assert "'test_encod_data' is 8 steps x 4 channels but 'train_encod_data' is 8 x 5" in refused(path)


def test_trial_indices_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    path = write_contract_file(tmp_path / "d.h5", train_inds=np.arange(11))
    assert "'train_inds' has shape (11,) but the train split has 12 trials" in refused(path)


def test_shape_only_inspection_skips_the_value_scan(tmp_path: Path) -> None:
    recon = contract_arrays()["train_recon_data"]
    recon[0, 0, 1] = np.nan
    path = write_contract_file(tmp_path / "d.h5", train_recon_data=recon)
    summary = inspect_data_file(path, check_values=False)
    assert summary.n_train == 12 and not summary.values_checked
