"""`make pin-images` against a registry on loopback that speaks the OCI distribution API's token flow.

No registry is reachable from the test machines, so the real HTTP client runs against a small server
that answers as Docker Hub does: 401 with a Bearer challenge, an anonymous token, then the digest header.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "ab" * 32
OLD = "sha256:" + "cd" * 32


def _load():
    spec = importlib.util.spec_from_file_location("pin_images", REPO / ".ci" / "pin_images.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PIN = _load()


class Registry(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
        assert self.path.startswith("/token?") and "scope=repository%3Alab%2Fpython%3Apull" in self.path
        body = json.dumps({"token": "anon"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # the manifest
        host = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
        if self.headers.get("Authorization") != "Bearer anon":
            self.send_response(401)
            challenge = f'Bearer realm="{host}/token",service="registry",scope="repository:lab/python:pull"'
            self.send_header("WWW-Authenticate", challenge)
            self.end_headers()
            return
        known = self.path == "/v2/lab/python/manifests/3.11-slim-bookworm"
        assert "application/vnd.oci.image.index.v1+json" in self.headers["Accept"]
        self.send_response(200 if known else 404)
        if known:
            self.send_header("Docker-Content-Digest", DIGEST)
        self.end_headers()


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_repins_each_base_image_arg_to_the_served_digest_and_keeps_the_tag(registry: str) -> None:
    dockerfile = (
        f"ARG PYTHON_IMAGE={registry}/lab/python:3.11-slim-bookworm@{OLD}\n"
        f"FROM ${{PYTHON_IMAGE}} AS builder\n"
        f"ARG OTHER_IMAGE={registry}/lab/python:3.11-slim-bookworm\n"
    )
    pinned, changes = PIN.pin_dockerfile(dockerfile)
    assert pinned.splitlines()[0] == f"ARG PYTHON_IMAGE={registry}/lab/python:3.11-slim-bookworm@{DIGEST}"
    assert pinned.splitlines()[2] == f"ARG OTHER_IMAGE={registry}/lab/python:3.11-slim-bookworm@{DIGEST}"
    assert len(changes) == 2 and "(no digest)" in changes[1]
    assert PIN.pin_dockerfile(pinned) == (pinned, [])


def test_an_unknown_tag_or_unreachable_registry_stops_with_one_line(registry: str) -> None:
    with pytest.raises(SystemExit, match="answered 404"):
        PIN.resolve_digest(f"{registry}/lab/python", "no-such-tag")
    with pytest.raises(SystemExit, match="cannot reach"):
        PIN.resolve_digest("127.0.0.1:1/lab/python", "3.11")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("python", ("https://registry-1.docker.io", "library/python")),
        ("bitnami/redis", ("https://registry-1.docker.io", "bitnami/redis")),
        ("quay.io/minio/minio", ("https://quay.io", "minio/minio")),
        ("localhost:5000/x/y", ("http://localhost:5000", "x/y")),
    ],
)
def test_image_names_map_to_registries_as_docker_does(name: str, expected: tuple[str, str]) -> None:
    assert PIN.split_reference(name) == expected


def test_the_dockerfile_has_a_pinnable_base_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert [m.group(2) for m in PIN.IMAGE_ARG.finditer(text)] == ["python"]
