"""Ship a trained agent with the package: export it, evaluate it, record how it was made.

    python benchmarks/ship_agent.py runs/pong-det-s1 pong
    python benchmarks/ship_agent.py --strip-only pong pong-stack spaceinvaders

writes, beside each other in a3c_course/pretrained/:
- NAME.pt          the agent (model + config, no optimizer state), from RUN_DIR/best.pt
                   (the weights whose confirmed greedy mean was best) or --checkpoint
- NAME.eval.json   greedy real scores over --episodes episodes with sticky actions on, on
                   seeds that training never used (what `a3c evaluate pretrained:NAME --json`
                   prints, plus provenance)
- NAME.train.json  the run's config, a command that reproduces it, and its learning curve
and images/NAME.mp4, one greedy game (sticky actions, the evaluation's first seed), with
images/NAME.png, a strip of its frames for code hosts that drop the video.

`--strip-only NAME ...` writes only images/NAME.png for agents already shipped: it replays
the game of the shipped video (the seed and sticky-action probability recorded in
NAME.eval.json) into a temporary mp4 and keeps its strip; nothing shipped is touched.

Nothing is replaced until the candidate has been evaluated and its records read. Exit status:
0 shipped; 1 not shipped because its mean is below --min-mean M; 2 bad input (a missing run
file, NAME already shipped without --overwrite). In both failures the files already shipped
under NAME stay as they were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import common
import torch

from a3c_course.checkpoint import (
    PRETRAINED_DIR,
    CheckpointError,
    export_agent,
    load_checkpoint,
    load_model,
)
from a3c_course.evaluator import evaluate_model
from a3c_course.rundir import read_metrics
from a3c_course.video import record_video


def strip_only(names: list[str], out: Path, video_dir: Path, video_frames: int) -> int:
    """images/NAME.png for agents already shipped: the game of their shipped video, replayed
    with the seed and protocol of NAME.eval.json into a temporary mp4 (the shipped files and
    the committed video stay as they are). Exit status 2 if an agent is missing."""
    for name in names:
        agent, eval_json = out / f"{name}.pt", out / f"{name}.eval.json"
        if not (agent.is_file() and eval_json.is_file()):
            print(f"{name}: {agent} or {eval_json} missing: not shipped", file=sys.stderr)
            return 2
        evaluation = json.loads(eval_json.read_text())
        model, config = load_model(agent)
        config = config.replace(repeat_action_probability=evaluation["repeat_action_probability"])
        strip = video_dir / f"{name}.png"
        with tempfile.TemporaryDirectory() as tmp:
            replay = Path(tmp) / f"{name}.mp4"
            score, steps = record_video(model, config, replay, seed=evaluation["seed"],
                                        max_frames=video_frames, scale=1, strip=strip)
            shipped = video_dir / f"{name}.mp4"
            same = shipped.is_file() and shipped.read_bytes() == replay.read_bytes()
        print(f"pretrained:{name}: strip {strip} ({score:+.0f} in {steps} steps; "
              + (f"the same game as {shipped}" if same else
                 f"WARNING: the replay's mp4 differs from {shipped}") + ")", file=sys.stderr)
    return 0


def shipped_at(checkpoint: Path) -> dict[str, float] | None:
    """When in the run the shipped weights were saved (run time and agent steps), from the
    counters every checkpoint file carries; None if the file has none (an older format)."""
    counters = load_checkpoint(checkpoint).counters
    if "time_s" not in counters or "steps" not in counters:
        return None
    return {"time_s": round(counters["time_s"], 3), "steps": counters["steps"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, nargs="?")
    p.add_argument("name", nargs="?", help="the agent's name: pretrained:NAME")
    p.add_argument("--strip-only", nargs="+", metavar="NAME",
                   help="only write images/NAME.png for these shipped agents")
    p.add_argument("--checkpoint", default="best.pt", help="file in RUN_DIR to ship")
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--repeat-action-probability", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=common.SHIP_SEED)
    p.add_argument("--video-frames", type=int, default=1200, help="cap on the video's length")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--min-mean", type=float, default=None,
                   help="ship only if the mean over --episodes is at least this")
    p.add_argument("--out", type=Path, default=PRETRAINED_DIR,
                   help="where the agent and its JSON files go (default: the package's)")
    p.add_argument("--video-dir", type=Path, default=common.REPO / "images")
    args = p.parse_args(argv)
    if args.strip_only:
        if args.run_dir is not None:
            p.error("--strip-only takes agent names only, no RUN_DIR")
        torch.set_num_threads(1)
        return strip_only(args.strip_only, args.out, args.video_dir, args.video_frames)
    if args.run_dir is None or args.name is None:
        p.error("RUN_DIR and NAME are required (or --strip-only NAME ...)")
    if args.episodes < 1:
        p.error(f"--episodes {args.episodes}: must be at least 1")

    torch.set_num_threads(1)
    outputs = [args.out / f"{args.name}{suffix}" for suffix in (".pt", ".eval.json",
                                                                 ".train.json")]
    agent, eval_json, train_json = outputs
    video = args.video_dir / f"{args.name}.mp4"
    strip = video.with_suffix(".png")
    existing = [str(f) for f in (*outputs, video, strip) if f.exists()]
    if existing and not args.overwrite:
        p.error(f"{', '.join(existing)} exist(s): pass --overwrite to replace them")
    for needed in (args.run_dir / args.checkpoint, args.run_dir / "config.json",
                   args.run_dir / "metrics.jsonl"):
        if not needed.is_file():
            p.error(f"{needed} does not exist: RUN_DIR must be a run directory of a3c train")

    # The records are read and the candidate evaluated before anything is replaced.
    rows = read_metrics(args.run_dir)
    try:
        saved_at = shipped_at(args.run_dir / args.checkpoint)
    except CheckpointError as error:
        p.error(str(error))
    curve = [[r["time_s"], r["steps"], r["eval_return"]] for r in rows
             if r["event"] in ("eval", "eval_confirm")]
    training = {
        "run_dir": common.repo_relative(args.run_dir),
        "shipped_file": args.checkpoint,
        "config": json.loads((args.run_dir / "config.json").read_text()),
        "commands": [r.get("command") for r in rows if r.get("command")] or None,
        "starts": [{k: r[k] for k in ("event", "time_s", "steps")} for r in rows
                   if r["event"] in ("start", "resume", "stop")],
        "curve_columns": ["time_s", "steps", "eval_return"],
        "curve": curve[:: max(1, len(curve) // 500)],
        "confirmations": [[r["time_s"], r["steps"], r["eval_return"]] for r in rows
                          if r["event"] == "eval_confirm"],
        "shipped_at": saved_at,
    }
    # Taken now: the code that runs is the tree as it stands at the start.
    made_by = common.provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    candidate = args.out / f".{args.name}.candidate.pt"
    try:
        try:
            export_agent(args.run_dir / args.checkpoint, candidate, overwrite=True)
        except CheckpointError as error:
            p.error(str(error))
        model, config = load_model(candidate)
        config = config.replace(repeat_action_probability=args.repeat_action_probability)
        returns = evaluate_model(model, config, args.episodes, seed=args.seed)
        mean = sum(returns) / len(returns)
        if args.min_mean is not None and mean < args.min_mean:
            print(f"not shipped: {args.run_dir / args.checkpoint} scored a mean of {mean:+.2f} "
                  f"over {len(returns)} episodes, below --min-mean {args.min_mean:g}; "
                  f"pretrained:{args.name} is unchanged", file=sys.stderr)
            return 1
        shipped_as = (f"pretrained:{args.name}" if args.out == PRETRAINED_DIR
                      else common.repo_relative(agent))
        evaluation = {
            "benchmark": "pretrained_eval",
            **made_by,
            "checkpoint": f"pretrained:{args.name}",
            "reproduce": f"a3c evaluate {shipped_as} --episodes {args.episodes} --seed {args.seed} "
                         f"--repeat-action-probability {args.repeat_action_probability} --json",
            "env": config.env_id,
            "repeat_action_probability": args.repeat_action_probability,
            "episodes": len(returns),
            "seed": args.seed,
            "mean_return": mean,
            "returns": returns,
        }
        os.replace(candidate, agent)
    finally:
        candidate.unlink(missing_ok=True)
    common.write_json(eval_json, evaluation)
    common.write_json(train_json, training)

    score, steps = record_video(model, config, video, seed=args.seed,
                                max_frames=args.video_frames, scale=1, strip=strip)
    print(f"pretrained:{args.name}: mean {evaluation['mean_return']:+.2f} over {len(returns)} "
          f"episodes (sticky p={args.repeat_action_probability}); video {video} and its strip "
          f"{strip} ({score:+.0f} in {steps} steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
