"""The `a3c` command as a user runs it: every bad input exits 2 with one line naming the value.

All the bad-input commands run once, side by side, in a module fixture (each pays torch's
import time); the parametrized test then checks one command's outcome.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from proc_utils import run_a3c

from a3c_course.checkpoint import save_checkpoint
from a3c_course.config import make_config
from a3c_course.models import build_model
from a3c_course.shared_adam import SharedAdam

PONG_ACTIONS = 6

# (id, arguments, strings the one stderr line must contain). "{d}" is the scratch directory.
CASES: list[tuple[str, list[str], list[str]]] = [
    ("unknown-game", ["train", "--env", "tetris"], ["tetris"]),
    ("workers-0", ["train", "--workers", "0"], ["--workers", "0"]),
    ("workers-negative", ["train", "--workers", "-1"], ["--workers", "-1"]),
    ("steps-0", ["train", "--steps", "0"], ["--steps", "0"]),
    ("minutes-0", ["train", "--minutes", "0"], ["--minutes", "0"]),
    ("minutes-negative", ["train", "--minutes", "-5"], ["--minutes", "-5"]),
    ("lr-0", ["train", "--lr", "0"], ["--lr", "0"]),
    ("lr-negative", ["train", "--lr", "-1"], ["--lr", "-1"]),
    ("lr-nan", ["train", "--lr", "nan"], ["--lr", "nan"]),
    ("unknown-preset", ["train", "--preset", "turbo"], ["--preset", "turbo"]),
    ("set-unknown-field", ["train", "--set", "bad_field=1"], ["bad_field"]),
    ("set-bad-float", ["train", "--set", "lr=abc"], ["lr", "abc"]),
    ("set-nan", ["train", "--set", "lr=nan"], ["lr", "nan"]),
    ("sticky-2", ["train", "--repeat-action-probability", "2"],
     ["--repeat-action-probability", "2"]),
    ("resume-empty-dir", ["train", "--resume", "--run-dir", "{d}/empty"], ["{d}/empty"]),
    ("existing-run", ["train", "--steps", "20", "--workers", "1", "--run-dir", "{d}/run"],
     ["{d}/run", "--resume", "--overwrite"]),
    ("resume-and-overwrite", ["train", "--resume", "--overwrite", "--run-dir", "{d}/run"],
     ["resume", "overwrite"]),
    ("resume-without-optimizer", ["train", "--resume", "--run-dir", "{d}/run"],
     ["{d}/run/checkpoint.pt", "optimizer"]),
    ("resume-spent-budget", ["train", "--resume", "--run-dir", "{d}/spent", "--steps", "100"],
     ["500 steps", "max_steps=100"]),
    ("run-dir-is-a-file", ["train", "--steps", "20", "--run-dir", "{d}/empty.pt"],
     ["{d}/empty.pt", "a file"]),
    ("evaluate-missing", ["evaluate", "{d}/nowhere.pt"], ["{d}/nowhere.pt"]),
    ("evaluate-unknown-pretrained", ["evaluate", "pretrained:nobody"], ["nobody"]),
    ("evaluate-empty", ["evaluate", "{d}/empty.pt"], ["{d}/empty.pt"]),
    ("evaluate-truncated", ["evaluate", "{d}/truncated.pt"], ["{d}/truncated.pt"]),
    ("evaluate-random-bytes", ["evaluate", "{d}/random.pt"], ["{d}/random.pt"]),
    ("evaluate-code-pickle-torch", ["evaluate", "{d}/evil.pt"], ["{d}/evil.pt"]),
    ("evaluate-code-pickle-raw", ["evaluate", "{d}/evil.pkl"], ["{d}/evil.pkl"]),
    ("evaluate-foreign-dict", ["evaluate", "{d}/foreign.pt"], ["{d}/foreign.pt"]),
    ("evaluate-bare-state-dict", ["evaluate", "{d}/state_dict.pt"], ["{d}/state_dict.pt"]),
    ("evaluate-video-not-mp4", ["evaluate", "{d}/good.pt", "--video", "{d}/game.avi"],
     ["{d}/game.avi", ".mp4"]),
]


class _RunsCode:
    """Unpickling this calls exec: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bad checkpoints of every kind, an empty directory and a directory holding a run."""
    d = tmp_path_factory.mktemp("cli")
    config = make_config(env="pong", num_workers=1)
    model = build_model(config, PONG_ACTIONS)
    save_checkpoint(d / "good.pt", config, model, counters={"steps": 0})
    good = (d / "good.pt").read_bytes()
    (d / "empty").mkdir()
    (d / "empty.pt").write_bytes(b"")
    (d / "truncated.pt").write_bytes(good[: len(good) // 2])
    (d / "random.pt").write_bytes(os.urandom(4096))
    torch.save({"payload": _RunsCode(d / "PWNED")}, d / "evil.pt")
    (d / "evil.pkl").write_bytes(pickle.dumps(_RunsCode(d / "PWNED")))
    torch.save({"weights": torch.zeros(3), "epoch": 7}, d / "foreign.pt")
    torch.save(model.state_dict(), d / "state_dict.pt")
    run = d / "run"
    run.mkdir()
    (run / "config.json").write_text(config.to_json())
    (run / "metrics.jsonl").write_text('{"event": "start", "time_s": 0.0, "steps": 0}\n')
    (run / "checkpoint.pt").write_bytes(good)
    spent = d / "spent"  # a run that has already taken 500 steps
    spent.mkdir()
    optimizer = SharedAdam(model.parameters())
    save_checkpoint(spent / "checkpoint.pt", config, model, optimizer, counters={"steps": 500})
    return d


class Outcomes(NamedTuple):
    results: dict[str, subprocess.CompletedProcess[str]]  # by case id
    run_dir_unchanged: bool  # the refused run directory, compared before and after


@pytest.fixture(scope="module")
def outcomes(scratch: Path) -> Outcomes:
    """Every command of CASES, run once (four at a time) from the scratch directory."""
    run_before = _snapshot(scratch / "run")

    def run(case: tuple[str, list[str], list[str]]) -> subprocess.CompletedProcess[str]:
        args = [a.replace("{d}", str(scratch)) for a in case[1]]
        return run_a3c(*args, timeout=120, cwd=scratch)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip([c[0] for c in CASES], pool.map(run, CASES), strict=True))
    return Outcomes(results, _snapshot(scratch / "run") == run_before)


@pytest.mark.parametrize(("case", "expected"), [(c[0], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(case: str, expected: list[str], scratch: Path,
                                         outcomes: Outcomes) -> None:
    result = outcomes.results[case]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("a3c: error: ")
    for text in expected:
        assert text.replace("{d}", str(scratch)) in lines[0]
    assert result.stdout == ""


def test_no_bad_input_left_anything_behind(scratch: Path, outcomes: Outcomes) -> None:
    """The refused run directory is byte-for-byte and mtime-for-mtime as it was; no pickle ran;
    no run was started anywhere."""
    assert outcomes.run_dir_unchanged
    assert not (scratch / "PWNED").exists(), "loading a checkpoint ran code"
    assert not (scratch / "runs").exists()
    assert not (scratch / "game.avi").exists()
    assert list((scratch / "empty").iterdir()) == []


def test_refused_pickle_says_why(outcomes: Outcomes) -> None:
    assert "could run code" in outcomes.results["evaluate-code-pickle-torch"].stderr
    assert "not an a3c-course checkpoint" in outcomes.results["evaluate-foreign-dict"].stderr


def test_train_help_lists_the_flags(tmp_path: Path) -> None:
    result = run_a3c("train", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for flag in ("--env", "--model", "--preset", "--workers", "--steps", "--minutes",
                 "--target-score", "--repeat-action-probability", "--lr", "--seed",
                 "--run-dir", "--resume", "--overwrite", "--set", "--no-progress"):
        assert flag in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_evaluate_help_and_no_command(tmp_path: Path) -> None:
    result = run_a3c("evaluate", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--episodes" in result.stdout and "--video" in result.stdout
    result = run_a3c(cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
