"""Reading committed results: which preset a result is, and GRU against stack.

The benchmark scripts write ``benchmarks/results/*.json``; notebook 05, ``benchmarks/plot.py``
and the README read them through this module, so all three tell a result by the same preset
and compare the two models by the same rule.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any

MODELS = ("gru", "stack")
CLOCKS = ("steps", "minutes")


def settings_of(result: dict[str, Any]) -> tuple[str, str]:
    """(preset, changes) of a result as told today: the preset its settings differ least
    from (:meth:`Config.relabelled`: a run of the default before issue 15 is a `classic` run)
    and the learning fields changed from it, e.g. ``("default", "entropy_coef=0.003")``."""
    from .config import Config

    config = Config.from_dict(result["config"]).relabelled()
    changes = config.changes_from_preset()
    return config.preset, ", ".join(f"{k}={v}" for k, v in changes.items())


def gru_vs_stack_runs(results: list[dict[str, Any]], protocol: str = "deterministic"
                      ) -> tuple[str, list[dict[str, Any]]]:
    """The GRU-vs-stack comparison: the runs of one preset as is (nothing changed but model
    and seed, :func:`settings_of`). Today's default once it has 2 runs or more of each model,
    else the first preset that has (`classic`, the default before issue 15); returns the
    preset and its runs, or ("default", []) when none has."""
    as_is = [r for r in results if r["protocol"] == protocol and not settings_of(r)[1]]
    for preset in ("default", "classic", "seed"):
        runs = [r for r in as_is if settings_of(r)[0] == preset]
        if all(sum(r["model"] == m for r in runs) >= 2 for m in MODELS):
            return preset, runs
    return "default", []


@dataclass(frozen=True)
class TimeToTarget:
    """One run on the two clocks: agent steps and minutes to its confirmed target, or, for a
    run that never met it, where it ended (then only a lower bound)."""

    model: str
    seed: int
    reached: bool
    steps: int
    minutes: float

    @classmethod
    def of(cls, result: dict[str, Any]) -> TimeToTarget:
        """From a time_to_win result file's dict."""
        reached = bool(result["reached"])
        return cls(result["model"], result["seed"], reached,
                   result["steps"] if reached else result["end_steps"],
                   result["minutes"] if reached else result["end_minutes"])

    def value(self, clock: str) -> float:
        """This run's time on `clock` ("steps" or "minutes", see `CLOCKS`)."""
        return float(self.steps if clock == "steps" else self.minutes)


def _faster(x: TimeToTarget, y: TimeToTarget, clock: str) -> int:
    """+1 if x surely got there first on `clock`, -1 if y did, 0 if the data cannot say (a
    tie, or a run that never got there and ended before the other's time)."""
    a, b = x.value(clock), y.value(clock)
    if x.reached and a < b:
        return 1
    if y.reached and b < a:
        return -1
    return 0


@dataclass(frozen=True)
class Verdict:
    """GRU against stack on one clock, from every pairing of a GRU run with a stack run."""

    clock: str
    runs: dict[str, list[TimeToTarget]]
    ahead: dict[str, int]  # per model: pairings it surely won
    pairings: int
    p_value: float  # two-sided, exact: share of relabellings at least as one-sided
    faster: str | None  # the model ahead in every pairing, else None

    @property
    def text(self) -> str:
        """The verdict in one sentence, with the spread and the sample size."""
        unit = {"steps": "agent steps", "minutes": "minutes"}[self.clock]

        def spread(model: str) -> str:
            runs = self.runs[model]
            values = [r.value(self.clock) for r in runs]
            fmt = (lambda v: f"{v / 1e6:.2f} M") if self.clock == "steps" else (
                lambda v: f"{v:.1f}")
            lost = sum(not r.reached for r in runs)
            tail = f"; {lost} not won, counted from where {'it' if lost == 1 else 'they'} ended" \
                if lost else ""
            span = fmt(min(values)) + (f"–{fmt(max(values))}" if len(values) > 1 else "")
            seeds = f"{len(runs)} seed{'s' * (len(runs) > 1)}"
            return f"{model} {span} (median {fmt(statistics.median(values))}, {seeds}{tail})"

        n = " against ".join(spread(m) for m in MODELS)
        chance = f"p = {self.p_value:.2f}, exact permutation test"
        if self.faster:
            return (f"**{self.faster} ahead on {unit}** in all {self.pairings} pairings of a GRU "
                    f"run with a stack run: {n}; an ordering this one-sided comes from "
                    f"shuffled labels {self.p_value:.0%} of the time ({chance}).")
        lead = max(MODELS, key=lambda m: self.ahead[m])
        other = next(m for m in MODELS if m != lead)
        undecided = self.pairings - self.ahead[lead] - self.ahead[other]
        return (f"**No clear difference on {unit}**: {lead} was ahead in "
                f"{self.ahead[lead]} of {self.pairings} pairings, {other} in "
                f"{self.ahead[other]}" + (f", {undecided} undecided" if undecided else "")
                + f"; {n}; an ordering at least this one-sided comes from shuffled labels "
                f"{self.p_value:.0%} of the time ({chance}).")


def compare_models(results: list[dict[str, Any]], clock: str) -> Verdict:
    """GRU against stack on `clock` ("steps" or "minutes") from time_to_win results of one
    protocol and preset (:func:`gru_vs_stack_runs`). Each pairing of a GRU run with a stack
    run is won by the run that surely met the target first; the p-value is the share of all
    relabellings of the pooled runs whose score is at least as one-sided (exact, small n)."""
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: allowed are {', '.join(map(repr, CLOCKS))}")
    runs = {m: sorted((TimeToTarget.of(r) for r in results if r["model"] == m),
                      key=lambda t: t.seed) for m in MODELS}
    if not all(runs.values()):
        raise ValueError("compare_models needs at least one run of each model: "
                         + ", ".join(f"{m} has {len(v)}" for m, v in runs.items()))

    def score(gru: list[TimeToTarget], stack: list[TimeToTarget]) -> int:
        return sum(_faster(g, s, clock) for g in gru for s in stack)

    observed = score(runs["gru"], runs["stack"])
    pooled = runs["gru"] + runs["stack"]
    relabelled = [score([pooled[i] for i in chosen],
                        [pooled[i] for i in range(len(pooled)) if i not in chosen])
                  for chosen in itertools.combinations(range(len(pooled)), len(runs["gru"]))]
    p_value = sum(abs(s) >= abs(observed) for s in relabelled) / len(relabelled)
    pairings = len(runs["gru"]) * len(runs["stack"])
    ahead = {"gru": sum(_faster(g, s, clock) == 1 for g in runs["gru"] for s in runs["stack"]),
             "stack": sum(_faster(g, s, clock) == -1 for g in runs["gru"]
                          for s in runs["stack"])}
    faster = next((m for m in MODELS if ahead[m] == pairings), None)
    return Verdict(clock, runs, ahead, pairings, p_value, faster)
