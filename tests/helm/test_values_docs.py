"""values.yaml documents every value, and NOTES.txt stays short and warns only about risky values."""

from __future__ import annotations

import re

import pytest

from tests.helm.chart import CHART, CI_VALUES

VALUES = (CHART / "values.yaml").read_text().splitlines()
KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[A-Za-z0-9_.\-/]+):(?P<rest>.*)$")


def documented_leaf_lines() -> list[tuple[int, str]]:
    """(line number, key) of every key whose value is a scalar, an empty map/list, or a list."""
    out = []
    for i, line in enumerate(VALUES):
        m = KEY.match(line)
        if not m or line.lstrip().startswith("- "):
            continue
        nxt = next((n for n in VALUES[i + 1 :] if n.strip() and not n.lstrip().startswith("#")), "")
        is_map = m["rest"].strip() == "" and len(nxt) - len(nxt.lstrip()) > len(m["indent"])
        if is_map and not nxt.lstrip().startswith("- "):
            continue  # a section: documented by its children
        out.append((i, m["key"]))
    return out


def in_documented_map(i: int) -> bool:
    """Keys inside a map value that itself has a `# --` line (e.g. resources.requests.cpu)."""
    indent = len(VALUES[i]) - len(VALUES[i].lstrip())
    for j in range(i - 1, -1, -1):
        line = VALUES[j]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        j_indent = len(line) - len(line.lstrip())
        if j_indent < indent:
            return comment_above(j) or in_documented_map(j)
    return False


def comment_above(i: int) -> bool:
    j = i - 1
    while j >= 0 and VALUES[j].lstrip().startswith("#") and not VALUES[j].lstrip().startswith("# --"):
        j -= 1
    return j >= 0 and VALUES[j].lstrip().startswith("# --")


def test_every_value_has_a_doc_comment() -> None:
    undocumented = [
        f"line {i + 1}: {key}"
        for i, key in documented_leaf_lines()
        if not (comment_above(i) or in_documented_map(i))
    ]
    assert not undocumented, "\n".join(undocumented)


def test_optional_keys_are_shown_commented_out() -> None:
    assert any(re.match(r"^ *# [a-zA-Z]+: ", line) for line in VALUES)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_notes_are_short(helm_run, values) -> None:
    result = helm_run(
        "install",
        "autolfads",
        str(CHART),
        "--dry-run=client",
        "-n",
        "autolfads",
        "-f",
        str(values),
        "--set",
        "rayCluster.enabled=false",
        "--set",
        "minio.enabled=true",
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:\n", 1)[1].strip().splitlines()
    assert len(notes) <= 25
    assert any("kubectl apply" in line for line in notes)


def test_notes_warn_about_default_minio_credentials_only(helm_run) -> None:
    def notes(*sets: str) -> str:
        args = ["install", "autolfads", str(CHART), "--dry-run=client", "--set", "rayCluster.enabled=false"]
        for s in sets:
            args += ["--set", s]
        result = helm_run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("NOTES:\n", 1)[1]

    minio = "WARNING: MinIO runs with the DEFAULT credentials"
    assert minio in notes("minio.enabled=true")
    assert minio not in notes("minio.enabled=true", "minio.existingSecret=minio-root")
    assert minio not in notes()


def test_notes_warn_about_labs_whose_jobs_would_all_be_refused(helm_run) -> None:
    def notes(*sets: str) -> str:
        args = ["install", "autolfads", str(CHART), "--dry-run=client", "--set", "rayCluster.enabled=false"]
        for s in sets:
            args += ["--set", s]
        result = helm_run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("NOTES:\n", 1)[1]

    assert "WARNING: no storage prefixes for lab(s) autolfads-lab" in notes()
    assert "WARNING" not in notes("labs[0].name=lab", "labs[0].storage.allowedPrefixes={s3://lab/}")
