"""From ``kubectl apply`` to the first trial's first epoch, on the whole platform on one machine.

Starts what tests/e2e runs (API emulator, the operator as ``kopf run``, the KubeRay stand-in with real Ray,
moto S3, a basic-auth MLflow server), starts the chart's lab RayCluster, then applies one AutoLFADSJob
(population 4, half a GPU per trial, the tiny e2e model) and prints when each step happened, from a 50 ms
poll of the API and the run's trial results:

- operator: apply → RayJob created (admission, rendering, the API calls);
- stand-in: RayJob created → submitter started (KubeRay's reconcile; the cluster is already up);
- Ray + driver: submitter started → Ray job RUNNING → first epoch reported by a trial;
- the status mirror: Ray job SUCCEEDED → AutoLFADSJob Succeeded.

"Operator + stand-in overhead" is the first two and the last together. The machine's load average is
printed too: on a shared machine every figure moves with it.

    . ./.ci/test-env.sh && .venv/bin/python bench/bench_e2e.py [--dedicated]

(``.ci/test-env.sh`` points it at helm, kubectl and KubeRay's CRDs, as for ``make test``.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from tests.e2e.conftest import e2e_config  # noqa: E402
from tests.e2e.platform import LAB_NS, Platform, platform_session, start_lab_cluster  # noqa: E402
from tests.operator.cluster import api_server  # noqa: E402
from tests.services import DUMMY_AWS_ENV, _start, free_port  # noqa: E402
from tests.tune.tiny import tiny_data  # noqa: E402


class Timeline:
    """Polls the job, its RayJob and its submitter every 50 ms; the first time each thing was seen."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.platform, self.name = platform, name
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def mark(self, what: str, at: float | None = None) -> None:
        self.seen.setdefault(what, at if at is not None else time.time())

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                status = self.platform.status(self.name)
                if status.get("phase"):
                    self.mark(f"job {status['phase']}")
                rayjob = self.platform.rayjob(self.name)
                if rayjob:
                    self.mark("RayJob created")
                    rj = rayjob.get("status") or {}
                    if rj.get("jobDeploymentStatus"):
                        self.mark(f"RayJob {rj['jobDeploymentStatus']}")
                    if rj.get("jobStatus"):
                        self.mark(f"Ray job {rj['jobStatus']}")
                    run = self.platform.standin.jobs.get((LAB_NS, rayjob["metadata"]["name"]))
                    if run is not None and run.submitter is not None:
                        self.mark("submitter started")
            self._stop.wait(0.05)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dedicated", action="store_true", help="a dedicated cluster instead of the lab's")
    args = parser.parse_args()
    helm = Path(os.environ.get("HELM") or REPO / ".tools" / "bin" / "helm")
    crds = Path(os.environ.get("KUBERAY_CRD_DIR") or REPO.parent / "shared" / "schemas" / "kuberay")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        port = free_port()
        moto = f"http://127.0.0.1:{port}"
        env = {**os.environ, **DUMMY_AWS_ENV}
        moto_bin = str(Path(sys.executable).with_name("moto_server"))
        server = _start(
            [moto_bin, "-H", "127.0.0.1", "-p", str(port)], env, f"{moto}/moto-api/", work / "moto.log", 60
        )
        try:
            data = tiny_data(work / "lorenz.h5").read_bytes()
            config = yaml.safe_dump(e2e_config(), sort_keys=False)
            started = time.time()
            session = platform_session(helm, crds, moto, work, api_server, config, data)
            platform = next(session)
            print(f"platform up (emulator, operator, MLflow, stand-in): {time.time() - started:.1f} s")
            try:
                if not args.dedicated:
                    started = time.time()
                    start_lab_cluster(platform)
                    print(
                        f"lab RayCluster applied -> ready (head + 2 workers): {time.time() - started:.1f} s"
                    )
                run(platform, args.dedicated)
            finally:
                with contextlib.suppress(StopIteration):
                    next(session)
        finally:
            server.stop()


def run(platform: Platform, dedicated: bool) -> None:
    name = f"bench-{int(time.time())}"
    spec = platform.job_spec(**({"dedicatedCluster": {}} if dedicated else {}))
    with Timeline(platform, name) as timeline:
        applied = platform.apply_job(name, spec)
        timeline.mark("applied", applied)
        status = platform.wait_phase(name, ("Succeeded", "Failed"))
        # The poller may not have seen the final phase yet (it was printed as a negative mirror time)
        timeline.mark(f"job {status['phase']}")
    rows = platform.trial_rows(name)
    first_epoch = min(float(r["reported_at"]) for r in rows if r.get("cur_epoch") == 0)
    timeline.mark("first trial's first epoch", first_epoch)
    print(f"\njob {name}: {status['phase']} ({'dedicated' if dedicated else 'lab'} cluster)")
    for what, at in sorted(timeline.seen.items(), key=lambda item: item[1]):
        print(f"  {at - applied:7.2f} s  {what}")
    seen = timeline.seen
    operator = seen["RayJob created"] - applied
    standin = seen["submitter started"] - seen["RayJob created"]
    mirror = seen.get("job Succeeded", 0) - seen.get("Ray job SUCCEEDED", 0)
    print(f"\napply -> first trial's first epoch: {first_epoch - applied:.1f} s")
    print(f"operator (apply -> RayJob): {operator:.2f} s; stand-in (RayJob -> submitter): {standin:.2f} s")
    print(f"status mirror (Ray job SUCCEEDED -> job Succeeded): {mirror:.2f} s")
    print(f"operator + stand-in overhead: {operator + standin + mirror:.2f} s")
    if os.environ.get("BENCH_E2E_LOG"):  # the driver's own output (its log lines carry the time)
        print(platform.standin.submitter_log(LAB_NS, status["rayJobName"])[-20000:])
    print(
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2-core machine shared with others)"
    )


if __name__ == "__main__":
    main()
