"""The Ray backend (issue 7): `a3c train --backend ray` on a local Ray instance, real Pong.

One short run with 2 worker actors, during which one worker actor is killed with SIGKILL:
Ray restarts it and training goes on; the run directory is the local backend's (metrics,
checkpoint that `a3c evaluate` loads); the parameter server's weights have moved; no process
outlives the run. Then SIGTERM and Ctrl-C-like stops, and the clear errors of the CLI.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from proc_utils import ROOT, Trainer, a3c_env, assert_all_gone, read_rows, run_a3c

from a3c_course.checkpoint import load_checkpoint
from a3c_course.config import Config, ConfigError, make_config
from a3c_course.trainer import initial_model

if os.environ.get("A3C_REQUIRE_RAY"):  # make test installs the extra: a skip would hide that
    import ray  # noqa: F401
else:
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

STEPS_PER_UPDATE = 20 * Config().envs_per_worker  # 20 steps in each of the default's 8 games
RAY = ("--env", "pong", "--backend", "ray", "--workers", "2")


def _title(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return ""


def _actor_processes(trainer: Trainer, kind: str) -> list[psutil.Process]:
    """The trainer's live descendants that run Ray actor `kind` (Ray titles them ray::Kind)."""
    return [proc for proc in trainer.children() if f"ray::{kind}" in _title(proc)]


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """12,000 steps of Pong on Ray (about 40 s on a quiet machine: a step budget, so a slow
    start on a busy one takes nothing from it); once the workers have pushed updates, one
    worker actor is killed. The waits are generous: under load Ray's start alone can take
    a minute or more."""
    run_dir = tmp_path_factory.mktemp("ray") / "run"
    with Trainer(run_dir, *RAY, "--steps", "12000", "--minutes", "10", "--seed", "3") as trainer:
        trainer.wait_for_row("progress", timeout=300, where=lambda r: r["updates"] > 0)
        workers = trainer.wait_for(lambda: len(w := _actor_processes(trainer, "A3CWorker")) == 2
                                   and w, "two worker actors", timeout=120)
        worker_pids = {p.pid for p in workers}
        victim = workers[0].pid
        steps_at_kill = trainer.rows()[-1]["steps"]
        workers[0].send_signal(signal.SIGKILL)

        def restarted() -> dict[str, Any] | None:
            # Ray starts a new process for the actor, and the trainer logs the restart.
            worker_pids.update(p.pid for p in _actor_processes(trainer, "A3CWorker"))
            if len(worker_pids) < 3:
                return None
            return next((r for r in trainer.rows() if r["event"] == "worker_restart"), None)

        restart = trainer.wait_for(restarted, "a restarted worker actor", timeout=180)
        code = trainer.finish(timeout=400)
        assert code == 0, trainer.stderr()
        # ray.shutdown at the end: not one of the processes Ray started is left.
        assert_all_gone(list(trainer.seen.values()), timeout=30)
        return {"run_dir": run_dir, "summary": trainer.summary(), "pid": trainer.popen.pid,
                "victim": victim, "worker_pids": worker_pids, "restart": restart,
                "steps_at_kill": steps_at_kill, "stderr": trainer.stderr()}


def test_ray_run_writes_the_local_backends_run_dir(ray_run: dict[str, Any]) -> None:
    run_dir, summary = ray_run["run_dir"], ray_run["summary"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt", "config.json",
                                                          "metrics.jsonl"]
    assert summary["stop_reason"] == "steps" and summary["run_dir"] == str(run_dir)
    assert "Traceback" not in ray_run["stderr"]
    rows = read_rows(run_dir)
    for row in rows:
        assert {"event", "time_s", "steps"} <= set(row), row
    start = rows[0]
    assert start["event"] == "start" and start["backend"] == "ray" and start["workers"] == 2
    assert start["pid"] == ray_run["pid"]
    assert rows[-1]["event"] == "stop" and rows[-1]["reason"] == "steps"
    assert rows[-1]["restarts"] == 1
    progress = [r for r in rows if r["event"] == "progress"]
    assert len(progress) >= 2
    for row in progress:
        assert row["nonfinite"] == 0 and row["updates"] * STEPS_PER_UPDATE <= row["steps"]
    episodes = [r for r in rows if r["event"] == "episode"]
    assert episodes and {r["worker"] for r in episodes} <= {0, 1}
    assert all(-21 <= r["episode_return"] <= 21 for r in episodes)
    assert any(r["event"] == "eval" for r in rows), "the evaluator actor logged no episode"

    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    counters = checkpoint.counters
    assert counters["steps"] == rows[-1]["steps"] == summary["steps"] > 0
    assert counters["metrics_rows"] == len(rows)
    # The server counts a worker's steps with the push that carries their gradient.
    assert counters["steps"] == STEPS_PER_UPDATE * counters["updates"]
    assert counters["nonfinite"] == 0
    adam_steps = {float(s["step"]) for s in checkpoint.optimizer_state["state"].values()}
    assert adam_steps == {float(counters["updates"])}  # one server, no lost Adam step


def test_ray_run_moved_the_parameter_servers_weights(ray_run: dict[str, Any]) -> None:
    checkpoint = load_checkpoint(ray_run["run_dir"] / "checkpoint.pt")
    initial = initial_model(checkpoint.config).state_dict()
    change = {k: float((checkpoint.model_state[k] - initial[k]).abs().max()) for k in initial}
    assert all(c > 0 for c in change.values()), change
    # One Adam step moves a weight by at most lr (1 - beta1) / sqrt(1 - beta2) ~ 3.2 lr; with
    # one server applying the updates in turn, no lost moment update can exceed that.
    bound = 3.2 * checkpoint.config.lr * checkpoint.counters["updates"]
    assert max(change.values()) < bound, change
    assert all(torch.isfinite(t).all() for t in checkpoint.model_state.values())


def test_killed_worker_actor_is_restarted_and_training_goes_on(ray_run: dict[str, Any]) -> None:
    rows = read_rows(ray_run["run_dir"])
    restart = ray_run["restart"]
    assert restart["child"] in ("worker-0", "worker-1") and restart["restarts"] == 1
    # Ray gave the actor a new process: three worker processes in all, the victim among them.
    assert ray_run["victim"] in ray_run["worker_pids"] and len(ray_run["worker_pids"]) == 3
    after = [r for r in rows if r["event"] == "progress" and r["time_s"] > restart["time_s"]]
    assert after, "no progress row after the restart"
    assert after[-1]["steps"] > ray_run["steps_at_kill"] + 2000
    assert after[-1]["steps_per_s"] > 0


def test_evaluate_loads_the_ray_checkpoint(ray_run: dict[str, Any], tmp_path: Path) -> None:
    result = run_a3c("evaluate", str(ray_run["run_dir"] / "checkpoint.pt"), "--episodes", "1",
                     "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 1 and -21 <= report["mean_return"] <= 21
    assert report["env"] == "ALE/Pong-v5"


def test_sigterm_stops_a_ray_run_with_nothing_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with Trainer(run_dir, *RAY, "--minutes", "5") as trainer:
        trainer.wait_for_row("progress", timeout=300, where=lambda r: r["updates"] > 0)
        children = trainer.children()
        assert _actor_processes(trainer, "ParameterServer"), children
        trainer.signal(signal.SIGTERM)
        assert trainer.wait(timeout=120) == 143, trainer.stderr()
        assert_all_gone(children, timeout=30)
        assert "Traceback" not in trainer.stderr()
        assert trainer.summary()["stop_reason"] == "terminated"
    rows = read_rows(run_dir)
    assert rows[-1]["event"] == "stop" and rows[-1]["reason"] == "terminated"
    assert load_checkpoint(run_dir / "checkpoint.pt").counters["steps"] == rows[-1]["steps"]


# ---------------------------------------------------------------------- clear errors
def test_missing_ray_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['ray'] = None\n"  # import ray now fails, as without it
            "from a3c_course.cli import main\n"
            f"raise SystemExit(main(['train', '--backend', 'ray', '--run-dir', "
            f"{str(tmp_path / 'run')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, env=a3c_env(), cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "a3c: error: the ray backend needs Ray, which is not installed: "
        "pip install 'a3c-course[ray]'"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--address", "10.0.0.1:6379"], "--address 10.0.0.1:6379 needs --backend ray"),
    (["--backend", "local", "--address", "auto"], "--address auto needs --backend ray"),
    (["--backend", "ray", "--address", "nohost"], "'nohost' is not allowed: give HOST:PORT"),
    (["--backend", "ray", "--address", "h:99999"], "'h:99999' is not allowed"),
    (["--backend", "spark"], "invalid choice: 'spark'"),
])
def test_bad_backend_flags_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_a3c("train", *args, "--run-dir", str(tmp_path / "run"), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_train_names_the_allowed_backends(tmp_path: Path) -> None:
    from a3c_course.trainer import train

    config = make_config(env="CartPole-v1", num_workers=1, max_steps=10)
    with pytest.raises(ConfigError, match="backend='spark' is unknown: allowed are local, ray"):
        train(config, tmp_path / "run", backend="spark")
    with pytest.raises(ConfigError, match="address='auto' is only for backend='ray'"):
        train(config, tmp_path / "run", address="auto")
    assert not (tmp_path / "run").exists()


def test_no_ray_process_of_ours_is_left() -> None:
    """After the runs above: no raylet or GCS server whose parent is this test process."""
    ours = [p for p in psutil.Process(os.getpid()).children(recursive=True)
            if any(k in _title(p) for k in ("raylet", "gcs_server", "ray::"))]
    assert not ours, ours


def test_a_local_start_that_times_out_is_tried_again_then_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray gives its node a fixed 30 s to start; on a busy machine the start is tried twice,
    cleaned up after each failure, and then the user reads one line with what to do."""
    from a3c_course import ray_backend
    from a3c_course.children import TrainingError

    calls: list[str] = []

    def timed_out(**kwargs: Any) -> None:
        calls.append("init")
        raise Exception("The current node timed out during startup. This could happen because "
                        "some of the raylet failed to startup or the GCS has become overloaded.")

    monkeypatch.setattr(ray_backend.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_backend.ray, "init", timed_out)
    monkeypatch.setattr(ray_backend.ray, "shutdown", lambda: calls.append("shutdown"))
    with pytest.raises(TrainingError, match="30-s limit.*--backend local"):
        with ray_backend.ray_session(make_config(num_workers=2), None):
            pass
    # Each failed start is cleaned up; the session's own shutdown runs last.
    assert calls == ["init", "shutdown", "init", "shutdown", "shutdown"]


def test_the_parameter_server_follows_the_lr_schedule_of_shared_adam() -> None:
    """The same gradients through the server (torch's Adam, one update at a time) and through
    SharedAdam, with a decay over 3 updates, give the same weights (the class is plain
    Python until ray.remote wraps it, so no Ray instance is needed)."""
    from a3c_course.ray_backend import ParameterServer, WorkerReport, flat_size, flatten
    from a3c_course.shared_adam import SharedAdam

    config = make_config(model="stack", num_workers=1, lr=1e-3, num_steps=5,
                         lr_decay_steps=15)  # 3 updates of 5 steps
    model = initial_model(config)
    optimizer = SharedAdam(model.parameters(), lr=config.lr,
                           lr_decay_updates=config.lr_decay_updates)
    weights = flatten(list(model.parameters()), torch.zeros(flat_size(model)))
    # a copy, as Ray's pickling makes: state_dict() shares the step counts with `optimizer`
    server = ParameterServer(config, weights, copy.deepcopy(optimizer.state_dict()), 1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):  # two past the schedule's end: lr 0
        grads = [torch.randn(p.shape, generator=generator) for p in model.parameters()]
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
        optimizer.step()
        server.push(0, flatten(grads, torch.zeros(flat_size(model))),
                    WorkerReport([0.0] * 7, []))
    server_weights, _ = server.state()
    for name, p in model.named_parameters():
        torch.testing.assert_close(server_weights[name], p.detach())
    assert server.optimizer.param_groups[0]["lr"] == 0.0
