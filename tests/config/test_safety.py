"""A config is data: targets outside the allow-list, resolvers and unknown blocks are refused before any
of them is imported, called or resolved (docs/security.md, attack classes "target" and "resolver").

The gadgets are not a list of known-bad names: every public callable of modules we did not allow is tried,
and a module of the test's own, whose import or call would leave a marker file, proves nothing ran.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from autolfads.config import load_config
from autolfads.config.loader import compose_config, load_run_inputs, load_saved_config
from autolfads.config.safety import (
    data_problems,
    override_problems,
    resolver_calls,
    top_level_problems,
)
from autolfads.config.targets import ALLOWED_TARGETS, target_problems
from autolfads.config.validate import job_config_problems
from autolfads.errors import ConfigError
from tests.data.files import write_contract_file

# Modules nobody allowed; a config may name none of their callables.
FOREIGN_MODULES = ("builtins", "os", "subprocess", "pickle", "shutil", "importlib", "hydra.utils", "fsspec")


def public_callables(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
    return [f"{module_name}.{n}" for n in sorted(names)]


@pytest.fixture
def gadget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """``(module name, marker)``: a module on sys.path whose import, or any call into it, makes the marker."""
    name = f"gadget_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "pwned"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            Path({str(marker)!r}).write_text("imported")
            def run(*args, **kwargs):
                Path({str(marker)!r}).write_text("called")
            class Module:
                def __init__(self, *args, **kwargs):
                    Path({str(marker)!r}).write_text("constructed")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("module", FOREIGN_MODULES)
def test_every_public_callable_of_a_foreign_module_is_refused_as_a_target(module: str) -> None:
    for target in public_callables(module):
        for cfg, key in (
            ({"model": {"readin": [{"_target_": target}]}}, "model.readin.0._target_"),
            ({"model": {"co_prior": {"_target_": target, "tau": 1}}}, "model.co_prior._target_"),
            ({"datamodule": {"_target_": target}}, "datamodule._target_"),
            ({"model": {"train_aug_stack": {"transforms": [{"x": {"_target_": target}}]}}}, None),
        ):
            problems = data_problems(cfg)
            assert len(problems) == 1, (target, problems)
            assert f"'{target}' is not an allowed target" in problems[0]
            if key:
                assert problems[0].startswith(f"{key}: ")
        (problem,) = override_problems([f"model.readin.0._target_={target}"])
        assert f"model.readin.0._target_: '{target}' is not an allowed target" in problem


@pytest.mark.parametrize("module", ["pickle", "torch.hub"])
def test_load_config_refuses_every_callable_of_a_module_we_did_not_allow(tmp_path: Path, module: str) -> None:
    for target in public_callables(module):
        config = write_yaml(tmp_path / "c.yaml", f"model:\n  ic_prior:\n    _target_: {target}\n")
        with pytest.raises(ConfigError) as info:
            load_config(config)
        message = str(info.value)
        assert message.startswith(f"{config}: model.ic_prior._target_: '{target}' is not an allowed target")
        assert "torch.nn.Identity" in message and "\n" not in message


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("file, a model part", "model:\n  readin:\n    - _target_: {g}.run\n"),
        (
            "file, a nested part",
            "model:\n  train_aug_stack:\n    transforms:\n      - _target_: {g}.Module\n",
        ),
        ("file, the model itself", "model:\n  _target_: {g}.Module\n"),
        ("file, the datamodule", "datamodule:\n  _target_: {g}.run\n  data_paths: [x.h5]\n"),
        ("file, a pbt hyperparameter", "pbt:\n  hps:\n    model.lr_init:\n      _target_: {g}.run\n"),
        ("file, under the trainer", "trainer:\n  plugins:\n    - _target_: {g}.Module\n"),
    ],
)
def test_a_gadget_in_a_config_file_is_refused_and_never_imported(
    tmp_path: Path, gadget: tuple[str, Path], where: str, text: str
) -> None:
    name, marker = gadget
    config = write_yaml(tmp_path / "c.yaml", text.format(g=name))
    with pytest.raises(ConfigError, match=rf"_target_: '{name}\.(run|Module)' is not an allowed target"):
        load_config(config)
    assert not marker.exists() and name not in sys.modules


@pytest.mark.parametrize(
    "override",
    [
        "model.readin.0._target_={g}.run",
        "model.readin=[{{_target_: {g}.Module}}]",
        "model.co_prior={{_target_: autolfads.model.priors.Null, inner: {{_target_: {g}.run}}}}",
        "+trainer.plugins=[{{_target_: {g}.Module}}]",
        "+model.train_aug_stack.transforms.0._target_={g}.Module",
    ],
)
def test_a_gadget_in_an_override_is_refused_and_never_imported(
    gadget: tuple[str, Path], override: str
) -> None:
    name, marker = gadget
    item = override.format(g=name)
    with pytest.raises(
        ConfigError, match=rf"^override '.*': .*'{name}\.(run|Module)' is not an allowed target"
    ):
        load_config(overrides=[item])
    assert not marker.exists() and name not in sys.modules


def test_every_composition_path_refuses_a_gadget_and_a_resolver_before_resolving_or_importing(
    tmp_path: Path, gadget: tuple[str, Path], marker_resolver: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compose_config`` is where every caller's config is put together — ``load_config``,
    ``load_run_inputs`` (validate/train/run) and the operator's ``job_config_problems`` (an AutoLFADSJob's
    mapping and its overrides): the rules hold on each, and nothing is imported, called or resolved."""
    monkeypatch.setenv("AUTOLFADS_TEST_SECRET", "s3cr3t-value")
    name, marker = gadget
    mapping = {"model": {"co_prior": {"_target_": f"{name}.Module", "tau": 1}}}
    file = write_yaml(tmp_path / "c.yaml", f"model:\n  co_prior:\n    _target_: {name}.Module\n")
    target = rf"model\.co_prior\._target_: '{name}\.(Module|run)' is not an allowed target"
    for config, overrides in (
        (mapping, ()),
        (file, ()),
        (None, [f"model.co_prior._target_={name}.run"]),
        ({"model": {"gen_dim": "${oc.env:AUTOLFADS_TEST_SECRET}"}}, ()),
        ({"model": {"gen_dim": "${autolfads_test_marker:}"}}, ()),
        (None, ["model.gen_dim=${autolfads_test_marker:}"]),
        ({"notes": "rides along"}, ()),
    ):
        with pytest.raises(ConfigError, match=rf"{target}|calls a resolver|unknown top-level key 'notes'"):
            compose_config(config, overrides)
        if not isinstance(config, dict):
            with pytest.raises(ConfigError, match=rf"{target}|calls a resolver"):
                load_run_inputs(config, overrides)
        if isinstance(config, dict) or overrides:  # what an AutoLFADSJob carries: a mapping, overrides
            (problem,) = job_config_problems(config if isinstance(config, dict) else None, overrides)
            assert "s3cr3t-value" not in problem
            assert "is not an allowed target" in problem or "resolver" in problem or "'notes'" in problem
    assert not marker.exists() and name not in sys.modules and not marker_resolver.exists()


def test_a_gadget_in_the_model_arguments_is_refused_and_never_imported(gadget: tuple[str, Path]) -> None:
    """What a checkpoint's hyper_parameters or a notebook hands the model goes through the same check."""
    from autolfads.model import LFADS
    from tests.model.builders import model_config

    name, marker = gadget
    for field in ("readin", "readout", "reconstruction"):
        with pytest.raises(ConfigError, match=rf"model\.{field}\.0\._target_: '{name}\.run'"):
            LFADS(**model_config(**{field: [{"_target_": f"{name}.run"}]}))
    with pytest.raises(ConfigError, match=rf"model\.ic_prior\.x\._target_: '{name}\.Module'"):
        LFADS(
            **model_config(
                ic_prior={"_target_": "autolfads.model.priors.Null", "x": {"_target_": f"{name}.Module"}}
            )
        )
    assert not marker.exists() and name not in sys.modules


def test_a_gadget_in_a_resumed_runs_config_yaml_is_refused(tmp_path: Path, gadget: tuple[str, Path]) -> None:
    name, marker = gadget
    saved = tmp_path / "config.yaml"
    OmegaConf.save(load_config(), saved)
    assert load_saved_config(saved).model.gen_dim == 200  # the legitimate file loads
    text = saved.read_text().replace("_target_: torch.nn.Identity", f"_target_: {name}.Module")
    saved.write_text(text)
    with pytest.raises(ConfigError, match=rf"config.yaml: model.readin.0._target_: '{name}.Module' is not"):
        load_saved_config(saved)
    assert not marker.exists()


def test_target_that_is_not_a_string_is_refused() -> None:
    (problem,) = target_problems({"model": {"readin": [{"_target_": ["os", "system"]}]}})
    assert problem.startswith("model.readin.0._target_: expected a class name, found ['os', 'system']")


def test_near_miss_of_an_allowed_target_suggests_it() -> None:
    (problem,) = target_problems({"m": {"_target_": "autolfads.model.recons.Poison"}})
    assert "(did you mean autolfads.model.recons.Poisson?)" in problem


def test_allowed_targets_are_exact_names_not_prefixes() -> None:
    for target in (
        "autolfads.model.recons.Poisson.__init__",
        "autolfads.model.recons",
        "torch.nn",
        "autolfads",
    ):
        assert target_problems({"_target_": target}), target


# ----------------------------------------------------------------------------------------- resolvers
RESOLVER_VALUES = [
    "${oc.env:AUTOLFADS_TEST_SECRET}",
    "${oc.env:AUTOLFADS_TEST_SECRET,default}",
    "prefix-${oc.env:AUTOLFADS_TEST_SECRET}-suffix",
    "${oc.decode:'{a: 1}'}",
    "${oc.create:{a: 1}}",
    "${oc.select:model.gen_dim}",
    "${oc.dict.keys:model}",
    "${model.${oc.env:AUTOLFADS_TEST_SECRET}}",
    "${ oc.env : AUTOLFADS_TEST_SECRET }",
    "${autolfads_test_marker:}",
]
# The same as an override is typed on a command line (YAML: a value holding ": " needs quotes).
RESOLVER_OVERRIDES = [
    *(v for v in RESOLVER_VALUES if ": " not in v),
    "'${ oc.env : AUTOLFADS_TEST_SECRET }'",
    "\"${oc.decode:'{a: 1}'}\"",
    "[1, '${oc.env:AUTOLFADS_TEST_SECRET}']",
    "{a: '${oc.env:AUTOLFADS_TEST_SECRET}'}",
]


@pytest.fixture
def marker_resolver(tmp_path: Path) -> Iterator[Path]:
    """A registered resolver (as another library might register one) that leaves a marker when called."""
    marker = tmp_path / "resolved"
    OmegaConf.register_new_resolver("autolfads_test_marker", lambda: marker.write_text("x") and 1)
    yield marker
    OmegaConf.clear_resolver("autolfads_test_marker")


@pytest.mark.parametrize("value", RESOLVER_VALUES)
def test_a_resolver_in_a_config_file_is_refused_without_being_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, marker_resolver: Path, value: str
) -> None:
    monkeypatch.setenv("AUTOLFADS_TEST_SECRET", "s3cr3t-value")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"gen_dim": value}}))
    with pytest.raises(ConfigError) as info:
        load_config(config)
    message = str(info.value)
    assert message.startswith(f"{config}: model.gen_dim: ") and "calls a resolver" in message
    assert "s3cr3t-value" not in message and not marker_resolver.exists()


@pytest.mark.parametrize("value", RESOLVER_OVERRIDES)
def test_a_resolver_in_an_override_is_refused_without_being_called(
    monkeypatch: pytest.MonkeyPatch, marker_resolver: Path, value: str
) -> None:
    monkeypatch.setenv("AUTOLFADS_TEST_SECRET", "s3cr3t-value")
    with pytest.raises(
        ConfigError, match=r"^override 'datamodule.sv_seed=.*': datamodule.sv_seed(\.\w+)?: .*resolver"
    ):
        load_config(overrides=[f"datamodule.sv_seed={value}"])
    assert not marker_resolver.exists()


def test_a_resolver_in_the_model_arguments_is_refused() -> None:
    from autolfads.model import LFADS
    from tests.model.builders import model_config

    prior = {"_target_": "autolfads.model.priors.MultivariateNormal", "mean": 0, "variance": "${oc.env:HOME}"}
    with pytest.raises(
        ConfigError, match=r"model\.ic_prior\.variance: '\$\{oc\.env:HOME\}' calls a resolver"
    ):
        LFADS(**model_config(ic_prior={**prior, "shape": 3}))


def test_references_between_keys_still_resolve(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "c.yaml",
        """
        model:
          fac_dim: 24
          ic_dim: ${model.fac_dim}
        """,
    )
    cfg = load_config(config, overrides=["model.co_dim=${model.ci_lag}", "model.ci_lag=3"])
    assert (cfg.model.ic_dim, cfg.model.co_dim, cfg.model.readout[0].in_features) == (24, 3, 24)


def test_an_overrides_relpath_is_expanded_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    write_contract_file(tmp_path / "data" / "s0.h5")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=["datamodule.datafile_pattern=${relpath:data/s*.h5}"])
    assert cfg.datamodule.datafile_pattern == str(tmp_path / "data" / "s*.h5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", []),
        ("${model.fac_dim}", []),
        ("a ${x} b ${y.z}", []),
        (r"\${oc.env:X}", []),  # escaped: a literal, nothing runs
        ("${oc.env:X}", ["${oc.env:X}"]),
        ("${${a}:b}", ["${${a}:b}"]),
        ("${unclosed", None),
    ],
)
def test_resolver_calls_are_found_with_omegaconfs_own_grammar(text: str, expected: list[str] | None) -> None:
    assert resolver_calls(text) == expected


def test_loading_a_config_registers_no_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf.basecontainer import BaseContainer

    write_contract_file(tmp_path / "s0.h5")
    before = set(BaseContainer._resolvers)
    monkeypatch.chdir(tmp_path)
    load_config(overrides=["datamodule.datafile_pattern=${relpath:s*.h5}"])
    assert set(BaseContainer._resolvers) == before and "relpath" not in before


# ---------------------------------------------------------------------------------------- top level
def test_an_unknown_top_level_block_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "c.yaml", "notes: my first run\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: unknown top-level key 'notes' \(known: model, datamodule"
    ):
        load_config(config)


def test_a_typo_of_a_top_level_block_suggests_it() -> None:
    (problem,) = top_level_problems({"datamodul": {}}, "c.yaml")
    assert problem == "c.yaml: unknown top-level key 'datamodul' (did you mean 'datamodule'?)"


# ------------------------------------------------------------------------------------ the legit path
# (the lfads-torch NeuroCAAS reference config still loads and builds: tests/config/test_reference.py)


def test_every_allowed_target_of_ours_is_an_importable_class() -> None:
    from hydra.utils import get_class

    from autolfads.config.targets import DATAMODULE_ALIASES, OUR_TARGETS, TARGET_ALIASES

    for target in OUR_TARGETS - {"autolfads.tune.HyperParam"}:
        assert inspect.isclass(get_class(target)), target
    for alias, ours in {**TARGET_ALIASES, **DATAMODULE_ALIASES}.items():
        assert alias in ALLOWED_TARGETS and ours in OUR_TARGETS, alias


def test_every_model_part_class_is_allowed() -> None:
    """A new part class must be added to the allow-list (or it would be refused in every config)."""
    from torch import nn

    for module_name in ("priors", "recons", "readin_readout"):
        module = importlib.import_module(f"autolfads.model.{module_name}")
        for name, obj in vars(module).items():
            ours = inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_")
            if ours and issubclass(obj, nn.Module):
                assert f"autolfads.model.{module_name}.{name}" in ALLOWED_TARGETS, name


def test_the_checks_need_neither_torch_nor_omegaconf_to_import() -> None:
    code = (
        "import sys; import autolfads.config.safety, autolfads.config.targets; "
        "bad = [m for m in ('torch', 'omegaconf', 'ray', 'lightning', 'hydra') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0


def test_no_foreign_module_is_on_the_allow_list() -> None:  # keeps the gadget tests above meaningful
    assert not any(t.startswith(tuple(f"{m}." for m in FOREIGN_MODULES)) for t in ALLOWED_TARGETS)
