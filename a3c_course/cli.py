"""The `a3c` command: train, evaluate, export.

Every bad input becomes one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .config import PRESETS, Config, ConfigError, make_config, parse_sets

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        print(f"a3c: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a whole number >= 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give a whole number >= 0")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number > 0")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a probability 0 to 1")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or abs(value) == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a finite number")
    return value


def _ray_address(text: str) -> str:
    if text == "auto":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed: give HOST:PORT of a Ray head node (port 1 to 65535), "
            "or 'auto'")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="a3c", description="Hogwild A3C on Atari Pong and SpaceInvaders.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train an agent (multiprocess Hogwild)")
    t.add_argument("--env", help="pong, spaceinvaders or an ALE/<Game>-v5 id (default: pong)")
    t.add_argument("--model", choices=["gru", "stack"], help="network (default: gru)")
    t.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="named starting configuration (default: default)")
    t.add_argument("--workers", type=_positive_int, help="worker processes (default: CPU count)")
    t.add_argument("--steps", type=_positive_int,
                   help="agent-step budget, summed over workers (a total: resume counts on)")
    t.add_argument("--minutes", type=_positive_float,
                   help="wall-clock budget in minutes (a total: resume counts on)")
    t.add_argument("--target-score", type=_number,
                   help="stop when the greedy mean over eval_episodes reaches this")
    t.add_argument("--repeat-action-probability", type=_probability,
                   help="sticky actions (default 0.25, ALE v5); 0 for deterministic")
    t.add_argument("--lr", type=_positive_float, help="Adam learning rate")
    t.add_argument("--seed", type=_non_negative_int, help="random seed")
    t.add_argument("--run-dir", type=Path, help="where config, metrics, checkpoint go "
                   "(default: runs/<game>-<model>-<time>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --run-dir")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any config field, e.g. --set num_steps=30 (repeatable)")
    t.add_argument("--render", action="store_true",
                   help="show the greedy evaluator's games in a window (needs a display)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--json", action="store_true",
                   help="end with one JSON line (for scripts) instead of a few lines in words")
    t.add_argument("--tensorboard", action="store_true",
                   help="also write the metrics to RUN_DIR/tensorboard (pip install "
                   "'a3c-course[tensorboard]')")
    t.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: worker processes on this machine (default); ray: Ray actors "
                   "around a parameter server (pip install 'a3c-course[ray]')")
    t.add_argument("--address", type=_ray_address, metavar="HOST:PORT|auto",
                   help="with --backend ray: join this Ray cluster (default: start a local "
                   "private Ray instance on this machine)")

    e = sub.add_parser("evaluate", help="play a checkpoint greedily and report real scores")
    e.add_argument("checkpoint", help="checkpoint file, or pretrained:NAME")
    e.add_argument("--episodes", type=_positive_int, default=10)
    e.add_argument("--seed", type=_non_negative_int, default=12345,
                   help="seed of the first episode (next ones: seed+1, ...)")
    e.add_argument("--repeat-action-probability", type=_probability,
                   help="override the checkpoint's sticky-action probability")
    e.add_argument("--video", type=Path, help="also record one episode to this .mp4")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --video file")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    x = sub.add_parser("export", help="save a checkpoint's agent without optimizer state")
    x.add_argument("checkpoint", help="checkpoint file, or pretrained:NAME")
    x.add_argument("output", type=Path, help="where to write the agent (.pt)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """The run's config: a preset (or, on --resume, the saved config) plus the flags given."""
    overrides: dict[str, Any] = {
        "env": args.env,
        "model": args.model,
        "num_workers": args.workers,
        "max_steps": args.steps,
        "max_minutes": args.minutes,
        "repeat_action_probability": args.repeat_action_probability,
        "lr": args.lr,
        "seed": args.seed,
    }
    if args.target_score is not None:
        overrides["target_score"] = args.target_score
    if args.render:
        overrides["eval_render"] = True
    overrides.update(parse_sets(args.set))
    given = {k: v for k, v in overrides.items() if v is not None}
    if args.resume:
        if args.run_dir is None:
            raise ConfigError("--resume needs --run-dir: the run to continue")
        from .checkpoint import load_checkpoint

        saved = Path(args.run_dir) / "checkpoint.pt"
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {str(saved)!r} does not exist")
        # The checkpoint's config is the run's latest (earlier resumes may have raised a budget).
        return load_checkpoint(saved).config.replace(**given)
    if "env" in given:
        from .config import resolve_env_id

        resolve_env_id(given["env"])
    return make_config(args.preset, **given)


def cmd_train(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from .trainer import EXIT_CODES, TrainingError, train

    if args.backend == "ray":
        from .ray_backend import require_ray

        require_ray()  # before anything is loaded or written
    if args.tensorboard:
        from .rundir import require_tensorboard

        require_tensorboard()
    config = config_from_args(args)
    try:
        result = train(config, args.run_dir, resume=args.resume, overwrite=args.overwrite,
                       progress=not args.no_progress,
                       command=shlex.join(["a3c", *(sys.argv[1:] if argv is None else argv)]),
                       backend=args.backend, address=args.address,
                       tensorboard=args.tensorboard)
    except TrainingError as e:
        print(f"a3c: training stopped: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result.summary()) if args.json else result.describe())
    return EXIT_CODES.get(result.stop_reason, 0)


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_model
    from .evaluator import evaluate_model

    model, config = load_model(args.checkpoint)
    if args.repeat_action_probability is not None:
        config = config.replace(repeat_action_probability=args.repeat_action_probability)
    if args.video is not None:
        if args.video.suffix.lower() != ".mp4":
            raise ConfigError(f"--video {str(args.video)!r}: allowed is a path ending in .mp4")
        if args.video.exists() and not args.overwrite:
            raise ConfigError(f"--video {str(args.video)!r} exists: pass --overwrite to replace it")
    torch.set_num_threads(1)
    returns = evaluate_model(model, config, args.episodes, seed=args.seed)
    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "env": config.env_id,
        "repeat_action_probability": config.repeat_action_probability,
        "episodes": len(returns),
        "seed": args.seed,
        "mean_return": sum(returns) / len(returns),
        "returns": returns,
    }
    if args.video is not None:
        from .video import record_video

        score, _ = record_video(model, config, args.video, seed=args.seed)
        result["video"] = str(args.video)
        result["video_return"] = score
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['episodes']} episodes of {config.env_id}: mean {result['mean_return']:.2f}"
              f" (min {min(returns):.0f}, max {max(returns):.0f})")
        if args.video is not None:
            print(f"video: {args.video}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # before importing torch: bad flags fail fast
    if args.command == "train" and args.address is not None and args.backend != "ray":
        parser.error(f"--address {args.address} needs --backend ray (the local backend runs "
                     "on this machine)")
    from .checkpoint import CheckpointError
    from .rundir import RunDirError

    try:
        if args.command == "train":
            return cmd_train(args, argv)
        if args.command == "export":
            from .checkpoint import export_agent

            print(export_agent(args.checkpoint, args.output, overwrite=args.overwrite))
            return 0
        return cmd_evaluate(args)
    except (ConfigError, CheckpointError, RunDirError) as e:
        print(f"a3c: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The `a3c` command's entry point: `main`, then an immediate exit.

    Everything is written and closed when `main` returns; the interpreter's own tear-down
    of torch and the emulator would only add seconds (many on a busy machine) before the
    process, and the multiprocessing helper that lives as long as it, are gone.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
