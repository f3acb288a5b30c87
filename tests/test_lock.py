"""The hash-locked requirements agree with pyproject.toml, with each other and with this environment.

What can go wrong: a dependency added to (or re-bounded in) pyproject.toml without `make lock`, so the
lock installs something the package does not declare or misses what it does; a lock entry without
hashes (pip would then refuse the whole file); the image shipping other Ray or MLflow versions than the
ones the tests ran; a venv that drifted from the lock it was made from.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _load_lock_script():
    spec = importlib.util.spec_from_file_location("lock_script", REPO / ".ci" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK_SCRIPT = _load_lock_script()
TORCH_VERSION = LOCK_SCRIPT.torch_version((REQUIREMENTS / "torch-cpu.txt").read_text())
LOCKS = {name: extras for name, extras, _ in LOCK_SCRIPT.LOCKS}


def lock_entries(name: str) -> list[tuple[Requirement, list[str]]]:
    """(requirement, sha256 hashes) per entry of a pip requirements file (continuations joined)."""
    text = re.sub(r"\\\n", " ", (REQUIREMENTS / name).read_text())
    entries = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = re.split(r"\s+--hash=", line)
        entries.append((Requirement(spec), [h.removeprefix("sha256:") for h in hashes]))
    return entries


def pinned(requirement: Requirement) -> Version:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement} is not an exact pin"
    return Version(spec.version)


def declared(extras: tuple[str, ...] | None) -> list[Requirement]:
    """pyproject's requirements a lock must satisfy: the dependencies plus the lock's extras."""
    optional = PROJECT["optional-dependencies"]
    chosen = optional if extras is None else {e: optional[e] for e in extras}
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    reqs += [Requirement(r) for group in chosen.values() for r in group]
    return [r for r in reqs if canonicalize_name(r.name) != PROJECT["name"]]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_was_made_from_this_pyproject(lock: str) -> None:
    """Any change to the dependency lists (or to torch's pin) without `make lock` fails here."""
    (line,) = [
        ln for ln in (REQUIREMENTS / lock).read_text().splitlines() if ln.startswith(LOCK_SCRIPT.DIGEST_LINE)
    ]
    recorded = line.removeprefix(LOCK_SCRIPT.DIGEST_LINE)
    assert recorded == LOCK_SCRIPT.pyproject_digest(PYPROJECT, LOCKS[lock], TORCH_VERSION), (
        f"requirements/{lock} was locked from other dependencies than pyproject.toml lists: run `make lock`"
    )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_dependency_is_locked_inside_its_bounds(lock: str) -> None:
    entries: dict[str, list[Version]] = {}
    for requirement, _ in lock_entries(lock):
        entries.setdefault(canonicalize_name(requirement.name), []).append(pinned(requirement))
    for requirement in declared(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        versions = [Version(TORCH_VERSION)] if name == "torch" else entries.get(name)
        assert versions, f"{requirement} (pyproject.toml) is not in requirements/{lock}: run `make lock`"
        outside = [str(v) for v in versions if not requirement.specifier.contains(v, prereleases=True)]
        assert not outside, f"requirements/{lock} pins {requirement.name}=={outside}, outside {requirement}"


@pytest.mark.parametrize("lock", [*sorted(LOCKS), "torch-cpu.txt", "uv.txt"])
def test_every_entry_is_pinned_with_hashes(lock: str) -> None:
    """pip's --require-hashes refuses the whole file if one entry lacks an exact pin or a hash."""
    for requirement, hashes in lock_entries(lock):
        pinned(requirement)
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{requirement}: {hashes}"


def test_torch_is_locked_once_and_never_pulls_cuda_into_the_locks() -> None:
    """torch and its CUDA libraries stay out of dev/image locks; torch-cpu.txt is Linux '+cpu' only."""
    for lock in LOCKS:
        names = {canonicalize_name(r.name) for r, _ in lock_entries(lock)}
        assert "torch" not in names
        assert not {n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"}, lock
    torch_lines = {str(r.marker): pinned(r) for r, _ in lock_entries("torch-cpu.txt")}
    assert torch_lines == {
        'sys_platform == "linux"': Version(f"{TORCH_VERSION}+cpu"),
        'sys_platform == "darwin"': Version(TORCH_VERSION),
    }
    (torch_req,) = [Requirement(r) for r in PROJECT["dependencies"] if r.startswith("torch")]
    assert torch_req.specifier.contains(TORCH_VERSION)


def test_tests_run_the_versions_the_image_ships() -> None:
    """Ray, MLflow, kopf and the rest: the dev lock (what CI tests) and the image lock pin the same."""

    def versions(lock: str) -> dict[str, set[Version]]:
        table: dict[str, set[Version]] = {}
        for requirement, _ in lock_entries(lock):
            table.setdefault(canonicalize_name(requirement.name), set()).add(pinned(requirement))
        return table

    dev, image = versions("dev.txt"), versions("image.txt")
    assert set(image) <= set(dev), (
        f"the image installs packages the tests never ran with: {set(image) - set(dev)}"
    )
    assert {name: pins for name, pins in image.items() if dev[name] != pins} == {}


def test_this_environment_is_what_the_lock_says() -> None:
    """A venv made by `make` holds exactly the locked versions (a stale venv fails here, not mysteriously)."""
    environment = default_environment()
    stale = []
    for requirement, _ in [*lock_entries("dev.txt"), *lock_entries("torch-cpu.txt")]:
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            stale.append(f"{requirement.name}: not installed")
            continue
        expected = pinned(requirement)
        # A GPU machine installs torch's CUDA build of the same version (`make` picks it when it finds one).
        same = installed.public == expected.public if requirement.name == "torch" else installed == expected
        if not same:
            stale.append(f"{requirement.name}: {installed} installed, {expected} locked")
    assert not stale, f"the venv differs from requirements/ (run `make venv`): {stale}"


def test_lock_script_prefers_a_local_torch_wheel_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline machines lock from their wheel folder; everyone else from PyTorch's CPU index."""
    (tmp_path / "with").mkdir()
    (tmp_path / "with" / f"torch-{TORCH_VERSION}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    monkeypatch.setattr(
        LOCK_SCRIPT, "configured_find_links", lambda: [str(tmp_path / "none"), str(tmp_path / "with")]
    )
    assert LOCK_SCRIPT.torch_find_links(TORCH_VERSION) == str(tmp_path / "with")
    monkeypatch.setattr(LOCK_SCRIPT, "configured_find_links", lambda: [str(tmp_path / "none")])
    assert LOCK_SCRIPT.torch_find_links(TORCH_VERSION) == LOCK_SCRIPT.PYTORCH_CPU_FIND_LINKS
