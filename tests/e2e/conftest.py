"""Fixtures for the end-to-end tests: one platform per session (tests/e2e/platform.py), the lab's Ray cluster
started when the first test needs it, and the tiny run every scenario submits."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import external_tool
from tests.e2e.platform import Platform, platform_session, start_lab_cluster
from tests.k8s.conftest import kuberay_crd_dir
from tests.operator.cluster import api_server
from tests.tune.tiny import tiny_data

EPOCHS = 4  # two 2-epoch generations: one tournament, a resume point in the middle
INTERVAL = 2


def e2e_config() -> dict:
    """A tiny LFADS population (tests/tune/tiny.py's model) whose trials choose their device themselves."""
    return {
        "model": {
            "ic_enc_dim": 4, "ci_enc_dim": 4, "con_dim": 4, "co_dim": 2, "ic_dim": 4, "gen_dim": 8,
            "fac_dim": 3, "l2_increase_epoch": 2, "kl_increase_epoch": 2,
        },
        "datamodule": {"batch_size": 16},
        "trainer": {"max_epochs": EPOCHS, "log_every_n_steps": 1},
        "posterior_sampling": {"num_samples": 2},
        "pbt": {"num_samples": 4, "perturbation_interval": INTERVAL, "burn_in_period": INTERVAL},
    }  # fmt: skip


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, moto_server: str) -> Iterator[Platform]:
    if shutil.which("kubectl") is None:
        message = "kubectl is not on PATH: run `make tools` and source .ci/test-env.sh (or install kubectl)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    helm = external_tool("HELM", "run `make tools` (or put helm v4 on PATH) and source .ci/test-env.sh")
    crds = kuberay_crd_dir()
    # Short paths: Ray's sockets live under each node's temp dir and Unix socket paths are short.
    workdir = Path(tmp_path_factory.mktemp("e2e"))
    data = tiny_data(workdir / "lorenz.h5").read_bytes()
    config = yaml.safe_dump(e2e_config(), sort_keys=False)
    yield from platform_session(helm, crds, moto_server, workdir, api_server, config, data)


@pytest.fixture(scope="session")
def lab_cluster(platform: Platform) -> Platform:
    """The chart's RayCluster of the lab, applied and running (head + 2 GPU workers)."""
    start_lab_cluster(platform)
    return platform
