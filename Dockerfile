# syntax=docker/dockerfile:1
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
# Layers run from least to most often changed: OS packages, torch (~2.5 GB), Ray and the other
# dependencies (resolved from pyproject.toml alone), and last the package source, so a code change rebuilds
# only the last small layer.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# PyTorch with CUDA 12.8 (the Makefile's TORCH_VERSION; CPU machines run the same wheel). If a torch pin
# has no cu128 build, pass --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (or cu130).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Ray at the version the chart's RayCluster declares (values.yaml rayCluster.rayVersion), the MLflow server
# at the version the tests pin with its S3 and PostgreSQL drivers and its authentication app (the "auth"
# extra: the chart runs `mlflow server --app-name basic-auth`), and every dependency of the package
# (read from pyproject.toml alone, so this layer survives code changes).
ARG RAY_VERSION=2.60.0
ARG MLFLOW_VERSION=3.17.2
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['operator']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt "ray[tune]==${RAY_VERSION}" "mlflow[auth]==${MLFLOW_VERSION}" boto3 psycopg2-binary

# The package itself (pure Python: no compiler needed). Everything it depends on is already installed, so
# this layer is small; `pip check` fails the build if the pins above and the package disagree.
COPY README.md /src/README.md
COPY autolfads /src/autolfads
COPY operators /src/operators
RUN pip install "/src[operator]" \
    && pip check \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && autolfads --help >/dev/null


FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="autolfads" \
      org.opencontainers.image.description="AutoLFADS: LFADS models tuned by population-based training on Ray (driver, Ray nodes, operator, MLflow server)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/autolfads/autolfads" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="AutoLFADS"

# Runtime tools only: tini (PID 1 that forwards signals), wget (KubeRay's Ray health probes), no compilers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 autolfads \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash autolfads

COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MLFLOW_DISABLE_TELEMETRY=true \
    AUTOLFADS_METRICS_PORT=9090 \
    RAY_USAGE_STATS_ENABLED=0

# uid 1000 matches the chart's runAsUser; a numeric USER lets runAsNonRoot be verified by the kubelet.
USER 1000:1000
WORKDIR /home/autolfads

# `docker run IMAGE run data.h5 --out runs/` runs the CLI. KubeRay (ray start), the operator (kopf run) and
# MLflow (mlflow server) set their own command, which replaces this entrypoint.
ENTRYPOINT ["/usr/bin/tini", "--", "autolfads"]
CMD ["--help"]
