"""Training throughput of the Hogwild trainer against the emulator and its limit, on the
same cores.

Three measurements of agent steps per second, one after the other, with the same config:

- the EMULATOR (``emulator.py``): ``workers`` spawned processes, each stepping the bare ALE
  game (same game, frame skip and sticky actions; random actions, no preprocessing, no
  network). Whatever the machine, ``trainer / emulator`` says how much of the emulator's speed
  training keeps.

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

import os
import statistics
import sys
import threading
from typing import Any

import common
from emulator import measure_emulator, measure_processes, report_samples

from a3c_course.children import SharedState, WorkerCounters
from a3c_course.config import Config
from a3c_course.shared_adam import SharedAdam
from a3c_course.worker import train_worker


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


def limit_child(index: int, config: Config, seed: int, conn: Any) -> None:
    """One process of the limit: the real worker loop on private objects only."""
    shared = private_state(config)
    report_samples(index, conn, lambda: shared.counters.worker_totals(index).steps,
                   shared.stop, lambda: train_worker(index, config, shared, os.getppid(), seed))


def measure_limit(config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    """Steps/s of `workers` unshared copies of the worker loop running at the same time."""
    return measure_processes(limit_child, "limit", config, warmup, seconds)


def main(argv: list[str] | None = None) -> int:
    p = common.window_benchmark_parser(__doc__.split("\n\n")[0], "limit and trainer",
                                       "throughput-PRESET-MODEL")
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
