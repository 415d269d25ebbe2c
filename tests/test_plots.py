"""plots.py: curves and diagnostics drawn from metrics rows."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from a3c_course.plots import curve, plot_diagnostics, rolling_mean  # noqa: E402

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
