"""The emulator's own speed: agent steps/s of N processes stepping only the bare ALE game.

Machines differ (the committed results of one 2-core machine kind hold 1,829 to 4,367 agent
steps/s per core, on different days), so every speed and every "minutes to win" in the result
files is recorded beside this number. ``throughput.py`` divides the trainer's steps/s by it
(the emulator ratio) and ``time_to_win.py`` measures it before each run. On its own:

    python benchmarks/emulator.py --model stack --seconds 20

writes benchmarks/results/emulator-<preset>-<model>.json (same game, frame skip and sticky
actions as the config; random actions, no preprocessing, no network).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import common
import numpy as np

from a3c_course.children import ParentWatch, init_child
from a3c_course.config import Config
from a3c_course.envs import make_emulator

SAMPLE_S = 0.5  # how often a measured child records its step counter
START_TIMEOUT_S = common.START_TIMEOUT_S


def report_samples(index: int, conn: Any, steps: Callable[[], int], stop: Any,
                   body: Callable[[], None]) -> None:
    """Run `body` (until `stop` is set) while a thread samples `steps()` every SAMPLE_S and
    answers the parent: "started" once stepping, the samples once told to stop."""
    samples: list[tuple[float, int]] = []
    parent = ParentWatch(os.getppid())

    def monitor() -> None:
        # Sleeps in poll() almost all the time, so it takes nothing from the loop it watches.
        # A parent that is gone (killed, or its pipe closed) stops the body too: no measured
        # process outlives the benchmark.
        started = False
        try:
            while not stop.is_set() and parent.alive():
                now = steps()
                samples.append((time.time(), now))
                if now > 0 and not started:
                    conn.send(("started", time.time()))
                    started = True
                if conn.poll(SAMPLE_S):
                    conn.recv()
                    samples.append((time.time(), steps()))
                    break
        except (EOFError, OSError):
            pass
        stop.set()

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    body()
    thread.join()
    with contextlib.suppress(OSError):
        conn.send(("samples", samples))


def emulator_child(index: int, config: Config, seed: int, conn: Any) -> None:
    """One process of the emulator measurement: the bare game, random actions."""
    init_child()
    stop = threading.Event()
    counted = [0]

    def play() -> None:
        env = make_emulator(config)
        rng = np.random.default_rng(seed)
        env.reset(seed=seed)
        actions = int(env.action_space.n)
        while not stop.is_set():
            _, _, terminated, truncated, _ = env.step(int(rng.integers(actions)))
            counted[0] += 1
            if terminated or truncated:
                env.reset()
        env.close()

    report_samples(index, conn, lambda: counted[0], stop, play)


def _steps_at(samples: list[tuple[float, int]], t: float) -> float:
    """The step counter at time t, interpolated between the samples around it."""
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, s0), (t1, s1) in zip(samples, samples[1:], strict=False):
        if t0 <= t <= t1:
            return s0 + (s1 - s0) * (t - t0) / max(t1 - t0, 1e-9)
    return float(samples[-1][1])


def measure_emulator(config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    """Steps/s of `workers` processes stepping only the emulator, at the same time."""
    return measure_processes(emulator_child, "emulator", config, warmup, seconds)


def measure_processes(child: Callable[..., None], name: str, config: Config, warmup: float,
                      seconds: float) -> dict[str, Any]:
    """Agent steps/s summed over `workers` processes running `child` at the same time, over a
    window that opens `warmup` s after the last one started stepping."""
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for i in range(config.workers):
        parent_conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=child, args=(i, config, config.seed + 1000 * i, child_conn),
                           name=f"{name}-{i}", daemon=True)
        proc.start()
        procs.append(proc)
        conns.append(parent_conn)
    try:
        started = []
        deadline = time.time() + START_TIMEOUT_S
        for conn, proc in zip(conns, procs, strict=True):
            while not conn.poll(1.0):
                if not proc.is_alive() or time.time() > deadline:
                    raise RuntimeError(f"{proc.name} did not start stepping (exit code "
                                       f"{proc.exitcode})")
            started.append(conn.recv()[1])
        # The window opens `warmup` seconds after the LAST process took its first steps,
        # so every process is past its start-up for the whole window.
        w0 = max(started) + warmup
        w1 = w0 + seconds
        time.sleep(max(0.0, w1 + 2 * SAMPLE_S - time.time()))
        for conn in conns:
            conn.send("stop")
        per_worker = []
        for conn, proc in zip(conns, procs, strict=True):
            if not conn.poll(60.0):
                raise RuntimeError(f"{proc.name} sent no samples (exit code {proc.exitcode})")
            samples = conn.recv()[1]
            per_worker.append((_steps_at(samples, w1) - _steps_at(samples, w0)) / (w1 - w0))
    finally:
        for proc in procs:
            proc.join(10.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return {
        "steps_per_s": round(sum(per_worker), 1),
        "per_worker_steps_per_s": [round(r, 1) for r in per_worker],
        "window_s": round(w1 - w0, 2),
        "start_spread_s": round(max(started) - min(started), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = common.window_benchmark_parser(__doc__.split("\n\n")[0], "emulator",
                                       "emulator-PRESET-MODEL")
    args = p.parse_args(argv)
    config, out = common.config_and_output(args, "emulator")
    header = common.provenance()
    rounds = [measure_emulator(config, args.warmup, args.seconds) for _ in range(args.rounds)]
    rate = sorted(r["steps_per_s"] for r in rounds)[len(rounds) // 2]
    result = {"benchmark": "emulator", **header, "env": config.env_id,
              "workers": config.workers, "warmup_s": args.warmup, "seconds": args.seconds,
              "emulator_steps_per_s": rate,
              "emulator_steps_per_s_per_process": round(rate / config.workers, 1),
              "rounds": rounds, "machine_end": common.machine(), "config": config.to_dict()}
    common.write_json(out, result)
    print(f"emulator {rate:.1f} agent steps/s on {config.workers} processes "
          f"({rate / config.workers:.1f} per process) -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
