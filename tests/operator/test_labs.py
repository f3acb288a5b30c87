"""The labs file: how ``operators.labs`` reads it, checks it and follows its changes (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from operators import labs
from operators.labs import PolicyError, parse_policy
from tests.operator.test_admission import IMAGE, LABS_YAML, NEURO, POLICY


def test_labs_file_is_read_with_its_defaults() -> None:
    assert set(POLICY.labs) == {"neuro-lab", "vision"}  # a lab's namespace defaults to its name
    assert NEURO.cluster_secret == "neuro-s3" and NEURO.driver_slots == 4
    assert POLICY.allowed_images == (IMAGE, "registry.test/autolfads:2")  # the default is always allowed
    assert POLICY.kuberay_peers[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == (
        "kuberay-system"
    )
    assert POLICY.lab_for("default") is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("labs: [{name: Bad_Name}]", "labs[0].name: expected a DNS label"),
        ("labs: [{name: a}, {name: b, namespace: a}]", "labs[1].namespace: 'a' is already lab 'a'"),
        ("labs: [{name: a}, {name: a, namespace: b}]", "labs[1].name: 'a' is declared twice"),
        ("labs: [{name: a, storage: {allowedPrefixes: [s3://bucket]}}]", "expected a URI ending in '/'"),
        ("labs: [{name: a, storage: {allowedPrefixes: [bucket/a/]}}]", "allowedPrefixes"),
        (
            "labs: [{name: a, storage: {allowedPrefixes: [s3://b/]}}, {name: c, storage: {allowedPrefixes: [s3://b/c/]}}]",
            "lab 'a' storage prefix 's3://b/' contains lab 'c''s 's3://b/c/'",
        ),
        ("labs: {name: a}", "labs: expected a list"),
        ("labs: [{name: a, driverSlots: -1}]", "driverSlots: expected a whole number"),
        ("labs: [a", "not valid YAML"),
    ],
)
def test_malformed_labs_file_is_refused_naming_the_key(text: str, words: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "labs.yaml")
    assert words in str(err.value) and str(err.value).startswith("labs.yaml")


def test_policy_file_rereads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "labs.yaml"
    path.write_text(LABS_YAML)
    live = labs.PolicyFile(path)
    assert set(live.current().labs) == {"neuro-lab", "vision"}
    changed = yaml.safe_load(LABS_YAML)
    changed["labs"] = changed["labs"][:1]
    path.write_text(yaml.safe_dump(changed))
    assert set(live.current().labs) == {"neuro-lab"}
    path.write_text("labs: [{name: UPPER}]")  # a bad edit does not open anything up
    assert set(live.current().labs) == {"neuro-lab"}


def test_operator_without_a_labs_file_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"\$AUTOLFADS_LABS_FILE is not set"):
        labs.policy_file_from_env({})
    with pytest.raises(PolicyError, match="cannot read the labs file"):
        labs.policy_file_from_env({labs.LABS_FILE_ENV: str(tmp_path / "missing.yaml")})
