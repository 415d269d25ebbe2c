"""Figures from the result files: score against wall-clock minutes, and throughput.

Reads benchmarks/results/*.json and draws

- images/score_vs_minutes.png: one panel per time_to_win result against wall-clock minutes:
  the confirmed means of 10 greedy games (the quantity the +18 target is defined on) as
  markers on a step line, every single greedy game lighter, the target, the goal, the cap;
- images/throughput.png: limit and trainer steps/s for every throughput result, with the
  ratio trainer/limit (the envs-per-worker sweep apart);
- images/envs_per_worker.png: the sweep throughput-<preset>-<model>-k<K>: trainer steps/s and
  the emulator ratio against games per worker;
- images/gru_vs_stack.png: the seed's question, GRU against 4-frame stack: the runs of one
  preset as is (today's default once it has them), deterministic and sticky-action Pong, each
  run's curve against agent steps and its steps and minutes to +18, with the verdict on each
  clock (a3c_course.results.compare_models), which is also printed.
- images/tuning.png: issue 15's learning trials (benchmarks/results/tuning/time_to_win-*.json)
  against agent steps, as the running mean of 10 single greedy games, beside the default
  preset's sticky-action runs as they are.
- images/long_runs.png: the runs kept in checkpoints/ (the shipped agents' and the longer
  ones), each from its metrics.jsonl against agent steps, with a dashed line at every resume
  that changed how it learns (a3c_course.plots.plot_run).

Every figure carries a footer naming the command that made it and the files it read.

    python benchmarks/plot.py
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import common
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from a3c_course.plots import (  # noqa: E402
    plot_gru_vs_stack,
    plot_run,
    plot_time_to_win_grid,
    time_to_win_curves,
)
from a3c_course.results import (  # noqa: E402
    CLOCKS,
    compare_models,
    gru_vs_stack_runs,
    settings_of,
)

# From ../shared/anchors.md (deterministic Pong, 2 cores): the public PyTorch A3C.
ANCHOR_MINUTES = 45.0
ANCHOR_STEPS_PER_S = 1200.0
GOAL_MINUTES = {"deterministic": 25.0, "sticky": 40.0}


def load(results: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every result file of one benchmark kind, sorted by name."""
    found = []
    for path in sorted(results.glob(f"{kind}-*.json")):
        data = json.loads(path.read_text())
        if data.get("benchmark") == kind:
            found.append((path, data))
    return found


def footer(fig: plt.Figure, sources: str) -> None:
    fig.text(0.01, 0.005, f"made by: {common.command_line()}\ndata: {sources}", fontsize=6.5,
             color="0.35", ha="left", va="bottom")


def _preset(r: dict[str, Any]) -> str:
    """The preset a result's settings are told against today (a3c_course.plots.settings_of:
    the default of before issue 15 is today's `classic`)."""
    return settings_of(r)[0] if "config" in r else r["preset"]


def _overrides(r: dict[str, Any]) -> str:
    """The config fields a result changed from its preset, e.g. 'hidden_size=128'."""
    changes = settings_of(r)[1] if "config" in r else ""
    # The worker count is a run's setting, not the preset's, but a trial that departs from
    # one worker per core changes how learning goes (more updates per agent step).
    cores = r.get("machine", {}).get("cores")
    if r.get("workers") and cores and r["workers"] != cores:
        changes = ", ".join(c for c in (f"workers={r['workers']}", changes) if c)
    return changes


def plot_scores(runs: list[tuple[Path, dict[str, Any]]], out: Path, sources: str) -> Path:
    """One panel per run: its confirmed 10-game means (what the target is defined on) on a
    step line, its single greedy games lighter, the target, the goal and the run's cap."""
    goals = {p: m for p, m in GOAL_MINUTES.items() if any(r["protocol"] == p for _, r in runs)}
    fig = plot_time_to_win_grid(
        [r for _, r in runs], goals=goals, bottom=0.04,
        title="Every time-to-win run: did its confirmed mean of 10 greedy games reach the "
              "target? (ikostrikov/pytorch-a3c, deterministic Pong: first single game >= "
              f"+18 after {ANCHOR_MINUTES:g} min)")
    footer(fig, sources)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_throughput(results: list[tuple[Path, dict[str, Any]]], out: Path, sources: str
                    ) -> Path:
    """Limit and trainer steps/s side by side, the ratio above each pair."""
    fig, ax = plt.subplots(figsize=(max(8, 1.8 * len(results) + 2), 5))
    width = 0.38
    names = []
    for i, (_, r) in enumerate(results):
        extra = _overrides(r)
        names.append(f"{_preset(r)}/{r['model']}\n{r['workers']} workers"
                     + (f"\n{extra}" if extra else ""))
        limit, trainer = r["limit_steps_per_s"], r["trainer_steps_per_s"]
        ax.bar(i - width / 2, limit, width, color="tab:gray", label="limit (no sharing)"
               if i == 0 else None)
        ax.bar(i + width / 2, trainer, width, color="tab:blue", label="trainer (Hogwild)"
               if i == 0 else None)
        # From the two rates, not the file's rounded `ratio` (0.935 would print as 0.94).
        ax.text(i, max(limit, trainer) * 1.02, f"ratio {trainer / limit:.2f}", ha="center",
                fontsize=9)
    ax.axhline(ANCHOR_STEPS_PER_S, color="tab:red", lw=0.8, ls="--",
               label="ikostrikov/pytorch-a3c, 2 processes (anchors.md, deterministic Pong)")
    ax.set_xticks(range(len(results)), names)
    ax.set_ylabel("agent steps per second")
    cores = {r["machine"]["cores"] for _, r in results}
    ax.set_title(f"Training throughput on {', '.join(map(str, sorted(cores)))} cores: "
                 "trainer against its limit", fontsize=10)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


EMULATOR_RATIO_GOAL = 0.4  # issue 15: trainer steps/s >= 0.4 x the emulator's on the same cores


def is_envs_sweep(path: Path) -> bool:
    """A throughput result of the envs-per-worker sweep (throughput-<preset>-<model>-k<K>)."""
    return re.fullmatch(r"k\d+", path.stem.rsplit("-", 1)[-1]) is not None


def plot_envs_per_worker(results: list[tuple[Path, dict[str, Any]]], out: Path, sources: str
                         ) -> Path:
    """The trainer's speed against k (games per worker), one line per model: as agent
    steps/s beside the emulator's own, and as the emulator ratio with the goal."""
    fig, (rates, ratios) = plt.subplots(1, 2, figsize=(11, 4.6))

    def line(r: dict[str, Any]) -> str:
        # The preset, the model and what else the result changed from the preset, k aside
        # (and the learning rate, which changes no step's cost).
        changes = [c for c in _overrides(r).split(", ")
                   if c and not c.startswith(("envs_per_worker=", "lr="))]
        return f"{_preset(r)}: " + ", ".join([r["model"], *changes])

    lines = sorted({line(r) for _, r in results})
    for color, name in zip(plt.get_cmap("tab10").colors, lines, strict=False):
        rows = sorted(((r["config"]["envs_per_worker"], r) for _, r in results
                       if line(r) == name), key=lambda kr: kr[0])
        ks = [k for k, _ in rows]
        rates.plot(ks, [r["trainer_steps_per_s"] for _, r in rows], "o-", color=color,
                   label=f"{name}: trainer")
        rates.plot(ks, [r["emulator_steps_per_s"] for _, r in rows], "x:", color=color,
                   alpha=0.6, label=f"{name}: emulator alone (same run)")
        # From the two rates, not the file's rounded ratio.
        ratios.plot(ks, [r["trainer_steps_per_s"] / r["emulator_steps_per_s"] for _, r in rows],
                    "o-", color=color, label=name)
    ratios.axhline(EMULATOR_RATIO_GOAL, color="tab:red", lw=0.8, ls="--",
                   label=f"goal {EMULATOR_RATIO_GOAL}")
    workers = sorted({r["workers"] for _, r in results})
    cores = sorted({r["machine"]["cores"] for _, r in results})
    for ax in (rates, ratios):
        ax.set_xscale("log", base=2)
        ks = sorted({r["config"]["envs_per_worker"] for _, r in results})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("games per worker (envs_per_worker)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    rates.set_ylabel("agent steps per second (all workers)")
    rates.set_ylim(0, None)
    ratios.set_ylabel("trainer / emulator")
    ratios.set_ylim(0, max(0.6, ratios.get_ylim()[1]))
    fig.suptitle(f"Training speed against games per worker: {', '.join(map(str, workers))} "
                 f"workers on {', '.join(map(str, cores))} cores; a line per preset and model",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


STEPS_GOAL = {"sticky": 2.0e6, "deterministic": 0.5e6}  # issue 15: agent steps to +18
# Where the README's trial table reads each curve (agent steps).
TABLE_STEPS = {"sticky": (1.0e6, 1.5e6, 2.0e6, 2.5e6), "deterministic": (0.25e6, 0.5e6)}


def mean10_at(r: dict[str, Any], steps: float) -> float | None:
    """The mean of the last 10 single greedy games played by `steps` agent steps (None: none
    played yet, or the run had ended before `steps`)."""
    games = time_to_win_curves(r)["games"]
    played = [m for s, m in zip(games["steps"], games["mean10"], strict=True) if s <= steps]
    return float(played[-1]) if played and r["end_steps"] >= steps else None


def train_mean_at(r: dict[str, Any], steps: float) -> float | None:
    """The mean real score of the last 40 training games by `steps` agent steps (None: the
    result has no training curve, or the run had ended before `steps`)."""
    curve = [m for s, m in r.get("train_curve", []) if s <= steps]
    return float(curve[-1]) if curve and r["end_steps"] >= steps else None


def print_tuning_table(trials: list[tuple[Path, dict[str, Any]]]) -> None:
    """Each trial's mean of 10 greedy games and of 40 training games at the table's step
    counts, and its +18."""
    for protocol, at in TABLE_STEPS.items():
        rows = [r for _, r in trials if r["protocol"] == protocol]
        if not rows:
            continue
        print(f"{protocol}: mean of the last 10 greedy games | of the last 40 training games, at "
              + " / ".join(f"{x / 1e6:g} M" for x in at) + " agent steps; confirmed target")
        for r in rows:
            means = " / ".join("-" if (m := mean10_at(r, x)) is None else f"{m:+.1f}"
                               for x in at)
            means += " | " + " / ".join("-" if (m := train_mean_at(r, x)) is None
                                        else f"{m:+.1f}" for x in at)
            won = (f"+{r['target_score']:g} at {r['steps'] / 1e6:.2f} M" if r.get("reached")
                   else f"not by {r['end_steps'] / 1e6:.2f} M")
            changed = _overrides(r) or f"the {_preset(r)} preset as it is"
            print(f"  {r['model']}, seed {r['seed']}, {changed}: {means}; {won}")


def plot_tuning(trials: list[tuple[Path, dict[str, Any]]],
                baselines: list[tuple[Path, dict[str, Any]]], out: Path, sources: str) -> Path:
    """One column per protocol: each trial's running mean of 10 single greedy games (top) and
    of 40 training games (bottom, where the result has it) against agent steps, labelled by
    what it changed from its preset; the untuned default's runs grey and dashed; the target
    and the issue's step goal."""
    protocols = sorted({r["protocol"] for _, r in trials})
    fig, axes = plt.subplots(2, len(protocols), figsize=(8.5 * len(protocols), 11.5),
                             squeeze=False, height_ratios=(1.25, 1))
    for column, protocol in enumerate(protocols):
        greedy_ax, train_ax = axes[0][column], axes[1][column]
        for _, r in baselines:
            if r["protocol"] == protocol:
                games = time_to_win_curves(r)["games"]
                label = f"{_preset(r)} as is, {r['model']}, seed {r['seed']}"
                if r.get("reached"):  # a deterministic greedy game is all or nothing: mark it
                    label += f" (+{r['target_score']:g} at {r['steps'] / 1e6:.2f} M)"
                    greedy_ax.plot(r["steps"] * 1e-6, r["confirmed_mean"], "*", color="0.55",
                                   ms=11)
                greedy_ax.plot(games["steps"] * 1e-6, games["mean10"], "--", color="0.55",
                               lw=1.2, label=label)
                if r.get("train_curve"):
                    steps, means = zip(*r["train_curve"], strict=True)
                    train_ax.plot(np.array(steps) * 1e-6, means, "--", color="0.55", lw=1.2)
        # tab10 without its grey, which the untuned default's runs are drawn in.
        colors = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]
        for color, (_, r) in zip(colors, [t for t in trials if t[1]["protocol"] == protocol],
                                 strict=False):
            games = time_to_win_curves(r)["games"]
            label = f"seed {r['seed']}: {_overrides(r)}"
            if r.get("reached"):
                label += f" (+{r['target_score']:g} at {r['steps'] / 1e6:.2f} M)"
            greedy_ax.plot(games["steps"] * 1e-6, games["mean10"], color=color, lw=1.6,
                           label=label)
            if r.get("train_curve"):
                steps, means = zip(*r["train_curve"], strict=True)
                train_ax.plot(np.array(steps) * 1e-6, means, color=color, lw=1.6)
        target = next(r["target_score"] for _, r in trials if r["protocol"] == protocol)
        for ax in (greedy_ax, train_ax):
            ax.axhline(target, color="black", lw=1, ls=":")
            ax.axvline(STEPS_GOAL[protocol] * 1e-6, color="tab:red", lw=0.8, ls="--",
                       label=f"goal: +{target:g} within {STEPS_GOAL[protocol] / 1e6:g} M steps"
                       if ax is greedy_ax else None)
            ax.set_ylim(-22.5, 22.5)
            ax.set_xlabel("agent steps (millions)")
            ax.grid(alpha=0.3)
        greedy_ax.set_ylabel("mean of the last 10 single greedy games")
        greedy_ax.set_title(f"{protocol} Pong: the greedy evaluator's games", fontsize=10)
        train_ax.set_ylabel("mean of the last 40 training games")
        train_ax.set_title(f"{protocol} Pong: the workers' own games (sampled actions; not "
                           "kept for the oldest runs)", fontsize=10)
        greedy_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.suptitle("Learning trials (tuning seeds, kept apart from the final measurement); a star: "
                 "the confirmed 10-game mean reached the target", fontsize=10)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_long_runs(run_dirs: list[Path], out: Path, sources: str) -> Path:
    """One panel per run directory: its training games and greedy games against agent steps,
    its resumes that changed how it learns marked."""
    fig, axes = plt.subplots(len(run_dirs), 1, figsize=(11, 3.3 * len(run_dirs)), squeeze=False)
    for ax, run in zip(axes[:, 0], run_dirs, strict=True):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        config = json.loads((run / "config.json").read_text())
        end = max(r.get("steps", 0) for r in rows)
        plot_run(rows, ax, title=f"{run.name}: {config['env']}, {config['model']} model, "
                 f"{end / 1e6:.1f} M agent steps (the config it started with: config.json)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=common.RESULTS,
                   help="folder of result JSON files (default: benchmarks/results)")
    p.add_argument("--out", type=Path, default=common.IMAGES,
                   help="folder for the PNG files (default: images)")
    p.add_argument("--runs", type=Path, default=common.REPO / "checkpoints",
                   help="folder of run directories for long_runs.png (default: checkpoints)")
    p.add_argument("--env", default="ALE/Pong-v5",
                   help="time_to_win results of this env only ('all': every env)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        shown = args.results.resolve().relative_to(common.REPO)
    except ValueError:
        shown = args.results

    runs = [(path, r) for path, r in load(args.results, "time_to_win")
            if args.env == "all" or r["env"] == args.env]
    if runs:
        path = plot_scores(runs, args.out / "score_vs_minutes.png",
                           f"{shown}/time_to_win-*.json")
        print(f"{len(runs)} runs -> {path}")
    else:
        print(f"no time_to_win results for {args.env} in {args.results}", file=sys.stderr)

    pong = [r for _, r in runs if r["env"] == "ALE/Pong-v5"]
    chosen = {protocol: gru_vs_stack_runs(pong, protocol)
              for protocol in ("deterministic", "sticky")}
    compared = {protocol: chosen_runs for protocol, (_, chosen_runs) in chosen.items()
                if chosen_runs}
    if compared:
        presets = " and ".join(sorted({chosen[protocol][0] for protocol in compared}))
        fig = plot_gru_vs_stack(compared, title=(
            "GRU (1 frame + GRUCell) against a 4-frame stack, Pong to a confirmed +18, "
            f"{presets} preset as is, 2 workers on 2 cores"))
        footer(fig, f"{shown}/time_to_win-*.json (a3c_course.results.gru_vs_stack_runs)")
        path = args.out / "gru_vs_stack.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(f"{sum(map(len, compared.values()))} runs -> {path}")
        # The verdicts the README quotes, from the same runs.
        for protocol, chosen_runs in compared.items():
            for clock in CLOCKS:
                print(f"GRU vs stack, {protocol} Pong, {chosen[protocol][0]} preset: "
                      + compare_models(chosen_runs, clock).text)
    else:
        print("gru_vs_stack.png needs 2 runs of each model of one preset as is",
              file=sys.stderr)

    rates = [(p, r) for p, r in load(args.results, "throughput") if not is_envs_sweep(p)]
    if rates:
        path = plot_throughput(rates, args.out / "throughput.png", f"{shown}/throughput-*.json")
        print(f"{len(rates)} results -> {path}")
    else:
        print(f"no throughput results in {args.results}", file=sys.stderr)
    trials = [(p, r) for p, r in load(args.results / "tuning", "time_to_win")
              if r["env"] == "ALE/Pong-v5"]
    if trials:
        baselines = [(p, r) for p, r in runs if r["env"] == "ALE/Pong-v5"
                     and _preset(r) in ("default", "classic") and not _overrides(r)]
        print_tuning_table(trials + baselines)
        path = plot_tuning(trials, baselines, args.out / "tuning.png",
                           f"{shown}/tuning/time_to_win-*.json, {shown}/time_to_win-*.json")
        print(f"{len(trials)} trials -> {path}")
    sweep = [(p, r) for p, r in load(args.results, "throughput") if is_envs_sweep(p)]
    if sweep:
        path = plot_envs_per_worker(sweep, args.out / "envs_per_worker.png",
                                    f"{shown}/throughput-*-k*.json")
        print(f"{len(sweep)} results -> {path}")
    run_dirs = sorted(d for d in args.runs.glob("*") if (d / "metrics.jsonl").is_file())
    if run_dirs:
        path = plot_long_runs(run_dirs, args.out / "long_runs.png", "checkpoints/*/metrics.jsonl")
        print(f"{len(run_dirs)} runs -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
