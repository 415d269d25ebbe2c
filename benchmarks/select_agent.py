"""Choose which of a run's saved weights to ship, on validation seeds.

    python benchmarks/select_agent.py checkpoints/pong-default-gru-84px-sticky-s3 --episodes 30

A run keeps several sets of weights: best.pt (the best confirmed greedy mean), checkpoint.pt
(the last) and, with ``snapshot_minutes``, snapshots/ along the way. This plays every one of
them (or only the snapshots taken after --from-steps) greedily for --episodes episodes with
sticky actions, all on the same VALIDATION seeds (--seed, --seed + 1, ...: apart from the
ship seeds of ship_agent.py and from training's), one process per core, and writes
benchmarks/results/select-<run>.json: each candidate's steps, mean, minimum and scores, and
the best. Ship the best with ``ship_agent.py RUN_DIR NAME --checkpoint FILE``: the best of many
on the validation seeds is biased upward; its score on the ship seeds, which this choice never
saw, is the honest one.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import common

import a3c_course
from a3c_course.checkpoint import CheckpointError, load_checkpoint
from a3c_course.rundir import SNAPSHOTS_DIR, snapshots


def candidates(run_dir: Path, from_steps: int) -> list[dict[str, Any]]:
    """best.pt, checkpoint.pt and the snapshots (those taken at or after `from_steps` agent
    steps), each with the agent steps at which its weights were taken, oldest first."""
    found = []
    files = [*snapshots(run_dir), *(run_dir / name for name in ("best.pt", "checkpoint.pt"))]
    for path in files:
        if not path.is_file():
            continue
        steps = int(load_checkpoint(path).counters.get("steps", 0))
        if path.parent.name == SNAPSHOTS_DIR and steps < from_steps:
            continue
        found.append({"file": path.relative_to(run_dir).as_posix(), "steps": steps})
    return sorted(found, key=lambda c: c["steps"])


def evaluate_file(path: str, episodes: int, seed: int, sticky: float) -> list[float]:
    """Greedy real scores of one file's weights (runs in a pool process, one torch thread)."""
    import torch

    from a3c_course.checkpoint import load_model
    from a3c_course.evaluator import evaluate_model

    torch.set_num_threads(1)
    model, config = load_model(path)
    config = config.replace(repeat_action_probability=sticky)
    return evaluate_model(model, config, episodes, seed=seed)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--episodes", type=int, default=2 if a3c_course.TEST_MODE else 30)
    p.add_argument("--seed", type=int, default=common.VALIDATION_SEED,
                   help="first validation seed (default: %(default)s)")
    p.add_argument("--repeat-action-probability", type=float, default=0.25)
    p.add_argument("--from-steps", type=int, default=0,
                   help="only snapshots taken at or after this many agent steps")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    common.add_output_args(p, "select-<run>")
    args = p.parse_args()
    for name, value, low in (("--episodes", args.episodes, 1), ("--processes", args.processes, 1),
                             ("--from-steps", args.from_steps, 0), ("--seed", args.seed, 0)):
        if value < low:
            p.error(f"{name} {value}: allowed is an integer of at least {low}")
    if not 0.0 <= args.repeat_action_probability <= 1.0:
        p.error(f"--repeat-action-probability {args.repeat_action_probability}: allowed is "
                "a probability between 0 and 1")
    if not (args.run_dir / "metrics.jsonl").is_file():
        p.error(f"{args.run_dir} holds no metrics.jsonl: RUN_DIR must be a run directory of "
                "a3c train")
    try:
        found = candidates(args.run_dir, args.from_steps)
    except CheckpointError as error:
        p.error(str(error))
    if not found:
        p.error(f"{args.run_dir} holds no weights to choose from (best.pt, checkpoint.pt, "
                f"snapshots after {args.from_steps} steps)")

    # Taken now: the code that runs is the tree as it stands at the start.
    made_by = common.provenance()
    # Spawned pool processes, ended by the with-block on return, error or Ctrl-C.
    jobs = [(str(args.run_dir / c["file"]), args.episodes, args.seed,
             args.repeat_action_probability) for c in found]
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(args.processes, len(jobs))) as pool:
        scores = pool.starmap(evaluate_file, jobs, chunksize=1)
    for candidate, returns in zip(found, scores, strict=True):
        candidate.update(mean_return=round(sum(returns) / len(returns), 3),
                         min_return=min(returns), returns=returns)
        print(f"{candidate['file']:>24}  steps {candidate['steps']:>10,}  "
              f"mean {candidate['mean_return']:+8.2f}  min {candidate['min_return']:+6.0f}",
              file=sys.stderr)
    best = max(found, key=lambda c: (c["mean_return"], c["min_return"]))
    result = {
        "benchmark": "select_agent",
        **made_by,
        "run_dir": common.repo_relative(args.run_dir),
        "episodes": args.episodes,
        "seed": args.seed,
        "repeat_action_probability": args.repeat_action_probability,
        "from_steps": args.from_steps,
        "candidates": found,
        "best": best["file"],
    }
    name = args.name or f"select-{args.run_dir.resolve().name}"
    path = common.write_json((args.out or common.RESULTS) / f"{name}.json", result)
    print(f"best: {best['file']} (mean {best['mean_return']:+.2f}, min "
          f"{best['min_return']:+.0f}); {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
