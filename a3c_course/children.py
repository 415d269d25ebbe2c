"""The contract between the trainer and its children (workers and the evaluator).

Everything that crosses from a child to the trainer, or that every child needs, is here and
nowhere else:

- **SharedState**: what a child is handed. The shared model and Adam, the per-worker
  counters (:class:`WorkerCounters`), the ``stop`` and ``pause`` flags and an event sink.
  The local backend fills it with shared memory; the Ray backend with stand-ins that talk
  to a parameter server. The worker and evaluator loops cannot tell the difference.
- **Events**: the typed messages a child sends (:class:`Episode`, :class:`Evaluation`,
  :class:`Confirmation`, :class:`Fatal`) and the one a backend adds (:class:`Restarted`).
- **Backend**: the interface a backend implements for the trainer (start, poll, stop,
  sync the model), and :class:`Poll`, what one poll returns.
- **Child set-up**: one torch thread, Ctrl-C left to the trainer, freed memory kept (glibc),
  a lower priority for the evaluator, a watch on the parent so no child outlives the trainer,
  and the child seeds. Each works on Linux, macOS and Windows (psutil where the standard
  library has no portable call).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

# ---------------------------------------------------------------------- errors and codes
EXIT_DIVERGED = 3  # a worker's exit code after MAX_NONFINITE_IN_A_ROW non-finite updates
STOP_GRACE_S = 1.5  # children get this long to finish after the stop flag, then are ended
WORKER_ROLE, EVALUATOR_ROLE = 0, 1  # the first element of a child's seed path


class TrainingError(RuntimeError):
    """The run had to stop: a child kept dying, or the model diverged."""


def diverged_message(child: str) -> str:
    return f"{child} stopped: the model diverged (non-finite gradients)"


# ---------------------------------------------------------------------- events
@dataclass(frozen=True)
class Episode:
    """A worker finished a training episode (its real, unclipped score)."""

    worker: int
    score: float
    length: int


@dataclass(frozen=True)
class Evaluation:
    """The evaluator finished one greedy episode with the weights it loaded at
    `steps_at_load` (agent steps of this session)."""

    score: float
    length: int
    steps_at_load: int


@dataclass(frozen=True)
class Confirmation:
    """The evaluator confirmed a target-reaching agent: `scores` of `eval_episodes` fresh
    greedy episodes with the same frozen `weights` (numpy arrays by parameter name, so they
    pickle by value through any pipe), loaded at `steps_at_load`; the workers made
    `steps_during` steps meanwhile (0 when they paused)."""

    scores: list[float]
    steps_at_load: int
    weights: dict[str, np.ndarray]
    steps_during: int

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)


@dataclass(frozen=True)
class Fatal:
    """A child met an error the run cannot go on with (a diverged model)."""

    child: str
    message: str


@dataclass(frozen=True)
class Restarted:
    """The backend restarted a child that died after living `lived_s` seconds since its
    start (`exitcode` None when the backend cannot know)."""

    child: str
    exitcode: int | None
    lived_s: float


Event = Episode | Evaluation | Confirmation | Fatal | Restarted


class EventSink(Protocol):
    """Where a child sends its events."""

    def put(self, event: Event) -> None: ...


# ---------------------------------------------------------------------- shared counters
@dataclass
class Totals:
    """Counters summed over the workers: steps, updates, and the sums of the learning
    diagnostics of every applied update (per-step means of each loss term, the gradient's
    norm before clipping)."""

    steps: int = 0
    updates: int = 0
    nonfinite: int = 0
    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    grad_norm: float = 0.0

    def minus(self, earlier: Totals) -> Totals:
        return Totals(*(a - b for a, b in zip(self.as_tuple(), earlier.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, ...]:
        return (self.steps, self.updates, self.nonfinite, self.policy_loss, self.value_loss,
                self.entropy, self.grad_norm)

    def diagnostics(self) -> dict[str, float | None]:
        """Means over the updates these totals count (None when there were none), and the
        share of updates skipped for a non-finite gradient."""
        n = self.updates
        tried = self.updates + self.nonfinite

        def mean(total: float) -> float | None:
            return round(total / n, 5) if n else None

        return {"policy_loss": mean(self.policy_loss), "value_loss": mean(self.value_loss),
                "entropy": mean(self.entropy), "grad_norm": mean(self.grad_norm),
                "skipped_share": round(self.nonfinite / tried, 5) if tried else None}


class WorkerCounters:
    """One row of counters per worker, each written by its own worker only (no lock needed):
    steps, updates, skipped updates and the sums of the diagnostics. In shared memory for
    the local backend; a private copy in a Ray worker, which reports what changed."""

    COLUMNS = ("steps", "updates", "nonfinite", "policy_loss", "value_loss", "entropy",
               "grad_norm")

    def __init__(self, workers: int, shared: bool = True) -> None:
        # float64 counts agent steps exactly up to 2**53.
        self.table = torch.zeros(workers, len(self.COLUMNS), dtype=torch.float64)
        if shared:
            self.table.share_memory_()

    def add_steps(self, worker: int, steps: int) -> None:
        self.table[worker, 0] += steps

    def add_update(self, worker: int, policy_loss: float, value_loss: float, entropy: float,
                   grad_norm: float) -> None:
        row = self.table[worker]
        row[1] += 1
        row[3] += policy_loss
        row[4] += value_loss
        row[5] += entropy
        row[6] += grad_norm

    def add_nonfinite(self, worker: int) -> None:
        self.table[worker, 2] += 1

    def steps(self) -> int:
        """Agent steps of all workers together."""
        return int(self.table[:, 0].sum())

    def worker_totals(self, worker: int) -> Totals:
        return _totals(self.table[worker].tolist())

    def totals(self) -> Totals:
        return _totals(self.table.sum(0).tolist())


def _totals(values: list[float]) -> Totals:
    steps, updates, nonfinite, *sums = values
    return Totals(int(steps), int(updates), int(nonfinite), *sums)


# ---------------------------------------------------------------------- flags and state
class Flag(Protocol):
    """A stop or pause flag as the children see it."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...


def wait_for(flag: Flag, timeout: float) -> bool:
    """Sleep up to `timeout` seconds, waking early once `flag` is set; whether it is set."""
    deadline = time.monotonic() + timeout
    while not flag.is_set() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return flag.is_set()


class SharedFlag:
    """A flag in shared memory (stop, pause), read without any lock.

    multiprocessing.Event takes a lock on every ``is_set()``; a worker killed (SIGKILL, the
    out-of-memory killer) while holding it would block every other process for good. One
    shared byte cannot be left locked.
    """

    def __init__(self) -> None:
        self._flag = torch.zeros(1, dtype=torch.uint8).share_memory_()

    def set(self) -> None:
        self._flag[0] = 1

    def clear(self) -> None:
        self._flag[0] = 0

    def is_set(self) -> bool:
        return bool(self._flag[0])


@dataclass
class SharedState:
    """What the trainer hands to every child."""

    model: Any  # ActorCritic: the shared weights (a mirror of the server's with Ray)
    optimizer: Any  # SharedAdam, or what steps it remotely; workers call step()
    counters: WorkerCounters
    stop: Flag  # set by the trainer to end every child
    pause: Flag  # set by the evaluator while it confirms the target (workers wait)
    events: EventSink  # episodes, evaluations, fatal errors -> trainer


# ---------------------------------------------------------------------- the backend interface
@dataclass
class Poll:
    """What the trainer learns from one look at its children."""

    totals: Totals  # this session's counters, summed over the workers
    events: list[Event] = field(default_factory=list)


class Backend(Protocol):
    """Where the children run. The trainer calls these, and only these, in this order:
    ``start`` once, ``poll`` every fraction of a second, ``sync_model`` before each
    checkpoint, ``stop`` once at the end (also after an error or an interrupt)."""

    name: str

    def start(self, generation: int) -> None:
        """Start the workers and the evaluator (`generation`: how many times the run has
        been resumed, part of every child's seed)."""

    def poll(self) -> Poll:
        """Counters and new events; restarts a child that died (reporting it as
        :class:`Restarted`), reports one that cannot go on as :class:`Fatal`."""

    def sync_model(self) -> bool:
        """Bring the trainer's model and optimizer up to date (False: out of reach)."""

    def stop(self) -> Poll:
        """End every child (stop flag, a grace period, then force); the final counters and
        the events they sent on the way out."""


# ---------------------------------------------------------------------- child set-up
def init_child(threads: int = 1) -> None:
    """Common set-up of every child: the trainer owns Ctrl-C, one torch thread."""
    import cv2

    # The trainer decides how to stop; a Ctrl-C in the terminal reaches the whole process
    # group (the console on Windows), and children dying mid-update would only make noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)  # OpenCV's resize would start a thread pool per process
    keep_freed_memory()


# glibc's mallopt parameters (malloc.h) and the values a child sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD_BYTES = 256 << 20
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit systems


def keep_freed_memory() -> bool:
    """Linux (glibc): keep memory the process frees for its next allocation instead of
    handing it back to the kernel. True if that was set, False (changing nothing) elsewhere.

    Why: every update allocates and frees the same tensors (activations of the loss pass,
    up to megabytes each). By default glibc gives large freed memory back to the kernel
    (blocks above its mmap threshold are unmapped, a free top of the heap is trimmed), so
    every update takes it again as page faults and zeroed pages (`python
    benchmarks/allocator.py` counts them). Other systems' allocators are left as they are.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt: not glibc (musl, ...)
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
                and mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


def lower_priority(nice: int) -> bool:
    """Yield the cores to the workers: niceness `nice` on POSIX, a lower priority class on
    Windows (which has no niceness). False, changing nothing, if the OS refuses."""
    import psutil

    if nice <= 0:
        return False
    try:
        if sys.platform == "win32":
            cls = psutil.IDLE_PRIORITY_CLASS if nice >= 15 else psutil.BELOW_NORMAL_PRIORITY_CLASS
            psutil.Process().nice(cls)
        else:
            psutil.Process().nice(nice)
    except (psutil.Error, OSError, AttributeError):
        return False
    return True


class ParentWatch:
    """Tells a child whether the trainer that started it still runs, so no child outlives
    it (a SIGKILLed trainer runs no clean-up).

    On POSIX an orphan is re-parented at once, so ``os.getppid()`` changing is the cheapest
    sure sign, even while the dead parent is still a zombie. Windows never re-parents: there
    the parent's process is looked up (psutil, which also guards against a reused pid).
    """

    def __init__(self, parent_pid: int, use_ppid: bool | None = None) -> None:
        self.parent_pid = parent_pid
        self.use_ppid = (sys.platform != "win32") if use_ppid is None else use_ppid
        self._process: Any = None
        if not self.use_ppid:
            import psutil

            try:
                self._process = psutil.Process(parent_pid)
            except psutil.Error:
                self._process = None

    def alive(self) -> bool:
        if self.use_ppid:
            return os.getppid() == self.parent_pid
        import psutil

        if self._process is None:
            return False
        try:
            return self._process.is_running() and (
                self._process.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False


def child_seed(seed: int, *path: int) -> int:
    """A seed for one child (role, worker index, resume generation, start count): distinct for
    every path, unlike sums of offsets, which collide."""
    return int(np.random.SeedSequence([seed, *path]).generate_state(1)[0])


def worker_seed(seed: int, index: int, generation: int, starts: int) -> int:
    """The seed of worker `index` at its `starts`-th start in resume `generation`."""
    return child_seed(seed, WORKER_ROLE, index, generation, starts)


def evaluator_seed(seed: int, generation: int, starts: int) -> int:
    return child_seed(seed, EVALUATOR_ROLE, 0, generation, starts)


def first_seeds(seed: int, workers: int, generation: int) -> dict[str, int]:
    """The seeds of every child's first start in a generation (logged in the start row)."""
    seeds = {f"worker-{i}": worker_seed(seed, i, generation, 1) for i in range(workers)}
    seeds["evaluator"] = evaluator_seed(seed, generation, 1)
    return seeds
