"""The Ray backend against the local backend on the same cores, and the inputs of the scaling
model in benchmarks/SCALING.md.

Three measurements, with the same config:

- the MODEL: parameters and bytes of one weight (or gradient) vector, as they travel.
- the WIRE on this machine's Ray (loopback): from an actor with one CPU, as a worker is, the
  round trip of a weight pull and of a gradient push (which the parameter server answers with
  the new weights), each the median of ``--calls`` calls; and the parameter server's own work
  per push (gradient copy, Adam step, weight copy), timed without Ray.
- the TRAINERS: agent steps/s of :func:`a3c_course.trainer.train` with ``backend="local"``
  and with ``backend="ray"``, read from their ``progress`` rows after a warm-up (as
  benchmarks/throughput.py reads the trainer's).

    python benchmarks/ray_throughput.py --seconds 60 --warmup 20

writes benchmarks/results/throughput-ray-<preset>-<model>.json.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import common
import numpy as np
import torch

import a3c_course
from a3c_course.children import WorkerCounters
from a3c_course.config import Config
from a3c_course.ray_backend import WorkerReport
from a3c_course.shared_adam import SharedAdam


class Prober:
    """An actor with one CPU, like a worker: times its calls to the parameter server."""

    def __init__(self, server_name: str) -> None:
        import ray

        torch.set_num_threads(1)
        self.server = ray.get_actor(server_name)

    def time_calls(self, calls: int, size: int) -> dict[str, list[float]]:
        import ray

        grads = np.random.default_rng(0).standard_normal(size).astype(np.float32) * 1e-3
        report = WorkerReport([0.0] * len(WorkerCounters.COLUMNS), [])
        times: dict[str, list[float]] = {"pull_ms": [], "push_ms": []}
        for _ in range(calls):
            t0 = time.perf_counter()
            ray.get(self.server.pull.remote())
            t1 = time.perf_counter()
            ray.get(self.server.push.remote(0, grads, report))
            t2 = time.perf_counter()
            times["pull_ms"].append(1000 * (t1 - t0))
            times["push_ms"].append(1000 * (t2 - t1))
        return times


def measure_server_work(config: Config, calls: int) -> float:
    """Median ms of the parameter server's own work per push, without Ray."""
    from a3c_course.ray_backend import ParameterServer, flat_size, flatten
    from a3c_course.ray_backend import model_for as build

    model = build(config)
    server = ParameterServer(config, flatten(list(model.parameters()),
                                             torch.zeros(flat_size(model))),
                             SharedAdam(model.parameters(), lr=config.lr).state_dict(),
                             config.workers)
    grads = np.random.default_rng(0).standard_normal(flat_size(model)).astype(np.float32) * 1e-3
    report = WorkerReport([0.0] * len(WorkerCounters.COLUMNS), [])
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        server.push(0, grads, report)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def measure_wire(config: Config, calls: int) -> dict[str, Any]:
    """Round trips of a pull and a push from a one-CPU actor to the parameter server."""
    import ray

    from a3c_course.ray_backend import ParameterServer, flat_size, flatten, ray_session
    from a3c_course.ray_backend import model_for as build

    model = build(config)
    size = flat_size(model)
    with ray_session(config, None):
        name = "a3c-benchmark-server"
        server = ray.remote(num_cpus=0)(ParameterServer).options(name=name).remote(
            config, flatten(list(model.parameters()), torch.zeros(size)),
            SharedAdam(model.parameters(), lr=config.lr).state_dict(), config.workers)
        ray.get(server.pull.remote())  # (the handle also keeps the actor alive)
        prober = ray.remote(num_cpus=1)(Prober).remote(name)
        ray.get(prober.time_calls.remote(10, size))  # warm-up: connections, first objects
        times = ray.get(prober.time_calls.remote(calls, size))
    return {name: {"median": round(statistics.median(v), 3),
                   "p10": round(float(np.percentile(v, 10)), 3),
                   "p90": round(float(np.percentile(v, 90)), 3)} for name, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    test = a3c_course.TEST_MODE
    p = common.window_benchmark_parser(__doc__.split("\n\n")[0], "local and ray",
                                       "throughput-ray-PRESET-MODEL")
    p.add_argument("--calls", type=int, default=50 if test else 300,
                   help="pulls and pushes timed on the wire")
    args = p.parse_args(argv)

    config, out = common.config_and_output(args, "throughput-ray")
    header = common.provenance()
    torch.set_num_threads(1)

    from a3c_course.models import count_parameters
    from a3c_course.ray_backend import model_for as build

    parameters = count_parameters(build(config))
    vector_bytes = 4 * parameters  # float32, as pulled and pushed
    print(f"model: {parameters} parameters, {vector_bytes / 2**20:.2f} MiB per vector",
          file=sys.stderr, flush=True)
    server_ms = measure_server_work(config, args.calls)
    print(f"server work per push: {server_ms:.2f} ms", file=sys.stderr, flush=True)
    wire = measure_wire(config, args.calls)
    print(f"wire: pull {wire['pull_ms']['median']:.2f} ms, push {wire['push_ms']['median']:.2f}"
          " ms (medians)", file=sys.stderr, flush=True)

    rounds = []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: local ...", file=sys.stderr, flush=True)
        local = common.measure_trainer(config, args.warmup, args.seconds, "local")
        print(f"  local {local['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        ray_ = common.measure_trainer(config, args.warmup, args.seconds, "ray")
        print(f"  ray   {ray_['steps_per_s']:8.1f} steps/s", file=sys.stderr, flush=True)
        rounds.append({"local": local, "ray": ray_,
                       "ratio": round(ray_["steps_per_s"] / local["steps_per_s"], 3)})

    local_rate = statistics.median(r["local"]["steps_per_s"] for r in rounds)
    ray_rate = statistics.median(r["ray"]["steps_per_s"] for r in rounds)
    ray_updates = statistics.median(r["ray"]["updates_per_s"] for r in rounds)
    result = {
        "benchmark": "throughput-ray",
        **header,
        "preset": args.preset,
        "model": args.model,
        "env": config.env_id,
        "workers": config.workers,
        "num_steps": config.num_steps,
        "parameters": parameters,
        "vector_bytes": vector_bytes,
        "server_work_ms": round(server_ms, 3),
        "wire_loopback": wire,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "local_steps_per_s": local_rate,
        "ray_steps_per_s": ray_rate,
        "ray_updates_per_s": ray_updates,
        "ratio": round(ray_rate / local_rate, 3),
        # What the parameter server moved: a gradient in and the weights out per update.
        "ray_server_mb_per_s": round(ray_updates * 2 * vector_bytes / 1e6, 1),
        "rounds": rounds,
        "machine_end": common.machine(),
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    print(f"local {local_rate:.1f} steps/s, ray {ray_rate:.1f} steps/s, ratio "
          f"{result['ratio']:.3f} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
