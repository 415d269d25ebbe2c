"""The trainer owns every process of a run: it starts them, watches them, restarts a worker
that dies, stops them all (on a budget, a target, an error, Ctrl-C or SIGTERM) and writes the
run directory:

- ``config.json``   the run's :class:`Config`, written first
- ``metrics.jsonl`` one JSON object a line, append-only; every row has ``event``, ``time_s``
  and ``steps``; evaluation rows have ``eval_return``
- ``checkpoint.pt`` model, shared Adam state and counters, replaced atomically
- ``best.pt``       the agent whose confirmed greedy mean was best (when a target is set)

The children are processes on this machine (``backend="local"``) or actors on a Ray cluster
(``backend="ray"``, :mod:`a3c_course.ray_backend`); everything above is the same for both.
"""

from __future__ import annotations

import contextlib
import copy
import json
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import (
    CheckpointError,
    check_compatible,
    check_optimizer_state,
    load_checkpoint,
    save_checkpoint,
)
from .config import Config, ConfigError
from .envs import env_spaces
from .evaluator import evaluator_process
from .models import build_model
from .shared_adam import SharedAdam
from .worker import EXIT_DIVERGED, SharedFlag, SharedState, child_seed, train_worker

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt")
POLL_S = 0.25  # how often the trainer looks at its children and the event queue
PROGRESS_ROW_S = 10.0  # how often a throughput row goes to metrics.jsonl
MAX_RESTARTS = 5  # a child that dies this many times ...
RESTART_WINDOW_S = 60.0  # ... within this many seconds stops the run
STOP_GRACE_S = 3.0  # children get this long to finish after the stop event, then are killed
BACKENDS = ("local", "ray")


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists, or has nothing to resume)."""


class TrainingError(RuntimeError):
    """The run had to stop: a child kept dying, or the model diverged."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same clean stop as Ctrl-C."""


@dataclass
class TrainResult:
    """How a run ended."""

    run_dir: Path
    stop_reason: str  # steps | minutes | target | interrupted | terminated | error
    steps: int
    time_s: float
    episodes: int
    restarts: int
    last_eval: float | None
    confirmed_mean: float | None


def default_run_dir(config: Config) -> Path:
    game = config.env_id.split("/")[-1].split("-")[0].lower()
    return Path("runs") / f"{game}-{config.model}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a run unless told; on resume, require a checkpoint."""
    if resume and overwrite:
        raise RunDirError("resume and overwrite exclude each other: choose one")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"run directory {str(run_dir)!r} is a file: give a directory")
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if resume:
        if not (run_dir / "checkpoint.pt").is_file():
            raise RunDirError(f"cannot resume: {str(run_dir)!r} holds no checkpoint.pt")
        return
    if existing and not overwrite:
        raise RunDirError(
            f"run directory {str(run_dir)!r} already holds a run ({', '.join(existing)}): "
            "resume it (--resume), overwrite it (--overwrite) or choose another --run-dir")
    if existing:
        for name in existing:
            (run_dir / name).unlink()
        for extra in run_dir.glob("metrics.discarded.jsonl"):
            extra.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


class _Metrics:
    """metrics.jsonl: the trainer is its only writer."""

    def __init__(self, path: Path, keep_rows: int | None) -> None:
        self.path = path
        if keep_rows is not None and path.exists():
            # Resume: rows logged after the checkpoint belong to training that was lost with
            # the crash. Keep them, but out of the way, so the curve stays one timeline.
            lines = path.read_text().splitlines(keepends=True)
            if len(lines) > keep_rows:
                with open(path.with_name("metrics.discarded.jsonl"), "a") as f:
                    f.writelines(lines[keep_rows:])
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_text("".join(lines[:keep_rows]))
                os.replace(tmp, path)
            self.rows = min(len(lines), keep_rows)
        else:
            self.rows = 0
        self.file = open(path, "a")

    def write(self, row: dict[str, Any]) -> dict[str, Any]:
        self.file.write(json.dumps(row) + "\n")
        self.rows += 1
        return row

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl."""
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def train(config: Config, run_dir: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True,
          on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
          command: str | None = None, backend: str = "local",
          address: str | None = None) -> TrainResult:
    """Run A3C as `config` says until a budget, the target score, or an interrupt.

    `command` (the CLI passes its command line) is logged in the start row, so a run
    directory says how it was made. `on_rows` is called from the trainer's loop with each
    batch of new metrics rows (a notebook uses it to redraw a learning curve). Ctrl-C, a
    notebook interrupt or SIGTERM stop the run cleanly: children ended, final checkpoint
    written, result returned.

    `backend` says where the children run: ``"local"`` processes (Hogwild in shared memory)
    or ``"ray"`` actors around a parameter server; `address` (ray only) joins an existing
    cluster (``HOST:PORT`` or ``"auto"``) instead of starting a local Ray instance.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is unknown: allowed are {', '.join(BACKENDS)}")
    if backend == "local":
        if address is not None:
            raise ConfigError(f"address={address!r} is only for backend='ray' (the local "
                              "backend runs on this machine)")
        return _train(config, run_dir, resume, overwrite, progress, on_rows, command, _Run)
    from .ray_backend import RayRun, ray_session  # ConfigError when Ray is not installed

    with ray_session(config, address) as session:
        return _train(config, run_dir, resume, overwrite, progress, on_rows, command,
                      partial(RayRun, session=session))


def _train(config: Config, run_dir: str | Path | None, resume: bool, overwrite: bool,
           progress: bool, on_rows: Callable[[list[dict[str, Any]]], None] | None,
           command: str | None, run_class: Callable[..., _Run]) -> TrainResult:
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    prepare_run_dir(run_dir, resume, overwrite)
    checkpoint = None
    changed: dict[str, Any] = {}
    if resume:
        checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
        check_compatible(checkpoint, config)
        _check_budget_left(config, checkpoint.counters)
        old = checkpoint.config.to_dict()
        changed = {k: v for k, v in config.to_dict().items() if old[k] != v}

    # ALGO LOGIC: the shared model and the shared Adam, in shared memory.
    obs_shape, n_actions = env_spaces(config)
    model = build_model(config, n_actions, obs_shape)
    counters: dict[str, Any] = {"steps": 0, "time_s": 0.0, "episodes": 0, "restarts": 0,
                                "updates": 0, "nonfinite": 0, "generation": 0}
    if checkpoint is None:
        _write_json_atomic(run_dir / "config.json", config.to_dict())  # once, first
    else:
        check_optimizer_state(checkpoint, model, run_dir / "checkpoint.pt")
        model.load_state_dict(checkpoint.model_state)
        counters.update(checkpoint.counters)
        counters["generation"] = int(counters.get("generation", 0)) + 1
        if checkpoint.torch_rng is not None:
            torch.set_rng_state(checkpoint.torch_rng)
    model.share_memory()
    optimizer = SharedAdam(model.parameters(), lr=config.lr)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
        for group in optimizer.param_groups:
            group["lr"] = config.lr
    metrics = _Metrics(run_dir / "metrics.jsonl",
                       int(counters.get("metrics_rows", 0)) if checkpoint else None)

    run = run_class(config, run_dir, model, optimizer, counters, metrics, on_rows, command,
                    changed)
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return run.loop(progress, resumed=checkpoint is not None)
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _check_budget_left(config: Config, counters: dict[str, Any]) -> None:
    """Budgets count the whole run: resuming one that has spent them would stop at once."""
    steps, minutes = int(counters.get("steps", 0)), float(counters.get("time_s", 0)) / 60
    if steps >= config.max_steps:
        raise ConfigError(f"cannot resume: the run has taken {steps} steps, max_steps="
                          f"{config.max_steps}; give a larger --steps (budgets are totals)")
    if config.max_minutes and minutes >= config.max_minutes:
        raise ConfigError(f"cannot resume: the run has trained {minutes:.1f} minutes, "
                          f"max_minutes={config.max_minutes}; give a larger --minutes (budgets "
                          "are totals)")


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM inside the block (main thread only), then restore them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class _Run:
    """One training session: the children and the bookkeeping of the trainer's loop.

    The children are processes on this machine; ray_backend.RayRun overrides the methods of
    the "children" section to make them Ray actors, and keeps all the rest.
    """

    backend = "local"

    def __init__(self, config: Config, run_dir: Path, model: torch.nn.Module,
                 optimizer: SharedAdam, counters: dict[str, Any], metrics: _Metrics,
                 on_rows: Callable[[list[dict[str, Any]]], None] | None,
                 command: str | None, changed: dict[str, Any]) -> None:
        self.config, self.run_dir, self.counters, self.metrics = config, run_dir, counters, metrics
        self.on_rows, self.command, self.changed = on_rows, command, changed
        self.base_steps = int(counters["steps"])
        self.base_time = float(counters["time_s"])
        self.base_updates = int(counters.get("updates", 0))
        self.base_nonfinite = int(counters.get("nonfinite", 0))
        # The shared model and Adam (with the Ray backend: the driver's copy of the parameter
        # server's, refreshed before every checkpoint).
        self.model, self.optimizer = model, optimizer
        self.deaths: dict[str, deque[float]] = {}
        self.starts: dict[str, int] = {}
        self._setup_children()
        self.start_time = time.monotonic()
        self.last_eval: float | None = None
        # The best confirmed greedy mean so far (a resumed run starts from its best.pt's).
        self.confirmed_mean: float | None = None
        if (run_dir / "best.pt").is_file():
            with contextlib.suppress(CheckpointError):
                self.confirmed_mean = load_checkpoint(run_dir / "best.pt").counters.get(
                    "confirmed_mean")
        self.pending: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ children
    def _setup_children(self) -> None:
        workers = self.config.workers
        # spawn: each child starts a fresh interpreter, the start method that is safe with
        # torch's threads (fork can deadlock in OpenMP) and works the same on every OS.
        self.ctx = mp.get_context("spawn")
        self.shared = SharedState(
            model=self.model,
            optimizer=self.optimizer,
            steps=torch.zeros(workers, dtype=torch.int64).share_memory_(),
            updates=torch.zeros(workers, dtype=torch.int64).share_memory_(),
            nonfinite=torch.zeros(workers, dtype=torch.int64).share_memory_(),
            stop=SharedFlag(),
            pause=SharedFlag(),
            events=self.ctx.Queue(),
        )
        self.children: dict[str, mp.process.BaseProcess] = {}

    def _start_children(self) -> None:
        for i in range(self.config.workers):
            self._start(f"worker-{i}")
        self._start("evaluator")

    def _start(self, name: str) -> None:
        generation = int(self.counters["generation"])
        starts = self.starts[name] = self.starts.get(name, 0) + 1
        if name == "evaluator":
            seed = child_seed(self.config.seed, 1, 0, generation, starts)
            target, args = evaluator_process, (self.config, self.shared, os.getpid(), seed)
        else:
            index = int(name.split("-")[1])
            seed = child_seed(self.config.seed, 0, index, generation, starts)
            target, args = train_worker, (index, self.config, self.shared, os.getpid(), seed)
        proc = self.ctx.Process(target=target, args=args, name=f"a3c-{name}", daemon=True)
        proc.start()
        self.children[name] = proc

    def _watch_children(self) -> None:
        """Restart a child that died; stop the run if one keeps dying."""
        for name, proc in list(self.children.items()):
            if proc.is_alive():
                continue
            code = proc.exitcode
            proc.join()
            if name == "evaluator":
                self.shared.pause.clear()  # a dead evaluator must not leave the workers waiting
            if code == EXIT_DIVERGED:
                self._drain()  # the worker's own message is on the queue
                raise TrainingError(f"{name} stopped: the model diverged (non-finite gradients)")
            self._count_restart(name, code)
            self._start(name)

    def _count_restart(self, name: str, code: int | None) -> None:
        """Log a child's restart; stop the run if it keeps dying."""
        now = time.monotonic()
        deaths = self.deaths.setdefault(name, deque())
        deaths.append(now)
        while deaths and now - deaths[0] > RESTART_WINDOW_S:
            deaths.popleft()
        self.counters["restarts"] += 1
        self._row("worker_restart", child=name, exitcode=code,
                  restarts=self.counters["restarts"])
        if len(deaths) >= MAX_RESTARTS:
            raise TrainingError(
                f"{name} died {len(deaths)} times within {RESTART_WINDOW_S:.0f} s (last exit "
                f"code {code}); stopping instead of restarting it again")

    def _stop_children(self) -> None:
        """Set the stop event, give the children a moment, then terminate, then kill."""
        self.shared.stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.children.values():
            while proc.is_alive() and time.monotonic() < deadline:
                self._drain(stopping=True)  # a child's queue feeder must flush before it exits
                proc.join(0.05)
        for proc in self.children.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.children.values():
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._drain(stopping=True)
        self.shared.events.cancel_join_thread()
        self.shared.events.close()

    def _worker_totals(self) -> tuple[int, int, int]:
        """Steps, updates and non-finite updates of this session, summed over the workers."""
        shared = self.shared
        return int(shared.steps.sum()), int(shared.updates.sum()), int(shared.nonfinite.sum())

    def _events(self) -> Iterator[tuple[Any, ...]]:
        """The children's events not yet read."""
        while True:
            try:
                yield self.shared.events.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return

    def _sync_model(self) -> bool:
        """Bring self.model and self.optimizer up to date; False if that cannot be done.
        Here they are the shared ones, always current."""
        return True

    # ------------------------------------------------------------------ bookkeeping
    def steps(self) -> int:
        return self.base_steps + self._worker_totals()[0]

    def elapsed(self) -> float:
        return self.base_time + time.monotonic() - self.start_time

    def _row(self, event: str, steps: int | None = None, **values: Any) -> dict[str, Any]:
        row = {"event": event, "time_s": round(self.elapsed(), 3),
               "steps": self.steps() if steps is None else steps, **values}
        self.pending.append(self.metrics.write(row))
        return row

    def _drain(self, stopping: bool = False) -> None:
        """Turn the children's events into metrics rows (while stopping, a child's fatal
        message no longer changes anything, but its last episodes still count)."""
        for event in self._events():
            kind = event[0]
            if kind == "episode":
                _, worker, score, length = event
                self.counters["episodes"] += 1
                self._row("episode", worker=worker, episode_return=score, length=length)
            elif kind == "eval":
                _, score, length, steps_at_load = event
                self.last_eval = score
                self._row("eval", steps=self.base_steps + steps_at_load, eval_return=score,
                          eval_length=length)
            elif kind == "confirm":
                _, scores, steps_at_load, weights, steps_during = event
                mean = sum(scores) / len(scores)
                if self.confirmed_mean is None or mean > self.confirmed_mean:
                    self.confirmed_mean = mean
                    self._save_best(weights, mean, self.base_steps + steps_at_load)
                self._row("eval_confirm", steps=self.base_steps + steps_at_load,
                          eval_return=mean, eval_returns=scores,
                          worker_steps_during=steps_during)
            elif kind == "fatal" and not stopping:
                raise TrainingError(event[2])

    def _sync_counters(self) -> None:
        _, updates, nonfinite = self._worker_totals()
        self.counters["steps"] = self.steps()
        self.counters["time_s"] = self.elapsed()
        self.counters["updates"] = self.base_updates + updates
        self.counters["nonfinite"] = self.base_nonfinite + nonfinite

    def _checkpoint(self) -> None:
        self._sync_counters()
        if not self._sync_model():
            return  # the model is out of reach: the last checkpoint stays as it is
        self.metrics.flush()
        self.counters["metrics_rows"] = self.metrics.rows
        save_checkpoint(self.run_dir / "checkpoint.pt", self.config, self.model,
                        self.optimizer, self.counters)

    def _save_best(self, weights: dict[str, torch.Tensor], mean: float, steps: int) -> None:
        """best.pt: the weights whose confirmed greedy mean is the best so far (no optimizer)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(weights)
        counters = {"steps": steps, "time_s": self.elapsed(), "confirmed_mean": mean}
        save_checkpoint(self.run_dir / "best.pt", self.config, model, None, counters)

    def _stop_reason(self) -> str | None:
        config = self.config
        if (config.stop_at_target and config.target_score is not None
                and self.confirmed_mean is not None
                and self.confirmed_mean >= config.target_score):
            return "target"
        if self.steps() >= config.max_steps:
            return "steps"
        if config.max_minutes and self.elapsed() >= 60 * config.max_minutes:
            return "minutes"
        return None

    # ------------------------------------------------------------------ the loop
    def loop(self, progress: bool, resumed: bool) -> TrainResult:
        config = self.config
        reason = "error"
        bar = tqdm(total=config.max_steps, initial=self.base_steps, unit="step",
                   disable=not progress, dynamic_ncols=True, smoothing=0.1)
        try:
            extra = {"changed": self.changed} if resumed else {}
            self._row("resume" if resumed else "start", workers=config.workers,
                      pid=os.getpid(), command=self.command, backend=self.backend, **extra)
            self._start_children()
            last_checkpoint = last_progress = time.monotonic()
            last_steps, shown = self.steps(), self.steps()
            while True:
                time.sleep(POLL_S)
                self._drain()
                self._watch_children()
                now, steps = time.monotonic(), self.steps()
                if now - last_progress >= PROGRESS_ROW_S:
                    self._sync_counters()
                    rate = (steps - last_steps) / (now - last_progress)
                    self._row("progress", steps_per_s=round(rate, 1),
                              updates=self.counters["updates"],
                              nonfinite=self.counters["nonfinite"],
                              episodes=self.counters["episodes"])
                    last_progress, last_steps = now, steps
                if now - last_checkpoint >= 60 * config.checkpoint_minutes:
                    self._checkpoint()
                    last_checkpoint = now
                bar.update(steps - shown)
                shown = steps
                bar.set_postfix(eval=self.last_eval, refresh=False)
                self._flush_rows()
                stop = self._stop_reason()
                if stop:
                    reason = stop
                    break
        except _Terminated:
            reason = "terminated"
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            bar.close()
            with _signals_deferred():  # a second Ctrl-C must not cut the clean-up short
                self._stop_children()
                self._row("stop", reason=reason, restarts=self.counters["restarts"],
                          episodes=self.counters["episodes"])
                self._checkpoint()
                self._flush_rows()
                self.metrics.close()
        return TrainResult(self.run_dir, reason, self.counters["steps"], self.counters["time_s"],
                           self.counters["episodes"], self.counters["restarts"], self.last_eval,
                           self.confirmed_mean)

    def _flush_rows(self) -> None:
        self.metrics.flush()
        if self.pending and self.on_rows is not None:
            self.on_rows(self.pending)
        self.pending = []
