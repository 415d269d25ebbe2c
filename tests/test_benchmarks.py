"""The benchmark scripts, each run for a few seconds in a subprocess (CleanRL-style smoke tests).

They assert what the scripts write (result JSON with provenance, figures), never a speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from proc_utils import wait_gone

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def _bench(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "A3C_TEST_MODE": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _provenance_ok(result: dict) -> None:
    assert result["command"].startswith("python benchmarks/")
    assert result["machine"]["cores"] >= 1 and result["date"]


def test_time_to_win_runs_and_summarises_a_short_run(tmp_path: Path) -> None:
    out, runs = tmp_path / "results", tmp_path / "runs"
    _bench("time_to_win.py", "--env", "CartPole-v1", "--workers", "1", "--minutes", "0.5",
           "--target-score", "100000", "--set", "eval_nice=0", "--runs-dir", str(runs),
           "--out", str(out), "--name", "cp")
    result = json.loads((out / "time_to_win-cp.json").read_text())
    _provenance_ok(result)
    assert result["reached"] is False and result["target_score"] == 100000
    # The machine's own speed, measured before the run on the same number of processes.
    assert result["emulator_steps_per_s"] > 0
    assert result["emulator_steps_per_s_per_process"] == pytest.approx(
        result["emulator_steps_per_s"], rel=0.01)  # one worker
    assert result["finished"] and result["stop_reason"] == "minutes"
    assert 0 < len(result["eval_curve"]) <= min(result["evaluations"], 400)  # thinned
    assert result["train_command"].startswith("a3c train --env CartPole-v1")
    # Summarising the same directory again gives the same figures.
    _bench("time_to_win.py", "--summarise", str(runs / "cp"), "--out", str(out), "--name", "again")
    again = json.loads((out / "time_to_win-again.json").read_text())
    assert again["eval_curve"] == result["eval_curve"]
    assert again["end_steps"] == result["end_steps"]
    # The emulator speed measured before the run is kept in the run directory.
    assert again["emulator_steps_per_s"] == result["emulator_steps_per_s"]
    # A second run under the same name is refused before it starts: the result stays.
    before = (out / "time_to_win-cp.json").read_bytes()
    env = {**os.environ, "A3C_TEST_MODE": "1"}
    refused = subprocess.run([sys.executable, str(BENCH / "time_to_win.py"), "--env", "CartPole-v1",
                              "--runs-dir", str(runs), "--out", str(out), "--name", "cp"],
                             capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (out / "time_to_win-cp.json").read_bytes() == before


def test_entropy_curve_averages_the_progress_rows_of_each_stretch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import time_to_win

    rows = [{"event": "progress", "steps": s, "entropy": e}
            for s, e in [(20_000, 1.7), (40_000, 1.5), (60_000, 1.2), (90_000, 1.0),
                         (120_000, 0.9)]]
    rows.append({"event": "episode", "steps": 30_000, "episode_return": -21.0})
    # Marks every 50,000 steps; the rows after the last full mark wait for the next one.
    assert time_to_win.entropy_curve(rows, 120_000) == [[50_000, 1.6], [100_000, 1.1]]
    assert time_to_win.entropy_curve(rows[:1], 10_000) == []


def test_time_to_win_without_a_target_reports_a_score_curve_and_passes_on_sigterm(
        tmp_path: Path) -> None:
    """No target: the result is a score curve. SIGTERM to the script alone (as a scheduler or
    `kill` sends it) stops its `a3c train` child cleanly too, and what the run wrote is
    summarised: no process is left running without its parent."""
    out, runs = tmp_path / "results", tmp_path / "runs"
    script = subprocess.Popen(
        [sys.executable, str(BENCH / "time_to_win.py"), "--env", "CartPole-v1", "--workers",
         "1", "--minutes", "10", "--set", "eval_nice=0", "--runs-dir", str(runs), "--out",
         str(out), "--name", "free"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "A3C_TEST_MODE": "1"}, cwd=REPO)
    metrics = runs / "free" / "metrics.jsonl"
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240  # the emulator is measured first; a busy machine
        while not (metrics.is_file() and '"event": "eval"' in metrics.read_text()):
            assert script.poll() is None and time.monotonic() < deadline, "no greedy game"
            time.sleep(0.5)
        family = psutil.Process(script.pid).children(recursive=True)
        assert any("a3c_course" in " ".join(p.cmdline()) for p in family)
        script.send_signal(signal.SIGTERM)
        stdout, stderr = script.communicate(timeout=120)
    finally:  # a failing run leaves nothing behind either
        if script.poll() is None:
            script.kill()
        survivors = wait_gone(family, timeout=30)
        for proc in survivors:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
    assert not survivors, f"left running: {survivors}"
    assert script.returncode == 143, stderr[-3000:]  # as a shell reports SIGTERM
    result = json.loads((out / "time_to_win-free.json").read_text())
    assert result["target_score"] is None and result["reached"] is False
    assert result["confirmations"] == 0 and result["best_eval"] is not None
    assert result["stop_reason"] == "terminated" and result["train_exit_code"] == 143
    assert "no target" in stdout


def test_plot_draws_every_figure_from_result_files(tmp_path: Path) -> None:
    results, images = tmp_path / "results", tmp_path / "images"
    results.mkdir()
    committed = sorted((BENCH / "results").glob("*.json"))
    for path in committed:
        (results / path.name).write_text(path.read_text())
    (results / "tuning").mkdir()
    for path in sorted((BENCH / "results" / "tuning").glob("time_to_win-*.json")):
        (results / "tuning" / path.name).write_text(path.read_text())
    # A stack twin of a committed GRU run, so the GRU-vs-stack figure has both models.
    gru = json.loads((BENCH / "results" / "time_to_win-pong-det-std-s1.json").read_text())
    gru["model"] = gru["config"]["model"] = "stack"
    (results / "time_to_win-twin.json").write_text(json.dumps(gru))
    run = tmp_path / "runs" / "pong-sticky-s1"  # a committed run, for long_runs.png
    run.mkdir(parents=True)
    for name in ("metrics.jsonl", "config.json"):
        (run / name).write_text((BENCH.parent / "checkpoints" / run.name / name).read_text())
    proc = _bench("plot.py", "--results", str(results), "--out", str(images),
                  "--runs", str(run.parent))
    for name in ("score_vs_minutes.png", "throughput.png", "gru_vs_stack.png",
                 "envs_per_worker.png", "tuning.png", "long_runs.png"):
        png = images / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", proc.stdout
    # The README's trial table, printed from the same files (one line per trial): the greedy
    # means, then the training games' means, of each trial.
    table = proc.stdout.split("sticky: mean of the last 10 greedy games")[1]
    assert "lr_decay_steps=3000000: " in table and "+18 at 4.31 M" in table
    # Told by today's presets: the trial of 8 workers of 2 games changed only those from
    # today's default; the old default's runs read as the classic preset.
    w8 = next(line for line in table.splitlines() if "workers=8, envs_per_worker=2: " in line)
    assert "| +1.2 / +10.6 / - / -;" in w8, w8
    assert "stack, seed 2, the classic preset as it is: " in table


def test_emulator_measures_the_bare_game_on_each_process(tmp_path: Path) -> None:
    _bench("emulator.py", "--workers", "2", "--seconds", "2", "--warmup", "1",
           "--set", "repeat_action_probability=0", "--out", str(tmp_path), "--name", "e")
    result = json.loads((tmp_path / "e.json").read_text())
    _provenance_ok(result)
    assert result["workers"] == 2 and result["config"]["repeat_action_probability"] == 0
    (window,) = result["rounds"]
    assert len(window["per_worker_steps_per_s"]) == 2
    assert all(rate > 0 for rate in window["per_worker_steps_per_s"])
    assert result["emulator_steps_per_s"] == pytest.approx(
        sum(window["per_worker_steps_per_s"]), abs=0.2)


def test_vector_env_times_the_native_and_the_gymnasium_pipelines(tmp_path: Path) -> None:
    _bench("vector_env.py", "--model", "stack", "--set", "envs_per_worker=2", "--steps", "10",
           "--rounds", "2", "--out", str(tmp_path), "--name", "v")
    result = json.loads((tmp_path / "v.json").read_text())
    _provenance_ok(result)
    assert result["envs_per_worker"] == 2
    assert set(result["us_per_agent_step"]) == {"native_bare", "gymnasium_bare",
                                                 "native_preprocessed", "library"}
    assert all(len(v) == 2 and min(v) > 0 for v in result["rounds_us_per_agent_step"].values())
    assert result["native_over_gymnasium_bare"] > 0


def test_vector_env_refuses_colour_frames_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "vector_env.py"), "--set",
                           "grayscale=false", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "grayscale=true" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_throughput_measures_emulator_limit_and_trainer(tmp_path: Path) -> None:
    # One model: the script builds either through the same config (the GRU's worker loop is
    # tested in test_worker.py); the stack model is the one `make train` uses.
    model = "stack"
    _bench("throughput.py", "--model", model, "--workers", "1", "--seconds", "3", "--warmup",
           "2", "--out", str(tmp_path), "--name", "t", "--set", "envs_per_worker=2")
    result = json.loads((tmp_path / "t.json").read_text())
    _provenance_ok(result)
    assert result["model"] == model and result["workers"] == 1
    assert result["config"]["envs_per_worker"] == 2
    assert result["limit_steps_per_s"] > 0 and result["trainer_steps_per_s"] > 0
    assert result["emulator_steps_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["trainer_steps_per_s"] / result["limit_steps_per_s"], abs=0.01)
    assert result["emulator_ratio"] == pytest.approx(
        result["trainer_steps_per_s"] / result["emulator_steps_per_s"], abs=0.01)


def test_ship_agent_refuses_a_weak_agent_and_ships_a_good_enough_one(tmp_path: Path) -> None:
    runs, out, videos = tmp_path / "runs", tmp_path / "pretrained", tmp_path / "images"
    _bench("time_to_win.py", "--env", "pong", "--workers", "1", "--minutes", "0.1",
           "--set", "eval_nice=0", "--runs-dir", str(runs), "--out", str(tmp_path / "results"),
           "--name", "cp")
    common = ("--checkpoint", "checkpoint.pt", "--episodes", "2", "--repeat-action-probability",
              "0", "--out", str(out), "--video-dir", str(videos), "--video-frames", "50")
    env = {**os.environ, "A3C_TEST_MODE": "1"}
    refused = subprocess.run([sys.executable, str(BENCH / "ship_agent.py"), str(runs / "cp"),
                              "cp", *common, "--min-mean", "100000"], capture_output=True,
                             text=True, timeout=240, env=env, cwd=REPO)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "not shipped" in refused.stderr and "100000" in refused.stderr
    assert not out.exists() or not any(out.iterdir()), "a refused agent left files behind"

    # Every Pong game ends between -21 and +21, so a floor of -21 always ships.
    _bench("ship_agent.py", str(runs / "cp"), "cp", *common, "--min-mean=-21")
    assert {p.name for p in out.iterdir()} == {"cp.pt", "cp.eval.json", "cp.train.json"}
    evaluation = json.loads((out / "cp.eval.json").read_text())
    assert evaluation["episodes"] == 2 and len(evaluation["returns"]) == 2
    assert evaluation["mean_return"] == sum(evaluation["returns"]) / 2 >= -21
    # The training record says when the shipped file was saved: checkpoint.pt at the run's end,
    # the same step count as the run's last metrics row.
    metrics = (runs / "cp" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(metrics[-1])
    training = json.loads((out / "cp.train.json").read_text())
    assert training["shipped_at"]["steps"] == last["steps"]
    assert training["shipped_at"]["time_s"] == pytest.approx(last["time_s"], abs=0.01)
    assert (videos / "cp.mp4").read_bytes()[4:8] == b"ftyp"
    strip = (videos / "cp.png").read_bytes()
    assert strip[:8] == b"\x89PNG\r\n\x1a\n"  # the frames a code host shows
    # --strip-only redraws the strip of an agent already shipped, touching nothing else.
    (videos / "cp.png").unlink()
    _bench("ship_agent.py", "--strip-only", "cp", "--out", str(out), "--video-dir", str(videos),
           "--video-frames", "50")
    assert (videos / "cp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in out.iterdir()} == {"cp.pt", "cp.eval.json", "cp.train.json"}
    # Shipping again without --overwrite is refused, and the shipped agent stays.
    before = (out / "cp.pt").read_bytes()
    again = subprocess.run([sys.executable, str(BENCH / "ship_agent.py"), str(runs / "cp"),
                            "cp", *common], capture_output=True, text=True, timeout=240,
                           env=env, cwd=REPO)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "cp.pt").read_bytes() == before


def test_ray_throughput_measures_both_backends_and_the_wire(tmp_path: Path) -> None:
    if not os.environ.get("A3C_REQUIRE_RAY"):  # make test installs Ray: there it must run
        pytest.importorskip("ray")
    _bench("ray_throughput.py", "--seconds", "3", "--warmup", "2", "--calls", "5", "--out",
           str(tmp_path), "--name", "r", timeout=400)
    result = json.loads((tmp_path / "r.json").read_text())
    _provenance_ok(result)
    assert result["local_steps_per_s"] > 0 and result["ray_steps_per_s"] > 0
    assert result["vector_bytes"] == 4 * result["parameters"] > 0
    assert result["server_work_ms"] > 0
    assert all(result["wire_loopback"][k]["median"] > 0 for k in ("pull_ms", "push_ms"))


def test_profile_worker_splits_the_loop_into_its_steps(tmp_path: Path) -> None:
    _bench("profile_worker.py", "--seconds", "3", "--warmup", "1", "--out", str(tmp_path),
           "--name", "p")
    result = json.loads((tmp_path / "p.json").read_text())
    _provenance_ok(result)
    assert result["steps"] > 0
    shares = {c["what"]: c["share"] for c in result["callees"] if c["what"]}
    assert sum(c["share"] for c in result["callees"]) == pytest.approx(1.0, abs=0.01)
    for step in ("environment step (ALE emulator, frame skip, preprocessing wrappers)",
                 "LOSS: backward pass", "UPDATE: clip, hand the gradients over, shared Adam step"):
        assert shares[step] > 0, step


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_allocator_compares_glibc_defaults_with_freed_memory_kept(tmp_path: Path) -> None:
    _bench("allocator.py", "--seconds", "2", "--warmup", "1", "--out", str(tmp_path),
           "--name", "a")
    result = json.loads((tmp_path / "a.json").read_text())
    _provenance_ok(result)
    default, kept = result["glibc_default"], result["kept"]
    assert default["steps"] > 0 and kept["steps"] > 0
    assert default["peak_rss_mb"] > 0 and kept["peak_rss_mb"] > 0
    # A count, not a speed: kept memory is taken again without faulting.
    assert kept["faults_per_step"] < default["faults_per_step"] / 4
    assert result["kept_over_default"] > 0


def test_lost_points_keeps_the_steps_before_every_point_lost(tmp_path: Path) -> None:
    # The timeline's first stage sits in a corner: it loses all 21 points of its game.
    _bench("lost_points.py", "pretrained:timeline/pong-corner", "--episodes", "1",
           "--context", "5", "--out", str(tmp_path), "--name", "l")
    result = json.loads((tmp_path / "l.json").read_text())
    _provenance_ok(result)
    assert result["scores"] == [-21.0] and result["points_lost"] == 21 == len(result["lost"])
    for point in result["lost"]:
        assert len(point["steps"]) == 5 and point["steps"][-1]["step"] == point["step"]
        assert point["steps"][-1]["reward"] == -1.0
        assert all(0 <= s["ball_y"] <= 255 and len(s["probs"]) == 6 for s in point["steps"])


def test_lost_points_refuses_an_agent_of_another_game_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "lost_points.py"),
                           "pretrained:spaceinvaders", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "A3C_TEST_MODE": "1"})
    assert proc.returncode == 2 and "SpaceInvaders" in proc.stderr and "Pong" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_game_ends_tells_how_each_spaceinvaders_game_ended(tmp_path: Path) -> None:
    _bench("game_ends.py", "pretrained:spaceinvaders", "--episodes", "1", "--out", str(tmp_path),
           "--name", "g")
    result = json.loads((tmp_path / "g.json").read_text())
    _provenance_ok(result)
    (game,) = result["games"]
    assert game["ended"] in ("invaded", "last life", "cut short")
    # SpaceInvaders starts with 3 lives; the counter ends at 0 whichever way the game ended.
    assert 1 <= len(game["lives_lost"]) <= 3 and game["lives_lost"][-1]["lives_left"] == 0
    if game["ended"] == "invaded":
        assert game["lives_before_last_step"] >= 2
    elif game["ended"] == "last life":
        assert game["lives_before_last_step"] == 1 and len(game["lives_lost"]) == 3
    assert game["lives_lost"][-1]["step"] == game["steps"] - 1
    steps = [life["step"] for life in game["lives_lost"]]
    assert steps == sorted(steps) and all(0 <= s < game["steps"] for s in steps)
    assert all(0 <= life["score"] <= game["score"] for life in game["lives_lost"])
    assert result["by_ending"] == {game["ended"]: {
        "games": 1, "mean_score": game["score"], "min_score": game["score"],
        "max_score": game["score"]}}


def test_game_ends_refuses_an_agent_of_another_game_with_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "game_ends.py"), "pretrained:pong",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "A3C_TEST_MODE": "1"})
    assert proc.returncode == 2 and "Pong" in proc.stderr and "SpaceInvaders" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_stop_latency_times_a_stop(tmp_path: Path) -> None:
    _bench("stop_latency.py", "--load", "0", "--repeats", "1", "--out", str(tmp_path),
           "--name", "s")
    result = json.loads((tmp_path / "s.json").read_text())
    _provenance_ok(result)
    assert {c["signal"] for c in result["cases"]} == {"ctrl-c", "sigterm"}
    for case in result["cases"]:
        (run,) = case["runs"]
        assert run["children"] == 3 and run["exit_code"] in (130, 143)
        assert 0 <= run["children_s"] <= run["all_s"] and run["trainer_s"] <= run["all_s"]


def test_timeline_plays_each_snapshot_and_ships_the_stages(tmp_path: Path) -> None:
    from a3c_course.checkpoint import load_model, save_checkpoint
    from a3c_course.config import make_config
    from a3c_course.envs import env_spaces
    from a3c_course.models import build_model
    from a3c_course.rundir import snapshot_path

    run = tmp_path / "pong-run"
    config = make_config(env="pong", model="stack", num_workers=2)
    obs_shape, n_actions = env_spaces(config)
    for time_s, steps in ((120.0, 50_000), (240.0, 100_000)):
        path = snapshot_path(run, time_s)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, config, build_model(config, n_actions, obs_shape), None,
                        {"time_s": time_s, "steps": steps})
    (run / "emulator_speed.json").write_text(json.dumps(
        {"emulator_steps_per_s": 4000.0, "emulator_steps_per_s_per_process": 2000.0}))
    ship, images, out = tmp_path / "ship", tmp_path / "images", tmp_path / "results"
    proc = _bench("timeline.py", str(run), "--episodes", "1", "--ship", "--out", str(out),
                  "--ship-dir", str(ship), "--video-dir", str(images))
    result = json.loads((out / "timeline-pong-run.json").read_text())
    _provenance_ok(result)
    assert [s["minutes"] for s in result["snapshots"]] == [2.0, 4.0]
    assert [s["steps"] for s in result["snapshots"]] == [50_000, 100_000]
    assert result["emulator_steps_per_s"] == 4000.0  # the run's, kept beside its minutes
    first = result["snapshots"][0]
    assert len(first["scores"]) == 1 and first["mean"] == first["scores"][0] <= -15  # untrained
    assert result["stages"]["corner"] == first["snapshot"]
    assert result["stages"]["winning"] is None and "not reached" in proc.stdout
    assert set(result["shipped"]) <= set(result["stages"]) and "corner" in result["shipped"]
    model, shipped_config = load_model(ship / "pong-corner.pt")
    assert shipped_config == config
    for suffix in (".mp4", ".png"):
        assert (images / f"timeline-pong-corner{suffix}").stat().st_size > 0


def test_timeline_refuses_a_run_without_snapshots(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "timeline.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "snapshot_minutes" in proc.stderr


def test_select_agent_plays_each_saved_weights_on_the_same_seeds(tmp_path: Path) -> None:
    import torch

    from a3c_course.checkpoint import load_model, save_checkpoint
    from a3c_course.config import make_config
    from a3c_course.envs import env_spaces
    from a3c_course.evaluator import evaluate_model
    from a3c_course.models import build_model
    from a3c_course.rundir import snapshot_path

    # CartPole: an untrained agent's greedy score there depends on its weights and the seed
    # (an untrained Pong agent loses 21-0 whatever they are).
    run = tmp_path / "cp-run"
    config = make_config(env="CartPole-v1", num_workers=2)
    obs_shape, n_actions = env_spaces(config)
    files = {snapshot_path(run, 120.0): 50_000, snapshot_path(run, 240.0): 100_000,
             run / "best.pt": 80_000, run / "checkpoint.pt": 120_000}
    for i, (path, steps) in enumerate(files.items()):
        torch.manual_seed(i)  # four different sets of weights
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, config, build_model(config, n_actions, obs_shape), None,
                        {"time_s": 60.0 * i, "steps": steps})
    (run / "metrics.jsonl").write_text("")
    out = tmp_path / "results"
    _bench("select_agent.py", str(run), "--episodes", "3", "--seed", "7", "--from-steps",
           "60000", "--repeat-action-probability", "0", "--out", str(out))
    result = json.loads((out / "select-cp-run.json").read_text())
    _provenance_ok(result)
    # The snapshot taken before --from-steps is left out; best.pt and checkpoint.pt never are.
    found = result["candidates"]
    assert [c["steps"] for c in found] == [80_000, 100_000, 120_000]
    assert [c["file"] for c in found] == ["best.pt", "snapshots/000240s.pt", "checkpoint.pt"]
    # Each file is played greedily on the same seeds: the scores evaluate_model gives it.
    other_seeds = []
    for candidate in found:
        model, played = load_model(run / candidate["file"])
        assert candidate["returns"] == evaluate_model(model, played, 3, seed=7)
        assert candidate["mean_return"] == pytest.approx(sum(candidate["returns"]) / 3, abs=1e-3)
        assert candidate["min_return"] == min(candidate["returns"])
        other_seeds.append(evaluate_model(model, played, 3, seed=1000) != candidate["returns"])
    assert any(other_seeds)  # the seeds matter, so the check above could fail
    assert len({c["mean_return"] for c in found}) > 1
    assert result["best"] == max(found, key=lambda c: c["mean_return"])["file"]
    # A folder that is no run, or a bad count, is refused with exit status 2.
    for args in ([str(tmp_path)], [str(run), "--episodes", "0"]):
        bad = subprocess.run([sys.executable, str(BENCH / "select_agent.py"), *args],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert bad.returncode == 2 and ("metrics.jsonl" in bad.stderr or "--episodes" in bad.stderr)


def test_measured_processes_end_when_the_benchmark_is_killed(tmp_path: Path) -> None:
    """A benchmark killed mid-measurement (SIGKILL: no clean-up runs) leaves no process
    stepping the emulator behind: each watches its parent."""
    import signal
    import time

    import psutil

    env = {**os.environ, "A3C_TEST_MODE": "1"}
    proc = subprocess.Popen([sys.executable, str(BENCH / "emulator.py"), "--workers", "2",
                             "--seconds", "600", "--warmup", "1", "--out", str(tmp_path)],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 120
        children: list[psutil.Process] = []
        while len(children) < 2 and time.monotonic() < deadline:
            # The two measured processes (multiprocessing's resource tracker is no spawn_main).
            children = [c for c in parent.children() if "spawn_main" in " ".join(c.cmdline())]
            time.sleep(0.5)
        assert len(children) >= 2, "the measured processes never started"
        time.sleep(3)  # well into the measurement
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    gone, alive = psutil.wait_procs(children, timeout=30)
    for child in alive:
        child.kill()
    assert not alive, f"{len(alive)} measured process(es) outlived the killed benchmark"
