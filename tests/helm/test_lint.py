"""`helm lint --strict` passes for the default values and every ci/*-values.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.chart import CHART, CI_VALUES


def test_ci_values_files_cover_the_documented_scenarios() -> None:
    names = {p.name for p in CI_VALUES}
    assert {
        "default-values.yaml",
        "minio-on-values.yaml",
        "external-db-values.yaml",
        "no-prometheus-values.yaml",
        "gpu-cluster-values.yaml",
    } <= names


def test_lint_strict_passes_with_default_values(helm_run) -> None:
    result = helm_run("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict_passes_with_ci_values(helm_run, values: Path) -> None:
    result = helm_run("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_follows_the_crd_symlink(helm_run, tmp_path: Path) -> None:
    """`helm package` stores the shared CRD's content, not a dangling link."""
    import tarfile

    result = helm_run("package", str(CHART), "-d", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("autolfads-*.tgz")
    with tarfile.open(archive) as tar:
        member = tar.getmember("autolfads/crds/autolfadsjobs.autolfads.io.yaml")
        assert member.isfile()
        packaged = tar.extractfile(member).read()
    assert packaged == (CHART.parents[1] / "k8s" / "crds" / "autolfadsjobs.autolfads.io.yaml").read_bytes()
