"""Time to win: wall-clock minutes and agent steps until the greedy agent's confirmed mean
reaches the target score (Pong: +18 over 10 greedy episodes).

Runs ``a3c train --target-score ...`` (one run per seed) into benchmarks/runs/<name>
(gitignored), then summarises the run's metrics.jsonl into
benchmarks/results/time_to_win-<name>.json. With ``--summarise RUN_DIR ...`` it only reads
existing run directories, so a run made with plain ``a3c train`` can be summarised too.

    python benchmarks/time_to_win.py --seed 1 2 --repeat-action-probability 0 --minutes 60
    python benchmarks/time_to_win.py --summarise runs/pong-det-s1
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import common
from emulator import measure_emulator

import a3c_course
from a3c_course.config import Config, make_config
from a3c_course.rundir import read_metrics
from a3c_course.trainer import EXIT_CODES

MAX_CURVE_POINTS = 400  # the JSON keeps an evenly thinned eval curve
MEAN_OF = 10  # the curve's running mean, and the "final score", average this many evaluations
# The training games' curve: every TRAIN_EVERY agent steps, the mean real score of the last
# TRAIN_MEAN_OF games the workers finished (sampled actions). It does not depend on how often
# the evaluator got the CPU, which differs with the number of workers.
TRAIN_EVERY = 50_000
TRAIN_MEAN_OF = 40
# The emulator-only speed measured before each run (benchmarks/emulator.py): a short window
# is enough, its spread between runs is a few per cent.
EMULATOR_WARMUP_S = 1.0 if a3c_course.TEST_MODE else 3.0
EMULATOR_SECONDS = 2.0 if a3c_course.TEST_MODE else 10.0
EXIT_TERMINATED = EXIT_CODES["terminated"]  # a3c train's exit status after a SIGTERM
EMULATOR_FILE = "emulator_speed.json"  # written into the run directory


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 2)


def _time_at_steps(progress: list[tuple[float, int]], steps: int) -> float | None:
    """Wall-clock seconds at which the run had taken `steps` steps (interpolated)."""
    for (t0, s0), (t1, s1) in zip(progress, progress[1:], strict=False):
        if s0 <= steps <= s1:
            return t0 + (t1 - t0) * (steps - s0) / max(s1 - s0, 1)
    return None


def _thin(n: int, keep: int) -> list[int]:
    if n <= keep:
        return list(range(n))
    step = (n - 1) / (keep - 1)
    return sorted({round(i * step) for i in range(keep)})


def train_curve(rows: list[dict[str, Any]], end_steps: int) -> list[list[float]]:
    """[steps, mean of the last TRAIN_MEAN_OF training games] every TRAIN_EVERY steps."""
    games = [(r["steps"], r["episode_return"]) for r in rows if r["event"] == "episode"]
    games.sort(key=lambda g: g[0])
    curve, played = [], 0
    for mark in range(TRAIN_EVERY, end_steps + 1, TRAIN_EVERY):
        while played < len(games) and games[played][0] <= mark:
            played += 1
        last = [score for _, score in games[max(0, played - TRAIN_MEAN_OF):played]]
        if last:
            curve.append([mark, round(sum(last) / len(last), 2)])
    return curve


def entropy_curve(rows: list[dict[str, Any]], end_steps: int) -> list[list[float]]:
    """[steps, mean policy entropy per step of the progress rows since the last mark] every
    TRAIN_EVERY steps: how far from uniform (ln of the action count) the policy has moved."""
    progress = [(r["steps"], r["entropy"]) for r in rows
                if r["event"] == "progress" and r.get("entropy") is not None]
    curve = []
    for mark in range(TRAIN_EVERY, end_steps + 1, TRAIN_EVERY):
        window = [e for s, e in progress if mark - TRAIN_EVERY < s <= mark]
        if window:
            curve.append([mark, round(sum(window) / len(window), 3)])
    return curve


def default_target(config: Config, target: float | None) -> float | None:
    """`target`, or +18 on Pong ("always wins"); other games without one: a score curve only."""
    if target is None and config.env_id == "ALE/Pong-v5":
        return 18.0
    return target


def reproduce_command(config: Config) -> str:
    """An `a3c train` command that makes a run with this config (fields off the preset as
    --set), for runs summarised without the command that made them."""
    base = make_config(config.preset).to_dict()
    flags = {"env": "--env", "model": "--model", "num_workers": "--workers", "seed": "--seed",
             "lr": "--lr", "repeat_action_probability": "--repeat-action-probability",
             "max_steps": "--steps", "max_minutes": "--minutes", "target_score": "--target-score"}
    cmd = ["a3c", "train", "--preset", config.preset]
    for key, value in config.to_dict().items():
        if key == "preset" or value == base.get(key):
            continue
        if key in flags and value is not None:
            cmd += [flags[key], f"{value:g}" if isinstance(value, float) else str(value)]
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            cmd += ["--set", f"{key}={text}"]
    return shlex.join(cmd)


def summarise(run_dir: Path, target: float | None = None) -> dict[str, Any]:
    """The time-to-win figures and the eval curve of one run directory."""
    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    rows = read_metrics(run_dir)
    speed_file = run_dir / EMULATOR_FILE
    speed = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    target = default_target(config, target if target is not None else config.target_score)
    starts = [r for r in rows if r["event"] in ("start", "resume")]
    workers = starts[0].get("workers") if starts else None
    # (time, steps) of the trainer's own rows; eval rows carry the steps at which the
    # evaluator loaded its weights, logged later, so they are left out.
    progress = [(r["time_s"], r["steps"]) for r in rows
                if r["event"] not in ("eval", "eval_confirm")]
    evals = [r for r in rows if r["event"] == "eval"]
    confirms = [r for r in rows if r["event"] == "eval_confirm"]
    stops = [r for r in rows if r["event"] == "stop"]
    end = stops[-1] if stops else rows[-1]

    win = next((r for r in confirms if target is not None and r["eval_return"] >= target), None)
    first_single = next((r for r in evals if target is not None and r["eval_return"] >= target),
                        None)
    returns = [r["eval_return"] for r in evals]
    windows = [returns[max(0, i + 1 - MEAN_OF): i + 1] for i in range(len(returns))]
    running = [sum(w) / len(w) for w in windows]
    keep = _thin(len(evals), MAX_CURVE_POINTS)
    result: dict[str, Any] = {
        "run_dir": common.repo_relative(run_dir),
        "env": config.env_id,
        "preset": config.preset,
        "model": config.model,
        "seed": config.seed,
        "repeat_action_probability": config.repeat_action_probability,
        "protocol": common.protocol(config),
        "workers": workers,
        "target_score": target,
        "eval_episodes": config.eval_episodes,
        "cap_minutes": config.max_minutes or None,
        "reached": win is not None,
        # When the run knew it had won: the confirming episodes are done (the run stops here).
        "minutes": _minutes(win["time_s"]) if win else None,
        # Agent steps when the winning weights were loaded by the evaluator, and the
        # wall-clock time the run had those weights (before the confirmation episodes).
        "steps": win["steps"] if win else None,
        "minutes_at_weights": _minutes(_time_at_steps(progress, win["steps"])) if win else None,
        "confirmed_mean": win["eval_return"] if win else None,
        # Comparable to one-episode evaluators (ikostrikov's): first single greedy episode.
        "first_single_eval_minutes": _minutes(first_single["time_s"]) if first_single else None,
        "first_single_eval_steps": first_single["steps"] if first_single else None,
        "best_eval": max(returns) if returns else None,
        "best_confirmed_mean": max((r["eval_return"] for r in confirms), default=None),
        f"final_eval_mean{MEAN_OF}": round(running[-1], 2) if running else None,
        "evaluations": len(evals),
        "confirmations": len(confirms),
        "end_minutes": _minutes(end["time_s"]),
        "end_steps": end["steps"],
        "finished": bool(stops),  # False: the run is still going, or was killed
        "stop_reason": end.get("reason"),
        "mean_steps_per_s": round(end["steps"] / end["time_s"], 1) if end["time_s"] else None,
        # The bare emulator's speed measured before the run (null: the run was not started by
        # this script, so nothing measured it).
        **{key: speed.get(key) for key in ("emulator_steps_per_s",
                                           "emulator_steps_per_s_per_process")},
        "worker_restarts": sum(r["event"] == "worker_restart" for r in rows),
        "resumed": any(r["event"] == "resume" for r in rows),
        # The commands that started and resumed the run, as its metrics recorded them.
        "run_commands": [r.get("command") for r in starts],
        "reproduce_command": reproduce_command(config),
        "eval_curve_columns": ["time_s", "steps", "eval_return", f"mean{MEAN_OF}"],
        "eval_curve": [[evals[i]["time_s"], evals[i]["steps"], evals[i]["eval_return"],
                        round(running[i], 2)] for i in keep],
        "confirm_points": [[r["time_s"], r["steps"], r["eval_return"]] for r in confirms],
        "train_curve_columns": ["steps", f"train_mean{TRAIN_MEAN_OF}"],
        "train_curve": train_curve(rows, end["steps"]),
        "entropy_curve_columns": ["steps", "entropy"],
        "entropy_curve": entropy_curve(rows, end["steps"]),
        "config": config.to_dict(),
    }
    return result


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", text)


def main(argv: list[str] | None = None) -> int:
    test = a3c_course.TEST_MODE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--summarise", type=Path, nargs="+", metavar="RUN_DIR",
                   help="only summarise these existing run directories")
    common.add_run_args(p)
    p.add_argument("--target-score", type=float, default=None,
                   help="greedy mean that ends a run (default: +18 on Pong, none elsewhere: "
                   "the run then trains to its budget)")
    p.add_argument("--seed", type=int, nargs="+", default=[1], help="one run per seed")
    p.add_argument("--repeat-action-probability", type=float, default=0.0,
                   help="0 = deterministic (default here), 0.25 = sticky actions (ALE v5)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--minutes", type=float, default=1.0 if test else 60.0,
                   help="wall-clock cap of each run")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="passed to `a3c train --set` (repeatable)")
    p.add_argument("--tag", default=None,
                   help="added to the run name (default: made from the --set items)")
    p.add_argument("--name", default=None, help="run name (default: game-preset-model-"
                   "protocol[-tag]-sSEED); with --summarise: the directory's name")
    p.add_argument("--runs-dir", type=Path, default=common.REPO / "benchmarks" / "runs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing run and its result file")
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default: benchmarks/results)")
    args = p.parse_args(argv)
    out_dir = args.out or common.RESULTS
    header = common.provenance()

    if args.summarise:
        for run_dir in args.summarise:
            name = args.name if args.name and len(args.summarise) == 1 else run_dir.name
            # Summarised again (after a resume, or for a newer summary): how the run was
            # started stays known from the earlier result of the same run directory.
            earlier_path = out_dir / f"time_to_win-{name}.json"
            earlier = json.loads(earlier_path.read_text()) if earlier_path.is_file() else {}
            if earlier.get("run_dir") != common.repo_relative(run_dir):
                earlier = {}
            result = {"benchmark": "time_to_win", **header,
                      "train_command": earlier.get("train_command"),
                      **({"train_exit_code": earlier.get("train_exit_code"),
                          "started_by": earlier.get("started_by", earlier["command"])}
                         if earlier.get("train_command") else {}),
                      **summarise(run_dir)}
            _report(common.write_json(out_dir / f"time_to_win-{name}.json", result), result)
        return 0

    common.parse_sets(args.set)  # refuse a bad --set before a long run
    config = make_config(args.preset, env=args.env, model=args.model,
                         **common.parse_sets(args.set))
    game = config.env_id.split("/")[-1].split("-")[0].lower()
    tag = args.tag if args.tag is not None else "-".join(_slug(s) for s in args.set)
    status = 0
    for seed in args.seed:
        kind = {"deterministic": ["det"], "sticky": ["sticky"], "classic": []}[
            common.protocol(config.replace(
                repeat_action_probability=args.repeat_action_probability))]
        parts = [game, args.preset, args.model, *kind]
        name = args.name or "-".join(parts + ([tag] if tag else []) + [f"s{seed}"])
        if args.name and len(args.seed) > 1:
            name = f"{args.name}-s{seed}"
        run_dir = args.runs_dir / name
        if (out_dir / f"time_to_win-{name}.json").exists() and not args.overwrite:
            # A committed result is a measurement: a new run must not replace it unasked.
            print(f"time_to_win: {out_dir / f'time_to_win-{name}.json'} exists: pass --overwrite "
                  "to replace it, or --tag/--name to name this run apart", file=sys.stderr)
            return 2
        train = ["train", "--env", args.env, "--preset", args.preset, "--model", args.model,
                 "--seed", str(seed),
                 "--repeat-action-probability", f"{args.repeat_action_probability:g}",
                 "--minutes", f"{args.minutes:g}", "--run-dir", common.repo_relative(run_dir),
                 "--no-progress"]
        target = default_target(config, args.target_score)
        if target is not None:
            train += ["--target-score", f"{target:g}"]
        if args.workers is not None:
            train += ["--workers", str(args.workers)]
        for item in args.set:
            train += ["--set", item]
        if args.overwrite:
            train.append("--overwrite")
        # The machine's own speed just before the run (same game, protocol and process count),
        # so that minutes from different machines can be compared.
        run_config = config.replace(seed=seed, repeat_action_probability=args
                                    .repeat_action_probability,
                                    **({} if args.workers is None
                                       else {"num_workers": args.workers}))
        emulator = measure_emulator(run_config, EMULATOR_WARMUP_S, EMULATOR_SECONDS)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = run_dir.parent / f"{name}.log"
        print(f"{name}: a3c {shlex.join(train)} (log: {log_path})", file=sys.stderr, flush=True)
        with open(log_path, "w") as log:
            # From the repo root, so the run dir (and the command the run records) is relative.
            proc = subprocess.Popen([sys.executable, "-m", "a3c_course", *train],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=common.REPO)
            try:
                with common.passing_sigterm_to(proc):
                    code = proc.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the trainer too: it stops cleanly
                code = proc.wait()
                status = 130
            if code == EXIT_TERMINATED:  # it was stopped, and so is this script
                status = code
        if not (run_dir / "metrics.jsonl").is_file():
            print(f"{name}: a3c train exited with {code} and wrote no metrics; see {log_path}",
                  file=sys.stderr)
            return 1
        if code not in (0, 130, EXIT_TERMINATED):
            print(f"{name}: a3c train exited with {code}; summarising what it wrote",
                  file=sys.stderr)
            status = status or 1
        # Kept in the run directory, so a later --summarise (after a resume) still has it.
        common.write_json(run_dir / EMULATOR_FILE, {
            "date": header["date"], "workers": run_config.workers,
            "emulator_steps_per_s": emulator["steps_per_s"],
            "emulator_steps_per_s_per_process": round(
                emulator["steps_per_s"] / run_config.workers, 1)})
        result = {"benchmark": "time_to_win", **header,
                  "train_command": shlex.join(["a3c", *train]),
                  "train_exit_code": code,
                  **summarise(run_dir, target)}
        _report(common.write_json(out_dir / f"time_to_win-{name}.json", result), result)
        if status in (130, EXIT_TERMINATED):  # the remaining seeds are not started
            break
    return status


def _report(path: Path, r: dict[str, Any]) -> None:
    if r["target_score"] is None:
        line = (f"no target; best eval {r['best_eval']}, final mean of {MEAN_OF} "
                f"{r[f'final_eval_mean{MEAN_OF}']} after {r['end_minutes']} min")
    elif r["reached"]:
        line = (f"confirmed mean {r['confirmed_mean']:.1f} >= {r['target_score']:g} after "
                f"{r['minutes']} min, {r['steps']} agent steps")
    else:
        line = (f"target {r['target_score']:g} not reached in {r['end_minutes']} min "
                f"(best eval {r['best_eval']}, best confirmed mean {r['best_confirmed_mean']})")
    print(f"{r['preset']}/{r['model']} seed {r['seed']} {r['protocol']}: {line} -> {path}")


if __name__ == "__main__":
    raise SystemExit(main())
