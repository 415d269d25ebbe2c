"""Where a worker's time goes: the library's worker loop under cProfile, split by what it calls.

One worker loop (:func:`a3c_course.worker.train_worker`) runs in this process on private
objects, as one process of benchmarks/throughput.py's *limit* does, for ``--seconds`` after a
``--warmup``, under :mod:`cProfile`. The result splits the loop's wall-clock time into the
functions it calls directly (the environment's ``step``, the model's forward pass, the loss,
``backward``, the gradient hand-over and Adam step, the weight sync, ...) plus the loop's own
lines, each as seconds and as a share. cProfile adds a fixed cost per Python call, so the
shares are a guide to where the time goes, not exact timings.

    python benchmarks/profile_worker.py --model gru --seconds 60

writes benchmarks/results/profile-<preset>-<model>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import common
import torch
from throughput import private_state

from a3c_course.config import Config
from a3c_course.worker import train_worker

# The loop and the phases it hands to functions, whose callees make the split.
LOOP_FUNCTIONS = {"train_worker": "the loop's own lines",
                  "play_rollout": "ROLLOUT: its own lines (buffers, episode ends)",
                  "rollout_loss": "LOSS: its own lines"}
# What the callees are, in the words of the worker's own comments.
WHAT = {
    "step": "environment step (ALE emulator, frame skip, preprocessing wrappers)",
    "reset": "environment reset at an episode's end",
    "_wrapped_call_impl": "ROLLOUT: model forward pass for each action",
    "multinomial": "ROLLOUT: sampling the action",
    "softmax": "ROLLOUT: softmax of the logits",
    "unroll": "LOSS: forward pass over the rollout, with gradients",
    "a3c_loss": "LOSS: returns, advantages and the loss",
    "backward": "LOSS: backward pass",
    "apply_gradients": "UPDATE: clip, hand the gradients over, shared Adam step",
    "copy_weights": "SYNC: copy the shared weights into the local model",
}


def _what(key: tuple[str, int, str]) -> str | None:
    name = key[2]
    for word, what in WHAT.items():
        if name == word or name.endswith(f" {word}>") or name.endswith(f".{word}>"):
            return what
    return None


def _label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":  # a C function: cProfile names it "<built-in method ...>"
        return name
    return f"{name} ({Path(filename).name}:{line})"


def run_loop(config: Config, seconds: float, profiler: cProfile.Profile | None = None
             ) -> tuple[int, float]:
    """Run the worker loop for `seconds` (profiled if given); its steps and wall-clock time."""
    shared = private_state(config)
    timer = threading.Timer(seconds, shared.stop.set)
    start = time.perf_counter()
    timer.start()
    if profiler is not None:
        profiler.enable()  # profiles this thread only, the one that runs the loop
    sigint = signal.getsignal(signal.SIGINT)  # train_worker leaves Ctrl-C to its parent
    try:
        # The "parent" it checks for is this process's own parent: present throughout.
        train_worker(0, config, shared, os.getppid(), config.seed)
    finally:
        if profiler is not None:
            profiler.disable()
        timer.cancel()
        signal.signal(signal.SIGINT, sigint)
    return shared.counters.steps(), time.perf_counter() - start


def profile_loop(config: Config, warmup: float, seconds: float) -> dict[str, Any]:
    """A warm-up run of the loop (lazy initialisation, caches), then a profiled one."""
    run_loop(config, warmup)
    profiler = cProfile.Profile()
    steps, elapsed = run_loop(config, seconds, profiler)

    stats = pstats.Stats(profiler)
    table = stats.stats  # type: ignore[attr-defined]
    # The loop and the two phases it hands whole to functions of its own: their callees are
    # the split, their own lines one entry each.
    containers = {k: k[2] for k in table if k[2] in LOOP_FUNCTIONS}
    callees = []
    for key, (_, _, _, _, callers) in table.items():
        if key in containers:
            continue
        for container in containers:
            if container in callers:
                calls, _, _, cumulative = callers[container]
                callees.append({"function": _label(key), "what": _what(key), "calls": calls,
                                "seconds": round(cumulative, 3)})
    for key, name in containers.items():
        callees.append({"function": name, "what": LOOP_FUNCTIONS[name], "calls": table[key][1],
                        "seconds": round(table[key][2], 3)})
    total = sum(c["seconds"] for c in callees)
    for c in callees:
        c["share"] = round(c["seconds"] / total, 4)
    callees.sort(key=lambda c: -c["seconds"])
    # Self time (inside the function itself, not its callees): where the CPU actually goes.
    by_self = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]  # type: ignore[attr-defined]
    top_self = [{"function": _label(k), "calls": v[1], "self_seconds": round(v[2], 3),
                 "share": round(v[2] / total, 4)} for k, v in by_self]
    return {
        "window_s": round(elapsed, 2),
        "steps": steps,
        "steps_per_s_profiled": round(steps / elapsed, 1),
        "profiled_s": round(total, 3),
        "callees": callees,
        "top_self_time": top_self,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_args(p)
    common.add_loop_args(p, 60.0, 10.0, "profiled run")
    common.add_output_args(p, "profile-PRESET-MODEL[-GAME]")
    args = p.parse_args(argv)
    common.require_positive(p, args, "seconds", "warmup")

    config, out = common.config_and_output(args, "profile")
    header = common.provenance()
    torch.set_num_threads(1)  # as in a worker process
    print(f"profiling one worker loop for {args.seconds:g} s ...", file=sys.stderr, flush=True)
    profile = profile_loop(config, args.warmup, args.seconds)
    result = {
        "benchmark": "profile",
        **header,
        "preset": args.preset,
        "model": args.model,
        "env": config.env_id,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        **profile,
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    for c in profile["callees"][:8]:
        print(f"{100 * c['share']:5.1f}%  {c['what'] or c['function']}", file=sys.stderr)
    print(f"{profile['steps_per_s_profiled']} steps/s under the profiler -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
