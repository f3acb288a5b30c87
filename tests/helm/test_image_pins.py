"""Every image the chart deploys by default is pinned: by digest, or by a tag that never moves.

The chart's defaults are what a cluster admin gets without reading further, so a default that floats
(`latest`, no tag, a branch-like tag) would run whatever a registry serves that day instead of what was
tested. Accepted: a `@sha256:` digest (the tag values take `TAG@sha256:DIGEST`), the AutoLFADS image at
the chart's appVersion (the version the release builds, checked against pyproject.toml and the
Dockerfile in tests/test_dockerfile.py), and MinIO's dated release tags (MinIO never re-pushes them).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, CI_VALUES, MONITORING_API, RAY_API, REPO, pod_specs, template_args

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
MINIO_RELEASE = re.compile(r"^quay\.io/minio/(minio|mc):RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$")
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """``{"Kind/name[/group]/container": image}`` for every container and init container."""
    out = {}
    for doc in docs:
        if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "RayCluster"):
            continue
        for where, spec in pod_specs(doc):
            for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
                out[f"{where}/{container['name']}"] = container["image"]
    return out


def render_images(helm_run, *args: str) -> dict[str, str]:
    result = helm_run(*template_args(api_versions=(RAY_API, MONITORING_API)), *args)
    assert result.returncode == 0, result.stderr
    return images(result.documents)


def is_pinned(image: str) -> bool:
    """A digest, the AutoLFADS image at appVersion (any registry: a mirror keeps the tag), a MinIO release."""
    own = image.rpartition(":")[2] == APP_VERSION and "/" in image
    return bool(DIGEST.search(image)) or own or bool(MINIO_RELEASE.match(image))


def test_app_version_is_the_package_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == APP_VERSION


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_every_deployed_image_is_pinned(helm_run, values) -> None:
    """The defaults and each CI scenario, MinIO switched on so its server and bucket job render too."""
    files = ["-f", str(values)] if values else []
    rendered = render_images(helm_run, *files, "--set", "minio.enabled=true")
    assert rendered, "expected the chart to deploy containers"
    floating = {where: image for where, image in rendered.items() if not is_pinned(image)}
    assert floating == {}


def test_minio_defaults_are_dated_release_tags() -> None:
    for key in ("image", "mc"):
        ref = f"{VALUES['minio'][key]['repository']}:{VALUES['minio'][key]['tag']}"
        assert MINIO_RELEASE.match(ref), ref


def test_a_digest_in_the_tag_values_pins_every_container(helm_run) -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    rendered = render_images(
        helm_run,
        "--set", f"image.tag={APP_VERSION}@{digest}",
        "--set", "minio.enabled=true",
        "--set", f"minio.image.tag={VALUES['minio']['image']['tag']}@{digest}",
        "--set", f"minio.mc.tag={VALUES['minio']['mc']['tag']}@{digest}",
    )  # fmt: skip
    assert rendered
    assert {where: image for where, image in rendered.items() if not image.endswith("@" + digest)} == {}
