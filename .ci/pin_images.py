"""`make pin-images`: re-resolve the Dockerfile's base image digests from their registries.

    python .ci/pin_images.py [DOCKERFILE]

Each `ARG <NAME>_IMAGE=name:tag@sha256:...` line keeps its name and tag and gets the digest the registry
serves for that tag today (the multi-platform index, so every architecture stays buildable). Run it on a
machine that reaches the registries, rebuild, run the tests, and commit the new digests: the image then
changes only when someone chooses to. The chart's default images are listed with their digests too, for
an admin who wants `image.tag: TAG@sha256:DIGEST` in values (the chart's tests accept either form).

Speaks the OCI distribution API with the anonymous bearer-token flow Docker Hub, quay.io and ghcr.io use
(urllib; PyYAML from the venv reads the chart's values).
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGE_ARG = re.compile(r"^(ARG \w+_IMAGE=)([^\s@]+):([^\s@]+)(@sha256:[0-9a-f]{64})?$", flags=re.M)
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_S = 30


def split_reference(name: str) -> tuple[str, str]:
    """(registry base URL, repository path) of an image name, Docker Hub's defaults applied."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        scheme = "http" if first.startswith(("localhost", "127.0.0.1")) else "https"
        return f"{scheme}://{first}", rest
    return "https://registry-1.docker.io", name if rest else f"library/{name}"


def bearer_token(challenge: str) -> str:
    """An anonymous pull token from a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    with urllib.request.urlopen(f"{fields['realm']}?{query}", timeout=TIMEOUT_S) as response:
        body = json.load(response)
    return body.get("token") or body["access_token"]


def resolve_digest(name: str, tag: str) -> str:
    """The digest a registry serves for name:tag (HEAD of the manifest, one token retry)."""
    registry, repository = split_reference(name)
    url = f"{registry}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": MANIFEST_TYPES}
    for _ in range(2):
        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                digest = response.headers.get("Docker-Content-Digest", "")
                if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                    raise SystemExit(f"{name}:{tag}: {registry} sent no usable Docker-Content-Digest")
                return digest
        except urllib.error.HTTPError as error:
            challenge = error.headers.get("WWW-Authenticate", "")
            if error.code != 401 or not challenge.startswith("Bearer ") or "Authorization" in headers:
                raise SystemExit(f"{name}:{tag}: {registry} answered {error.code} {error.reason}") from None
            headers["Authorization"] = f"Bearer {bearer_token(challenge)}"
        except (urllib.error.URLError, OSError) as error:
            message = f"{name}:{tag}: cannot reach {registry} ({error}); run where it is reachable"
            raise SystemExit(message) from None
    raise AssertionError("unreachable")


def pin_dockerfile(text: str, resolve=resolve_digest) -> tuple[str, list[str]]:
    """The Dockerfile with every `ARG *_IMAGE=name:tag[@digest]` re-pinned, and one line per change."""
    changes = []

    def repin(match: re.Match[str]) -> str:
        prefix, name, tag, old = match.groups()
        digest = resolve(name, tag)
        if f"@{digest}" != old:
            changes.append(f"{name}:{tag} {old or '(no digest)'} -> @{digest}")
        return f"{prefix}{name}:{tag}@{digest}"

    return IMAGE_ARG.sub(repin, text), changes


def chart_images() -> list[tuple[str, str]]:
    values = yaml.safe_load((REPO / "helm" / "autolfads" / "values.yaml").read_text())
    return [(values["minio"][key]["repository"], values["minio"][key]["tag"]) for key in ("image", "mc")]


def main(argv: list[str]) -> int:
    dockerfile = Path(argv[0]) if argv else REPO / "Dockerfile"
    text, changes = pin_dockerfile(dockerfile.read_text())
    dockerfile.write_text(text)
    for line in changes or ["base images: digests unchanged"]:
        print(f"{dockerfile.name}: {line}")
    for name, tag in chart_images():
        print(f"chart: {name}:{tag}@{resolve_digest(name, tag.split('@')[0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
