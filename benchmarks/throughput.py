"""Training throughput of the Hogwild trainer against the emulator and its limit, on the
same cores.

Three measurements of agent steps per second, one after the other, with the same config:

- the EMULATOR: ``workers`` spawned processes, each stepping the bare ALE game (same game,
  frame skip and sticky actions; random actions, no preprocessing, no network). Whatever the
  machine, ``trainer / emulator`` says how much of the emulator's speed training keeps.

- the LIMIT: ``workers`` spawned processes, each running the library's own worker loop
  (:func:`a3c_course.worker.train_worker`) on private objects only: a private model and a
  private ``SharedAdam`` (the same arithmetic; no other process sees it), a plain
  ``threading.Event`` as stop flag and an event sink that drops everything. No shared memory,
  no trainer, no evaluator: the real loop minus sharing.
- the TRAINER: :func:`a3c_course.trainer.train` itself (shared model, shared Adam, evaluator,
  event queue, metrics), read from its ``progress`` rows.

Both skip a warm-up (process start, first allocations) before their window opens.

    python benchmarks/throughput.py --preset default --model gru --seconds 60

writes benchmarks/results/throughput-<preset>-<model>.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import common
import numpy as np

from a3c_course.children import SharedState, WorkerCounters
from a3c_course.config import Config
from a3c_course.envs import make_emulator
from a3c_course.shared_adam import SharedAdam
from a3c_course.worker import train_worker

SAMPLE_S = 0.5  # how often a limit child records its step counter
START_TIMEOUT_S = common.START_TIMEOUT_S


class _DropEvents:
    """Stands in for the trainer's queue: the limit keeps no log."""

    def put(self, item: Any) -> None:
        pass


def private_state(config: Config) -> SharedState:
    """What a worker sees of the trainer, with nothing shared: the limit's (and the
    profile's) stand-in for the shared model, Adam, counters and flags."""
    from a3c_course.envs import env_spaces
    from a3c_course.models import build_model

    obs_shape, n_actions = env_spaces(config)
    central = build_model(config, n_actions, obs_shape)
    workers = config.workers
    return SharedState(
        model=central,
        # The trainer's own Adam class, but created here: no other process sees its state.
        optimizer=SharedAdam(central.parameters(), lr=config.lr),
        counters=WorkerCounters(workers, shared=False),
        stop=threading.Event(),
        pause=threading.Event(),  # never set: there is no evaluator
        events=_DropEvents(),
    )


def _report_samples(index: int, conn: Any, steps: Callable[[], int], stop: Any,
                    body: Callable[[], None]) -> None:
    """Run `body` (until `stop` is set) while a thread samples `steps()` every SAMPLE_S and
    answers the parent: "started" once stepping, the samples once told to stop."""
    samples: list[tuple[float, int]] = []

    def monitor() -> None:
        # Sleeps in poll() almost all the time, so it takes nothing from the loop it watches.
        started = False
        while not stop.is_set():
            now = steps()
            samples.append((time.time(), now))
            if now > 0 and not started:
                conn.send(("started", time.time()))
                started = True
            if conn.poll(SAMPLE_S):
                conn.recv()
                samples.append((time.time(), steps()))
                stop.set()

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    body()
    thread.join()
    conn.send(("samples", samples))


def limit_child(index: int, config: Config, seed: int, conn: Any) -> None:
    """One process of the limit: the real worker loop on private objects only."""
    shared = private_state(config)
    _report_samples(index, conn, lambda: shared.counters.worker_totals(index).steps,
                    shared.stop, lambda: train_worker(index, config, shared, os.getppid(), seed))


def emulator_child(index: int, config: Config, seed: int, conn: Any) -> None:
    """One process of the emulator measurement: the bare game, random actions."""
    from a3c_course.children import init_child

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

    _report_samples(index, conn, lambda: counted[0], stop, play)


def _steps_at(samples: list[tuple[float, int]], t: float) -> float:
    """The step counter at time t, interpolated between the samples around it."""
    if t <= samples[0][0]:
        return float(samples[0][1])
    for (t0, s0), (t1, s1) in zip(samples, samples[1:], strict=False):
        if t0 <= t <= t1:
            return s0 + (s1 - s0) * (t - t0) / max(t1 - t0, 1e-9)
    return float(samples[-1][1])


def measure_limit(config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    """Steps/s of `workers` unshared copies of the worker loop running at the same time."""
    return measure_processes(limit_child, "limit", config, warmup, seconds)


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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_args(p)
    common.add_window_args(p, "limit and trainer")
    common.add_output_args(p, "throughput-PRESET-MODEL")
    args = p.parse_args(argv)

    config, out = common.config_and_output(args, "throughput")
    header = common.provenance()

    rounds = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: emulator, limit, trainer on {config.workers} "
              "processes ...", file=sys.stderr, flush=True)
        emulator = measure_emulator(config, args.warmup, args.seconds)
        print(f"  emulator {emulator['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        limit = measure_limit(config, args.warmup, args.seconds)
        print(f"  limit    {limit['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        trainer = common.measure_trainer(config, args.warmup, args.seconds)
        print(f"  trainer  {trainer['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        rounds.append({"emulator": emulator, "limit": limit, "trainer": trainer,
                       "ratio": round(trainer["steps_per_s"] / limit["steps_per_s"], 3),
                       "emulator_ratio": round(trainer["steps_per_s"]
                                               / emulator["steps_per_s"], 3)})

    emulator_rate = statistics.median(r["emulator"]["steps_per_s"] for r in rounds)
    limit_rate = statistics.median(r["limit"]["steps_per_s"] for r in rounds)
    trainer_rate = statistics.median(r["trainer"]["steps_per_s"] for r in rounds)
    from a3c_course.envs import env_spaces
    from a3c_course.models import build_model, count_parameters

    obs_shape, n_actions = env_spaces(config)
    result = {
        "benchmark": "throughput",
        **header,
        "preset": args.preset,
        "model": args.model,
        "env": config.env_id,
        "workers": config.workers,
        "parameters": count_parameters(build_model(config, n_actions, obs_shape)),
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "emulator_steps_per_s": emulator_rate,
        "emulator_steps_per_s_per_process": round(emulator_rate / config.workers, 1),
        "limit_steps_per_s": limit_rate,
        "trainer_steps_per_s": trainer_rate,
        "ratio": round(trainer_rate / limit_rate, 3),
        "emulator_ratio": round(trainer_rate / emulator_rate, 3),
        "rounds": rounds,
        "machine_end": common.machine(),
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    print(f"emulator {emulator_rate:.1f}, limit {limit_rate:.1f}, trainer {trainer_rate:.1f} "
          f"steps/s; trainer/emulator {result['emulator_ratio']:.3f}, trainer/limit "
          f"{result['ratio']:.3f} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
