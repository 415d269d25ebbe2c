"""results.py: telling a result by its preset, and the GRU-vs-stack verdict."""

from __future__ import annotations

import pytest

from a3c_course.config import make_config
from a3c_course.results import compare_models, gru_vs_stack_runs, settings_of


def run(model: str, seed: int, steps: float, minutes: float, reached: bool = True,
        preset: str = "default", protocol: str = "deterministic", **changes) -> dict:
    """A time_to_win result as the benchmark writes it (the fields read here)."""
    config = make_config(preset, env="pong", model=model, **changes)
    return {"model": model, "seed": seed, "protocol": protocol, "reached": reached,
            "steps": int(steps) if reached else None, "minutes": minutes if reached else None,
            "end_steps": int(steps), "end_minutes": minutes, "config": config.to_dict()}


def test_settings_of_names_the_preset_and_what_changed() -> None:
    assert settings_of(run("stack", 1, 1e6, 5)) == ("default", "")
    assert settings_of(run("stack", 1, 1e6, 5, entropy_coef=0.003)) == (
        "default", "entropy_coef=0.003")
    assert settings_of(run("gru", 1, 1e6, 5, preset="classic"))[0] == "classic"


def test_the_comparison_takes_the_default_once_it_has_two_runs_of_each_model() -> None:
    classic = [run(m, s, 1e6, 9, preset="classic") for m in ("gru", "stack") for s in (1, 2)]
    default = [run("gru", 1, 1e6, 5), run("stack", 1, 1e6, 5)]
    changed = [run("gru", 2, 1e6, 5, lr=1e-3)]  # not the preset as is: never compared
    assert gru_vs_stack_runs(classic + default + changed)[0] == "classic"
    more = default + [run("gru", 2, 1e6, 5), run("stack", 2, 1e6, 5)]
    preset, runs = gru_vs_stack_runs(classic + more + changed)
    assert preset == "default" and len(runs) == 4
    assert gru_vs_stack_runs(classic + more, "sticky") == ("default", [])


def test_a_model_ahead_in_every_pairing_is_the_verdict_with_its_chance() -> None:
    runs = [run("gru", s, 0.5e6 + s, 4 + s) for s in (1, 2, 3)] + \
           [run("stack", s, 1.0e6 + s, 3 + s) for s in (1, 2, 3)]
    steps = compare_models(runs, "steps")
    assert steps.faster == "gru" and steps.ahead == {"gru": 9, "stack": 0}
    # 2 of the 20 ways to split 6 runs into 3 and 3 are this one-sided (either way round).
    assert steps.p_value == pytest.approx(0.1)
    assert "gru ahead on agent steps" in steps.text and "3 seeds" in steps.text
    minutes = compare_models(runs, "minutes")  # gru 5, 6, 7 against stack 4, 5, 6 minutes
    assert minutes.faster is None and minutes.ahead == {"gru": 1, "stack": 6}
    assert "No clear difference on minutes" in minutes.text


def test_a_run_that_never_won_counts_only_where_the_data_says_who_was_first() -> None:
    won = run("stack", 1, 1.0e6, 10)
    lost_late = run("gru", 1, 2.0e6, 20, reached=False)  # ended after the stack had won
    lost_early = run("gru", 2, 0.5e6, 5, reached=False)  # ended before: could still win first
    verdict = compare_models([won, lost_late, lost_early], "steps")
    assert verdict.ahead == {"gru": 0, "stack": 1} and verdict.pairings == 2
    assert verdict.faster is None and "2 not won" in verdict.text


def test_bad_clock_or_a_missing_model_is_refused() -> None:
    runs = [run("gru", 1, 1e6, 5), run("stack", 1, 1e6, 5)]
    with pytest.raises(ValueError, match="allowed are 'steps', 'minutes'"):
        compare_models(runs, "hours")
    with pytest.raises(ValueError, match="stack has 0"):
        compare_models(runs[:1], "steps")
