"""`make lock`: resolve pyproject.toml's dependencies into the hash-locked requirement files.

    python .ci/lock.py UV            # UV: the uv binary (`make lock` installs the pinned one)

Writes three files, universal (Linux and macOS, CPython >= 3.11) and with every file's sha256:

- requirements/dev.txt    every extra: what `make` installs for development and tests (CI included);
- requirements/image.txt  runtime + operator + server + cluster: what the Dockerfile installs;
- requirements/uv.txt     uv itself, at the version running this script: `make` installs with it.

torch itself is left out of both: its version and hashes live in requirements/torch-cpu.txt (CPU builds
come from PyTorch's own index, which a plain resolver run against PyPI would not pick), and the image
installs the CUDA build. Everything torch depends on is resolved against that CPU build's metadata, so
no CUDA library lands in either lock. The metadata comes from a wheel folder pip is already configured
with when it holds the locked wheel (offline machines), otherwise from PyTorch's CPU index.

Each file starts with the digest of the pyproject.toml sections it was made from; tests/test_lock.py
recomputes it, so a dependency added or changed without re-locking fails the test suite.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
TORCH_LOCK = REQUIREMENTS / "torch-cpu.txt"
PYTORCH_CPU_FIND_LINKS = "https://download.pytorch.org/whl/cpu/torch/"
INDEX_URL = os.environ.get("LOCK_INDEX_URL", "https://pypi.org/simple")
# (file, extras, what it is for)
LOCKS = (
    ("dev.txt", None, "development and tests: `make` installs it, CI included"),
    ("image.txt", ("operator", "server", "cluster"), "the container image: the Dockerfile installs it"),
)
DIGEST_LINE = "# pyproject-digest: "


def torch_version(text: str) -> str:
    """The one torch version requirements/torch-cpu.txt pins (without its local "+cpu" label)."""
    versions = {m.group(1) for m in re.finditer(r"^torch==([0-9][^\s;+]*)", text, flags=re.M)}
    if len(versions) != 1:
        raise SystemExit(f"{TORCH_LOCK}: expected one torch version, found {sorted(versions) or 'none'}")
    return versions.pop()


def pyproject_digest(pyproject: dict, extras: tuple[str, ...] | None, torch: str) -> str:
    """sha256 of what a lock is resolved from: requires-python, the dependencies, the chosen extras, torch."""
    project = pyproject["project"]
    optional = project.get("optional-dependencies", {})
    chosen = sorted(optional) if extras is None else list(extras)
    source = {
        "requires-python": project.get("requires-python"),
        "dependencies": project["dependencies"],
        "extras": {name: optional[name] for name in chosen},
        "torch": torch,
    }
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()


def configured_find_links() -> list[str]:
    """The wheel folders pip is configured with (PIP_FIND_LINKS, pip.conf's find-links)."""
    try:
        configured = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
        ).stdout.split()
    except OSError:
        configured = []
    return [*os.environ.get("PIP_FIND_LINKS", "").split(), *configured]


def torch_find_links(version: str) -> str:
    """Where uv reads the CPU torch's metadata: a configured wheel folder that holds it, else the index."""
    for folder in configured_find_links():
        if Path(folder).is_dir() and any(Path(folder).glob(f"torch-{version}+cpu-*.whl")):
            return folder
    return PYTORCH_CPU_FIND_LINKS


def compile_lock(uv: str, name: str, extras: tuple[str, ...] | None, purpose: str, torch: str) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        overrides = Path(tmp) / "torch-override.txt"
        overrides.write_text(
            f"torch=={torch}+cpu ; sys_platform == 'linux'\ntorch=={torch} ; sys_platform != 'linux'\n"
        )
        out = Path(tmp) / name
        if (REQUIREMENTS / name).is_file():  # uv keeps the versions in -o's file where it can: a
            shutil.copyfile(REQUIREMENTS / name, out)  # dependency added or moved moves nothing else
        extra_args = ["--all-extras"] if extras is None else [a for e in extras for a in ("--extra", e)]
        command = [
            uv, "pip", "compile", "pyproject.toml", *extra_args,
            "--universal", "--python-version", "3.11", "--generate-hashes",
            "--index-url", INDEX_URL, "--find-links", torch_find_links(torch),
            "--override", str(overrides), "--no-emit-package", "torch",
            "--no-header", "--quiet", "-o", str(out),
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "UV_NO_CONFIG": "1"})
        body = out.read_text()
    header = (
        f"# {purpose}.\n"
        "# Generated by `make lock` (.ci/lock.py) from pyproject.toml; do not edit (torch: torch-cpu.txt).\n"
        f"{DIGEST_LINE}{pyproject_digest(pyproject, extras, torch)}\n"
    )
    (REQUIREMENTS / name).write_text(header + body)
    print(f"wrote requirements/{name}: {body.count('==')} pinned packages", file=sys.stderr)


def lock_uv(uv: str) -> None:
    """requirements/uv.txt: the running uv's version with the hashes of all its wheels."""
    version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "uv.in").write_text(f"uv=={version}\n")
        out = Path(tmp) / "uv.txt"
        command = [
            uv, "pip", "compile", str(Path(tmp) / "uv.in"), "--universal", "--generate-hashes",
            "--index-url", INDEX_URL, "--no-header", "--quiet", "-o", str(out),
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "UV_NO_CONFIG": "1"})
        body = "".join(ln for ln in out.read_text().splitlines(keepends=True) if "# via" not in ln)
    header = (
        "# uv, which `make` installs the locks with (and `make lock` resolves them with).\n"
        "# Generated by `make lock` (.ci/lock.py) for the uv that ran it; to move uv, install the new one\n"
        "# into .tools/uv and run `make lock` again.\n"
    )
    (REQUIREMENTS / "uv.txt").write_text(header + body)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    torch = torch_version(TORCH_LOCK.read_text())
    for name, extras, purpose in LOCKS:
        compile_lock(argv[0], name, extras, purpose, torch)
    lock_uv(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
