"""What every benchmark result records: the command, the machine, the code, the config.

The scripts in this folder import it as a sibling module (they are run as
``python benchmarks/<script>.py``, which puts this folder first on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from a3c_course.config import parse_sets
from a3c_course.rundir import write_json

__all__ = ["parse_sets", "write_json"]  # the library's own, for every script here

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
IMAGES = REPO / "images"
START_TIMEOUT_S = 300.0  # spawn + import torch + ALE on a loaded laptop can take a while
# Games training never plays (training seeds are 32-bit hashes): the first seed of a row of
# consecutive ones. Ship seeds decide what ships (ship_agent.py); validation seeds choose
# among candidates and draw timelines (select_agent.py, timeline.py), so the ship seeds stay unseen.
SHIP_SEED = 20_000_000
VALIDATION_SEED = 30_000_000


def command_line() -> str:
    """The command that is running, as one could paste it into a shell from the repo root."""
    argv = list(sys.argv)
    try:
        argv[0] = os.path.relpath(argv[0], REPO)
    except ValueError:  # another drive (Windows)
        pass
    return shlex.join(["python", *argv])


def repo_relative(path: Path | str) -> str:
    """`path` relative to the repository when it lies inside it (results name no machine)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and load: a number means little without the machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    total = None
    try:
        import psutil

        total = psutil.virtual_memory().total
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
        except OSError:
            pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # Windows has no load average
        load = None
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(total / 2**30, 1) if total else None,
        # Load at the moment of recording: a loaded machine measures lower throughput.
        "load_avg_1_5_15": load,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit() -> dict[str, Any]:
    """HEAD and whether the working tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None
            else None}


@contextlib.contextmanager
def passing_sigterm_to(child: subprocess.Popen) -> Iterator[None]:
    """While a script waits for its `a3c train` child: a SIGTERM to the script is passed on
    to the child (which stops cleanly on it) instead of ending the script and leaving the
    child running without a parent. Ctrl-C needs nothing: a terminal sends it to both."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def provenance() -> dict[str, Any]:
    """The header of every result file."""
    import torch

    return {
        "command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "git": git_commit(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def measure_trainer(config: Any, warmup: float, seconds: float, backend: str = "local"
                    ) -> dict[str, Any]:
    """Agent steps/s of the real trainer (:func:`a3c_course.trainer.train`), read from its
    `progress` rows after a warm-up.

    The warm-up counts from the first row with steps > 0 (the first finished episode), as
    close as the metrics get to "all workers are stepping". The run is stopped through the
    trainer's stop hook once the window holds two progress rows (its two ends: rows come
    every 10 s, every 2 s in test mode) at least `seconds` apart.
    """
    import tempfile

    from a3c_course.rundir import read_metrics
    from a3c_course.trainer import train

    first: list[float] = []
    window: list[float] = []  # times of the progress rows after the warm-up

    def on_rows(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if not first and row["steps"] > 0:
                first.append(row["time_s"])
            if first and row["event"] == "progress" and row["time_s"] >= first[0] + warmup:
                window.append(row["time_s"])

    def window_closed() -> bool:
        return len(window) >= 2 and window[-1] - window[0] >= seconds

    cap_s = START_TIMEOUT_S + warmup + seconds + 60.0  # only if the rows never come
    run_config = config.replace(max_minutes=cap_s / 60, target_score=None, max_steps=10**12)
    with tempfile.TemporaryDirectory(prefix=f"a3c-{backend}-") as tmp:
        result = train(run_config, Path(tmp) / "run", progress=False, on_rows=on_rows,
                       backend=backend, should_stop=window_closed)
        rows = read_metrics(Path(tmp) / "run")
    if result.stop_reason != "stopped":
        raise RuntimeError(f"the {backend} trainer stopped before the window closed: "
                           f"{result.stop_reason}")
    progress = [r for r in rows if r["event"] == "progress" and r["time_s"] >= first[0] + warmup]
    a, b = progress[0], progress[-1]
    span = b["time_s"] - a["time_s"]
    return {
        "steps_per_s": round((b["steps"] - a["steps"]) / span, 1),
        "updates_per_s": round((b["updates"] - a["updates"]) / span, 1),
        "window_s": round(span, 2),
        "window_start_s": a["time_s"],
        "first_steps_at_s": first[0],
        "progress_rows": [{"time_s": r["time_s"], "steps": r["steps"],
                           "steps_per_s": r["steps_per_s"]} for r in progress],
        "episodes": result.episodes,
        "restarts": result.restarts,
    }


def protocol(config: Any) -> str:
    """'deterministic' or 'sticky' (the two Atari protocols of the issue); 'classic' for the
    non-Atari quick-check environments, where sticky actions do not apply."""
    if not config.env_id.startswith("ALE/"):
        return "classic"
    return "deterministic" if config.repeat_action_probability == 0 else "sticky"


def add_loop_args(parser: Any, seconds: float, warmup: float, window: str) -> None:
    """--seconds and --warmup of a benchmark that runs the worker loop in-process: `warmup` s
    unmeasured, then its `window` of `seconds` s (3 s and 1 s in test mode)."""
    from a3c_course import TEST_MODE

    parser.add_argument("--seconds", type=float, default=3.0 if TEST_MODE else seconds,
                        help=f"length of the {window}")
    parser.add_argument("--warmup", type=float, default=1.0 if TEST_MODE else warmup,
                        help=f"length of the unmeasured run before the {window}")


def require_positive(parser: Any, args: Any, *flags: str) -> None:
    """Exit with status 2, naming the flag and its value, when one of `flags` is not above 0."""
    for flag in flags:
        value = getattr(args, flag)
        if value <= 0:
            parser.error(f"--{flag} {value}: must be more than 0")


def add_output_args(parser: Any, stem: str) -> None:
    """--set, --out and --name, as every benchmark that writes one result file takes them."""
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other config field, as in `a3c train --set`")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--name", default=None, help=f"file stem (default: {stem})")


def add_agent_play_args(parser: Any, game: str, episodes: int, kind: str) -> None:
    """AGENT, --episodes, --seed, --repeat-action-probability, --out and --name of a benchmark
    that plays one `game` agent greedily and writes KIND-AGENT.json."""
    parser.add_argument("agent", help=f"a checkpoint file or pretrained:NAME (a {game} agent)")
    parser.add_argument("--episodes", type=int, default=episodes)
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help="first seed (default: the validation seeds)")
    parser.add_argument("--repeat-action-probability", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: benchmarks/results)")
    parser.add_argument("--name", default=None, help=f"file stem (default: {kind}-AGENT)")


def check_agent_play_args(parser: Any, args: Any, *positive: str) -> None:
    """Exit with status 2 on a bad --episodes (or other `positive` flag) or sticky probability."""
    require_positive(parser, args, "episodes", *positive)
    if not 0.0 <= args.repeat_action_probability < 1.0:
        parser.error(f"--repeat-action-probability {args.repeat_action_probability}: allowed "
                     "is 0 <= p < 1")


def agent_play_result(args: Any, kind: str, header: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Where the result of a benchmark that played args.agent goes (KIND-AGENT.json, or --out
    and --name), and the fields it starts with: benchmark, provenance, agent and protocol."""
    stem = args.name or f"{kind}-" + Path(args.agent.replace(":", "-")).with_suffix("") \
        .as_posix().replace("/", "-")
    return (args.out or RESULTS) / f"{stem}.json", {
        "benchmark": kind,
        **header,
        "agent": repo_relative(args.agent) if ":" not in args.agent else args.agent,
        "episodes": args.episodes,
        "seed": args.seed,
        "repeat_action_probability": args.repeat_action_probability,
    }


def add_window_args(parser: Any, alternates: str) -> None:
    """--workers, --seconds, --warmup and --rounds of the throughput benchmarks, whose rounds
    alternate `alternates` (e.g. "limit and trainer")."""
    from a3c_course import TEST_MODE

    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: the preset's, which is one per core for "
                             "default)")
    parser.add_argument("--seconds", type=float, default=10.0 if TEST_MODE else 60.0,
                        help="length of each measurement window")
    parser.add_argument("--warmup", type=float, default=5.0 if TEST_MODE else 20.0,
                        help="seconds skipped before each window opens")
    parser.add_argument("--rounds", type=int, default=1,
                        help=f"alternate {alternates} this many times; medians are reported")


def window_benchmark_parser(description: str, alternates: str, stem: str) -> Any:
    """The parser of a benchmark that measures speed in windows: --preset/--model/--env,
    --workers/--seconds/--warmup/--rounds, --set/--out/--name (result file STEM.json)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    add_run_args(parser)
    add_window_args(parser, alternates)
    add_output_args(parser, stem)
    return parser


def config_and_output(args: Any, kind: str) -> tuple[Any, Path]:
    """The config a benchmark measures (preset, model, env, --workers, --set) and its result
    file: --out/--name, or results/KIND-PRESET-MODEL[-GAME].json."""
    from a3c_course.config import make_config

    overrides = parse_sets(args.set)
    if getattr(args, "workers", None) is not None:
        overrides["num_workers"] = args.workers
    config = make_config(args.preset, model=args.model, env=args.env, **overrides)
    game = config.env_id.split("/")[-1].split("-")[0].lower()
    name = args.name or "-".join([kind, args.preset, args.model]
                                 + ([] if game == "pong" else [game]))
    return config, (args.out or RESULTS) / f"{name}.json"


def add_run_args(parser: Any) -> None:
    """--preset, --model and --env, as every benchmark that starts training takes them."""
    parser.add_argument("--preset", default="default")
    parser.add_argument("--model", default="gru", choices=["gru", "stack"])
    parser.add_argument("--env", default="pong")
