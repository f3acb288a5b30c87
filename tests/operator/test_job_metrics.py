"""Per-job metrics on a shared Ray cluster: two AutoLFADSJobs run at once on one Ray head, and the
operator's ``/metrics`` (the endpoint the chart scrapes) shows both, told apart by ``namespace``/``job``.

Real parts: the operator (``kopf run``) against the emulated API server, a ``ray start --head`` cluster
shared by both drivers (as a lab's Ray head pod is), and each driver running the entrypoint the operator
rendered into its RayJob (with ``--address`` of that cluster). The test plays KubeRay's part only: it
starts the entrypoints and patches the RayJobs' status. A driver port that cannot be bound (the fixed
port the image used to set) costs each driver a warning, not the run.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.operator.cluster import ApiServer, Kube, LabsFile, operator, wait_for
from tests.operator.test_handlers import rayjob_of
from tests.ray_head import ray_head
from tests.tune.tiny import tiny_config, tiny_data

pytestmark = pytest.mark.slow


def _scrape(port: int) -> dict[tuple[str, str], dict[str, float]]:
    """``{(namespace, job): {"series{extra labels}": value}}`` of the ``autolfads_job_*`` series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    jobs: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("autolfads_job_"):
                continue
            labels = dict(sample.labels)
            key = (labels.pop("namespace"), labels.pop("job"))
            extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
            jobs.setdefault(key, {})[f"{sample.name}{{{extra}}}" if extra else sample.name] = sample.value
    return jobs


def _entrypoint(rayjob: dict, address: str) -> list[str]:
    """The RayJob's entrypoint as the head pod would run it, pointed at the test's Ray cluster."""
    args = shlex.split(rayjob["spec"]["entrypoint"])
    assert args[:2] == ["autolfads", "run"]
    return [sys.executable, "-m", "autolfads.cli", *args[1:], "--address", address, "--no-mlflow"]


def test_two_jobs_on_one_ray_cluster_each_get_their_series_from_the_operator(
    apiserver: ApiServer, kube: Kube, labs: LabsFile, operator_env: dict, outputs: Path, tmp_path: Path
) -> None:
    config = yaml.safe_load(tiny_config(tmp_path / "config.yaml", num_samples=2, max_epochs=4).read_text())
    other_lab = Kube(apiserver.client(), f"t-{uuid.uuid4().hex[:8]}")
    other_outputs = tmp_path / "other-lab"  # labs share no storage prefix
    other_outputs.mkdir()
    other_storage = {"secrets": [], "allowedPrefixes": [f"file://{other_outputs}/"]}
    labs.write([labs.lab(), labs.lab(other_lab.ns, storage=other_storage)])
    jobs = [(kube, "lorenz"), (other_lab, "lorenz")]  # the same job name in two labs
    specs = [
        {
            "dataURI": f"file://{tiny_data(root / 'data.h5')}",
            "outputURI": f"file://{root}",
            "population": 2,
            "maxEpochs": 4,
            "cpusPerTrial": 1,
            "config": config,
        }
        for root in (outputs, other_outputs)
    ]
    with ray_head(tmp_path / "ray") as head, operator(operator_env["liveness"]):
        for (lab, name), spec in zip(jobs, specs, strict=True):
            lab.create_job(name, spec)
        rayjobs = [rayjob_of(lab, name) for lab, name in jobs]
        drivers = []
        for (lab, name), rayjob in zip(jobs, rayjobs, strict=True):
            lab.patch_rayjob_status(
                rayjob["metadata"]["name"], {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
            )
            workdir = tmp_path / f"{lab.ns}-{name}"  # the job's working_dir: its ConfigMap's config.yaml
            workdir.mkdir()
            (cm,) = lab.config_maps()
            (workdir / "config.yaml").write_text(cm.data["config.yaml"])
            log = (workdir / "driver.log").open("w")
            command = _entrypoint(rayjob, head.address)
            # The fixed driver port the image used to set, here one that is taken (the operator's): the
            # drivers must warn and go on.
            env = {**head.env, "AUTOLFADS_METRICS_PORT": str(operator_env["metrics"])}
            drivers.append((subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log), workdir))
        port = operator_env["metrics"]
        labels = [(lab.ns, name) for lab, name in jobs]

        # While the drivers run: every scrape, which jobs it has and in which phase.
        seen_training: set[tuple[str, str]] = set()
        together: dict | None = None
        while any(proc.poll() is None for proc, _ in drivers):
            scraped = _scrape(port)
            seen_training |= {
                k
                for k, v in scraped.items()
                if k in labels and v.get("autolfads_job_phase{phase=training}") == 1
            }
            if together is None and set(labels) <= set(scraped):
                together = scraped
            time.sleep(0.5)
        for proc, workdir in drivers:
            log_text = (workdir / "driver.log").read_text()
            assert proc.returncode == 0, log_text[-3000:]
            assert f"--metrics-port {operator_env['metrics']}: cannot serve /metrics" in log_text
        statuses = [lab.status(name) for lab, name in jobs]
        assert seen_training == set(labels), (seen_training, statuses)
        assert together is not None, statuses
        for (lab, _), rayjob in zip(jobs, rayjobs, strict=True):
            lab.patch_rayjob_status(
                rayjob["metadata"]["name"], {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
            )

        def both_succeeded() -> dict | None:
            scraped = _scrape(port)
            done = [scraped.get(k, {}).get("autolfads_job_phase{phase=succeeded}") == 1 for k in labels]
            return scraped if all(done) else None

        after = wait_for(both_succeeded, timeout=60, what="both jobs succeeded in the operator's /metrics")

    # both jobs in one scrape, and no series for other jobs of these labs. Only this test's namespaces are
    # compared: the operator runs in the test process, so jobs of earlier tests may still be in its registry.
    ours = {key for key in together if key[0] in (kube.ns, other_lab.ns)}
    assert ours == set(labels)
    assert kube.ns != other_lab.ns and labels[0][1] == labels[1][1]  # told apart by namespace alone
    for key, root in zip(labels, (outputs, other_outputs), strict=True):
        series = after[key]
        assert series["autolfads_job_generation"] == series["autolfads_job_generations_planned"] == 2
        assert series["autolfads_job_epochs_done"] == series["autolfads_job_epochs_planned"] == 8
        assert series["autolfads_job_population"] == 2
        assert series["autolfads_job_best_valid_recon_smth"] > 0
        assert series["autolfads_job_checkpoint_bytes_total"] > 0
        assert sum(v for k, v in series.items() if k.startswith("autolfads_job_phase{")) == 1
        progress = root / key[0] / key[1] / "progress.json"
        assert progress.is_file()
