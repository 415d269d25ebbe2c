"""children.py: the contract between the trainer and its children, and the portable child
set-up (priority, parent watch, seeds), including the paths taken on Windows."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from a3c_course import children
from a3c_course.children import (
    Confirmation,
    Episode,
    ParentWatch,
    SharedFlag,
    Totals,
    WorkerCounters,
    child_seed,
    first_seeds,
    lower_priority,
    wait_for,
)


def test_shared_flag_is_shared_clears_and_wakes_a_waiter() -> None:
    flag = SharedFlag()
    assert not flag.is_set() and flag._flag.is_shared()
    assert wait_for(flag, 0.05) is False
    flag.set()
    assert flag.is_set()
    flag.clear()
    assert not flag.is_set()
    threading.Timer(0.2, flag.set).start()
    started = time.monotonic()
    assert wait_for(flag, 10) is True
    assert time.monotonic() - started < 5  # woke when set, not at the timeout


def test_child_seeds_are_distinct() -> None:
    seeds = {child_seed(0, kind, index, generation, start) for kind in (0, 1)
             for index in range(16) for generation in range(3) for start in range(1, 4)}
    assert len(seeds) == 2 * 16 * 3 * 3
    assert child_seed(5, 0, 1) == child_seed(5, 0, 1)
    first = first_seeds(5, 3, generation=0)
    assert list(first) == ["worker-0", "worker-1", "worker-2", "evaluator"]
    assert len(set(first.values())) == 4
    assert first == first_seeds(5, 3, generation=0) != first_seeds(5, 3, generation=1)


def test_worker_counters_sum_per_worker_rows_into_totals() -> None:
    counters = WorkerCounters(2)
    assert counters.table.is_shared()
    counters.add_steps(0, 20)
    counters.add_steps(1, 20)
    counters.add_update(0, policy_loss=0.5, value_loss=2.0, entropy=1.5, grad_norm=3.0)
    counters.add_update(1, policy_loss=-0.5, value_loss=4.0, entropy=1.7, grad_norm=5.0)
    counters.add_nonfinite(1)
    totals = counters.totals()
    assert (totals.steps, totals.updates, totals.nonfinite) == (40, 2, 1)
    assert counters.steps() == 40
    assert counters.worker_totals(1).value_loss == 4.0
    diagnostics = totals.minus(Totals(steps=20)).diagnostics()
    assert diagnostics == {"policy_loss": 0.0, "value_loss": 3.0, "entropy": 1.6,
                           "grad_norm": 4.0, "skipped_share": pytest.approx(1 / 3, abs=1e-4)}
    assert Totals().diagnostics()["entropy"] is None  # no update: no mean, not a zero


def test_events_pickle_by_value() -> None:
    """Events cross a pipe as plain pickles: confirmation weights are numpy, not tensors
    (torch would pass tensors as shared-memory handles that die with the sender)."""
    weights = {"w": np.arange(4, dtype=np.float32)}
    event = Confirmation([18.0, 20.0], 100, weights, 0)
    again = pickle.loads(pickle.dumps(event))
    assert again.mean == 19.0 and np.array_equal(again.weights["w"], weights["w"])
    assert pickle.loads(pickle.dumps(Episode(1, -21.0, 764))) == Episode(1, -21.0, 764)


def test_lower_priority_renices_on_posix() -> None:
    code = ("from a3c_course.children import lower_priority; import psutil; "
            "print(lower_priority(10), psutil.Process().nice())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    if os.name == "posix":
        assert out == ["True", "10"]
    assert lower_priority(0) is False  # 0: leave the priority as it is


def test_lower_priority_uses_a_priority_class_on_windows(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """Windows has no niceness: the evaluator asks for a lower priority class instead."""
    asked: list[object] = []

    class FakeProcess:
        def nice(self, value: object) -> None:
            asked.append(value)

    monkeypatch.setattr(children.sys, "platform", "win32")
    monkeypatch.setattr(psutil, "Process", FakeProcess)
    monkeypatch.setattr(psutil, "BELOW_NORMAL_PRIORITY_CLASS", 0x4000, raising=False)
    monkeypatch.setattr(psutil, "IDLE_PRIORITY_CLASS", 0x40, raising=False)
    assert lower_priority(10) is True and asked == [0x4000]
    assert lower_priority(19) is True and asked == [0x4000, 0x40]


def test_lower_priority_degrades_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def nice(self, value: object) -> None:
            raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "Process", Refusing)
    assert lower_priority(10) is False  # the evaluator goes on at normal priority


@pytest.mark.parametrize("use_ppid", [True, False], ids=["posix-ppid", "psutil"])
def test_parent_watch_sees_the_parent_die(use_ppid: bool, tmp_path) -> None:
    """A child of a parent that is then SIGKILLed notices within a second, by re-parenting
    (POSIX) or by looking the parent up with psutil (the Windows path, run here too)."""
    if use_ppid and os.name != "posix":
        pytest.skip("re-parenting is POSIX")
    out = tmp_path / "child.txt"
    child_code = (
        "import os, sys, time\n"
        "from a3c_course.children import ParentWatch\n"
        f"watch = ParentWatch(os.getppid(), use_ppid={use_ppid})\n"
        f"open({str(out)!r}, 'w').write('started')\n"
        "deadline = time.monotonic() + 60\n"
        "while watch.alive() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        f"open({str(out)!r}, 'w').write('parent gone' if not watch.alive() else 'timeout')\n")
    parent_code = ("import subprocess, sys, time\n"
                   f"subprocess.Popen([sys.executable, '-c', {child_code!r}])\n"
                   "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_text() == "started"):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        assert ParentWatch(parent.pid, use_ppid=False).alive()
        parent.kill()  # SIGKILL: no clean-up; until waited for, a zombie on POSIX
        deadline = time.monotonic() + 10
        while out.read_text() == "started":
            assert time.monotonic() < deadline, "the child did not notice its parent's death"
            time.sleep(0.05)
        assert out.read_text() == "parent gone"
    finally:
        parent.kill()
        parent.wait()


def test_parent_watch_takes_a_zombie_for_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    watch_before_reaping = ParentWatch(proc.pid, use_ppid=False)
    assert watch_before_reaping.alive() is False
    proc.wait()
    assert ParentWatch(proc.pid, use_ppid=False).alive() is False


_CHURN = """
import resource, sys, torch
from a3c_course.children import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else None)
def churn():  # what an update does: tensors of a megabyte each, written, then all freed
    held = [torch.ones(256 * 1024) for _ in range(20)]
    del held
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_keep_freed_memory_ends_the_page_faults_of_repeated_allocations() -> None:
    faults = {}
    for variant in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", _CHURN, variant], capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
        assert out[0] == ("True" if variant == "keep" else "None")
        faults[variant] = int(out[1])
    # 20 rounds of 20 MB freed and taken again: by default ~100,000 faults (one a 4 kB page),
    # in some runs ~10,000 (the same machine, the same code: how glibc places the blocks
    # varies from process to process); kept, ~500 in every run measured.
    assert faults["default"] > 5_000
    assert faults["keep"] < faults["default"] / 10


def test_keep_freed_memory_changes_nothing_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert children.keep_freed_memory() is False
