"""What the CRD schema cannot check: one line per problem, each naming the field."""

from __future__ import annotations

import pytest

from operators import validation

BASE = {"dataURI": "s3://data/d.h5", "outputURI": "s3://out/runs"}


def test_valid_minimal_spec_has_no_problems() -> None:
    assert validation.validate_spec(BASE) == []


CASES = [
    ({"population": 1}, "spec.population: expected >= 2 and <= 1024, got 1"),
    ({"population": 2.5}, "spec.population: expected an integer, got 2.5"),
    ({"gpusPerTrial": 0}, "spec.gpusPerTrial: expected > 0 and <= 1, got 0"),
    ({"gpusPerTrial": True}, "spec.gpusPerTrial: expected a number, got True"),
    ({"dataURI": "data.h5"}, "spec.dataURI: expected a URI with a scheme (s3://bucket/key), got 'data.h5'"),
    (
        {"config": {}, "configMapRef": {"name": "c"}},
        "spec.config and spec.configMapRef: give the config one way",
    ),
    ({"config": ["model"]}, "spec.config: expected a mapping of config blocks, got list"),
    ({"config": {"pbt": 3}}, "spec.config.pbt: expected a mapping, got int"),
    ({"backoffLimit": 2}, "spec.backoffLimit: 2 needs spec.dedicatedCluster"),
    ({"suspend": True}, "spec.suspend: needs spec.dedicatedCluster"),
    ({"rayClusterName": "a", "dedicatedCluster": {}}, "spec.rayClusterName and spec.dedicatedCluster"),
    ({"overrides": ["gen_dim 128"]}, "spec.overrides[0]: expected KEY=VALUE"),
    ({"mlflow": {"trackingURI": "mlflow:5000"}}, "spec.mlflow.trackingURI: expected a URI"),
]


@pytest.mark.parametrize(("change", "message"), CASES, ids=[m.split(":")[0] for _, m in CASES])
def test_bad_spec_gives_one_line_naming_the_field(change: dict, message: str) -> None:
    problems = validation.validate_spec({**BASE, **change})
    assert any(p.startswith(message) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_every_problem_is_reported_in_one_pass() -> None:
    problems = validation.validate_spec({**BASE, "population": 1, "gpusPerTrial": 2, "dataURI": "x"})
    assert [p.split(":")[0] for p in problems] == ["spec.dataURI", "spec.population", "spec.gpusPerTrial"]


def test_backoff_and_suspend_are_fine_on_a_dedicated_cluster() -> None:
    assert (
        validation.validate_spec({**BASE, "backoffLimit": 2, "suspend": True, "dedicatedCluster": {}}) == []
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed", "ConfigMap lab/c key config.yaml: not valid YAML at line 1"),
        ("- a\n- b\n", "ConfigMap lab/c key config.yaml: expected a mapping of config blocks, got list"),
    ],
)
def test_configmap_text_that_is_not_a_config_mapping_is_named(text: str, message: str) -> None:
    config, problems = validation.parse_config_text(text, "ConfigMap lab/c key config.yaml")
    assert config is None and problems[0].startswith(message)


def test_empty_configmap_text_means_the_defaults() -> None:
    assert validation.parse_config_text("", "w") == ({}, [])


def test_effective_pbt_block_layers_defaults_config_spec_and_overrides() -> None:
    spec = {
        **BASE,
        "population": 8,
        "gpusPerTrial": 0.25,
        "cpusPerTrial": 3,
        "overrides": ["pbt.patience=7", "model.gen_dim=64"],
    }
    block = validation.effective_pbt_block({"pbt": {"perturbation_interval": 15}}, spec)
    assert block["num_samples"] == 8 and block["resources_per_trial"] == {"cpu": 3, "gpu": 0.25}
    assert block["perturbation_interval"] == 15 and block["patience"] == 7


def test_sane_pbt_block_passes_the_runs_own_parser() -> None:
    config = {"pbt": {"perturbation_interval": 15, "burn_in_period": 30}}
    assert validation.validate_config(config, {**BASE, "population": 4}, "spec.config") == []


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"perturbation_interval": 0}, "spec.config.pbt.perturbation_interval"),
        ({"mode": "sideways"}, "spec.config.pbt.mode"),
        ({"pertubation_interval": 5}, "spec.config.pbt.pertubation_interval"),
        ({"hps": {"model.lr_init": {"min_samp": 1.0, "max_samp": 0.1}}}, "spec.config.pbt.hps.model.lr_init"),
    ],
)
def test_insane_pbt_block_is_refused_naming_the_field(block: dict, field: str) -> None:
    problems = validation.validate_config({"pbt": block}, BASE, "spec.config")
    assert len(problems) == 1 and problems[0].startswith(field), problems


def test_inline_config_pbt_is_checked_by_validate_spec() -> None:
    problems = validation.validate_spec({**BASE, "config": {"pbt": {"mode": "sideways"}}})
    assert problems and problems[0].startswith("spec.config.pbt.mode")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"config": {"model": {"lr_init": -1}}},
            "spec.config.model.lr_init: expected a number > 0, found -1",
        ),
        (
            {"config": {"model": {"dropout_rate": 1.5}}},
            "spec.config.model.dropout_rate: expected a number in [0, 1)",
        ),
        (
            {"config": {"trainer": {"max_epochs": -1}}},
            "spec.config.trainer.max_epochs: expected an integer >= 1",
        ),
        ({"config": {"trainer": {"gpus": 1, "foo": 2}}}, "spec.config.trainer.foo: not an argument of"),
        ({"config": {"model": {"gen_dim": 10**7}}}, "spec.config.model.gen_dim: 10000000 makes a model of"),
        (
            {"overrides": ["model.lr_init=-1"]},
            "spec.overrides: model.lr_init: expected a number > 0, found -1",
        ),
        (
            {"overrides": ["model.gen_dimm=1"]},
            "spec.overrides: override 'model.gen_dimm=1': the config has no key",
        ),
        (
            {"config": {"pbt": {"hps": {"model.lr_inti": {"min_samp": 0.1, "max_samp": 1.0}}}}},
            "spec.config.pbt.hps.model.lr_inti",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_config_value_the_run_would_refuse_is_refused_by_the_operator(
    change: dict, message: str
) -> None:
    problems = validation.validate_spec({**BASE, **change})
    assert problems and problems[0].startswith(message), problems


def test_configmap_numbers_are_read_as_the_run_reads_them() -> None:
    config, problems = validation.parse_config_text(
        "model:\n  lr_init: 1e-3\n", "ConfigMap lab/c key config.yaml"
    )
    assert problems == [] and config == {"model": {"lr_init": 0.001}}
    assert validation.validate_config(config, BASE, "ConfigMap lab/c key config.yaml") == []


def test_a_reference_config_is_checked_without_importing_torch() -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        from operators import validation
        prior = {"_target_": "lfads_torch.modules.priors.AutoregressiveMultivariateNormal", "tau": 10.0,
                 "nvar": 0.1, "shape": 4}
        trainer = {"_target_": "pytorch_lightning.Trainer", "gpus": 1, "max_epochs": 5}
        spec = {"dataURI": "s3://d/x.h5", "outputURI": "s3://o/r"}
        config = {"model": {"co_prior": prior}, "trainer": trainer}
        assert validation.validate_spec({**spec, "config": config}) == []
        bad = {"model": {"co_prior": {**prior, "tau": -1}}, "trainer": trainer}
        problems = validation.validate_spec({**spec, "config": bad})
        assert problems[0].startswith("spec.config.model.co_prior.tau: expected a number > 0"), problems
        print([m for m in ("torch", "lightning", "ray", "h5py") if m in sys.modules])
        """
    )
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
