"""Reconcile throughput of the AutoLFADSJob operator: 200 jobs applied at once against the API emulator.

Starts the emulator (tests/operator/apiserver.py) and the operator as the Deployment runs it
(``python -m operators``) in subprocesses, creates N AutoLFADSJobs as fast as 8 client threads can, and
prints the time until every job has its RayJob and a status, the operator's peak resident memory (VmHWM),
and its own reconcile metrics. Needs kubectl and KubeRay's CRDs ($KUBERAY_CRD_DIR or ../shared).

    .venv/bin/python bench/bench_operator.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.operator.cluster import Kube, api_server  # noqa: E402
from tests.services import free_port  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (where the wall time went: emulator or operator)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric_total(text: str, name: str) -> float:
    lines = [x for x in text.splitlines() if x.startswith(name)]
    return sum(float(x.split()[-1]) for x in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    kuberay = Path(os.environ.get("KUBERAY_CRD_DIR") or REPO.parent / "shared" / "schemas" / "kuberay")

    with tempfile.TemporaryDirectory() as tmp, api_server(Path(tmp), kuberay) as server:
        metrics_port, liveness_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(server.kubeconfig),
            "AUTOLFADS_METRICS_PORT": str(metrics_port),
            "AUTOLFADS_PROGRESS_INTERVAL": "30",
        }
        log = open(Path(tmp) / "operator.log", "w")  # noqa: SIM115
        op = subprocess.Popen(
            [sys.executable, "-m", "operators", "--liveness", f"http://127.0.0.1:{liveness_port}/healthz"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            kube = Kube(server.client(), "bench")
            _wait_http(f"http://127.0.0.1:{liveness_port}/healthz", 60)
            idle_rss = peak_rss_mib(op.pid)
            names = [f"job-{i:04d}" for i in range(args.jobs)]
            spec = {
                "dataURI": "s3://bench/data.h5",
                "outputURI": "s3://bench/out",
                "population": 8,
                "config": {"pbt": {"perturbation_interval": 10}},
            }
            start = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: kube.create_job(n, spec), names))
            created = time.monotonic() - start
            done, first_all = 0, None
            while time.monotonic() - start < args.timeout:
                items = kube.custom.list_namespaced_custom_object(
                    "autolfads.io", "v1alpha1", "bench", "autolfadsjobs"
                )["items"]
                done = sum(
                    1
                    for i in items
                    if (i.get("status") or {}).get("rayJobName") and (i.get("status") or {}).get("phase")
                )
                if done == args.jobs:
                    first_all = time.monotonic() - start
                    break
                time.sleep(1.0)  # listing 200 jobs costs the emulator too
            rayjobs = len(kube.rayjobs())
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode()
            peak = peak_rss_mib(op.pid)
            cpu = {"operator": cpu_seconds(op.pid), "emulator": cpu_seconds(server.process.pid)}
        finally:
            op.terminate()
            op.wait(timeout=30)
            log.close()

    count = metric_total(text, 'autolfads_operator_reconcile_duration_seconds_count{handler="create"}')
    total = metric_total(text, 'autolfads_operator_reconcile_duration_seconds_sum{handler="create"}')
    errors = metric_total(text, "autolfads_operator_reconcile_errors_total")
    print(f"jobs applied:                 {args.jobs} (all created in {created:.2f} s, 8 client threads)")
    if first_all is None:
        print(f"NOT DONE after {args.timeout:.0f} s: {done}/{args.jobs} jobs have a RayJob and a status")
    else:
        print(f"all have RayJob + status in:  {first_all:.2f} s ({args.jobs / first_all:.1f} jobs/s)")
    print(f"RayJobs in the namespace:     {rayjobs} (duplicates: {max(0, rayjobs - args.jobs)})")
    mean_ms = 1000 * total / max(count, 1)
    print(f"create handler runs:          {count:.0f}, mean {mean_ms:.1f} ms, errors {errors:.0f}")
    print(f"operator peak RSS (VmHWM):    {peak:.1f} MiB (idle after start: {idle_rss:.1f} MiB)")
    print(f"CPU seconds used:             operator {cpu['operator']:.1f}, API emulator {cpu['emulator']:.1f}")
    print(f"machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if first_all is None or rayjobs != args.jobs:
        sys.exit(1)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


if __name__ == "__main__":
    main()
