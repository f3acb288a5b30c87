"""The KubeRay stand-in's own rules, without Ray: what it derives from the objects must be KubeRay's."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.e2e.kuberay import limits_to_ray, quantity, submitter_command
from tests.e2e.raynodes import node_command


@pytest.mark.parametrize(
    ("text", "value"), [("2", 2), ("500m", 0.5), ("8Gi", 8 * 2**30), ("512Mi", 512 * 2**20), ("1G", 1e9)]
)
def test_resource_quantities_read_as_kubernetes_reads_them(text: str, value: float) -> None:
    assert quantity(text) == value


def test_container_limits_become_ray_resources_as_kuberay_derives_them() -> None:
    container = {"resources": {"limits": {"cpu": "1500m", "memory": "4Gi", "nvidia.com/gpu": "1"}}}
    assert limits_to_ray(container) == {"num-cpus": 2, "memory": 4 * 2**30, "num-gpus": 1}
    assert limits_to_ray({"resources": {"requests": {"cpu": "8"}}}) == {}


def test_the_submitter_runs_kuberays_command_with_the_entrypoint_as_rendered() -> None:
    entrypoint = "autolfads run s3://d/x.h5 --config config.yaml --out 's3://r/a b' --resume"
    rayjob = {
        "spec": {
            "entrypoint": entrypoint,
            "runtimeEnvYAML": "working_dir: /home/ray/autolfads-job\n",
            "entrypointResources": '{"autolfads_driver": 1}',
        }
    }
    command = submitter_command(rayjob, "job-1", "http://127.0.0.1:8265", lambda p: "/pods/s1" + p)
    assert command.endswith(
        f"-- {entrypoint} ; fi ; ray job logs --address http://127.0.0.1:8265 --follow job-1"
    )
    words = shlex.split(command.split(" -- ")[0])
    assert words[words.index("--submission-id") + 1] == "job-1"
    assert json.loads(words[words.index("--runtime-env-json") + 1]) == {
        "working_dir": "/pods/s1/home/ray/autolfads-job"
    }
    assert json.loads(words[words.index("--entrypoint-resources") + 1]) == {"autolfads_driver": 1}
    assert "--no-wait" in words
    assert words[words.index("if") : words.index("if") + 5] == ["if", "!", "ray", "job", "status"]


def test_ray_start_params_are_split_as_the_pods_shell_would() -> None:
    params = {"num-cpus": "0", "resources": "'{\"autolfads_driver\": 4}'", "dashboard-host": "0.0.0.0"}
    cmd = node_command("head", params, {"num-cpus": 2, "memory": 2**30}, Path("/tmp/x"), 6379, 8265)
    assert '--resources={"autolfads_driver": 4}' in cmd
    assert "--num-cpus=0" in cmd and "--num-cpus=2" not in cmd  # a param wins over the limits
    assert "--memory=1073741824" in cmd
    assert "--dashboard-host=127.0.0.1" in cmd and "--dashboard-host=0.0.0.0" not in cmd
