"""The labs file ``mlflow_admin provision`` reads: every problem named, no password held or shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from autolfads.errors import ConfigError
from autolfads.tracking.lab_access import read_labs


def test_a_good_labs_file_is_read_without_holding_the_passwords(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("a-good-long-password")
    path = tmp_path / "labs.yaml"
    path.write_text(f"- {{lab: a, experiment: exp-a, username: user-a, passwordFile: {tmp_path / 'pw'}}}\n")

    [lab] = read_labs(path)

    assert (lab.lab, lab.experiment, lab.username, lab.password_file) == (
        "a",
        "exp-a",
        "user-a",
        tmp_path / "pw",
    )
    assert lab.password() == "a-good-long-password"
    assert "a-good-long-password" not in repr(lab)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{lab: a}", "expected a non-empty list of {lab, experiment, username, passwordFile}, found dict"),
        ("- [a", "is not valid YAML"),
        (
            "- {lab: a, experiment: e, username: u}",
            "[0].passwordFile: expected a non-empty string, found None",
        ),
        (
            "- {lab: a, experiment: e, username: 'u:x', passwordFile: P}",
            "[0].username: 'u:x' may not hold ':'",
        ),
        ("- {lab: a, experiment: e, username: u, passwordFile: P, team: x}", "[0].team: unknown field"),
        (
            "- {lab: a, experiment: e, username: u, passwordFile: /nonexistent/pw}",
            "cannot read lab 'a''s password",
        ),
        (
            "- {lab: a, experiment: e, username: u, passwordFile: SHORT}",
            "has 5 characters; MLflow needs at least 12",
        ),
        (
            "- {lab: a, experiment: e, username: u, passwordFile: NEWLINE}",
            "ends with whitespace (a trailing newline?)",
        ),
        (
            "- {lab: a, experiment: e, username: u, passwordFile: P}\n"
            "- {lab: b, experiment: e, username: v, passwordFile: P}",
            "experiment 'e' is given to both lab 'a' and 'b'",
        ),
    ],
)
def test_a_bad_labs_file_is_refused_with_the_entry_and_field_named(
    content: str, expected: str, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("a-good-long-password")
    (tmp_path / "short").write_text("short")
    (tmp_path / "newline").write_text("a-good-long-password\n")
    content = content.replace("SHORT", str(tmp_path / "short")).replace("NEWLINE", str(tmp_path / "newline"))
    path = tmp_path / "labs.yaml"
    path.write_text(content.replace(": P", f": {tmp_path / 'pw'}").replace("P}", f"{tmp_path / 'pw'}}}"))

    with pytest.raises(ConfigError) as refused:
        read_labs(path)

    assert expected in str(refused.value)
    assert "a-good-long-password" not in str(refused.value)
