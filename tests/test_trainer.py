"""Real training runs through the `a3c` command: Pong for the run directory, the evaluation, the
video and resuming; CartPole to prove that the trainer learns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from proc_utils import Trainer, assert_all_gone, initial_model, read_rows, run_a3c

from a3c_course.checkpoint import load_checkpoint
from a3c_course.config import Config, make_config
from a3c_course.shared_adam import moment_bound

PONG_ACTIONS = 6
NUM_STEPS = 20  # the default rollout length: one update per 20 agent steps


def _run(run_dir: Path, *args: str, timeout: float) -> tuple[dict[str, Any], Trainer]:
    """`a3c train ARGS --run-dir RUN_DIR` to the end; the summary it printed, and the trainer."""
    with Trainer(run_dir, *args) as trainer:
        code = trainer.finish(timeout)
        assert code == 0, trainer.stderr()
        # A normal stop ends every child too.
        assert_all_gone(list(trainer.seen.values()), timeout=5)
        return trainer.summary(), trainer


def _max_change(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float((a[k] - b[k]).abs().max()) for k in a}


def _check_timeline(rows: list[dict[str, Any]]) -> None:
    """One run's rows: every row complete; time never goes back; the step counter neither
    (evaluation rows carry the steps at which their weights were loaded, so they may lag)."""
    for row in rows:
        assert {"event", "time_s", "steps"} <= set(row), row
    times = [row["time_s"] for row in rows]
    assert times == sorted(times)
    steps = [row["steps"] for row in rows if not row["event"].startswith("eval")]
    assert steps == sorted(steps)


@pytest.fixture(scope="module")
def pong_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], int]:
    """18 s of 2-worker Pong: the run directory, the printed summary, the trainer's pid."""
    run_dir = tmp_path_factory.mktemp("pong") / "run"
    summary, trainer = _run(run_dir, "--env", "pong", "--workers", "2", "--minutes", "0.3",
                            "--seed", "3", timeout=120)
    return run_dir, summary, trainer.popen.pid


def test_pong_run_writes_config_metrics_and_checkpoint(
        pong_run: tuple[Path, dict[str, Any], int]) -> None:
    run_dir, summary, pid = pong_run
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json",
                                                          "metrics.jsonl"]
    assert summary["stop_reason"] == "minutes"
    assert summary["run_dir"] == str(run_dir)

    config = Config.from_dict(json.loads((run_dir / "config.json").read_text()))
    assert config == make_config(env="pong", num_workers=2, max_minutes=0.3, seed=3)

    rows = read_rows(run_dir)
    _check_timeline(rows)
    assert rows[0]["event"] == "start" and rows[0]["steps"] == 0 and rows[0]["time_s"] < 5
    assert rows[0]["workers"] == 2 and rows[0]["pid"] == pid
    stop = rows[-1]
    assert stop["event"] == "stop" and stop["reason"] == "minutes" and stop["restarts"] == 0
    assert stop["time_s"] >= 18
    assert [r["event"] for r in rows].count("stop") == 1
    progress = [r for r in rows if r["event"] == "progress"]
    assert progress, "18 s of training wrote no progress row (one every 10 s)"
    for row in progress:
        assert row["nonfinite"] == 0 and row["steps_per_s"] >= 0
        assert row["updates"] * NUM_STEPS <= row["steps"]
    for row in rows:
        if row["event"] == "eval":
            assert row["eval_return"] >= -21 and row["eval_length"] > 0

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    counters = checkpoint.counters
    assert counters["steps"] == stop["steps"] == summary["steps"] > 0
    assert counters["metrics_rows"] == len(rows)
    # Every finished rollout was one update of the shared model (a rollout may be cut short).
    assert counters["updates"] > 0 and counters["nonfinite"] == 0
    assert 0 <= counters["steps"] - NUM_STEPS * counters["updates"] <= NUM_STEPS * 2
    assert checkpoint.optimizer_state is not None
    adam_steps = [float(s["step"]) for s in checkpoint.optimizer_state["state"].values()]
    assert 0 < min(adam_steps) <= counters["updates"]  # Hogwild may lose a racing increment


def test_pong_run_changed_every_shared_weight(pong_run: tuple[Path, dict[str, Any], int]) -> None:
    checkpoint = load_checkpoint(pong_run[0] / "checkpoint.pt")
    initial = initial_model(checkpoint, PONG_ACTIONS).state_dict()
    change = _max_change(checkpoint.model_state, initial)
    assert all(c > 0 for c in change.values()), change
    # SharedAdam moves a weight by at most sqrt(K) lr per update, even when Hogwild's unlocked
    # writes race (torch's own Adam, shared the same way, was seen at 240 lr per update).
    bound = moment_bound(0.9, 0.999) ** 0.5 * checkpoint.config.lr * checkpoint.counters["updates"]
    assert max(change.values()) < bound, change
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


def test_evaluate_the_checkpoint_with_video(pong_run: tuple[Path, dict[str, Any], int],
                                            tmp_path: Path) -> None:
    video = tmp_path / "game.mp4"
    result = run_a3c("evaluate", str(pong_run[0] / "checkpoint.pt"), "--episodes", "1",
                     "--json", "--video", str(video), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 1 and len(report["returns"]) == 1
    assert report["mean_return"] == report["returns"][0]
    assert -21 <= report["mean_return"] <= 21
    assert report["mean_return"] == int(report["mean_return"])
    assert report["env"] == "ALE/Pong-v5"
    # The video replays the first evaluated episode: same seed, greedy, same score.
    assert report["video"] == str(video) and report["video_return"] == report["returns"][0]
    data = video.read_bytes()
    assert len(data) > 10_000 and data[4:8] == b"ftyp"


def test_resume_continues_steps_and_metrics(pong_run: tuple[Path, dict[str, Any], int],
                                            tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(pong_run[0], run_dir)
    before = read_rows(run_dir)
    old = load_checkpoint(run_dir / "checkpoint.pt")
    target = old.counters["steps"] + 100
    summary, _ = _run(run_dir, "--resume", "--steps", str(target), "--minutes", "5",
                      timeout=120)
    assert summary["stop_reason"] == "steps" and summary["steps"] >= target

    rows = read_rows(run_dir)
    assert rows[: len(before)] == before, "the rows of the first session were changed"
    resume = rows[len(before)]
    assert resume["event"] == "resume" and resume["steps"] == old.counters["steps"]
    assert resume["time_s"] == pytest.approx(old.counters["time_s"], abs=0.01)
    assert [r["event"] for r in rows].count("resume") == 1
    _check_timeline(rows)  # the whole file: one timeline across the resume
    assert rows[-1]["event"] == "stop" and rows[-1]["steps"] >= target
    assert not (run_dir / "metrics.discarded.jsonl").exists()

    new = load_checkpoint(run_dir / "checkpoint.pt")
    assert new.counters["generation"] == 1
    assert new.counters["updates"] > old.counters["updates"]
    assert new.counters["metrics_rows"] == len(rows)
    assert new.config.max_steps == target and new.config.seed == 3
    change = _max_change(new.model_state, old.model_state)
    assert all(c > 0 for c in change.values()), change


def test_cartpole_reaches_the_target(tmp_path: Path) -> None:
    """The end-to-end learning check: the greedy agent averages >= 400 over 5 episodes."""
    run_dir = tmp_path / "cartpole"
    summary, _ = _run(run_dir, "--env", "CartPole-v1", "--workers", "2", "--target-score", "400",
                      "--set", "eval_episodes=5", "--set", "lr=1e-3", "--set", "eval_nice=0",
                      "--minutes", "3", timeout=240)
    assert summary["stop_reason"] == "target", summary
    assert summary["confirmed_mean"] >= 400
    rows = read_rows(run_dir)
    _check_timeline(rows)
    confirm = [r for r in rows if r["event"] == "eval_confirm"]
    assert confirm and len(confirm[-1]["eval_returns"]) == 5
    assert math.isclose(confirm[-1]["eval_return"], sum(confirm[-1]["eval_returns"]) / 5)
    assert confirm[-1]["eval_return"] == summary["confirmed_mean"]
    assert all(0 < r <= 500 for r in confirm[-1]["eval_returns"])
    # The workers wait while the evaluator confirms: at most the rollout each had under way
    # (2 workers x 20 steps), where thousands of steps would pass without the pause.
    assert all(r["worker_steps_during"] <= 2 * 20 for r in confirm), confirm
    assert rows[-1]["event"] == "stop" and rows[-1]["reason"] == "target"
    episodes = [r for r in rows if r["event"] == "episode"]
    assert episodes and {r["worker"] for r in episodes} == {0, 1}
