"""Learning curves from a run's ``metrics.jsonl`` rows (matplotlib)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import learning_changes
from .results import compare_models, settings_of

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def curve(rows: Iterable[dict[str, Any]], event: str = "eval", value: str = "eval_return"
          ) -> dict[str, np.ndarray]:
    """Arrays ``minutes``, ``steps``, ``value`` of the rows of one event kind."""
    picked = [r for r in rows if r.get("event") == event and value in r]
    return {
        "minutes": np.array([r["time_s"] / 60 for r in picked]),
        "steps": np.array([r["steps"] for r in picked], dtype=np.int64),
        "value": np.array([r[value] for r in picked], dtype=np.float64),
    }


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (shorter at the start)."""
    if len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (sums[idx] - sums[lo]) / (idx - lo)


def plot_learning_curve(rows: list[dict[str, Any]], ax: Axes | None = None, x: str = "minutes",
                        label: str | None = None, window: int = 10, color: str | None = None
                        ) -> Axes:
    """Greedy evaluation scores (dots) and the training episodes' rolling mean (line).

    `x` is ``"minutes"`` (wall clock) or ``"steps"`` (agent steps, summed over workers).
    """
    import matplotlib.pyplot as plt

    if x not in ("minutes", "steps"):
        raise ValueError(f"x={x!r}: allowed are 'minutes', 'steps'")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    train = curve(rows, "episode", "episode_return")
    evals = curve(rows, "eval", "eval_return")
    confirm = curve(rows, "eval_confirm", "eval_return")
    name = label or "run"
    line = ax.plot(train[x], rolling_mean(train["value"], window), color=color,
                   label=f"{name}: training episodes (mean of {window})")[0]
    ax.scatter(evals[x], evals["value"], s=8, alpha=0.5, color=line.get_color(),
               label=f"{name}: greedy evaluation")
    if len(confirm["value"]):
        ax.scatter(confirm[x], confirm["value"], marker="*", s=120, color=line.get_color(),
                   edgecolor="black", zorder=3, label=f"{name}: confirmed mean")
    ax.set_xlabel("wall-clock minutes" if x == "minutes" else "agent steps")
    ax.set_ylabel("game score")
    ax.grid(alpha=0.3)
    return ax


def plot_run(rows: list[dict[str, Any]], ax: Axes | None = None, window: int = 200,
             title: str | None = None) -> Axes:
    """One long run against agent steps (:func:`plot_learning_curve`), with a dashed line
    at each resume that changed how it learns, labelled with the changes (budgets, which
    every resume changes, are left out)."""
    ax = plot_learning_curve(rows, ax, x="steps", window=window, label="run")
    top = ax.get_ylim()[1]
    for row in rows:
        changes = learning_changes(row.get("changed", {})) if row.get("event") == "resume" else {}
        if changes:
            ax.axvline(row["steps"], color="0.3", linestyle="--", linewidth=1)
            text = "".join(f" {k}={v}\n" for k, v in changes.items()).rstrip("\n")
            ax.text(row["steps"], top, text, fontsize=7, va="top", ha="left", color="0.2")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


DIAGNOSTICS = (("entropy", "policy entropy (nats per step)"),
               ("value_loss", "value loss (per step)"),
               ("policy_loss", "policy loss (per step)"),
               ("grad_norm", "gradient norm (before clipping)"))


def plot_diagnostics(rows: list[dict[str, Any]], axes: Sequence[Axes] | None = None,
                     x: str = "minutes", label: str | None = None) -> Sequence[Axes]:
    """The learning diagnostics of the `progress` rows: entropy, value loss, policy loss and
    the gradient's norm, one panel each (rows written before any update are skipped).
    `axes` is a row of 4 panels (as ``plt.subplots(1, 4)`` gives); returns the panels."""
    import matplotlib.pyplot as plt

    if x not in ("minutes", "steps"):
        raise ValueError(f"x={x!r}: allowed are 'minutes', 'steps'")
    if axes is None:
        _, axes = plt.subplots(1, len(DIAGNOSTICS), figsize=(12, 2.6))
    for ax, (name, title) in zip(axes, DIAGNOSTICS, strict=True):
        points = [r for r in rows if r.get("event") == "progress" and r.get(name) is not None]
        xs = [r["time_s"] / 60 if x == "minutes" else r["steps"] for r in points]
        ax.plot(xs, [r[name] for r in points], label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("wall-clock minutes" if x == "minutes" else "agent steps", fontsize=8)
        ax.grid(alpha=0.3)
    return axes


# ---------------------------------------------------------------------------------------------
# Time-to-win results (benchmarks/results/time_to_win-*.json): what the target is defined on.
#
# A run's evaluator plays one greedy game after each reload of the shared weights (`eval`
# rows: single games) and, when one game reaches the target, plays `eval_episodes` (10) more
# with those weights frozen (`eval_confirm` rows: the confirmed mean). The target is met by a
# confirmed mean, so the confirmations are the curve; the single games are drawn lighter.

CONFIRM_MARKER = "o"
WIN_MARKER = "*"


def time_to_win_curves(result: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The curves of one time_to_win result: ``games`` (every single greedy game, with the
    running mean of the last 10 as ``mean10``) and ``confirms`` (every confirmed mean), each
    with arrays ``minutes``, ``steps`` and ``value``."""
    columns = result.get("eval_curve_columns", ["time_s", "steps", "eval_return", "mean10"])
    games = [dict(zip(columns, row, strict=True)) for row in result.get("eval_curve", [])]
    confirms = result.get("confirm_points", [])
    return {
        "games": {
            "minutes": np.array([g["time_s"] / 60 for g in games]),
            "steps": np.array([g["steps"] for g in games], dtype=np.int64),
            "value": np.array([g["eval_return"] for g in games], dtype=np.float64),
            "mean10": np.array([g.get("mean10", np.nan) for g in games], dtype=np.float64),
        },
        "confirms": {
            "minutes": np.array([c[0] / 60 for c in confirms]),
            "steps": np.array([c[1] for c in confirms], dtype=np.int64),
            "value": np.array([c[2] for c in confirms], dtype=np.float64),
        },
    }


def time_to_win_outcome(result: dict[str, Any]) -> str:
    """How a time_to_win run ended, in the quantity its target is defined on: clauses
    joined by "; " (the budget last)."""
    n = result.get("eval_episodes") or 10
    cap = result.get("cap_minutes")
    budget = f"{cap:g}-min cap" if cap else "no cap"
    if result.get("resumed"):
        budget += ", then resumed"
    if result.get("target_score") is None:
        return (f"no target; {result['end_minutes']:.0f} min, best single game "
                f"{result['best_eval']:g}; {budget}")
    if result["reached"]:
        return (f"{result['confirmed_mean']:+.1f} (mean of {n}) at {result['minutes']:.1f} min, "
                f"{result['steps'] / 1e6:.2f} M steps; {budget}")
    best = result.get("best_confirmed_mean")
    best_text = (f"best mean of {n} {best:+.1f}" if best is not None
                 else f"never confirmed, best single game {result['best_eval']:+g}")
    how = {"minutes": "at its cap", "terminated": "stopped by hand"}.get(
        result.get("stop_reason"), f"stopped: {result.get('stop_reason')}")
    return f"not won after {result['end_minutes']:.0f} min ({how}); {best_text}; {budget}"


def plot_time_to_win(result: dict[str, Any], ax: Axes | None = None, x: str = "minutes",
                     color: str | None = None, label: str | None = None,
                     running_mean: bool | None = None, linestyle: str = "-") -> Axes:
    """One time_to_win result on `ax`: its single greedy games light, its confirmed means
    (the quantity a target is defined on) as markers on a step line, a star on the
    confirmation that met the target, an x where a run that missed it ended.

    `x` is ``"minutes"`` (wall clock) or ``"steps"`` (agent steps, drawn in millions).
    `running_mean` adds the mean of the last 10 single games (default: only for a result
    without a target, where no confirmation is ever played). Returns the axes.
    """
    import matplotlib.pyplot as plt

    if x not in ("minutes", "steps"):
        raise ValueError(f"x={x!r}: allowed are 'minutes', 'steps'")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    scale = 1e-6 if x == "steps" else 1.0
    curves = time_to_win_curves(result)
    games, confirms = curves["games"], curves["confirms"]
    (light,) = ax.plot(games[x] * scale, games["value"], linestyle, color=color, lw=0.8,
                       alpha=0.35, marker=".", ms=3)
    color = light.get_color()
    if running_mean is None:
        running_mean = result.get("target_score") is None
    if running_mean and len(games["mean10"]):
        ax.plot(games[x] * scale, games["mean10"], linestyle, color=color, lw=1.8,
                label=label)
        label = None
    if len(confirms["value"]):
        ax.plot(confirms[x] * scale, confirms["value"], linestyle, color=color, lw=1.8,
                drawstyle="steps-post", marker=CONFIRM_MARKER, ms=5, markeredgecolor="black",
                markeredgewidth=0.6, label=label, zorder=3)
        label = None
    if result.get("reached"):
        at = result["minutes"] if x == "minutes" else result["steps"] * scale
        ax.plot(at, result["confirmed_mean"], WIN_MARKER, ms=14, color=color,
                markeredgecolor="black", zorder=4, label=label)
    elif result.get("finished") and result.get("target_score") is not None:
        at = result["end_minutes"] if x == "minutes" else result["end_steps"] * scale
        last = confirms["value"][-1] if len(confirms["value"]) else (
            games["value"][-1] if len(games["value"]) else np.nan)
        ax.plot(at, last, "x", ms=9, mew=2, color=color, zorder=4, label=label)
    elif label is not None:  # nothing but single games: the light line carries the label
        light.set_label(label)
    ax.set_xlabel("wall-clock minutes" if x == "minutes" else "agent steps (millions)")
    ax.set_ylabel("greedy game score")
    ax.grid(alpha=0.3)
    return ax


def time_to_win_key(color: str = "0.3", eval_episodes: int = 10) -> list:
    """Legend handles that explain the marks of :func:`plot_time_to_win` (for a legend of
    its own, outside the data)."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color=color, lw=0.8, alpha=0.35, marker=".", ms=3,
               label="one greedy game (after each weight reload)"),
        Line2D([], [], color=color, lw=1.8, drawstyle="steps-post", marker=CONFIRM_MARKER,
               ms=5, markeredgecolor="black", markeredgewidth=0.6,
               label=f"confirmed mean of {eval_episodes} greedy games"),
        Line2D([], [], ls="", marker=WIN_MARKER, ms=14, color=color, markeredgecolor="black",
               label="the confirmation that met the target"),
        Line2D([], [], ls="", marker="x", ms=9, mew=2, color=color,
               label="run ended without meeting it"),
        Line2D([], [], color="black", lw=1, ls=":", label="target (+18 on Pong)"),
    ]


# Rows of the grid: each preset as is (today's default first), then everything else.
_GROUP_ORDER = ("default", "classic", "seed")


def _group_of(result: dict[str, Any]) -> tuple[str, str, str]:
    preset, changes = settings_of(result)
    return result["env"], result["protocol"], "changed" if changes else preset


def plot_time_to_win_grid(results: list[dict[str, Any]], ncols: int | None = None,
                          goals: dict[str, float] | None = None,
                          panel_size: tuple[float, float] = (3.4, 3.0), bottom: float = 0.0,
                          title: str | None = None) -> Figure:
    """Small multiples, one panel per time_to_win result (each with
    :func:`plot_time_to_win`), so every run shows at a glance whether its confirmed mean
    reached the target. One row (or more) per group: game, protocol, and each preset as is
    (:func:`settings_of`) against everything else; panels of a row share their x axis
    (minutes), every Pong panel spans Pong's whole score range. `goals` draws a vertical
    line per protocol (e.g. ``{"deterministic": 25}``). The key goes into a spare panel or
    below the panels; `bottom` keeps that share of the figure's height free (for a footer);
    `title` goes above all panels. Returns the figure."""
    import matplotlib.pyplot as plt

    goals = goals or {}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    def order(r: dict[str, Any]) -> tuple:
        group = _group_of(r)[2]
        rank = _GROUP_ORDER.index(group) if group in _GROUP_ORDER else len(_GROUP_ORDER)
        return r["env"], r["protocol"] != "deterministic", rank, r["model"], r["seed"]

    for r in sorted(results, key=order):
        groups.setdefault(_group_of(r), []).append(r)
    ncols = ncols or max(2, min(4, max((len(g) for g in groups.values()), default=1)))
    rows: list[list[dict[str, Any]]] = []
    for members in groups.values():
        rows += [members[i:i + ncols] for i in range(0, len(members), ncols)]
    nrows = max(1, len(rows))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.6))
    colours = {"gru": "tab:blue", "stack": "tab:orange"}
    spare = []
    for axrow, members in zip(axes, rows + [[]] * (nrows - len(rows)), strict=True):
        right = max([max(r.get("end_minutes") or 0, goals.get(r["protocol"], 0))
                     for r in members] or [1.0]) * 1.05
        for i, ax in enumerate(axrow):
            if i >= len(members):
                ax.axis("off")
                spare.append(ax)
                continue
            r = members[i]
            plot_time_to_win(r, ax, "minutes", color=colours.get(r["model"]))
            if r.get("target_score") is not None:
                ax.axhline(r["target_score"], color="black", lw=1, ls=":")
            if r["env"] == "ALE/Pong-v5":
                ax.set_ylim(-22.5, 22.5)
            goal = goals.get(r["protocol"])
            if goal is not None:
                ax.axvline(goal, color="tab:green", lw=0.8, ls=":")
            cap = r.get("cap_minutes")
            if cap and cap <= right:
                ax.axvline(cap, color="tab:red", lw=0.8, ls="--")
            ax.set_xlim(0, right)
            game = r["env"].split("/")[-1].split("-")[0]
            preset, changes = settings_of(r)
            what = f"{game}, {r['protocol']}: {preset}/{r['model']} seed {r['seed']}"
            ax.set_title("\n".join([what, *([changes] if changes else []),
                                    *time_to_win_outcome(r).split("; ")]), fontsize=7.5)
            ax.tick_params(labelsize=7)
            ax.xaxis.label.set_size(7.5)
            ax.yaxis.label.set_size(7.5)
            if i:
                ax.set_ylabel("")
    from matplotlib.lines import Line2D

    key = time_to_win_key() + [
        Line2D([], [], color="tab:blue", lw=2, label="gru model"),
        Line2D([], [], color="tab:orange", lw=2, label="stack model"),
        Line2D([], [], color="tab:red", lw=0.8, ls="--", label="the run's cap (time budget)"),
    ]
    if goals:
        key.append(Line2D([], [], color="tab:green", lw=0.8, ls=":",
                          label="goal: " + ", ".join(f"{m:g} min {p}"
                                                     for p, m in goals.items())))
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10)
        top -= 0.35 / fig.get_figheight()
    if spare:
        spare[0].legend(handles=key, loc="center", fontsize=7.5, frameon=False)
        fig.tight_layout(rect=(0, bottom, 1, top))
    else:
        below = 0.9 / fig.get_figheight()  # three rows of key entries
        fig.legend(handles=key, loc="lower center", ncol=3, fontsize=7.5, frameon=False,
                   bbox_to_anchor=(0.5, bottom))
        fig.tight_layout(rect=(0, bottom + below, 1, top))
    return fig


def plot_gru_vs_stack(runs_by_protocol: dict[str, list[dict[str, Any]]],
                      title: str | None = None) -> Figure:
    """GRU against stack, one row per protocol (e.g. ``{"deterministic": [...], "sticky":
    [...]}``, time_to_win results of one preset): every run's greedy games and confirmed means
    against agent steps (colour = model, line style = seed), then each run's agent steps and
    minutes to the target as points, one line per model, a hollow triangle where a run never
    met it (drawn where it ended). Above each strip: the :func:`compare_models` verdict on
    that clock. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colours = {"gru": "tab:blue", "stack": "tab:orange"}
    styles = ["-", "--", ":", "-."]
    rows = [(p, runs) for p, runs in runs_by_protocol.items() if runs]
    fig, axes = plt.subplots(len(rows), 3, squeeze=False, figsize=(14, 3.9 * len(rows) + 0.8),
                             gridspec_kw={"width_ratios": [2.3, 1, 1]})
    seeds = sorted({r["seed"] for _, runs in rows for r in runs})  # one line style a seed
    for (protocol, runs), (curves_ax, *strips) in zip(rows, axes, strict=True):
        for r in sorted(runs, key=lambda r: (r["model"], r["seed"])):
            plot_time_to_win(r, curves_ax, "steps", color=colours[r["model"]],
                             linestyle=styles[seeds.index(r["seed"]) % len(styles)])
        target = runs[0]["target_score"]
        curves_ax.axhline(target, color="black", lw=1, ls=":")
        curves_ax.set_ylim(-22.5, 22.5)
        curves_ax.set_title(f"{protocol} Pong: greedy games (light), confirmed means of 10 "
                            "(markers)", fontsize=9)
        for ax, clock in zip(strips, ("steps", "minutes"), strict=True):
            verdict = compare_models(runs, clock)
            for y, model in enumerate(("gru", "stack")):
                # Seed labels above and below in turn (by x), so close runs stay readable.
                by_x = sorted(verdict.runs[model], key=lambda t: t.value(clock))
                for rank, t in enumerate(by_x):
                    x = t.value(clock) / (1e6 if clock == "steps" else 1)  # M steps
                    ax.plot(x, y, "*" if t.reached else ">", ms=13 if t.reached else 9,
                            color=colours[model] if t.reached else "white",
                            markeredgecolor=colours[model] if not t.reached else "black",
                            mew=1.5 if not t.reached else 0.6)
                    ax.annotate(f"s{t.seed}", (x, y), textcoords="offset points",
                                xytext=(0, 9 if rank % 2 == 0 else -14), ha="center",
                                fontsize=7)
            ax.set_yticks([0, 1], ["gru", "stack"])
            ax.set_ylim(-0.6, 1.6)
            scale = 1e6 if clock == "steps" else 1
            ax.set_xlim(0, max(t.value(clock) for runs_of in verdict.runs.values()
                               for t in runs_of) / scale * 1.1)
            ax.grid(alpha=0.3, axis="x")
            ax.set_xlabel("agent steps to +18 (millions)" if clock == "steps"
                          else "minutes to +18 (2 cores)")
            lead = max(("gru", "stack"), key=lambda m: verdict.ahead[m])
            other = "stack" if lead == "gru" else "gru"
            verdict_line = (f"{verdict.faster} ahead in all {verdict.pairings} pairings"
                            if verdict.faster else
                            f"no clear difference:\n{lead} ahead in {verdict.ahead[lead]} of "
                            f"{verdict.pairings} pairings, {other} in {verdict.ahead[other]}")
            seeds_line = "/".join(str(len(verdict.runs[m])) for m in ("gru", "stack"))
            ax.set_title(f"{verdict_line}\n(p = {verdict.p_value:.2f}; gru/stack seeds "
                         f"{seeds_line})", fontsize=8.5)
    key = [Line2D([], [], color=c, lw=2, label=f"{m} model") for m, c in colours.items()]
    key += [Line2D([], [], color="0.3", ls=s, label=f"seed {seed}")
            for seed, s in zip(seeds, styles, strict=False)]
    key += [Line2D([], [], ls="", marker="*", ms=12, color="0.5", markeredgecolor="black",
                   label="the confirmation that met the target"),
            Line2D([], [], ls="", marker=">", ms=8, color="white", markeredgecolor="0.3",
                   mew=1.5, label="never met it: where the run ended")]
    fig.legend(handles=key, loc="lower center", ncol=4, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight() + 0.02, 1, 1))
    return fig
