"""The training session: budgets, the trainer's loop, checkpoints and the best agent.

:func:`train` builds the shared model and Adam (seeded, or from a checkpoint), hands them
to a backend that runs the children (:mod:`a3c_course.local_backend`: processes on this
machine; :mod:`a3c_course.ray_backend`: Ray actors), and then loops: poll the children,
turn their events into metrics rows (:mod:`a3c_course.rundir`), checkpoint, and stop at
the first of a budget, the confirmed target, a stop hook, an error, Ctrl-C or SIGTERM.
The contract with the children is :mod:`a3c_course.children`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import TEST_MODE
from .checkpoint import (
    CheckpointError,
    check_compatible,
    check_optimizer_state,
    load_checkpoint,
    save_checkpoint,
)
from .children import (
    Backend,
    Confirmation,
    Episode,
    Evaluation,
    Event,
    Fatal,
    Restarted,
    Totals,
    TrainingError,
    first_seeds,
)
from .config import Config, ConfigError
from .envs import env_spaces
from .models import ActorCritic, build_model
from .rundir import (
    MetricsLog,
    RunDirError,
    default_run_dir,
    prepare_run_dir,
    read_metrics,
    snapshot_path,
    write_json,
)
from .shared_adam import SharedAdam

__all__ = ["BACKENDS", "Counters", "RunDirError", "TrainResult", "TrainingError",
           "initial_model", "read_metrics", "train"]

POLL_S = 0.25  # how often the trainer looks at its children
# How often a progress row goes to metrics.jsonl; test mode (A3C_TEST_MODE=1) writes them
# more often, so the benchmarks' smoke tests close their measuring windows sooner.
PROGRESS_ROW_S = 2.0 if TEST_MODE else 10.0
MAX_RESTARTS = 5  # a child that dies this many times in a row ...
RESTART_WINDOW_S = 60.0  # ... each within this many seconds of its start, stops the run
BACKENDS = ("local", "ray")
EXIT_CODES = {"interrupted": 130, "terminated": 143}  # as a shell reports those signals


class _Terminated(KeyboardInterrupt):
    """SIGTERM (or Ctrl-Break on Windows), turned into the same clean stop as Ctrl-C."""


@dataclass
class Counters:
    """The run's counters, saved in every checkpoint (totals over every session)."""

    steps: int = 0  # agent steps, summed over the workers
    time_s: float = 0.0  # training wall-clock seconds
    episodes: int = 0  # training episodes finished
    restarts: int = 0  # children restarted after dying
    updates: int = 0  # updates applied to the shared model
    nonfinite: int = 0  # updates skipped for a non-finite gradient
    generation: int = 0  # how many times the run was resumed
    metrics_rows: int = 0  # rows of metrics.jsonl that this checkpoint covers

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Counters:
        """From a checkpoint's counters (fields it predates keep their defaults)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in saved.items() if k in names}
        return cls(**{k: (float(v) if k == "time_s" else int(v)) for k, v in values.items()})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class TrainResult:
    """How a run ended."""

    run_dir: Path
    stop_reason: str  # steps | minutes | target | stopped | interrupted | terminated | error
    steps: int
    time_s: float
    episodes: int
    restarts: int
    last_eval: float | None
    confirmed_mean: float | None  # the best confirmed greedy mean (None: never confirmed)
    config: Config | None = None

    def summary(self) -> dict[str, Any]:
        """The machine-readable line of `a3c train --json`."""
        return {"run_dir": str(self.run_dir), "stop_reason": self.stop_reason,
                "steps": self.steps, "minutes": round(self.time_s / 60, 2),
                "last_eval": self.last_eval, "confirmed_mean": self.confirmed_mean}

    def describe(self) -> str:
        """A few lines in words: why it stopped, the scores, where the run is, what next."""
        config = self.config
        target = config.target_score if config else None
        why = {
            "target": "the greedy agent reached the target",
            "steps": "the step budget ran out",
            "minutes": "the time budget ran out",
            "stopped": "it was asked to stop",
            "interrupted": "it was interrupted (Ctrl-C)",
            "terminated": "it was terminated (SIGTERM)",
            "error": "of an error (see above)",
        }.get(self.stop_reason, self.stop_reason)
        rate = self.steps / self.time_s if self.time_s else 0.0
        lines = [f"Training stopped because {why}, after {self.steps:,} agent steps in "
                 f"{self.time_s / 60:.1f} minutes ({rate:,.0f} steps/s)."]
        if target is not None:
            confirmed = ("never confirmed" if self.confirmed_mean is None
                         else f"{self.confirmed_mean:+.1f}")
            reached = (self.confirmed_mean is not None and self.confirmed_mean >= target)
            lines.append(f"Target {target:+g}: {'reached' if reached else 'NOT reached'} "
                         f"(best confirmed {config.eval_episodes if config else 10}-episode "
                         f"greedy mean: {confirmed}; last greedy game: {_signed(self.last_eval)}).")
        else:
            lines.append(f"Last greedy game: {_signed(self.last_eval)}.")
        run = self.run_dir
        agent = run / "best.pt" if (run / "best.pt").is_file() else run / "checkpoint.pt"
        more = "--minutes N" if config and config.max_minutes else "--steps N"
        lines += [f"Run directory: {run}",
                  f"  resume:    a3c train --resume --run-dir {run} {more}  (budgets are totals)",
                  f"  evaluate:  a3c evaluate {agent} --episodes 10",
                  f"  video:     a3c evaluate {agent} --episodes 1 --video {run / 'agent.mp4'}"]
        return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "none yet" if value is None else f"{value:+.0f}"


def initial_model(config: Config) -> ActorCritic:
    """The shared model a fresh run starts from: built with torch seeded by `config.seed`,
    so the same seed always gives the same initial weights (with the same torch build).

    Built on one thread: the orthogonal initialisation's QR decomposition rounds differently
    with more threads, and a notebook, the CLI and a test need not share a thread count.
    """
    obs_shape, n_actions = env_spaces(config)
    saved_rng, saved_threads = torch.get_rng_state(), torch.get_num_threads()
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)
    try:
        return build_model(config, n_actions, obs_shape)
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_rng_state(saved_rng)  # the caller's random stream is not ours to move


def weights_digest(model: torch.nn.Module) -> str:
    """A short fingerprint of the weights (logged in the start row)."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def train(config: Config, run_dir: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, progress: bool = True,
          on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
          command: str | None = None, backend: str = "local",
          address: str | None = None, should_stop: Callable[[], bool] | None = None,
          tensorboard: bool = False) -> TrainResult:
    """Run A3C as `config` says until a budget, the target score, or an interrupt.

    - `command` (the CLI passes its command line) is logged in the start row, so a run
      directory says how it was made.
    - `on_rows` is called from the trainer's loop with each batch of new metrics rows (a
      notebook uses it to redraw a learning curve); `should_stop`, polled in the same loop,
      ends the run cleanly (reason "stopped") when it returns True.
    - Ctrl-C, a notebook interrupt or SIGTERM stop the run cleanly: children ended, final
      checkpoint written, result returned.
    - `backend`: ``"local"`` processes (Hogwild in shared memory) or ``"ray"`` actors around
      a parameter server; `address` (ray only) joins an existing cluster (``HOST:PORT`` or
      ``"auto"``) instead of starting a local Ray instance.
    - `tensorboard`: also write the metrics rows to ``RUN_DIR/tensorboard`` (needs the
      ``tensorboard`` extra).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is unknown: allowed are {', '.join(BACKENDS)}")
    if backend == "local" and address is not None:
        raise ConfigError(f"address={address!r} is only for backend='ray' (the local backend "
                          "runs on this machine)")
    if tensorboard:
        from .rundir import require_tensorboard

        require_tensorboard()  # before anything is written
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    prepare_run_dir(run_dir, resume, overwrite)
    checkpoint = None
    changed: dict[str, Any] = {}
    if resume:
        checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
        check_compatible(checkpoint, config)
        _check_budget_left(config, Counters.from_dict(checkpoint.counters))
        old = checkpoint.config.to_dict()
        changed = {k: v for k, v in config.to_dict().items() if old[k] != v}

    # ALGO LOGIC: the shared model and the shared Adam, in shared memory.
    model = initial_model(config)
    counters = Counters()
    if checkpoint is None:
        write_json(run_dir / "config.json", config.to_dict())  # once, first
    else:
        check_optimizer_state(checkpoint, model, run_dir / "checkpoint.pt")
        model.load_state_dict(checkpoint.model_state)
        counters = Counters.from_dict(checkpoint.counters)
        counters.generation += 1
        if checkpoint.torch_rng is not None:
            torch.set_rng_state(checkpoint.torch_rng)
    model.share_memory()
    optimizer = SharedAdam(model.parameters(), lr=config.lr,
                           lr_decay_updates=config.lr_decay_updates)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)  # keeps config's lr
    metrics = MetricsLog(run_dir / "metrics.jsonl",
                         counters.metrics_rows if checkpoint else None, tensorboard)
    start_row = {"changed": changed} if checkpoint else {
        "initial_weights": weights_digest(model)}

    with contextlib.ExitStack() as stack:
        children: Backend
        if backend == "local":
            from .local_backend import LocalBackend

            children = LocalBackend(config, model, optimizer)
        else:
            from .ray_backend import RayBackend, ray_session  # ConfigError without Ray

            session = stack.enter_context(ray_session(config, address))
            children = RayBackend(config, model, optimizer, session)
        run = _Session(config, run_dir, model, optimizer, counters, metrics, children,
                       on_rows, should_stop)
        stack.enter_context(_sigterm_stops())
        return run.loop(progress, resumed=checkpoint is not None, command=command,
                        **start_row)


def _check_budget_left(config: Config, counters: Counters) -> None:
    """Budgets count the whole run: resuming one that has spent them would stop at once."""
    steps, minutes = counters.steps, counters.time_s / 60
    if steps >= config.max_steps:
        raise ConfigError(f"cannot resume: the run has taken {steps} steps, max_steps="
                          f"{config.max_steps}; give a larger --steps (budgets are totals)")
    if config.max_minutes and minutes >= config.max_minutes:
        raise ConfigError(f"cannot resume: the run has trained {minutes:.1f} minutes, "
                          f"max_minutes={config.max_minutes}; give a larger --minutes (budgets "
                          "are totals)")


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


def _stop_signals() -> list[signal.Signals]:
    """SIGTERM everywhere; Ctrl-Break too on Windows (SIGINT is Ctrl-C, KeyboardInterrupt)."""
    found = [signal.SIGTERM]
    if hasattr(signal, "SIGBREAK"):
        found.append(signal.SIGBREAK)
    return found


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """Inside the block, SIGTERM stops the run like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise_terminated) for s in _stop_signals()}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM inside the block (main thread only), then restore them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [signal.SIGINT, *_stop_signals()]
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in names}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


class _ProgressBar:
    """tqdm over whichever budget ends the run first: minutes when they run out before the
    step budget would at the current speed, steps otherwise; entropy, speed and the last
    greedy game beside it."""

    def __init__(self, config: Config, counters: Counters, enabled: bool) -> None:
        self.config = config
        self.mode = ""
        self.bar = tqdm(total=1, disable=not enabled, dynamic_ncols=True, smoothing=0,
                        bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")
        self.update(counters.steps, counters.time_s, None)

    def update(self, steps: int, elapsed: float, rate: float | None, **postfix: Any) -> None:
        config = self.config
        by_time = bool(config.max_minutes)
        if by_time and rate:
            steps_left_s = (config.max_steps - steps) / rate
            by_time = 60 * config.max_minutes - elapsed <= steps_left_s
        mode = "minutes" if by_time else "steps"
        if mode != self.mode:
            self.mode = mode
            total = round(60 * config.max_minutes) if by_time else config.max_steps
            self.bar.reset(total=total)
            self.bar.set_description(f"{mode} budget", refresh=False)
        self.bar.n = min(int(elapsed if by_time else steps), self.bar.total)
        self.bar.set_postfix(steps=f"{steps:,}", **postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class _Session:
    """One training session: the trainer's loop and its bookkeeping, whatever the backend."""

    def __init__(self, config: Config, run_dir: Path, model: ActorCritic,
                 optimizer: SharedAdam, counters: Counters, metrics: MetricsLog,
                 backend: Backend, on_rows: Callable[[list[dict[str, Any]]], None] | None,
                 should_stop: Callable[[], bool] | None) -> None:
        self.config, self.run_dir, self.counters, self.metrics = config, run_dir, counters, metrics
        self.model, self.optimizer, self.backend = model, optimizer, backend
        self.on_rows, self.should_stop = on_rows, should_stop
        self.base = Counters(**asdict(counters))  # where this session started
        self.totals = Totals()  # this session's worker totals, from the last poll
        self.short_lives: dict[str, int] = {}  # deaths in a row soon after a start
        self.start_time = time.monotonic()
        self.last_eval: float | None = None
        # The best confirmed greedy mean so far (a resumed run starts from its best.pt's).
        self.confirmed_mean: float | None = None
        if (run_dir / "best.pt").is_file():
            with contextlib.suppress(CheckpointError):
                self.confirmed_mean = load_checkpoint(run_dir / "best.pt").counters.get(
                    "confirmed_mean")
        self.pending: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ bookkeeping
    def steps(self) -> int:
        return self.base.steps + self.totals.steps

    def elapsed(self) -> float:
        return self.base.time_s + time.monotonic() - self.start_time

    def _row(self, event: str, steps: int | None = None, **values: Any) -> dict[str, Any]:
        row = {"event": event, "time_s": round(self.elapsed(), 3),
               "steps": self.steps() if steps is None else steps, **values}
        self.pending.append(self.metrics.write(row))
        return row

    def _take(self, events: list[Event], stopping: bool = False) -> None:
        """Turn the children's events into metrics rows (while stopping, a child's fatal
        message or restart no longer changes anything, but its last episodes still count)."""
        for event in events:
            if isinstance(event, Episode):
                self.counters.episodes += 1
                self._row("episode", worker=event.worker, episode_return=event.score,
                          length=event.length)
            elif isinstance(event, Evaluation):
                self.last_eval = event.score
                self._row("eval", steps=self.base.steps + event.steps_at_load,
                          eval_return=event.score, eval_length=event.length)
            elif isinstance(event, Confirmation):
                steps = self.base.steps + event.steps_at_load
                if self.confirmed_mean is None or event.mean > self.confirmed_mean:
                    self.confirmed_mean = event.mean
                    self._save_best(event, steps)
                self._row("eval_confirm", steps=steps, eval_return=event.mean,
                          eval_returns=event.scores, worker_steps_during=event.steps_during)
            elif isinstance(event, Restarted) and not stopping:
                self._count_restart(event)
            elif isinstance(event, Fatal) and not stopping:
                raise TrainingError(event.message)

    def _count_restart(self, event: Restarted) -> None:
        """Log a child's restart; stop the run if it keeps dying soon after it starts.

        Lifetimes, not the clock: on a busy machine a restart alone (a new interpreter,
        torch) can take many seconds, and a crash loop must still be seen as one.
        """
        short = event.lived_s < RESTART_WINDOW_S
        streak = self.short_lives[event.child] = (
            self.short_lives.get(event.child, 0) + 1 if short else 0)
        self.counters.restarts += 1
        self._row("worker_restart", child=event.child, exitcode=event.exitcode,
                  lived_s=round(event.lived_s, 1), restarts=self.counters.restarts)
        if streak >= MAX_RESTARTS:
            raise TrainingError(
                f"{event.child} died {streak} times in a row, each within "
                f"{RESTART_WINDOW_S:.0f} s of its start (last exit code {event.exitcode}); "
                "stopping instead of restarting it again")

    def _poll(self) -> None:
        poll = self.backend.poll()
        self.totals = poll.totals
        self._take(poll.events)

    def _sync_counters(self) -> None:
        c, base, totals = self.counters, self.base, self.totals
        c.steps, c.time_s = self.steps(), self.elapsed()
        c.updates = base.updates + totals.updates
        c.nonfinite = base.nonfinite + totals.nonfinite

    def _checkpoint(self) -> None:
        self._sync_counters()
        if not self.backend.sync_model():
            return  # the model is out of reach: the last checkpoint stays as it is
        self.metrics.flush()
        self.counters.metrics_rows = self.metrics.rows
        save_checkpoint(self.run_dir / "checkpoint.pt", self.config, self.model,
                        self.optimizer, self.counters.to_dict())

    def _snapshot(self) -> None:
        """The shared weights as they are now, model only (see Config.snapshot_minutes)."""
        if not self.backend.sync_model():
            return
        self._sync_counters()
        path = snapshot_path(self.run_dir, self.counters.time_s)
        path.parent.mkdir(exist_ok=True)
        counters = {"steps": self.counters.steps, "time_s": self.counters.time_s}
        save_checkpoint(path, self.config, self.model, None, counters)
        self._row("snapshot", path=path.relative_to(self.run_dir).as_posix())

    def _save_best(self, event: Confirmation, steps: int) -> None:
        """best.pt: the weights whose confirmed greedy mean is the best so far (no optimizer)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in event.weights.items()})
        counters = {"steps": steps, "time_s": self.elapsed(), "confirmed_mean": event.mean}
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
        if self.should_stop is not None and self.should_stop():
            return "stopped"
        return None

    # ------------------------------------------------------------------ the loop
    def loop(self, progress: bool, resumed: bool, command: str | None,
             **start_values: Any) -> TrainResult:
        config = self.config
        reason = "error"
        bar = _ProgressBar(config, self.counters, progress)
        try:
            self._row("resume" if resumed else "start", workers=config.workers,
                      pid=os.getpid(), command=command, backend=self.backend.name,
                      child_seeds=first_seeds(config.seed, config.workers,
                                              self.counters.generation), **start_values)
            self.backend.start(self.counters.generation)
            last_checkpoint = last_row = time.monotonic()
            # Snapshots at whole multiples of snapshot_minutes of the run's training time.
            period = 60 * config.snapshot_minutes
            next_snapshot = (self.elapsed() // period + 1) * period if period else 0.0
            row_totals, row_steps, rate = Totals(), self.steps(), None
            shown: dict[str, Any] = {}
            while True:
                time.sleep(POLL_S)
                self._poll()
                now, steps = time.monotonic(), self.steps()
                if now - last_row >= PROGRESS_ROW_S:
                    # PROGRESS: speed and the learning diagnostics since the last row.
                    self._sync_counters()
                    rate = (steps - row_steps) / (now - last_row)
                    diagnostics = self.totals.minus(row_totals).diagnostics()
                    self._row("progress", steps_per_s=round(rate, 1),
                              updates=self.counters.updates, nonfinite=self.counters.nonfinite,
                              episodes=self.counters.episodes, **diagnostics)
                    last_row, row_steps, row_totals = now, steps, self.totals
                    shown = {"steps_per_s": round(rate), "entropy": diagnostics["entropy"]}
                bar.update(steps, self.elapsed(), rate, **shown, eval=self.last_eval)
                if now - last_checkpoint >= 60 * config.checkpoint_minutes:
                    self._checkpoint()
                    last_checkpoint = now
                if config.snapshot_minutes and self.elapsed() >= next_snapshot:
                    self._snapshot()
                    next_snapshot += 60 * config.snapshot_minutes
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
                final = self.backend.stop()
                self.totals = final.totals
                self._take(final.events, stopping=True)
                self._row("stop", reason=reason, restarts=self.counters.restarts,
                          episodes=self.counters.episodes)
                self._checkpoint()
                self._flush_rows()
                self.metrics.close()
        c = self.counters
        return TrainResult(self.run_dir, reason, c.steps, c.time_s, c.episodes, c.restarts,
                           self.last_eval, self.confirmed_mean, config)

    def _flush_rows(self) -> None:
        self.metrics.flush()
        if self.pending and self.on_rows is not None:
            self.on_rows(self.pending)
        self.pending = []
