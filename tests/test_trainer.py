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
from proc_utils import Trainer, assert_all_gone, read_rows, run_a3c

from a3c_course.checkpoint import load_checkpoint
from a3c_course.children import first_seeds
from a3c_course.config import Config, make_config
from a3c_course.shared_adam import moment_bound
from a3c_course.trainer import initial_model, weights_digest

NUM_STEPS = 20  # the default rollout length
GAMES = Config().envs_per_worker  # the default's games per worker: one update per 20 x 8 steps


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
        assert row["updates"] * NUM_STEPS * GAMES <= row["steps"]
    # The learning diagnostics: means over the updates since the previous row.
    learning = [r for r in progress if r["entropy"] is not None]
    assert learning, progress
    for row in learning:
        assert 0 < row["entropy"] <= math.log(6) + 1e-6  # Pong has 6 actions
        assert row["value_loss"] >= 0 and row["grad_norm"] > 0
        assert math.isfinite(row["policy_loss"]) and row["skipped_share"] == 0
    for row in rows:
        if row["event"] == "eval":
            assert row["eval_return"] >= -21 and row["eval_length"] > 0

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    counters = checkpoint.counters
    assert counters["steps"] == stop["steps"] == summary["steps"] > 0
    assert counters["metrics_rows"] == len(rows)
    # Every finished rollout was one update of the shared model (a rollout may be cut short).
    assert counters["updates"] > 0 and counters["nonfinite"] == 0
    rollout = NUM_STEPS * GAMES
    assert 0 <= counters["steps"] - rollout * counters["updates"] <= rollout * 2
    assert checkpoint.optimizer_state is not None
    adam_steps = [float(s["step"]) for s in checkpoint.optimizer_state["state"].values()]
    assert 0 < min(adam_steps) <= counters["updates"]  # Hogwild may lose a racing increment


def test_pong_run_changed_every_shared_weight(pong_run: tuple[Path, dict[str, Any], int]) -> None:
    checkpoint = load_checkpoint(pong_run[0] / "checkpoint.pt")
    initial = initial_model(checkpoint.config).state_dict()
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
    # The resumed generation's children get their own seeds, the same at every such resume.
    assert resume["child_seeds"] == first_seeds(3, 2, generation=1)
    assert resume["child_seeds"] != before[0]["child_seeds"]
    change = _max_change(new.model_state, old.model_state)
    assert all(c > 0 for c in change.values()), change


def test_cartpole_reaches_the_target(tmp_path: Path) -> None:
    """The end-to-end learning check: the greedy agent averages >= 400 over 5 episodes.

    value_coef=0.1: CartPole pays +1 a step, so its returns grow to ~100 (Atari's clipped
    rewards keep them near 1), and at the default 0.5 the value loss's gradient swamps the
    policy's in the layers they share; some runs then stayed near 20 for the whole budget.
    """
    run_dir = tmp_path / "cartpole"
    summary, _ = _run(run_dir, "--env", "CartPole-v1", "--workers", "2", "--target-score", "400",
                      "--set", "eval_episodes=5", "--set", "lr=1e-3", "--set", "value_coef=0.1",
                      "--set", "eval_nice=0", "--minutes", "3", timeout=240)
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
    # (2 workers x 20 steps x their games), where thousands of steps would pass without it.
    assert all(r["worker_steps_during"] <= 2 * NUM_STEPS * GAMES for r in confirm), confirm
    assert rows[-1]["event"] == "stop" and rows[-1]["reason"] == "target"
    episodes = [r for r in rows if r["event"] == "episode"]
    assert episodes and {r["worker"] for r in episodes} == {0, 1}


def test_the_seed_fixes_the_initial_weights_and_the_child_seeds(
        pong_run: tuple[Path, dict[str, Any], int]) -> None:
    """--seed 3 started from initial_model(config): the start row's fingerprint says so."""
    start = read_rows(pong_run[0])[0]
    config = load_checkpoint(pong_run[0] / "checkpoint.pt").config
    assert start["initial_weights"] == weights_digest(initial_model(config))
    assert start["child_seeds"] == first_seeds(3, 2, generation=0)
    assert set(start["child_seeds"]) == {"worker-0", "worker-1", "evaluator"}


def test_initial_model_depends_on_the_seed_only() -> None:
    config = make_config(env="pong", seed=7)
    rng = torch.get_rng_state()
    a, b = initial_model(config), initial_model(config)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    assert weights_digest(a) == weights_digest(b)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                   b.state_dict().values(), strict=True))
    assert weights_digest(initial_model(config.replace(seed=8))) != weights_digest(a)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2 if threads == 1 else 1)  # not a thread count's rounding
        assert weights_digest(initial_model(config)) == weights_digest(a)
    finally:
        torch.set_num_threads(threads)


def test_a_stop_hook_ends_the_run_cleanly(tmp_path: Path) -> None:
    """train(should_stop=...) ends the run at the hook's word: reason 'stopped', a checkpoint,
    every child gone (the benchmarks stop their measuring windows this way)."""
    import psutil

    from a3c_course.trainer import train

    seen: list[dict[str, Any]] = []
    config = make_config(env="CartPole-v1", num_workers=2, max_minutes=3, eval_nice=0)
    result = train(config, tmp_path / "run", progress=False, on_rows=seen.extend,
                   should_stop=lambda: any(r["event"] == "episode" for r in seen))
    assert result.stop_reason == "stopped" and result.steps > 0
    assert psutil.Process().children() == [] or all(
        "spawn_main" not in " ".join(p.cmdline()) for p in psutil.Process().children())
    rows = read_rows(tmp_path / "run")
    assert rows[-1]["event"] == "stop" and rows[-1]["reason"] == "stopped"
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt").counters["steps"] == result.steps
    assert "asked to stop" in result.describe()


def test_the_progress_bar_follows_the_budget_that_ends_first() -> None:
    from a3c_course.trainer import Counters, _ProgressBar

    config = make_config(env="pong", max_minutes=60)  # and the default 20 M steps
    bar = _ProgressBar(config, Counters(), enabled=False)
    assert bar.mode == "minutes" and bar.bar.total == 3600
    bar.update(steps=130_000, elapsed=172.0, rate=750.0, entropy=1.7, eval=-20.0)
    assert bar.mode == "minutes" and bar.bar.n == 172  # 20 M steps would take 7 hours
    bar.update(steps=19_000_000, elapsed=600.0, rate=100_000.0)
    assert bar.mode == "steps" and bar.bar.total == 20_000_000 and bar.bar.n == 19_000_000
    steps_only = _ProgressBar(make_config(env="pong", max_steps=1000), Counters(), False)
    assert steps_only.mode == "steps" and steps_only.bar.total == 1000
    bar.close()


def test_a_run_ends_with_words_that_say_what_next(tmp_path: Path) -> None:
    from a3c_course.trainer import TrainResult

    config = make_config(env="pong", max_minutes=60, target_score=18.0)
    result = TrainResult(tmp_path / "run", "minutes", 2_680_000, 3600.0, 900, 0, 15.0, None,
                         config)
    text = result.describe()
    assert "time budget ran out" in text and "NOT reached" in text
    assert "never confirmed" in text and "2,680,000 agent steps" in text
    assert f"a3c train --resume --run-dir {tmp_path / 'run'} --minutes N" in text
    assert f"a3c evaluate {tmp_path / 'run' / 'checkpoint.pt'} --episodes 10" in text
    assert "--video" in text
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"")
    won = TrainResult(tmp_path / "run", "target", 900_000, 600.0, 200, 0, 21.0, 19.4, config)
    text = won.describe()
    assert "reached the target" in text and "+19.4" in text and "NOT" not in text
    assert "best.pt" in text
    assert json.loads(json.dumps(won.summary()))["confirmed_mean"] == 19.4


def test_the_cli_ends_in_words_or_json(pong_run: tuple[Path, dict[str, Any], int],
                                       tmp_path: Path) -> None:
    """--json keeps the machine-readable line; without it a person reads what to do next."""
    run_dir = tmp_path / "run"
    shutil.copytree(pong_run[0], run_dir)
    steps = load_checkpoint(run_dir / "checkpoint.pt").counters["steps"]
    result = run_a3c("train", "--resume", "--run-dir", str(run_dir), "--steps",
                     str(steps + 40), "--minutes", "5", "--no-progress", timeout=180)
    assert result.returncode == 0, result.stderr
    assert "step budget ran out" in result.stdout and "resume:" in result.stdout
    assert f"--run-dir {run_dir}" in result.stdout


def test_snapshots_keep_the_weights_every_few_minutes(tmp_path: Path) -> None:
    """snapshot_minutes=0.05: a small model-only checkpoint every 3 s of training, each one
    loadable by `a3c evaluate`, each logged."""
    from a3c_course.checkpoint import load_model
    from a3c_course.rundir import snapshots

    run_dir = tmp_path / "run"
    _run(run_dir, "--env", "CartPole-v1", "--workers", "2", "--minutes", "0.3", "--set",
         "snapshot_minutes=0.05", "--set", "eval_nice=0", timeout=180)
    found = snapshots(run_dir)
    rows = [r for r in read_rows(run_dir) if r["event"] == "snapshot"]
    assert len(found) == len(rows) >= 3
    assert [run_dir / r["path"] for r in rows] == found
    times = [load_checkpoint(p).counters["time_s"] for p in found]
    assert times == sorted(times) and all(t >= 3 for t in times)
    for path, row in zip(found, rows, strict=True):
        checkpoint = load_checkpoint(path)
        assert checkpoint.optimizer_state is None  # small: the model only
        assert checkpoint.counters["steps"] == row["steps"]
        assert path.name == f"{int(checkpoint.counters['time_s']):06d}s.pt"
        load_model(str(path))
    result = run_a3c("evaluate", str(found[0]), "--episodes", "1", "--json", timeout=120)
    assert result.returncode == 0, result.stderr


def test_sigterm_and_windows_ctrl_break_stop_like_ctrl_c(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Inside a run, SIGTERM (and Ctrl-Break, where Windows has it) becomes the clean stop of
    Ctrl-C; outside, the previous handlers are back. Ctrl-Break is played here by SIGUSR1."""
    import signal

    from a3c_course import trainer

    if not hasattr(signal, "SIGUSR1"):
        pytest.skip("needs a spare signal to play Ctrl-Break")
    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR1, raising=False)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        with pytest.raises(KeyboardInterrupt), trainer._sigterm_stops():
            signal.raise_signal(signum)
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("run", sorted(p.name for p in (Path(__file__).resolve().parents[1]
                                                          / "checkpoints").iterdir()))
def test_committed_runs_still_resume(run: str) -> None:
    """The run directories committed before the trainer's refactor still read as runs: their
    counters become Counters, their config matches their checkpoint, and resuming would
    start from where they stopped (checked without training)."""
    from a3c_course.checkpoint import check_compatible
    from a3c_course.rundir import read_metrics
    from a3c_course.trainer import Counters

    run_dir = Path(__file__).resolve().parents[1] / "checkpoints" / run
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    counters = Counters.from_dict(checkpoint.counters)
    assert counters.steps > 0 and counters.metrics_rows <= len(read_metrics(run_dir))
    check_compatible(checkpoint, checkpoint.config)
    assert checkpoint.optimizer_state is not None
