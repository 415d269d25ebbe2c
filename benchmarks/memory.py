"""Resident memory of a training run: its peak, and whether it grows over a long run (soak).

Starts ``a3c train`` as a child process (so this script's own memory is not counted) and
samples, every 0.5 s, the memory of the trainer and all its descendants (workers, evaluator,
multiprocessing's resource tracker): the sum of their RSS and, where the OS reports it, the
sum of their PSS (shared pages divided among the processes that map them; RSS counts torch's
libraries and the shared model once per process, so the RSS sum overstates the real total).

    python benchmarks/memory.py --workers 2 8 --seconds 60       # peak, one file per count
    python benchmarks/memory.py --soak --minutes 30 --workers 2  # growth after warm-up

write benchmarks/results/memory-<preset>-<model>-w<N>.json and soak-<preset>-<model>-w<N>.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import psutil

import a3c_course
from a3c_course.config import make_config

SAMPLE_S = 0.5
MAX_SAVED_SAMPLES = 720  # the JSON keeps an evenly thinned series; the fits use every sample


def tree_memory(root: psutil.Process) -> tuple[float, float | None, int]:
    """(RSS sum, PSS sum or None, process count) of `root` and its descendants, in MB."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, None, 0
    rss, pss, alive = 0, 0, 0
    pss_ok = True
    for proc in procs:
        try:
            if pss_ok:
                try:
                    info = proc.memory_full_info()
                    rss += info.rss
                    pss += info.pss
                    alive += 1
                    continue
                except (psutil.AccessDenied, AttributeError):
                    pss_ok = False
            rss += proc.memory_info().rss
            alive += 1
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # a child that ended between the listing and the read
    mb = 2**20
    return rss / mb, (pss / mb if pss_ok else None), alive


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mt) * (v - mv) for t, v in points)
    return cov / var * 60.0


def run_and_sample(train_args: list[str], seconds: float) -> dict[str, Any]:
    """Run `a3c train` for `seconds` and sample its process tree until it exits."""
    with tempfile.TemporaryDirectory(prefix="a3c-memory-") as tmp:
        cmd = [sys.executable, "-m", "a3c_course", "train", *train_args,
               "--minutes", f"{seconds / 60:.6f}", "--run-dir", str(Path(tmp) / "run"),
               "--no-progress"]
        log = open(Path(tmp) / "train.log", "w+")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        root = psutil.Process(proc.pid)
        t0 = time.monotonic()
        samples: list[tuple[float, float, float | None, int]] = []
        try:
            with common.passing_sigterm_to(proc):
                while proc.poll() is None:
                    rss, pss, count = tree_memory(root)
                    if count:
                        samples.append((round(time.monotonic() - t0, 2), round(rss, 1),
                                        None if pss is None else round(pss, 1), count))
                    time.sleep(SAMPLE_S)
        except KeyboardInterrupt:
            proc.terminate()  # the trainer turns SIGTERM into a clean stop
            proc.wait()
            raise
        out = proc.stdout.read() if proc.stdout else ""
        log.seek(0)
        err_tail = log.read()[-2000:]
        log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"a3c train exited with {proc.returncode}:\n{err_tail}")
    summary = json.loads(out.strip().splitlines()[-1])
    return {"train_command": _portable(cmd), "samples": samples, "train_summary": summary}


def sample_attached(pid: int, seconds: float, interval: float) -> dict[str, Any]:
    """Sample the process tree of an `a3c train` that is already running (for `seconds`, or
    until it exits): a soak measured on a real training run instead of a second one."""
    root = psutil.Process(pid)
    cmd = root.cmdline()
    t0 = time.monotonic()
    samples: list[tuple[float, float, float | None, int]] = []
    while time.monotonic() - t0 < seconds and root.is_running():
        try:
            rss, pss, count = tree_memory(root)
        except psutil.NoSuchProcess:
            break
        if count:
            samples.append((round(time.monotonic() - t0, 2), round(rss, 1),
                            None if pss is None else round(pss, 1), count))
        time.sleep(interval)
    return {"train_command": _portable(cmd), "samples": samples, "train_summary": None,
            "attached_pid": pid}


def _portable(cmd: list[str]) -> str:
    """The command as anyone would type it: no interpreter path of this machine."""
    words = [Path(w).name if i == 0 else w for i, w in enumerate(cmd)]
    if len(words) > 1 and words[0].startswith("python") and words[1].endswith("/a3c"):
        words = ["a3c", *words[2:]]
    return shlex.join(words)


def _thin(samples: list[Any], keep: int) -> list[Any]:
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    return [samples[int(i * step)] for i in range(keep)] + [samples[-1]]


def main(argv: list[str] | None = None) -> int:
    test = a3c_course.TEST_MODE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_args(p)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 8],
                   help="worker counts, one run (and one file) each")
    p.add_argument("--seconds", type=float, default=15.0 if test else 60.0,
                   help="length of each peak-memory run")
    p.add_argument("--soak", action="store_true", help="a long run: fit the growth of memory")
    p.add_argument("--minutes", type=float, default=1.0 if test else 30.0,
                   help="length of the soak run")
    p.add_argument("--warmup-minutes", type=float, default=0.25 if test else 5.0,
                   help="soak samples before this are left out of the growth fit")
    p.add_argument("--max-slope", type=float, default=0.5,
                   help="soak passes when RSS grows by at most this many MB per minute")
    p.add_argument("--attach", type=int, metavar="PID",
                   help="with --soak: sample the running `a3c train` with this pid instead of "
                        "starting one (its --run-dir config.json gives the config)")
    p.add_argument("--run-dir", type=Path, help="with --attach: the attached run's directory")
    p.add_argument("--interval", type=float, default=SAMPLE_S, help="seconds between samples")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other config field, as in `a3c train --set`")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: benchmarks/results)")
    args = p.parse_args(argv)

    common.parse_sets(args.set)  # refuse a bad --set before starting anything
    header = common.provenance()
    out_dir = args.out or common.RESULTS
    if args.attach is not None:
        if not (args.soak and args.run_dir):
            p.error("--attach goes with --soak and --run-dir")
        from a3c_course.config import Config

        config = Config.from_dict(json.loads((args.run_dir / "config.json").read_text()))
        args.workers, args.preset, args.model = [config.workers], config.preset, config.model
    for workers in args.workers:
        if args.attach is None:
            config = make_config(args.preset, model=args.model, env=args.env,
                                 num_workers=workers, **common.parse_sets(args.set))
        train_args = ["--preset", args.preset, "--model", args.model, "--env", args.env,
                      "--workers", str(workers)]
        for item in args.set:
            train_args += ["--set", item]
        seconds = 60 * args.minutes if args.soak else args.seconds
        kind = "soak" if args.soak else "memory"
        print(f"{kind}: {workers} workers for {seconds:.0f} s ...", file=sys.stderr, flush=True)
        if args.attach is not None:
            run = sample_attached(args.attach, seconds, args.interval)
        else:
            run = run_and_sample(train_args, seconds)
        samples = run["samples"]
        if not samples:
            raise RuntimeError("no memory samples were taken: the run ended at once")
        peak = max(samples, key=lambda s: s[1])
        pss_values = [s[2] for s in samples if s[2] is not None]
        result: dict[str, Any] = {
            "benchmark": kind,
            **header,
            "preset": args.preset,
            "model": args.model,
            "env": config.env_id,
            "workers": workers,
            "seconds": seconds,
            "train_command": run["train_command"],
            "train_summary": run["train_summary"],
            "peak_rss_mb": peak[1],
            "peak_rss_at_s": peak[0],
            "peak_pss_mb": max(pss_values) if pss_values else None,
            "processes_at_peak": peak[3],
            "sample_interval_s": args.interval,
            "samples_columns": ["time_s", "rss_mb", "pss_mb", "processes"],
            "samples": _thin(samples, MAX_SAVED_SAMPLES),
            "config": config.to_dict(),
        }
        if args.soak:
            # The fit covers warm-up to the end of the budget: after it the trainer stops its
            # children, and the falling memory of a shutdown is not the run's.
            warm = 60 * args.warmup_minutes
            # Only while the whole process tree runs: an attached run may end before the
            # budget, and the falling memory of its shutdown is not growth.
            steady = max(s[3] for s in samples)
            last = max(s[0] for s in samples if s[3] == steady)
            after = [s for s in samples if warm <= s[0] <= min(seconds, last)]
            rss_slope = slope_per_minute([(s[0], s[1]) for s in after])
            pss_slope = slope_per_minute([(s[0], s[2]) for s in after if s[2] is not None])
            result.update({
                "warmup_minutes": args.warmup_minutes,
                "fit_window_s": [warm, min(seconds, last)],
                "fit_samples": len(after),
                "rss_after_warmup_first_mb": after[0][1] if after else None,
                "rss_after_warmup_last_mb": after[-1][1] if after else None,
                "rss_slope_mb_per_min": None if rss_slope is None else round(rss_slope, 3),
                "pss_slope_mb_per_min": None if pss_slope is None else round(pss_slope, 3),
                "max_slope_mb_per_min": args.max_slope,
                "passed": rss_slope is not None and rss_slope <= args.max_slope,
            })
        path = common.write_json(
            out_dir / f"{kind}-{args.preset}-{args.model}-w{workers}.json", result)
        line = f"{workers} workers: peak RSS {peak[1]:.0f} MB"
        if result["peak_pss_mb"] is not None:
            line += f", peak PSS {result['peak_pss_mb']:.0f} MB"
        if args.soak:
            line += f", RSS slope after warm-up {result['rss_slope_mb_per_min']} MB/min"
        print(f"{line} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
