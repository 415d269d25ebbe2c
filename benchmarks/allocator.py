"""What keeping freed memory (glibc) saves a worker: page faults, kernel time, agent steps/s.

Every update allocates and frees the same tensors; by default glibc hands large freed blocks
back to the kernel, so the next update takes them again as page faults.
:func:`a3c_course.children.keep_freed_memory` (called by every child) tells glibc to keep
them. This benchmark runs one worker loop (:func:`a3c_course.worker.train_worker` on
private objects, as throughput.py's *limit* does; one torch thread) in a fresh process,
alternately with glibc's defaults and with freed memory kept, one process at a time, and
reports per agent step the page faults, the user and kernel CPU time, the steps/s of each
with their ratio, and each process's peak resident memory.

    python benchmarks/allocator.py --model stack --seconds 30 --rounds 3

writes benchmarks/results/allocator-<preset>-<model>[-<game>].json. Linux only (glibc).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any

import common
from throughput import private_state

import a3c_course
from a3c_course.config import Config
from a3c_course.worker import train_worker

VARIANTS = ("glibc_default", "kept")


def loop_child(variant: str, config: Config, warmup: float, seconds: float, conn: Any) -> None:
    """One worker loop in this fresh process; a clock thread marks the window's two ends."""
    if variant == "glibc_default":
        from a3c_course import children

        # init_child (called by train_worker) would keep freed memory: leave glibc as it is.
        children.keep_freed_memory = lambda: False
    shared = private_state(config)
    marks: list[tuple[float, int, Any]] = []

    def mark() -> None:
        marks.append((time.perf_counter(), shared.counters.steps(),
                      resource.getrusage(resource.RUSAGE_SELF)))

    def clock() -> None:  # sleeps all the time: takes nothing from the loop it measures
        while shared.counters.steps() == 0 and not shared.stop.wait(0.05):
            pass
        time.sleep(warmup)
        mark()
        time.sleep(seconds)
        mark()
        shared.stop.set()

    threading.Thread(target=clock, daemon=True).start()
    train_worker(0, config, shared, os.getppid(), config.seed)
    (t0, steps0, use0), (t1, steps1, use1) = marks
    steps = steps1 - steps0
    conn.send({
        "steps": steps,
        "steps_per_s": round(steps / (t1 - t0), 1),
        "faults_per_step": round((use1.ru_minflt - use0.ru_minflt) / steps, 2),
        "user_us_per_step": round((use1.ru_utime - use0.ru_utime) / steps * 1e6, 1),
        "kernel_us_per_step": round((use1.ru_stime - use0.ru_stime) / steps * 1e6, 1),
        # What keeping costs: the process's peak resident memory (Linux counts it in KiB).
        "peak_rss_mb": round(use1.ru_maxrss / 1024, 1),
    })


def measure(variant: str, config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=loop_child, args=(variant, config, warmup, seconds, child_conn),
                       name=f"allocator-{variant}", daemon=True)
    proc.start()
    try:
        if not parent_conn.poll(common.START_TIMEOUT_S + warmup + seconds):
            raise RuntimeError(f"{proc.name} sent no result (exit code {proc.exitcode})")
        return parent_conn.recv()
    finally:
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
            proc.join()


def main(argv: list[str] | None = None) -> int:
    test = a3c_course.TEST_MODE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_args(p)
    p.set_defaults(model="stack")
    common.add_loop_args(p, 30.0, 10.0, "measured window")
    p.add_argument("--rounds", type=int, default=1 if test else 3,
                   help="alternate the two allocators this many times; medians are reported")
    common.add_output_args(p, "allocator-PRESET-MODEL[-GAME]")
    args = p.parse_args(argv)
    common.require_positive(p, args, "seconds", "warmup", "rounds")
    if not sys.platform.startswith("linux"):
        p.error(f"this measures glibc's allocator: Linux only (this is {sys.platform})")

    config, out = common.config_and_output(args, "allocator")
    header = common.provenance()
    rounds = []
    for r in range(args.rounds):
        row = {}
        for variant in VARIANTS:
            print(f"round {r + 1}/{args.rounds}: one worker loop, {variant} ...",
                  file=sys.stderr, flush=True)
            row[variant] = measure(variant, config, args.warmup, args.seconds)
            print(f"  {row[variant]}", file=sys.stderr, flush=True)
        row["kept_over_default"] = round(row["kept"]["steps_per_s"]
                                         / row["glibc_default"]["steps_per_s"], 3)
        rounds.append(row)

    medians = {variant: {key: statistics.median(r[variant][key] for r in rounds)
                         for key in rounds[0][variant]} for variant in VARIANTS}
    result = {
        "benchmark": "allocator",
        **header,
        "preset": args.preset,
        "model": args.model,
        "env": config.env_id,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        **medians,
        "kept_over_default": statistics.median(r["kept_over_default"] for r in rounds),
        "rounds": rounds,
        "machine_end": common.machine(),
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    d, k = medians["glibc_default"], medians["kept"]
    print(f"page faults per agent step {d['faults_per_step']} -> {k['faults_per_step']}, kernel "
          f"{d['kernel_us_per_step']} -> {k['kernel_us_per_step']} us, steps/s x"
          f"{result['kept_over_default']} (median of {args.rounds}) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
