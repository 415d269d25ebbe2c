"""plots.py: curves and diagnostics drawn from metrics rows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from a3c_course.plots import curve, plot_diagnostics, plot_run, rolling_mean  # noqa: E402

ROWS = [
    {"event": "progress", "time_s": 10.0, "steps": 0, "entropy": None, "value_loss": None,
     "policy_loss": None, "grad_norm": None},
    {"event": "progress", "time_s": 20.0, "steps": 4000, "entropy": 1.79, "value_loss": 0.02,
     "policy_loss": 0.001, "grad_norm": 0.5},
    {"event": "progress", "time_s": 30.0, "steps": 8000, "entropy": 1.60, "value_loss": 0.04,
     "policy_loss": -0.002, "grad_norm": 0.7},
    {"event": "eval", "time_s": 31.0, "steps": 8000, "eval_return": -20.0},
]


def test_diagnostics_skip_rows_before_any_update() -> None:
    axes = plot_diagnostics(ROWS, x="steps")
    entropy = axes[0].get_lines()[0]
    assert list(entropy.get_xdata()) == [4000, 8000]
    assert list(entropy.get_ydata()) == [1.79, 1.60]
    assert [ax.get_title() for ax in axes][0].startswith("policy entropy")
    with pytest.raises(ValueError, match="allowed are"):
        plot_diagnostics(ROWS, x="hours")


def test_curve_and_rolling_mean() -> None:
    evals = curve(ROWS, "eval", "eval_return")
    assert list(evals["steps"]) == [8000] and list(evals["value"]) == [-20.0]
    assert np.allclose(rolling_mean(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])


# A time_to_win result as benchmarks/time_to_win.py writes it: single greedy games (the curve)
# and the confirmations (10-game means), the second of which met the target.
WON = {
    "env": "ALE/Pong-v5", "preset": "default", "model": "stack", "seed": 1,
    "protocol": "sticky", "config": {"preset": "default", "model": "stack"},
    "target_score": 18.0, "eval_episodes": 10, "cap_minutes": 40.0, "resumed": False,
    "reached": True, "minutes": 3.0, "steps": 3_000_000, "confirmed_mean": 18.5,
    "finished": True, "stop_reason": "target", "end_minutes": 3.0, "end_steps": 3_100_000,
    "best_eval": 20.0, "best_confirmed_mean": 18.5,
    "eval_curve_columns": ["time_s", "steps", "eval_return", "mean10"],
    "eval_curve": [[60.0, 1_000_000, -21.0, -21.0], [120.0, 2_000_000, 19.0, -1.0],
                   [170.0, 2_900_000, 20.0, 6.0]],
    "confirm_points": [[130.0, 2_000_000, 15.0], [180.0, 3_000_000, 18.5]],
}
MISSED = {**WON, "seed": 2, "reached": False, "minutes": None, "steps": None,
          "confirmed_mean": None, "stop_reason": "minutes", "end_minutes": 40.0,
          "best_confirmed_mean": 15.0, "confirm_points": WON["confirm_points"][:1]}


def test_time_to_win_curve_is_the_confirmed_mean_with_single_games_lighter() -> None:
    from a3c_course.plots import plot_time_to_win, time_to_win_curves

    curves = time_to_win_curves(WON)
    assert list(curves["games"]["value"]) == [-21.0, 19.0, 20.0]
    assert list(curves["confirms"]["minutes"]) == [130 / 60, 3.0]
    ax = plot_time_to_win(WON, x="steps", label="won")
    games, confirms, star = ax.get_lines()
    assert games.get_alpha() < 0.5 and list(games.get_ydata()) == [-21.0, 19.0, 20.0]
    assert confirms.get_drawstyle() == "steps-post" and confirms.get_marker() == "o"
    assert list(confirms.get_xdata()) == [2.0, 3.0]  # agent steps, in millions
    assert list(confirms.get_ydata()) == [15.0, 18.5] and confirms.get_label() == "won"
    assert star.get_marker() == "*" and list(star.get_ydata()) == [18.5]  # on the target
    # A run that missed its target ends in an x at its last confirmed mean.
    ax = plot_time_to_win(MISSED)
    assert ax.get_lines()[-1].get_marker() == "x"
    assert list(ax.get_lines()[-1].get_xydata()[0]) == [40.0, 15.0]
    with pytest.raises(ValueError, match="allowed are"):
        plot_time_to_win(WON, x="hours")


def test_time_to_win_without_target_draws_the_running_mean() -> None:
    from a3c_course.plots import plot_time_to_win

    free = {**WON, "target_score": None, "reached": False, "confirm_points": []}
    lines = plot_time_to_win(free, label="free").get_lines()
    assert len(lines) == 2 and list(lines[1].get_ydata()) == [-21.0, -1.0, 6.0]
    assert lines[1].get_label() == "free"


def test_time_to_win_outcome_and_grid() -> None:
    from a3c_course.plots import plot_time_to_win_grid, time_to_win_outcome

    assert time_to_win_outcome(WON) == ("+18.5 (mean of 10) at 3.0 min, 3.00 M steps; "
                                        "40-min cap")
    assert time_to_win_outcome(MISSED) == ("not won after 40 min (at its cap); best mean of 10 "
                                           "+15.0; 40-min cap")
    fig = plot_time_to_win_grid([MISSED, WON], goals={"sticky": 40.0}, title="runs")
    assert fig._suptitle.get_text() == "runs"
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 2  # one panel per run; the spare panels hold the key only
    assert "seed 1" in panels[0].get_title() and "+18.5 (mean of 10)" in panels[0].get_title()
    assert panels[0].get_ylim() == (-22.5, 22.5)  # Pong's whole range in every panel
    # No spare panel here (one row of two): the key goes below the panels, off the data.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (key,) = fig.legends
    assert key.get_window_extent(renderer).y1 <= min(ax.get_tightbbox(renderer).y0
                                                      for ax in panels)
    # Two groups (deterministic and sticky) of unequal size: the key fills a spare panel.
    fig = plot_time_to_win_grid([WON, MISSED, {**WON, "protocol": "deterministic"}])
    spare = [ax for ax in fig.axes if not ax.axison and ax.get_legend() is not None]
    assert len(spare) == 1 and not fig.legends


def test_a_run_marks_the_resumes_that_changed_how_it_learns() -> None:
    rows = [
        {"event": "episode", "time_s": 1.0, "steps": 1000, "episode_return": -21.0},
        {"event": "resume", "time_s": 2.0, "steps": 2000, "changed": {"max_minutes": 90.0}},
        {"event": "episode", "time_s": 3.0, "steps": 3000, "episode_return": -19.0},
        {"event": "resume", "time_s": 4.0, "steps": 4000,
         "changed": {"max_minutes": 120.0, "entropy_coef": 0.001, "max_pool_frames": True}},
        {"event": "eval", "time_s": 5.0, "steps": 5000, "eval_return": -15.0},
    ]
    ax = plot_run(rows, title="a run")
    marks = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in marks] == [[4000, 4000]]  # budgets: no mark
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 1 and "entropy_coef=0.001" in labels[0]
    assert "max_pool_frames=True" in labels[0] and "max_minutes" not in labels[0]
    assert ax.get_title() == "a run" and ax.get_xlabel() == "agent steps"
