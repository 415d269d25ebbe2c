"""Learning curves from a run's ``metrics.jsonl`` rows (matplotlib)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


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


def plot_learning_curve(rows: list[dict[str, Any]], ax=None, x: str = "minutes",
                        label: str | None = None, window: int = 10, color: str | None = None):
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


DIAGNOSTICS = (("entropy", "policy entropy (nats per step)"),
               ("value_loss", "value loss (per step)"),
               ("policy_loss", "policy loss (per step)"),
               ("grad_norm", "gradient norm (before clipping)"))


def plot_diagnostics(rows: list[dict[str, Any]], axes=None, x: str = "minutes",
                     label: str | None = None):
    """The learning diagnostics of the `progress` rows: entropy, value loss, policy loss and
    the gradient's norm, one panel each (rows written before any update are skipped)."""
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
