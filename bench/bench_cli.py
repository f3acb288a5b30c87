"""Wall time of what a user waits for at the prompt (issue 16, item 3): ``--help``, ``validate``, a refused
``run``, and ``run`` from launch to its first epoch.

Every case runs the ``autolfads`` console script in a fresh process, timed from launch to exit, as a user
sees it (interpreter start and imports included; ``bench_validate.py`` times the same commands from inside
the interpreter and adds peak memory). ``run`` uses the demo's data and population (``autolfads.demo``):
its timeline prints when each console line appeared, when ``progress.json`` appeared (the config is
checked, OUT claimed, tracking and Ray started) and when the first epoch was reported (the first
``training:`` line, ``progress.json``'s ``epoch``); the run is then stopped with SIGINT, as Ctrl-C would.
``--no-mlflow`` is timed too, to show what the embedded MLflow store costs before the first epoch.

    .venv/bin/python bench/bench_cli.py [--repeats 3] [--run-repeats 1]

HOME and RAY_TMPDIR point into a temporary directory, so nothing is written to the user's ``~/.ray``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autolfads import demo  # noqa: E402
from autolfads.data.synthetic import write_lorenz  # noqa: E402

AUTOLFADS = demo.autolfads_command()
FIRST_EPOCH_TIMEOUT_S = 600.0


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLFADS_", "RAY_ADDRESS"))}
    env.update(HOME=str(tmp / "home"), RAY_TMPDIR=str(tmp / "ray"), MLFLOW_DISABLE_TELEMETRY="true")
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "ray").mkdir(exist_ok=True)
    return env


def timed(args: list[str], env: dict[str, str], repeats: int) -> tuple[int, float, float]:
    """Exit code, median and min wall seconds of ``autolfads ARGS`` over ``repeats`` runs."""
    seconds, code = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        code = subprocess.run([*AUTOLFADS, *args], env=env, capture_output=True, check=False).returncode
        seconds.append(time.perf_counter() - start)
    return code, statistics.median(seconds), min(seconds)


def run_to_first_epoch(
    data: Path, out: Path, env: dict[str, str], extra: list[str]
) -> list[tuple[float, str]]:
    """Launch ``autolfads run`` with the demo's settings; the timeline up to its first epoch, then stop it."""
    epochs = f"trainer.max_epochs={demo.PBT_EPOCHS}"
    args = ["run", str(data), "--out", str(out), *demo.COMMON, *demo.PBT, epochs, *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*AUTOLFADS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    timeline: list[tuple[float, str]] = []
    first_epoch = threading.Event()

    def read_lines() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            timeline.append((time.perf_counter() - start, line.rstrip()))
            if line.split(" ", 1)[-1].startswith("training: "):
                first_epoch.set()

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    progress = out / "progress.json"
    appeared = False
    while not first_epoch.is_set() and proc.poll() is None:
        if time.perf_counter() - start > FIRST_EPOCH_TIMEOUT_S:
            timeline.append((time.perf_counter() - start, "[bench] no first epoch: gave up"))
            break
        if progress.is_file():
            if not appeared:
                appeared = True
                timeline.append((time.perf_counter() - start, "[bench] progress.json appeared"))
            try:
                if json.loads(progress.read_text()).get("epoch") is not None:
                    timeline.append((time.perf_counter() - start, "[bench] progress.json: first epoch"))
                    first_epoch.set()
            except (OSError, ValueError):  # being replaced at this moment
                pass
        time.sleep(0.05)
    first_epoch.wait(timeout=2.0)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the run saves its state and shuts its local Ray down
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    return sorted(timeline)


def first_epoch_at(timeline: list[tuple[float, str]]) -> float | None:
    for at, line in timeline:
        if line.split(" ", 1)[-1].startswith("training: ") or line == "[bench] progress.json: first epoch":
            return at
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each quick command")
    parser.add_argument(
        "--run-repeats", type=int, default=1, help="runs of `run` to its first epoch (0: none)"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as name:
        tmp = Path(name)
        env = environment(tmp)
        small = write_lorenz(tmp / "small.h5", n_trials=40, n_conditions=4, n_neurons=8, encod_seq_len=10)
        data = write_lorenz(tmp / "lorenz.h5", seed=0)  # the demo's file (autolfads synth lorenz --seed 0)
        taken = tmp / "taken"
        taken.mkdir()
        (taken / "lfads_output_sess0.h5").write_bytes(b"earlier results")
        cases = [
            ("autolfads --help", ["--help"]),
            ("autolfads validate (40 trials)", ["validate", str(small)]),
            ("autolfads run, refused: bad override", ["run", str(small), "--out", str(tmp / "x"),
                                                      "model.lr_init=-1"]),
            ("autolfads run, refused: OUT holds results", ["run", str(small), "--out", str(taken)]),
        ]  # fmt: skip
        print(f"{'command':46s} {'exit':>4s} {'median s':>9s} {'min s':>7s}   ({options.repeats} runs each)")
        for label, args in cases:
            code, median, least = timed(args, env, options.repeats)
            print(f"{label:46s} {code:4d} {median:9.2f} {least:7.2f}")

        runs = (("autolfads run (demo settings)", []), ("  ... with --no-mlflow", ["--no-mlflow"]))
        for label, extra in runs:
            firsts = []
            for attempt in range(options.run_repeats):
                out = tmp / f"run-{len(extra)}-{attempt}"
                timeline = run_to_first_epoch(data, out, env, extra)
                firsts.append(first_epoch_at(timeline))
                if attempt == 0:
                    print(f"\n{label}: timeline of the first attempt (s after launch)")
                    for at, line in timeline:
                        if first_epoch_at([(at, line)]) is not None or not line.startswith("  "):
                            print(f"  {at:6.1f}  {line[:110]}")
                        if first_epoch_at([(at, line)]) is not None:
                            break
            shown = ", ".join("-" if f is None else f"{f:.1f}" for f in firsts)
            print(f"{label}: launch to first epoch {shown} s")


if __name__ == "__main__":
    main()
