"""What ``--resume`` compares: data content, the resolved config (population included), named plainly."""

from __future__ import annotations

from pathlib import Path

from autolfads.rundir.fingerprint import compute_fingerprint, describe, differences

CONFIG = {
    "model": {"gen_dim": 64, "lr_init": 0.004},
    "datamodule": {"data_paths": ["/a.h5"]},
    "pbt": {"num_samples": 4},
}


def _fp(data: list[tuple[str, Path]], config: dict = CONFIG, overrides: tuple[str, ...] = ()) -> dict:
    return compute_fingerprint(data, config, overrides=overrides)


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_the_same_inputs_have_no_differences(tmp_path: Path) -> None:
    data = _file(tmp_path / "a.h5", b"spikes")
    assert differences(_fp([(str(data), data)]), _fp([(str(data), data)])) == []


def test_changed_data_content_is_named_with_its_sizes(tmp_path: Path) -> None:
    data = _file(tmp_path / "a.h5", b"spikes")
    before = _fp([(str(data), data)])
    _file(data, b"other spikes")
    assert describe(before, _fp([(str(data), data)])) == f"data {data}: content changed (size 6 → 12)"


def test_the_same_data_at_another_path_is_not_a_difference(tmp_path: Path) -> None:
    first, moved = _file(tmp_path / "a.h5", b"spikes"), _file(tmp_path / "b.h5", b"spikes")
    other = {**CONFIG, "datamodule": {"data_paths": [str(moved)]}}
    assert differences(_fp([(str(first), first)]), _fp([(str(moved), moved)], other)) == []


def test_config_differences_list_each_key_the_population_first_with_the_override_that_set_it(
    tmp_path: Path,
) -> None:
    data = _file(tmp_path / "a.h5", b"spikes")
    changed = {"model": {"gen_dim": 128, "lr_init": 0.004}, "datamodule": {}, "pbt": {"num_samples": 8}}
    now = _fp([(str(data), data)], changed, overrides=("model.gen_dim=128",))
    assert differences(_fp([(str(data), data)]), now) == [
        "population 4 → 8",
        "model.gen_dim 64 → 128 (override model.gen_dim=128)",
    ]


def test_an_override_restating_the_config_is_not_a_difference(tmp_path: Path) -> None:
    data = _file(tmp_path / "a.h5", b"spikes")
    assert (
        differences(_fp([(str(data), data)]), _fp([(str(data), data)], overrides=("model.gen_dim=64",))) == []
    )


def test_many_differences_are_cut_to_one_readable_line(tmp_path: Path) -> None:
    data = _file(tmp_path / "a.h5", b"spikes")
    many = {"model": {f"k{i}": i for i in range(9)}, "datamodule": {}, "pbt": {"num_samples": 4}}
    line = describe(_fp([(str(data), data)]), _fp([(str(data), data)], many))
    assert line.endswith("(and 7 more)") and "\n" not in line
