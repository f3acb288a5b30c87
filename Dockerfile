# One image for everything AutoLFADS runs on a cluster: the `autolfads run` driver, the Ray head and GPU
# workers (KubeRay starts `ray start` in it), the kopf operator and the MLflow tracking server.
#
#   docker build -t ghcr.io/autolfads/autolfads:0.1.0 .
#
# Base image: python:3.11-slim plus PyTorch's CUDA 12.8 wheels, not an nvidia/cuda base. The cu128 torch
# wheels carry their CUDA runtime, cuDNN and NCCL as pip dependencies (nvidia-*-cu12), so the CUDA runtime
# matches torch's build by construction; an nvidia/cuda runtime base would add a second, unused copy
# (~3 GB) that can drift from torch's. The host needs only the NVIDIA driver (CUDA 12 minor-version
# compatibility: >= 525.60; >= 570 for everything 12.8 offers) and the NVIDIA container toolkit / device
# plugin, which mount the driver into the container.
#
# Reproducible: the base image is pinned by digest, OS packages by version, and every Python package but
# torch's CUDA build comes from requirements/image.txt with its sha256 (`make lock` writes it; the tests
# check it against pyproject.toml and against the dev lock CI tests with). torch is pinned by version
# (requirements/torch-cpu.txt names it) from PyTorch's CUDA index, which pins torch's CUDA libraries.
# The image records what it holds: /opt/venv/autolfads-sbom/pip-freeze.txt and pip-inspect.json (every
# Python distribution) and /usr/local/share/autolfads-sbom/dpkg.txt (every OS package), named by the
# image's io.autolfads.sbom.* labels. Build with BuildKit's `--sbom=true` to also
# attach an SPDX SBOM to the pushed image.
#
# Layers run from least to most often changed: OS packages, torch (~2.5 GB), the locked dependencies, and
# last the package source, so a code change rebuilds only the last small layer.

# python:3.11-slim-bookworm (Python 3.11.16, Debian 12, built 2026-08-25): the multi-platform index
# digest as the Docker Official Images record it. `make pin-images` re-resolves it where a registry is
# reachable; tests/test_dockerfile.py refuses a base image without a digest.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# PyTorch with CUDA 12.8 at the locked torch version (requirements/torch-cpu.txt; CPU machines run the
# same wheel). If a torch pin has no cu128 build, pass --build-arg
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (or cu130).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Every other dependency exactly as locked: the package's, Ray's dashboard and job API for the Ray pods
# (the `cluster` extra), the operator's, and the MLflow server's (mlflow
# with its authentication app, which the chart runs as `mlflow server --app-name basic-auth`; boto3,
# psycopg2-binary: the `server` extra). --no-deps: the lock is complete, so no resolver runs.
COPY requirements/image.txt /src/requirements/image.txt
RUN pip install --no-deps --require-hashes -r /src/requirements/image.txt

# The package itself (pure Python: no compiler needed), without touching a dependency; `pip check` fails
# the build if torch, the lock and the package disagree. The installed set is written down last. Then the
# bytecode of every module, compiled once here: the runtime sets PYTHONDONTWRITEBYTECODE, so without it
# every process in every pod compiles torch, Lightning and Ray from source as it imports them (3-4x the
# import time: `import lightning` 20 s of CPU instead of 5.5 s on a 2-core machine; ≈ 0.5 GB of .pyc in the
# development venv, which holds more than the image). checked-hash (not pip's mtime stamps): the same
# sources give the same layer, and a changed source is still noticed.
# `|| true`: a few test files inside wheels are written for newer Pythons; nothing imports them.
COPY pyproject.toml /src/pyproject.toml
COPY README.md /src/README.md
COPY autolfads /src/autolfads
COPY operators /src/operators
RUN pip install --no-deps --no-build-isolation /src \
    && pip check \
    && autolfads --help >/dev/null \
    && mkdir /opt/venv/autolfads-sbom \
    && pip freeze --all > /opt/venv/autolfads-sbom/pip-freeze.txt \
    && pip inspect > /opt/venv/autolfads-sbom/pip-inspect.json \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && { python -m compileall -qq -j 0 --invalidation-mode checked-hash /opt/venv/lib >/dev/null || true; }


FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="autolfads" \
      org.opencontainers.image.description="AutoLFADS: LFADS models tuned by population-based training on Ray (driver, Ray nodes, operator, MLflow server)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/autolfads/autolfads" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="AutoLFADS" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.autolfads.sbom.pip-freeze="/opt/venv/autolfads-sbom/pip-freeze.txt" \
      io.autolfads.sbom.pip-inspect="/opt/venv/autolfads-sbom/pip-inspect.json" \
      io.autolfads.sbom.dpkg="/usr/local/share/autolfads-sbom/dpkg.txt"

# Runtime tools only: tini (PID 1 that forwards signals), wget (KubeRay's Ray health probes), no compilers.
# Without a C compiler triton cannot build its kernel launchers, so on GPUs the model's recurrent loops run
# eager here (AUTOLFADS_COMPILE=auto notes it once at INFO; docs/model.md, "Compiled loops"): compiling
# them is not measured yet, and a compiler in every pod is attack surface the image avoids.
# Pinned to the Debian 12 versions (a bookworm security update retires the old one: the build then fails
# until the pin is raised, it never silently installs something else).
ARG TINI_VERSION=0.19.0-1+b3
ARG WGET_VERSION=1.21.3-1+deb12u1
RUN apt-get update \
    && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" "wget=${WGET_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/share/autolfads-sbom \
    && dpkg-query --show --showformat='${Package}=${Version}\n' > /usr/local/share/autolfads-sbom/dpkg.txt \
    && groupadd --gid 1000 autolfads \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash autolfads

COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAY_USAGE_STATS_ENABLED=0

# uid 1000 matches the chart's runAsUser; a numeric USER lets runAsNonRoot be verified by the kubelet.
USER 1000:1000
WORKDIR /home/autolfads

# `docker run IMAGE run data.h5 --out runs/` runs the CLI. KubeRay (ray start), the operator (kopf run) and
# MLflow (mlflow server) set their own command, which replaces this entrypoint.
ENTRYPOINT ["/usr/bin/tini", "--", "autolfads"]
CMD ["--help"]
