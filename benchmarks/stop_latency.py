"""How long a stop takes: from Ctrl-C (or SIGTERM) to the last process of a run gone.

Starts ``a3c train`` (CartPole, 2 workers: the processes are what is measured, not the game),
waits until its workers are playing, optionally starts ``--load`` CPU-bound processes per core
beside it, sends the signal and times, every 20 ms, when the workers and the evaluator are
gone, when the trainer has exited, and when every process it started (multiprocessing's
resource tracker too) is gone. Repeated ``--repeats`` times for each signal.

    python benchmarks/stop_latency.py --load 0 2 --repeats 3

writes benchmarks/results/stop_latency.json (POSIX: it sends real signals).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import psutil

START_TIMEOUT_S = 300.0
# A CPU-bound process that ends with this script, even if this script is killed.
BUSY = ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
        "    for _ in range(1_000_000):\n        pass\n")
GIVE_UP_S = 60.0


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _spawned(proc: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False


def measure_once(signum: int, load: int) -> dict[str, Any]:
    """One run stopped by `signum` with `load` busy processes per core beside it."""
    with tempfile.TemporaryDirectory(prefix="a3c-stop-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "a3c_course", "train", "--env", "CartPole-v1", "--workers",
               "2", "--minutes", "30", "--set", "eval_nice=0", "--run-dir", str(run_dir),
               "--no-progress", "--json"]
        trainer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        busy: list[subprocess.Popen[bytes]] = []
        try:
            root = psutil.Process(trainer.pid)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not (run_dir / "metrics.jsonl").exists() or '"episode"' not in (
                    run_dir / "metrics.jsonl").read_text():
                if time.monotonic() > deadline or trainer.poll() is not None:
                    raise RuntimeError("the trainer did not start playing")
                time.sleep(0.2)
            for _ in range(load * (os.cpu_count() or 1)):
                busy.append(subprocess.Popen([sys.executable, "-c", BUSY]))
            time.sleep(2.0 if load else 0.0)  # the load is up before the signal
            everyone = root.children(recursive=True)
            children = [p for p in everyone if _spawned(p)]
            t0 = time.monotonic()
            trainer.send_signal(signum)
            marks: dict[str, float] = {}
            while len(marks) < 3 and time.monotonic() - t0 < GIVE_UP_S:
                now = time.monotonic() - t0
                if "children_s" not in marks and all(_gone(p) for p in children):
                    marks["children_s"] = now
                if "trainer_s" not in marks and trainer.poll() is not None:
                    marks["trainer_s"] = now
                if "all_s" not in marks and trainer.poll() is not None and all(
                        _gone(p) for p in everyone):
                    marks["all_s"] = now
                time.sleep(0.02)
            return {k: round(v, 3) for k, v in marks.items()} | {
                "exit_code": trainer.poll(), "children": len(children),
                "processes": len(everyone)}
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
            if trainer.poll() is None:
                trainer.kill()
                trainer.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load", type=int, nargs="+", default=[0, 2],
                   help="busy processes per core beside the trainer (one or more values)")
    p.add_argument("--repeats", type=int, default=3, help="stops measured per signal and load")
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--name", default="stop_latency", help="file stem")
    args = p.parse_args(argv)
    if sys.platform == "win32":
        p.error("this benchmark sends POSIX signals")
    if args.repeats < 1 or any(n < 0 for n in args.load):
        p.error("--repeats must be >= 1 and --load values >= 0")
    header = common.provenance()
    cases = []
    for load in args.load:
        for name, signum in (("ctrl-c", signal.SIGINT), ("sigterm", signal.SIGTERM)):
            runs = [measure_once(signum, load) for _ in range(args.repeats)]
            worst = {k: max(r.get(k, GIVE_UP_S) for r in runs)
                     for k in ("children_s", "trainer_s", "all_s")}
            median = {k: statistics.median(r.get(k, GIVE_UP_S) for r in runs)
                      for k in ("children_s", "trainer_s", "all_s")}
            cases.append({"signal": name, "load_per_core": load, "runs": runs,
                          "worst": worst, "median": median})
            print(f"{name:8s} load {load}/core: children gone {worst['children_s']:.2f} s, "
                  f"everything {worst['all_s']:.2f} s (worst of {args.repeats})",
                  file=sys.stderr)
    result = {"benchmark": "stop_latency", **header, "cases": cases,
              "machine_end": common.machine()}
    out = common.write_json((args.out or common.RESULTS) / f"{args.name}.json", result)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
