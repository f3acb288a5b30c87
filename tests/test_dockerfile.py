"""The Dockerfile, read as data (no Docker engine here), and its Python install step run the way it runs.

What can go wrong without a build: a root or compiler-carrying final stage, versions that drift from the
chart and the package (Ray in the image vs the RayCluster's rayVersion, the CUDA torch vs the locked
torch), a base image or OS package that floats, a Python install that bypasses the lock, a build context
that leaves out what COPY needs, and a wheel that misses package data or the entry point.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
CHART = REPO / "helm" / "autolfads"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
COMPILERS = {"gcc", "g++", "cc", "clang", "make", "build-essential", "cmake", "gfortran", "python3-dev"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) from a Dockerfile: continuations joined, comments dropped."""
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, arg = line.strip().partition(" ")
        op = op.upper()
        if op == "FROM":
            words = arg.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((op, arg.strip()))
        elif op == "ARG":
            key, _, default = arg.partition("=")
            global_args[key] = default
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]
REQUIREMENTS = REPO / "requirements"
DIGEST_PINNED = re.compile(r"^[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}$")


def locked_versions(lock: str) -> dict[str, set[str]]:
    """``{name: {version, ...}}`` of a requirements lock (a universal lock may pin two per Python)."""
    out: dict[str, set[str]] = {}
    text = (REQUIREMENTS / lock).read_text()
    for match in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, flags=re.M):
        out.setdefault(match.group(1).lower(), set()).add(match.group(2))
    return out


def pip_installs() -> list[list[str]]:
    """The words of every `pip install` command the Dockerfile runs."""
    commands = []
    for stage in STAGES:
        for run in stage.args("RUN"):
            for command in re.split(r"&&|;", run):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    commands.append(words[2:])
    return commands


def arg_default(name: str) -> str:
    for stage in STAGES:
        for arg in stage.args("ARG"):
            key, eq, default = arg.partition("=")
            if key == name and eq:  # a bare `ARG NAME` only re-imports the global one into its stage
                return default
    return GLOBAL_ARGS[name]


def test_build_is_multi_stage_and_final_stage_copies_only_the_venv() -> None:
    assert len(STAGES) >= 2
    builder = STAGES[0]
    assert builder.name == "builder"
    copies = FINAL.args("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_the_image_ships_bytecode_compiled_after_the_last_install() -> None:
    """The runtime sets PYTHONDONTWRITEBYTECODE, so bytecode not compiled in the builder would be compiled
    again by every process of every pod (the Dockerfile says what that costs). It must be compiled after
    the last install and the clean-up of pip's own stamps, for the whole venv, and reproducibly."""
    runs = " && ".join(STAGES[0].args("RUN"))
    compiles = [m.start() for m in re.finditer(r"python -m compileall ", runs)]
    assert compiles, "the builder compiles no bytecode"
    last = runs[compiles[-1]:].split("||")[0]
    assert "/opt/venv/lib" in last.split() and "--invalidation-mode checked-hash" in last
    assert compiles[-1] > runs.rfind("pip install") and compiles[-1] > runs.rfind("__pycache__")
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(FINAL.args("ENV"))


def test_final_stage_runs_as_the_charts_non_root_uid() -> None:
    (user,) = FINAL.args("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so the kubelet can check runAsNonRoot
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(uid) == values["runAsUser"]


def test_final_stage_installs_no_build_tools() -> None:
    installed: set[str] = set()
    for run in FINAL.args("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                installed |= {w for w in words[2:] if not w.startswith("-")}
            assert not (words[:1] == ["pip"] or words[:3] == ["python", "-m", "pip"]), (
                "pip runs only in the builder"
            )
    assert installed, "expected the runtime apt packages to be listed"
    assert not installed & COMPILERS
    assert not [p for p in installed if p.endswith("-dev")]


def test_final_stage_has_oci_labels() -> None:
    labels = " ".join(FINAL.args("LABEL"))
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert arg_default("VERSION") == PYPROJECT["project"]["version"]


def test_entrypoint_is_the_cli_behind_an_init() -> None:
    (entrypoint,) = FINAL.args("ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["/usr/bin/tini", "--", "autolfads"]


def test_ray_in_the_image_is_the_ray_the_chart_declares_and_the_package_allows() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (ray_version,) = locked_versions("image.txt")["ray"]
    assert ray_version == values["rayCluster"]["rayVersion"]
    (ray_req,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("ray")]
    assert ray_req.specifier.contains(ray_version)


def test_torch_is_a_cuda_build_at_the_locked_version() -> None:
    torch_lock = (REQUIREMENTS / "torch-cpu.txt").read_text()
    assert {arg_default("TORCH_VERSION")} == set(re.findall(r"^torch==([0-9.]+)", torch_lock, flags=re.M))
    assert re.search(r"/whl/cu12\d$", arg_default("TORCH_INDEX_URL"))


def test_mlflow_server_matches_the_tested_pin() -> None:
    (pin,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if r.startswith("mlflow==")]
    assert locked_versions("image.txt")["mlflow"] == {pin.split("==")[1]}


def test_python_packages_come_from_the_lock() -> None:
    """Three pip installs: torch (version-pinned), the image lock (hash-checked), the package (no deps)."""
    installs = pip_installs()
    assert ["--no-deps", "--require-hashes", "-r", "/src/requirements/image.txt"] in installs
    assert ["--index-url", "${TORCH_INDEX_URL}", "torch==${TORCH_VERSION}"] in installs
    assert ["--no-deps", "--no-build-isolation", "/src"] in installs
    assert len(installs) == 3, installs
    assert "requirements/image.txt /src/requirements/image.txt" in STAGES[0].args("COPY")


def test_base_images_are_pinned_by_digest_with_the_tag_kept() -> None:
    for stage in STAGES:
        image = re.sub(r"\$\{(\w+)\}", lambda m: arg_default(m.group(1)), stage.base)
        assert DIGEST_PINNED.match(image), f"FROM {stage.base} = {image}: not tag@sha256:digest"
    assert arg_default("PYTHON_IMAGE").startswith("python:3.11-slim-bookworm@")


def test_os_packages_are_pinned_to_versions() -> None:
    for run in FINAL.args("RUN"):
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                packages = [w for w in words[2:] if not w.startswith("-")]
                assert packages and all(re.fullmatch(r"[a-z0-9.+-]+=\$\{\w+_VERSION\}", p) for p in packages)
                for p in packages:
                    assert re.fullmatch(r"[0-9][A-Za-z0-9.+~:-]*", arg_default(p.split("${")[1].rstrip("}")))


def test_image_records_what_it_holds() -> None:
    """pip freeze / pip inspect / dpkg lists at the paths the labels name."""
    labels = " ".join(FINAL.args("LABEL"))
    recorded = dict(re.findall(r'io\.autolfads\.sbom\.([\w-]+)="([^"]+)"', labels))
    assert set(recorded) == {"pip-freeze", "pip-inspect", "dpkg"}
    runs = " ".join(arg for stage in STAGES for arg in stage.args("RUN"))
    assert f"pip freeze --all > {recorded['pip-freeze']}" in runs
    assert f"pip inspect > {recorded['pip-inspect']}" in runs
    assert f"> {recorded['dpkg']}" in runs


def test_mlflow_server_carries_its_authentication_app() -> None:
    # The chart starts `mlflow server --app-name basic-auth`, which needs the auth extra's Flask-WTF: the
    # server extra asks for it and the image lock (which the Dockerfile installs) carries it.
    server = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["server"]]
    assert any(r.name == "mlflow" and "auth" in r.extras for r in server)
    assert "flask-wtf" in locked_versions("image.txt")


def test_ray_pods_get_the_dashboards_job_api() -> None:
    # KubeRay's RayJob submitter runs `ray job submit` against the head's port 8265: ray[default].
    cluster = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["cluster"]]
    assert any(r.name == "ray" and "default" in r.extras for r in cluster)
    assert {"aiohttp-cors", "opencensus"} <= set(locked_versions("image.txt"))


def test_chart_defaults_point_at_this_image() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    assert values["image"]["repository"] in DOCKERFILE.read_text()  # the build command in the header


def context_files() -> set[str]:
    """Top-level paths the .dockerignore lets into the build context (it ignores all, then re-includes)."""
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    return {p[1:].rstrip("/") for p in patterns if p.startswith("!")}


def test_dockerignore_lets_in_exactly_what_copy_needs() -> None:
    sources = set()
    for stage in STAGES:
        for copy in stage.args("COPY"):
            words = copy.split()
            if not words[0].startswith("--from"):
                sources |= {w.rstrip("/") for w in words[:-1]}
    assert sources == context_files()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package built from exactly the files the image's build context holds."""
    work = tmp_path_factory.mktemp("image-context")
    src = work / "src"
    src.mkdir()
    for name in context_files():
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(src),
            "-w",
            str(work),
        ],
        check=True,
        capture_output=True,
        cwd=work,
        timeout=300,
    )
    (built,) = work.glob("autolfads-*.whl")
    return built


def test_wheel_carries_package_data_operator_and_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = z.read(next(n for n in names if n.endswith("METADATA"))).decode()
    shipped_defaults = {
        f"autolfads/{p.relative_to(REPO / 'autolfads')}" for p in (REPO / "autolfads").rglob("*.yaml")
    }
    assert shipped_defaults and shipped_defaults <= names
    assert "operators/__init__.py" in names and "operators/main.py" in names
    assert "autolfads = autolfads.cli:main" in entry_points
    assert "Provides-Extra: operator" in metadata


@pytest.mark.slow
def test_installed_wheel_runs_the_cli_and_imports_the_operator(wheel: Path, tmp_path: Path) -> None:
    """Install the wheel as the image does (a venv, no editable install) and run what the chart runs.

    Dependencies come from the project venv through a .pth file instead of a registry, so the check is
    about our package: its modules, data files and console script, not about pip resolving torch.
    """
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "torch").exists())
    (site / "project-deps.pth").write_text(f"{deps}\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    where = subprocess.run(
        [str(python), "-c", "import autolfads, operators.main; print(autolfads.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert where.returncode == 0, where.stderr
    assert str(site) in where.stdout  # the installed wheel, not the source tree
    cli = subprocess.run(
        [str(venv / "bin" / "autolfads"), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert cli.returncode == 0, cli.stderr
    assert "run" in cli.stdout
