"""Figures from the result files: score against wall-clock minutes, and throughput.

Reads benchmarks/results/*.json and draws

- images/score_vs_minutes.png: the greedy evaluation score (running mean of 10 episodes)
  against wall-clock minutes for every time_to_win result, with the +18 target line;
- images/throughput.png: limit and trainer steps/s for every throughput result, with the
  ratio trainer/limit;
- images/gru_vs_stack.png: the seed's question, GRU against 4-frame stack: the runs of the
  default preset as is (deterministic Pong), score against minutes and against agent steps.

Every figure carries a footer naming the command that made it and the files it read.

    python benchmarks/plot.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import common
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

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


def _overrides(r: dict[str, Any]) -> str:
    """The config fields a result changed from its preset, e.g. 'hidden_size=128'."""
    from a3c_course.config import Config

    changes = Config.from_dict(r["config"]).changes_from_preset() if "config" in r else {}
    return ", ".join(f"{k}={v}" for k, v in changes.items())


def _label(r: dict[str, Any]) -> str:
    return f"{r['preset']}/{r['model']} seed {r['seed']}, {r['protocol']}"


def plot_scores(runs: list[tuple[Path, dict[str, Any]]], out: Path, sources: str) -> Path:
    """Greedy score (running mean) against minutes, one line per run."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labels = [_label(r) for _, r in runs]
    for (path, r), label in zip(runs, labels, strict=True):
        if labels.count(label) > 1:  # variants of one preset: the file name tells them apart
            label = path.stem.removeprefix("time_to_win-")
        curve = r["eval_curve"]
        minutes = [row[0] / 60 for row in curve]
        mean = [row[3] for row in curve]
        style = "--" if r["protocol"] == "sticky" else "-"
        (line,) = ax.plot(minutes, mean, style, lw=1.5, label=label)
        if r["reached"]:
            ax.plot(r["minutes"], r["confirmed_mean"], "*", ms=13, color=line.get_color(),
                    markeredgecolor="black")
            ax.annotate(f"{r['minutes']:.1f} min", (r["minutes"], r["confirmed_mean"]),
                        textcoords="offset points", xytext=(4, 6), fontsize=8)
        elif minutes and r["finished"]:
            ax.plot(minutes[-1], mean[-1], "x", ms=9, color=line.get_color())
        elif minutes:  # a run still going (or killed): its curve so far, marked as such
            line.set_label(f"{label} (unfinished)")
    if all(r["env"] == "ALE/Pong-v5" for _, r in runs):
        ax.set_ylim(-21.8, 21.8)  # Pong's whole score range, so figures compare at a glance
    target = runs[0][1]["target_score"]
    ax.axhline(target, color="black", lw=1, ls=":")
    ax.text(0.5, target + 0.4, f"target {target:+g} (greedy mean of 10)", fontsize=8)
    for protocol, minutes in GOAL_MINUTES.items():
        if any(r["protocol"] == protocol for _, r in runs):
            ax.axvline(minutes, color="tab:green", lw=0.8, ls=":")
            ax.text(minutes, ax.get_ylim()[0] + 0.5, f"goal {protocol} ", rotation=90, ha="right",
                    fontsize=7, color="tab:green", va="bottom")
    ax.axvline(ANCHOR_MINUTES, color="0.5", lw=0.8, ls="-.")
    ax.text(ANCHOR_MINUTES, ax.get_ylim()[0] + 0.5, "ikostrikov/pytorch-a3c: first +18 ",
            rotation=90, ha="right", fontsize=7, color="0.4", va="bottom")
    ax.set_xlabel("wall-clock minutes since the run started")
    ax.set_ylabel("greedy evaluation score (running mean of 10 episodes)")
    ax.set_title("Pong: greedy score against wall-clock time (* = target confirmed, "
                 "x = cap reached)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def comparison_runs(runs: list[tuple[Path, dict[str, Any]]], protocol: str = "deterministic"
                    ) -> list[tuple[Path, dict[str, Any]]]:
    """The GRU-vs-stack runs: default preset with nothing changed but model and seed."""
    return [(path, r) for path, r in runs
            if r["preset"] == "default" and r["protocol"] == protocol and not _overrides(r)]


def plot_gru_vs_stack(runs: list[tuple[Path, dict[str, Any]]], out: Path, sources: str) -> Path:
    """Two panels, score against minutes and against agent steps; colour = model."""
    colours = {"gru": "tab:blue", "stack": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for _, r in runs:
        seeds = sorted({q["seed"] for _, q in runs if q["model"] == r["model"]})
        style = ["-", "--", ":", "-."][seeds.index(r["seed"]) % 4]
        label = f"{r['model']} seed {r['seed']}"
        curve = r["eval_curve"]
        for ax, column, scale in ((axes[0], 0, 1 / 60), (axes[1], 1, 1e-6)):
            xs = [row[column] * scale for row in curve]
            ax.plot(xs, [row[3] for row in curve], style, color=colours[r["model"]], lw=1.5,
                    label=label)
            if r["reached"]:
                x = r["minutes"] if column == 0 else r["steps"] * scale
                if xs:  # the running mean lags the confirmation: join them with a thin line
                    ax.plot([xs[-1], x], [curve[-1][3], r["confirmed_mean"]], ":", lw=0.8,
                            color=colours[r["model"]])
                ax.plot(x, r["confirmed_mean"], "*", ms=12, color=colours[r["model"]],
                        markeredgecolor="black")
    target = runs[0][1]["target_score"]
    for ax, xlabel in ((axes[0], "wall-clock minutes"), (axes[1], "agent steps (millions)")):
        ax.axhline(target, color="black", lw=1, ls=":")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.set_ylim(-21.8, 21.8)
    axes[0].set_ylabel("greedy score (running mean of 10 episodes)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("GRU (1 frame + GRUCell) against a 4-frame stack: deterministic Pong, default "
                 "preset, 2 cores (* = +18 confirmed)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    footer(fig, sources)
    fig.savefig(out, dpi=120)
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
        names.append(f"{r['preset']}/{r['model']}\n{r['workers']} workers"
                     + (f"\n{extra}" if extra else ""))
        limit, trainer = r["limit_steps_per_s"], r["trainer_steps_per_s"]
        ax.bar(i - width / 2, limit, width, color="tab:gray", label="limit (no sharing)"
               if i == 0 else None)
        ax.bar(i + width / 2, trainer, width, color="tab:blue", label="trainer (Hogwild)"
               if i == 0 else None)
        ax.text(i, max(limit, trainer) * 1.02, f"ratio {r['ratio']:.2f}", ha="center",
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=common.RESULTS,
                   help="folder of result JSON files (default: benchmarks/results)")
    p.add_argument("--out", type=Path, default=common.IMAGES,
                   help="folder for the PNG files (default: images)")
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

    pairs = comparison_runs([(p, r) for p, r in runs if r["env"] == "ALE/Pong-v5"])
    if {r["model"] for _, r in pairs} == {"gru", "stack"}:
        path = plot_gru_vs_stack(pairs, args.out / "gru_vs_stack.png",
                                 f"{shown}/time_to_win-*.json (default preset, deterministic)")
        print(f"{len(pairs)} runs -> {path}")
    else:
        print("gru_vs_stack.png needs deterministic default-preset runs of both models",
              file=sys.stderr)

    rates = load(args.results, "throughput")
    if rates:
        path = plot_throughput(rates, args.out / "throughput.png", f"{shown}/throughput-*.json")
        print(f"{len(rates)} results -> {path}")
    else:
        print(f"no throughput results in {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
