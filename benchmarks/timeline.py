"""The seed's timeline in minutes: the agent of one run at the seed's four stages.

The seed reports its Pong agent stuck in a corner at first, returning the ball after about an
hour, scoring a lot after about two and always winning after three to four (8 processes). A
run with snapshots (``--set snapshot_minutes=2``) keeps its weights every few minutes (and
``best.pt``, the confirmed weights, when it stopped at its target); this script plays each
greedily, finds the first one at each stage, and ships those four with the package so that a
notebook shows them without training:

    python benchmarks/timeline.py checkpoints/pong-timeline --episodes 5 --ship

The stages, from the greedy games of each snapshot (sticky actions as in training):

- ``corner``: the first snapshot (the agent has barely trained; it loses 21-0);
- ``returning``: the first whose games are at least twice as long (in agent steps) as the
  first snapshot's: the agent keeps the ball in play instead of losing each point at once;
- ``scoring``: the first whose mean score is at least 0 (it wins as many points as it loses);
- ``winning``: the first that wins every one of its games with a mean of at least +18.

Writes benchmarks/results/timeline-<run>.json (every snapshot's scores and lengths, the
stages); with ``--ship`` also a3c_course/pretrained/timeline/<game>-<stage>.pt (playable:
``a3c evaluate pretrained:timeline/pong-scoring``) and images/timeline-<game>-<stage>.mp4 and
.png (a short greedy game and its strip of frames).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import common
import torch
from time_to_win import EMULATOR_FILE

from a3c_course.checkpoint import PRETRAINED_DIR, export_agent, load_checkpoint, load_model
from a3c_course.envs import make_env
from a3c_course.evaluator import play_episode
from a3c_course.rundir import snapshots
from a3c_course.video import record_video

STAGES = ("corner", "returning", "scoring", "winning")
LONGER = 2.0  # "returning": games at least this many times as long as the first snapshot's
VIDEO_FRAMES = 600


def play(spec: Path, episodes: int, seed: int) -> dict[str, Any]:
    """Greedy scores and lengths of one snapshot, with its minutes and agent steps."""
    checkpoint = load_checkpoint(spec)
    model, config = load_model(spec)
    env = make_env(config, train=False)
    try:
        games = [play_episode(model, env, seed=seed + i) for i in range(episodes)]
    finally:
        env.close()
    scores = [float(score) for score, _ in games]
    lengths = [int(length) for _, length in games]
    return {"snapshot": spec.name, "path": str(spec),
            "minutes": round(checkpoint.counters["time_s"] / 60, 2),
            "steps": int(checkpoint.counters["steps"]), "scores": scores, "lengths": lengths,
            "mean": round(statistics.fmean(scores), 2),
            "mean_length": round(statistics.fmean(lengths), 1)}


def find_stages(played: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """The first snapshot at each stage (None: the run never got there)."""
    first = played[0]
    tests = {
        "corner": lambda s: s is first,
        "returning": lambda s: s["mean_length"] >= LONGER * first["mean_length"],
        "scoring": lambda s: s["mean"] >= 0,
        "winning": lambda s: s["mean"] >= 18 and min(s["scores"]) > 0,
    }
    return {stage: next((s for s in played if tests[stage](s)), None) for stage in STAGES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run made with --set snapshot_minutes=M")
    p.add_argument("--episodes", type=int, default=5, help="greedy games per snapshot")
    p.add_argument("--seed", type=int, default=common.VALIDATION_SEED)
    p.add_argument("--ship", action="store_true",
                   help="copy the four stage snapshots into the package, with videos")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--ship-dir", type=Path, default=PRETRAINED_DIR / "timeline")
    p.add_argument("--video-dir", type=Path, default=common.IMAGES)
    args = p.parse_args(argv)
    found = snapshots(args.run_dir)
    if found and (args.run_dir / "best.pt").is_file():
        # The weights of the confirmed target, if the run stopped there before its next snapshot.
        best = load_checkpoint(args.run_dir / "best.pt").counters["time_s"]
        if best > load_checkpoint(found[-1]).counters["time_s"]:
            found.append(args.run_dir / "best.pt")
    if not found:
        p.error(f"{args.run_dir} holds no snapshots: train with --set snapshot_minutes=M")
    if args.episodes < 1:
        p.error(f"--episodes {args.episodes}: must be at least 1")
    torch.set_num_threads(1)
    header = common.provenance()
    played = []
    for spec in found:
        played.append(play(spec, args.episodes, args.seed))
        s = played[-1]
        print(f"{s['snapshot']}: {s['minutes']:6.1f} min {s['steps']:>10,} steps  mean "
              f"{s['mean']:+6.1f}  length {s['mean_length']:7.0f}", file=sys.stderr, flush=True)
    stages = find_stages(played)
    _, config = load_model(found[0])
    game = config.env_id.split("/")[-1].split("-")[0].lower()
    # The bare emulator's speed measured when the run started (time_to_win.py writes it; null
    # for a run started otherwise), so the minutes can be set against another machine's.
    speed_file = args.run_dir / EMULATOR_FILE
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    result = {"benchmark": "timeline", **header, "run_dir": common.repo_relative(args.run_dir),
              "env": config.env_id, "workers": config.workers,
              **{key: speed.get(key) for key in ("emulator_steps_per_s",
                                                 "emulator_steps_per_s_per_process")},
              "repeat_action_probability": config.repeat_action_probability,
              "episodes": args.episodes, "eval_seed": args.seed, "longer": LONGER,
              "stages": {k: (v and v["snapshot"]) for k, v in stages.items()},
              "snapshots": [{k: v for k, v in s.items() if k != "path"} for s in played],
              "config": config.to_dict()}
    if args.ship:
        args.ship_dir.mkdir(parents=True, exist_ok=True)
        args.video_dir.mkdir(parents=True, exist_ok=True)
        shipped = {}
        for stage, snap in stages.items():
            if snap is None:
                continue
            name = f"{game}-{stage}"
            agent = args.ship_dir / f"{name}.pt"
            export_agent(snap["path"], agent, overwrite=True)  # model and config only
            model, agent_config = load_model(agent)
            video = args.video_dir / f"timeline-{name}.mp4"
            score, steps = record_video(model, agent_config, video, seed=args.seed,
                                        max_frames=VIDEO_FRAMES, strip=video.with_suffix(".png"))
            shipped[stage] = {"agent": common.repo_relative(agent),
                              "pretrained": f"pretrained:timeline/{name}",
                              "video": common.repo_relative(video),
                              "strip": common.repo_relative(video.with_suffix(".png")),
                              "video_game_score": score, "video_game_steps": steps}
        result["shipped"] = shipped
    out = common.write_json(args.out / f"timeline-{args.run_dir.name}.json", result)
    for stage, snap in stages.items():
        where = (f"{snap['snapshot']}: {snap['minutes']:.1f} min, {snap['steps']:,} agent "
                 f"steps, mean {snap['mean']:+.1f}" if snap else "not reached")
        print(f"{stage:10s} {where}")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
