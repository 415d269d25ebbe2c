"""Training throughput of the Hogwild trainer against its limit, on the same cores.

Two measurements of agent steps per second, one after the other, with the same config:

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
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import common
import torch

from a3c_course.config import Config
from a3c_course.shared_adam import SharedAdam
from a3c_course.worker import SharedState, train_worker

SAMPLE_S = 0.5  # how often a limit child records its step counter
START_TIMEOUT_S = 300.0  # spawn + import torch + ALE on a loaded laptop can take a while


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
        steps=torch.zeros(workers, dtype=torch.int64),
        updates=torch.zeros(workers, dtype=torch.int64),
        nonfinite=torch.zeros(workers, dtype=torch.int64),
        stop=threading.Event(),
        pause=threading.Event(),  # never set: there is no evaluator
        events=_DropEvents(),
    )


def limit_child(index: int, config: Config, seed: int, conn: Any) -> None:
    """One process of the limit: the real worker loop on private objects only."""
    shared = private_state(config)
    samples: list[tuple[float, int]] = []

    def monitor() -> None:
        # Sleeps in poll() almost all the time, so it takes nothing from the loop it watches.
        started = False
        while not shared.stop.is_set():
            steps = int(shared.steps[index])
            samples.append((time.time(), steps))
            if steps > 0 and not started:
                conn.send(("started", time.time()))
                started = True
            if conn.poll(SAMPLE_S):
                conn.recv()
                samples.append((time.time(), int(shared.steps[index])))
                shared.stop.set()

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    train_worker(index, config, shared, os.getppid(), seed)
    thread.join()
    conn.send(("samples", samples))


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
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for i in range(config.workers):
        parent_conn, child_conn = ctx.Pipe()
        proc = ctx.Process(target=limit_child, args=(i, config, config.seed + 1000 * i,
                                                     child_conn),
                           name=f"limit-{i}", daemon=True)
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


class _WindowDone(KeyboardInterrupt):
    """Raised from the trainer's row callback: the trainer treats it as Ctrl-C, a clean stop."""


def measure_trainer(config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    """Steps/s of the real trainer, from its `progress` rows after the warm-up."""
    from a3c_course.trainer import read_metrics, train

    # Warm-up counts from the first row with steps > 0 (the first finished episode), as close
    # as the metrics get to "all workers are stepping", the limit's start signal. The run is
    # stopped (as by Ctrl-C) at the first progress row after warm-up + seconds, once the window
    # holds two progress rows (its two ends: rows come every 10 s, a short window may hold one).
    first: list[float] = []
    in_window = [0]
    done = [False]

    def on_rows(rows: list[dict[str, Any]]) -> None:
        if done[0]:
            return
        for row in rows:
            if not first and row["steps"] > 0:
                first.append(row["time_s"])
            if first and row["event"] == "progress" and row["time_s"] >= first[0] + warmup:
                in_window[0] += 1
            if (in_window[0] >= 2 and row["event"] == "progress"
                    and row["time_s"] >= first[0] + warmup + seconds):
                done[0] = True
                raise _WindowDone()

    cap_s = START_TIMEOUT_S + warmup + seconds + 60.0  # only if the rows never come
    run_config = config.replace(max_minutes=cap_s / 60, target_score=None, max_steps=10**12)
    with tempfile.TemporaryDirectory(prefix="a3c-throughput-") as tmp:
        result = train(run_config, Path(tmp) / "run", progress=False, on_rows=on_rows)
        rows = read_metrics(Path(tmp) / "run")
    if not done[0]:
        raise RuntimeError(f"the trainer stopped before the window closed: {result.stop_reason}")
    progress = [r for r in rows if r["event"] == "progress" and r["time_s"] >= first[0] + warmup]
    a, b = progress[0], progress[-1]
    return {
        "steps_per_s": round((b["steps"] - a["steps"]) / (b["time_s"] - a["time_s"]), 1),
        "window_s": round(b["time_s"] - a["time_s"], 2),
        "window_start_s": a["time_s"],
        "first_steps_at_s": first[0],
        "progress_rows": [{"time_s": r["time_s"], "steps": r["steps"],
                           "steps_per_s": r["steps_per_s"]} for r in progress],
        "episodes": result.episodes,
        "restarts": result.restarts,
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
        print(f"round {r + 1}/{args.rounds}: limit, {config.workers} unshared processes ...",
              file=sys.stderr, flush=True)
        limit = measure_limit(config, args.warmup, args.seconds)
        print(f"  limit   {limit['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        trainer = measure_trainer(config, args.warmup, args.seconds)
        print(f"  trainer {trainer['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        rounds.append({"limit": limit, "trainer": trainer,
                       "ratio": round(trainer["steps_per_s"] / limit["steps_per_s"], 3)})

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
        "limit_steps_per_s": limit_rate,
        "trainer_steps_per_s": trainer_rate,
        "ratio": round(trainer_rate / limit_rate, 3),
        "rounds": rounds,
        "machine_end": common.machine(),
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    print(f"limit {limit_rate:.1f} steps/s, trainer {trainer_rate:.1f} steps/s, ratio "
          f"{result['ratio']:.3f} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
