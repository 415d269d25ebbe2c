"""Helpers for the tests that run real processes: the `a3c` command, a live trainer, its children.

Every process a test starts is tracked by pid (with its start time, so a reused pid is never
signalled) and killed in `Trainer.__exit__` if it is still there: a failing test leaves no
orphans behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

A3C = [sys.executable, "-m", "a3c_course"]
ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def a3c_env(**extra: str) -> dict[str, str]:
    """The environment for a child `a3c`: ours, without test hooks unless asked for."""
    env = {k: v for k, v in os.environ.items() if k != "A3C_CHECKPOINT_WRITE_DELAY"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_a3c(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `a3c ARGS...` to the end and capture its output."""
    return subprocess.run([*A3C, *args], capture_output=True, text=True, timeout=timeout,
                          env=env or a3c_env(), cwd=cwd or ROOT)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a (possibly live) JSON-lines file; a half-written last line is
    skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics.jsonl."""
    return read_jsonl(run_dir / "metrics.jsonl")


def stderr_tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def spawned_only(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes started by multiprocessing's spawn (workers, evaluator), leaving out its
    resource tracker, which lives as long as its interpreter, not as long as a run."""
    found = []
    for proc in procs:
        try:
            if "spawn_main" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def _ctrl_c_as_in_a_terminal() -> dict[str, Any]:
    """Start the trainer with Ctrl-C (SIGINT) handled, as it is in a terminal, whatever the
    test runner inherited: a shell ignores SIGINT in what it starts in the background, and
    the children inherit that."""
    if sys.platform == "win32":
        return {}
    return {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}


class Trainer:
    """`a3c train ... --run-dir RUN --no-progress --json` in the background, with its children
    watched."""

    def __init__(self, run_dir: Path, *args: str, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.run_dir = run_dir
        self.out_path = run_dir.parent / f"{run_dir.name}.stdout"
        self.err_path = run_dir.parent / f"{run_dir.name}.stderr"
        cmd = command or [*A3C, "train", *args, "--run-dir", str(run_dir), "--no-progress",
                          "--json"]
        # Output goes to files, not pipes: a full pipe nobody reads would block the trainer.
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=err, env=env or a3c_env(),
                                          cwd=ROOT, **_ctrl_c_as_in_a_terminal())
        self.process = psutil.Process(self.popen.pid)
        self.seen: dict[int, psutil.Process] = {}

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL the trainer and every child ever seen that still runs (by pid, never by name)."""
        self.children()
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        for proc in self.seen.values():
            try:
                proc.kill()  # psutil refuses if the pid now belongs to another process
            except psutil.NoSuchProcess:
                pass
        wait_gone(list(self.seen.values()), timeout=5)

    # ------------------------------------------------------------------ observation
    def children(self) -> list[psutil.Process]:
        """The trainer's live descendants now; every one is remembered for the clean-up."""
        try:
            current = self.process.children(recursive=True)
        except psutil.NoSuchProcess:
            current = []
        for proc in current:
            self.seen.setdefault(proc.pid, proc)
        return current

    def spawned(self) -> list[psutil.Process]:
        """Workers and evaluator: the spawn children (not multiprocessing's resource tracker)."""
        return spawned_only(self.children())

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.run_dir)

    def stderr(self) -> str:
        return self.err_path.read_text() if self.err_path.exists() else ""

    def stdout(self) -> str:
        return self.out_path.read_text() if self.out_path.exists() else ""

    def wait_for(self, check: Callable[[], T], what: str, timeout: float = 40) -> T:
        """Poll `check` until it returns something truthy; fail if the trainer ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if self.popen.poll() is not None:
                raise AssertionError(f"the trainer exited ({self.popen.returncode}) before "
                                     f"{what}:\n{stderr_tail(self.stderr())}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n"
                             f"{stderr_tail(self.stderr())}")

    def wait_for_row(self, event: str, timeout: float = 40,
                     where: Callable[[dict[str, Any]], bool] = lambda row: True
                     ) -> dict[str, Any]:
        """The first metrics row of kind `event` (that satisfies `where`)."""
        def find() -> dict[str, Any] | None:
            return next((r for r in self.rows() if r["event"] == event and where(r)), None)

        return self.wait_for(find, f"a {event!r} row", timeout)

    def finish(self, timeout: float) -> int:
        """Wait for the trainer to end on its own, noting its children meanwhile."""
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            self.children()
            if time.monotonic() > deadline:
                raise AssertionError(f"the trainer still runs after {timeout} s:\n"
                                     f"{stderr_tail(self.stderr())}")
            time.sleep(0.2)
        return self.popen.returncode

    def summary(self) -> dict[str, Any]:
        """The JSON line `a3c train` prints when it ends."""
        lines = self.stdout().strip().splitlines()
        assert lines, f"no summary on stdout; stderr:\n{stderr_tail(self.stderr())}"
        return json.loads(lines[-1])

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill9(self) -> None:
        self.popen.send_signal(signal.SIGKILL)

    def wait(self, timeout: float = 30) -> int:
        return self.popen.wait(timeout=timeout)


def _running(proc: psutil.Process) -> bool:
    # An orphan that exited may stay a zombie until init reaps it: it runs no code any more.
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for `procs` to exit; return those still running."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def assert_all_gone(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """Every process in `procs` has exited within `timeout` seconds."""
    survivors = []
    for proc in wait_gone(procs, timeout):
        try:
            survivors.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    assert not survivors, f"still running {timeout} s later: {survivors}"


class CpuLoad:
    """`per_core` busy processes per core for the duration of a `with` block: a laptop that
    is never quiet. Every one is killed on the way out."""

    def __init__(self, per_core: int = 2) -> None:
        self.count = per_core * (os.cpu_count() or 1)
        self.procs: list[subprocess.Popen[bytes]] = []

    # Busy, but gone with the test process even when that is killed before its clean-up.
    BUSY = ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
            "    for _ in range(1_000_000):\n        pass\n")

    def __enter__(self) -> CpuLoad:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", self.BUSY]))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)
