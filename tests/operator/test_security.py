"""The operator against untrusted job content, end to end (the real kopf operator on the API emulator).

- A config, a ConfigMap, an override naming a ``_target_`` outside the allow-list (or calling a resolver):
  the job is ``Failed`` with the key and value in its message, a Warning Event says so, no RayJob exists.
- ``progress.json`` from endpoints that answer 50 MB, slowly, junk or lies: the status stays as it was,
  the job's Prometheus series get nothing of the answer, the operator's memory does not grow by it, and
  another job's progress still flows meanwhile.

Lab admission (``operators.admission``) runs before these checks: every job here is in a lab namespace
(the ``labs`` fixture), with URIs under its prefixes and storage Secrets the lab lists and the admin marked,
so what refuses or bounds it is the rule under test, not the lab's.

docs/security.md lists every attack class with its test; the pure checks behind these are tested in
``test_validation.py`` and ``test_progress.py``.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import urllib.request
from pathlib import Path

import pytest

from operators import progress
from tests.operator.cluster import Kube, LabsFile, operator, wait_for
from tests.operator.hostile import hostile_endpoint
from tests.operator.test_handlers import phase, rayjob_of, spec_for
from tests.services import DUMMY_AWS_ENV, free_port

pytestmark = pytest.mark.slow
REFERENCE = Path(__file__).parents[1] / "config" / "pbt_neurocaas.yaml"
PROGRESS_KEYS = ("generation", "bestValidReconSmth", "trials", "bestTrial", "epoch", "mlflowRunID")


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_gadget_in_a_config_a_configmap_or_an_override_fails_the_job_and_creates_nothing(
    kube: Kube, labs: LabsFile, operator_env: dict, outputs: Path
) -> None:
    labs.write([labs.lab()])  # the test's namespace is a lab; spec_for's URIs are under its prefixes
    kube.core.create_namespaced_config_map(
        kube.ns,
        {
            "metadata": {"name": "evil"},
            "data": {"config.yaml": "datamodule:\n  _target_: torch.hub.load\n  repo_or_dir: x/y\n"},
        },
    )
    kube.core.create_namespaced_config_map(
        kube.ns, {"metadata": {"name": "reference"}, "data": {"config.yaml": REFERENCE.read_text()}}
    )
    jobs = {
        "viaconfigmap": (
            spec_for(outputs, configMapRef={"name": "evil"}),
            f"ConfigMap {kube.ns}/evil key config.yaml: datamodule._target_: 'torch.hub.load' is not",
        ),
        "inline": (
            spec_for(outputs, config={"model": {"readin": [{"_target_": "pickle.loads", "data": "x"}]}}),
            "spec.config: model.readin.0._target_: 'pickle.loads' is not an allowed target",
        ),
        "override": (
            spec_for(outputs, overrides=["model.co_prior._target_=shutil.rmtree"]),
            "spec.overrides[0] 'model.co_prior._target_=shutil.rmtree': model.co_prior._target_: 'shutil",
        ),
        "resolver": (
            spec_for(outputs, overrides=["trainer.max_epochs=${oc.env:AWS_SECRET_ACCESS_KEY}"]),
            "trainer.max_epochs: '${oc.env:AWS_SECRET_ACCESS_KEY}' calls a resolver",
        ),
    }
    with operator(operator_env["liveness"]):
        for name, (spec, _) in jobs.items():
            kube.create_job(name, spec)
        kube.create_job("legit", spec_for(outputs, configMapRef={"name": "reference"}, population=16))
        legit = rayjob_of(kube, "legit")  # the lfads-torch reference config is still accepted
        for name, (_, message) in jobs.items():
            status = phase(kube, name, "Failed")
            assert status["reason"] == "InvalidSpec" and message in status["message"], status["message"]
            events = wait_for(
                lambda n=name: [e for e in kube.events(n) if e[1] == "InvalidSpec"], what=f"{name} event"
            )
            assert events[0][0] == "Warning" and message in events[0][2]
        assert [r["metadata"]["name"] for r in kube.rayjobs()] == [legit["metadata"]["name"]]
        owners = {o.name for c in kube.config_maps() for o in c.metadata.owner_references or []}
        assert owners <= {"legit"}  # a refused job got no config rendered either


def test_hostile_progress_answers_leave_the_status_unchanged_and_cost_bounded_time_and_memory(
    kube: Kube, labs: LabsFile, operator_env: dict, outputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "DEADLINE_S", 2.0)
    modes = ("huge", "declared", "slow", "slowheaders", "junk", "array", "liar")
    lab = labs.lab(secrets=["hostile", "elsewhere"])  # the lab allows both Secrets and these buckets
    lab["storage"]["allowedPrefixes"] += [f"s3://{bucket}/" for bucket in (*modes, "good")]
    labs.write([lab])
    with hostile_endpoint() as hostile:
        monkeypatch.setenv(progress.ALLOWED_ENDPOINTS_ENV, hostile.url)
        secrets = {"hostile": hostile.url, "elsewhere": f"http://127.0.0.1:{free_port()}"}  # not allowed
        for secret, endpoint in secrets.items():
            kube.create_secret(secret, {**DUMMY_AWS_ENV, "AWS_ENDPOINT_URL": endpoint})  # admin-marked
        hostile_jobs = {
            mode: spec_for(outputs, outputURI=f"s3://{mode}/out", storageSecretRef={"name": "hostile"})
            for mode in modes
        }
        hostile_jobs["notallowed"] = spec_for(  # a lab's other Secret: only on a cluster of its own
            outputs, outputURI="s3://good/out", storageSecretRef={"name": "elsewhere"}, dedicatedCluster={}
        )
        with operator(operator_env["liveness"]):
            for name, spec in hostile_jobs.items():
                kube.create_job(name.replace("slowheaders", "slowhead"), spec)
            kube.create_job("healthy", spec_for(outputs))
            for job in [*(n.replace("slowheaders", "slowhead") for n in hostile_jobs), "healthy"]:
                name = rayjob_of(kube, job)["metadata"]["name"]
                kube.patch_rayjob_status(name, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
                phase(kube, job, "Running")
            tracemalloc.start()  # the operator runs in this process: its reads' memory is counted here
            started = time.monotonic()
            (outputs / kube.ns / "healthy").mkdir(parents=True)
            (outputs / kube.ns / "healthy" / "progress.json").write_text(json.dumps({"generation": 4}))
            # the other jobs' slow reads hold no worker long: the healthy job's progress still arrives
            wait_for(
                lambda: kube.status("healthy").get("generation") == 4, timeout=30, what="healthy progress"
            )
            healthy_after = time.monotonic() - started
            time.sleep(3 * progress.DEADLINE_S)  # several timer rounds for every hostile job
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            for job in (n.replace("slowheaders", "slowhead") for n in hostile_jobs):
                status = kube.status(job)
                assert status["phase"] == "Running" and not set(PROGRESS_KEYS) & set(status), (job, status)
            # the job series come from the checked record only: the healthy job's value, nothing of a liar's
            scraped = _metrics(operator_env["metrics"]).splitlines()
            series = [line for line in scraped if line.startswith("autolfads_job_")]
            healthy = [line for line in series if 'job="healthy"' in line]
            generation = [line for line in healthy if line.startswith("autolfads_job_generation{")]
            assert generation and generation[0].endswith(" 4.0"), series
            for job in (n.replace("slowheaders", "slowhead") for n in hostile_jobs):
                assert not [line for line in series if f'job="{job}"' in line], job
    assert healthy_after < 20
    assert peak < 20 * 1024 * 1024, peak  # 50 MB answers were on offer, round after round
    modes = {n for n in hostile_jobs if n != "notallowed"}
    assert modes <= set(hostile.hits) and "good" not in hostile.hits  # all read; the unallowed one never
