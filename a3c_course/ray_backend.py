"""The same A3C on a Ray cluster (``a3c train --backend ray``): one job, running a training there.

Who runs where:

- a **parameter server** actor holds the shared model and its Adam. Workers push clipped
  gradients; it applies them one at a time (an actor runs one call at a time: no Hogwild
  races here) and answers each push with the new weights.
- **worker** actors (one CPU each) run :func:`a3c_course.worker.train_worker` itself, the
  very loop of the local backend: SYNC, ROLLOUT, LOSS, UPDATE. What they are handed as the
  "shared state" is a stand-in (:class:`_WorkerLink`): its model is a local mirror of the
  server's weights, and its optimizer's ``step()`` pushes the gradients to the server and
  loads the weights it answers with into the mirror. That is the only remote call per rollout.
- an **evaluator** actor runs :func:`a3c_course.evaluator.evaluator_process` itself (greedy
  play, confirmation of the target), against a stand-in that reads the server.
- the **driver** is the trainer's own session (:mod:`a3c_course.trainer`): run directory,
  metrics rows, checkpoints, best.pt, budgets, resume and signals. :class:`RayBackend` is its
  :class:`a3c_course.children.Backend`, with actors for children instead of processes.

Weights and gradients travel as one flat float32 vector (numpy, so Ray hands it over without
pickling tensors). A worker actor that dies is restarted by Ray (``max_restarts=-1``) and its
loop is resubmitted (``max_task_retries=-1``); the server reports it as a
:class:`~a3c_course.children.Restarted` event, and the trainer logs a ``worker_restart`` row.
Every node of a cluster needs this package and its dependencies installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .children import (
    EXIT_DIVERGED,
    STOP_GRACE_S,
    Event,
    Fatal,
    Poll,
    Restarted,
    SharedState,
    Totals,
    TrainingError,
    WorkerCounters,
    diverged_message,
    evaluator_seed,
    worker_seed,
)
from .config import Config, ConfigError
from .envs import env_spaces
from .evaluator import evaluator_process
from .models import ActorCritic, build_model
from .shared_adam import SharedAdam, decayed_lr
from .worker import train_worker

try:
    import ray
    import ray.exceptions
except ImportError:  # the core install has no Ray: only --backend ray needs it
    ray = None

INSTALL_HINT = "pip install 'a3c-course[ray]'"
OBJECT_STORE_BYTES = 200 * 2**20  # weights are ~2 MB: a small store is plenty
START_TIMEOUT_S = 120.0  # every worker actor must be up by then (else: too few CPUs)
CALL_TIMEOUT_S = 60.0  # a driver's call to the parameter server that takes longer failed
PAUSE_POLL_S = 0.05  # how often a waiting worker asks whether the pause is over
LOCAL_RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}  # no usage report from a course run
# Ray turns token authentication on for a local instance and says so in a warning that
# suggests turning it off; it stays on, the warning is not shown.
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def require_ray() -> None:
    """Raise ConfigError, with the install command, when Ray is not installed."""
    if ray is None:
        raise ConfigError(f"the ray backend needs Ray, which is not installed: {INSTALL_HINT}")


# ---------------------------------------------------------------------- weights on the wire
def flat_size(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flatten(tensors: list[torch.Tensor], out: torch.Tensor) -> np.ndarray:
    """Copy `tensors` (in parameter order) into the preallocated vector `out`; its numpy view."""
    torch.cat([t.detach().reshape(-1) for t in tensors], out=out)
    return out.numpy()


def unflatten(vector: np.ndarray, tensors: list[torch.Tensor]) -> None:
    """Copy a flat vector into `tensors` (parameters or their gradients), keeping their
    memory layout."""
    with warnings.catch_warnings():
        # Ray hands a large array over read-only and zero-copy; it is only read here.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        flat = torch.from_numpy(vector)
    size = sum(t.numel() for t in tensors)
    if flat.numel() != size:
        raise ValueError(f"a vector of {flat.numel()} values for tensors of {size}")
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(flat[offset: offset + n].view(t.shape))
            offset += n


def model_for(config: Config) -> ActorCritic:
    """A fresh model of the config's network, sized for its game."""
    obs_shape, n_actions = env_spaces(config)
    return build_model(config, n_actions, obs_shape)


# ---------------------------------------------------------------------- the actors
class ParameterServer:
    """The shared model and its Adam. Calls run one at a time, so every update is whole."""

    def __init__(self, config: Config, weights: np.ndarray, optimizer_state: dict[str, Any],
                 workers: int) -> None:
        torch.set_num_threads(1)
        self.model = model_for(config)
        self.params = list(self.model.parameters())
        unflatten(weights, self.params)
        # torch's Adam: SharedAdam's numbers when one process steps, which is the case here
        # (the server applies one update at a time, so there is no race to repair).
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, foreach=False)
        self.optimizer.load_state_dict(optimizer_state)
        self.lr, self.lr_decay_updates = config.lr, config.lr_decay_updates
        for p in self.params:
            p.grad = torch.zeros_like(p)
        self.out = torch.zeros(flat_size(self.model))
        self.counters = WorkerCounters(workers, shared=False)
        self.events: list[Event] = []
        self.starts: dict[str, int] = {}
        self.started_at: dict[str, float] = {}
        self.flags = {"stop": False, "pause": False}

    def register(self, name: str) -> int:
        """A child (re)starts: returns how many times it has started, 1 the first time."""
        starts = self.starts[name] = self.starts.get(name, 0) + 1
        now = time.monotonic()
        if starts > 1:  # it lived from its last start to about now (plus Ray's restart)
            self.events.append(Restarted(name, None, now - self.started_at[name]))
        self.started_at[name] = now
        return starts

    def pull(self) -> tuple[np.ndarray, bool, bool]:
        """The current weights, and the stop and pause flags."""
        return flatten(self.params, self.out), self.flags["stop"], self.flags["pause"]

    def push(self, index: int, grads: np.ndarray, report: WorkerReport
             ) -> tuple[np.ndarray, bool, bool]:
        """Apply one worker's clipped gradients with Adam; answer as `pull` does."""
        unflatten(grads, [p.grad for p in self.params])
        updates = float(self.optimizer.state[self.params[0]]["step"])
        for group in self.optimizer.param_groups:  # SharedAdam's schedule
            group["lr"] = decayed_lr(self.lr, self.lr_decay_updates, updates)
        self.optimizer.step()
        self.counters.table[index, WorkerCounters.COLUMNS.index("updates")] += 1
        self.report(index, report)
        return self.pull()

    def report(self, index: int, report: WorkerReport) -> None:
        """A worker's counters since its last report, and the episodes it finished."""
        self.counters.table[index] += torch.tensor(report.counters, dtype=torch.float64)
        self.events.extend(report.events)

    def post(self, event: Event) -> None:
        self.events.append(event)

    def get_flag(self, name: str) -> bool:
        return self.flags[name]

    def get_flags(self) -> tuple[bool, bool]:
        return self.flags["stop"], self.flags["pause"]

    def set_flag(self, name: str, value: bool) -> None:
        self.flags[name] = value

    def total_steps(self) -> int:
        return self.counters.steps()

    def poll(self) -> tuple[Poll, list[str]]:
        """For the driver: the totals and the events since the last poll, and which
        children have started."""
        events, self.events = self.events, []
        return Poll(self.counters.totals(), events), sorted(self.starts)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Model and Adam state, for a checkpoint."""
        return self.model.state_dict(), self.optimizer.state_dict()


@dataclass
class WorkerReport:
    """What a worker actor sends with each push: its counter row's change since the last
    report (WorkerCounters.COLUMNS), and the episodes it finished."""

    counters: list[float]
    events: list[Event]


class _Sink:
    """SharedState.events of a worker actor: episodes ride along with the next push; anything
    else (a fatal error) goes to the server at once."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.buffer: list[Event] = []

    def put(self, event: Event) -> None:
        if isinstance(event, Fatal):
            ray.get(self.server.post.remote(event))
        else:
            self.buffer.append(event)


class _ReplyFlag:
    """SharedState.stop / .pause of a worker actor: the value the server sent with its last
    answer. While "pause" is set, reading it asks the server again for both flags (the worker
    is waiting, and pushes nothing that would bring an answer)."""

    def __init__(self, link: _WorkerLink, name: str) -> None:
        self.link, self.name, self.value = link, name, False
        self.asked = 0.0

    def is_set(self) -> bool:
        if self.value and self.name == "pause" and time.monotonic() - self.asked > PAUSE_POLL_S:
            self.asked = time.monotonic()
            self.link.stop.value, self.value = ray.get(self.link.server.get_flags.remote())
        return self.value


class _WorkerLink:
    """The optimizer a worker actor's train_worker steps: ``step()`` sends the gradients the
    worker handed to the mirror model (clipped, finite) to the parameter server, with the
    counters and episodes since the last push, and loads the weights it answers into the
    mirror, which the next SYNC copies."""

    def __init__(self, index: int, config: Config, server: Any) -> None:
        self.index, self.server = index, server
        self.mirror = model_for(config)
        self.params = list(self.mirror.parameters())
        self.grads = torch.zeros(flat_size(self.mirror))
        self.counters = WorkerCounters(config.workers, shared=False)
        self.reported = torch.zeros(len(WorkerCounters.COLUMNS), dtype=torch.float64)
        self.events = _Sink(server)
        self.stop, self.pause = _ReplyFlag(self, "stop"), _ReplyFlag(self, "pause")
        self._take(ray.get(server.pull.remote()))

    def shared_state(self) -> SharedState:
        return SharedState(model=self.mirror, optimizer=self, counters=self.counters,
                           stop=self.stop, pause=self.pause,  # type: ignore[arg-type]
                           events=self.events)

    def _report(self) -> WorkerReport:
        row = self.counters.table[self.index].clone()
        delta = row - self.reported
        # The server counts updates itself, as it applies them (the worker counts its own
        # only after step() returns, one push later).
        delta[WorkerCounters.COLUMNS.index("updates")] = 0
        report = WorkerReport(delta.tolist(), self.events.buffer)
        self.reported = row
        self.events.buffer = []
        return report

    def _take(self, answer: tuple[np.ndarray, bool, bool]) -> None:
        weights, self.stop.value, self.pause.value = answer
        unflatten(weights, self.params)

    def step(self) -> None:
        """UPDATE, remotely: the server's Adam steps with these gradients."""
        grads = flatten([p.grad for p in self.params], self.grads)
        self._take(ray.get(self.server.push.remote(self.index, grads, self._report())))

    def flush(self) -> None:
        """Report what no push has carried yet (the last update, episodes, a skipped update)."""
        ray.get(self.server.report.remote(self.index, self._report()))


class A3CWorker:
    """Worker actor `index`: train_worker, the loop of the local backend, on a _WorkerLink."""

    def __init__(self, index: int, config: Config, server_name: str, generation: int) -> None:
        torch.set_num_threads(1)
        server = ray.get_actor(server_name)
        starts = ray.get(server.register.remote(f"worker-{index}"))
        self.index, self.config = index, config
        self.seed = worker_seed(config.seed, index, generation, starts)
        self.link = _WorkerLink(index, config, server)

    def run(self) -> int:
        """Train until the server says stop; 0, or EXIT_DIVERGED."""
        try:
            train_worker(self.index, self.config, self.link.shared_state(), os.getppid(),
                         self.seed)
            code = 0
        except SystemExit as e:  # the worker's own exit on divergence: the actor stays up
            code = int(e.code or 0)
        self.link.flush()
        return code


class _RemoteFlag:
    """SharedState.stop / .pause of the evaluator actor: a flag on the parameter server."""

    def __init__(self, server: Any, name: str) -> None:
        self.server, self.name = server, name

    def is_set(self) -> bool:
        return ray.get(self.server.get_flag.remote(self.name))

    def set(self) -> None:
        ray.get(self.server.set_flag.remote(self.name, True))

    def clear(self) -> None:
        ray.get(self.server.set_flag.remote(self.name, False))


class _RemoteSink:
    def __init__(self, server: Any) -> None:
        self.server = server

    def put(self, event: Event) -> None:
        ray.get(self.server.post.remote(event))


class _RemoteSteps:
    """SharedState.counters as the evaluator reads it: the workers' total steps."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def steps(self) -> int:
        return ray.get(self.server.total_steps.remote())


class _EvaluatorLink:
    """What evaluator_process reads of SharedState, served by the parameter server: fresh
    weights each time it reads `model`."""

    def __init__(self, config: Config, server: Any) -> None:
        self.server = server
        self._model = model_for(config)
        self.stop, self.pause = _RemoteFlag(server, "stop"), _RemoteFlag(server, "pause")
        self.events = _RemoteSink(server)
        self.counters = _RemoteSteps(server)
        self.optimizer = None

    @property
    def model(self) -> ActorCritic:
        unflatten(ray.get(self.server.pull.remote())[0], list(self._model.parameters()))
        return self._model


class A3CEvaluator:
    """The evaluator actor: evaluator_process on an _EvaluatorLink."""

    def __init__(self, config: Config, server_name: str, generation: int) -> None:
        server = ray.get_actor(server_name)
        starts = ray.get(server.register.remote("evaluator"))
        self.config = config
        self.seed = evaluator_seed(config.seed, generation, starts)
        self.link = _EvaluatorLink(config, server)

    def run(self) -> int:
        evaluator_process(self.config, self.link, os.getppid(), self.seed)  # type: ignore[arg-type]
        return 0


# ---------------------------------------------------------------------- the driver
@dataclass
class RaySession:
    """The Ray instance a run uses: started here (local) or joined (cluster)."""

    address: str | None
    started_here: bool
    cpus: float


@contextlib.contextmanager
def _logger_level(name: str, level: int) -> Iterator[None]:
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)


# Ray gives a new node a fixed 30 s to register (ray/_private/node.py); a laptop busy with
# other work can need longer, so a local start that timed out is tried once more.
LOCAL_START_ATTEMPTS = 2


def _start_local_ray(config: Config, quiet: dict[str, Any]) -> None:
    """ray.init of a private instance on this machine ("local": never attach to some other
    cluster found through RAY_ADDRESS); a start that timed out is cleaned up and retried."""
    for _ in range(LOCAL_START_ATTEMPTS):
        try:
            with _logger_level(AUTH_LOGGER, logging.ERROR):
                ray.init(address="local", include_dashboard=False, num_cpus=config.workers,
                         object_store_memory=OBJECT_STORE_BYTES, **quiet)
            return
        except Exception as e:  # Ray raises a bare Exception for this one
            if "timed out during startup" not in str(e):
                raise
            ray.shutdown()  # whatever of the node did start
    raise TrainingError(
        f"Ray's node did not start within Ray's own 30-s limit ({LOCAL_START_ATTEMPTS} tries): "
        "the machine is probably busy; try again when it is quieter, or train with --backend "
        "local")


@contextlib.contextmanager
def ray_session(config: Config, address: str | None) -> Iterator[RaySession]:
    """Connect to Ray for one run, and always disconnect: with no `address`, a private Ray
    instance on this machine with one CPU per worker, shut down (every process of it) at the
    end; with one, join that cluster. A Ray already connected in this process (a notebook's)
    is used as it is and left running.

    Ray on Linux gives even a one-machine instance the machine's network address, not
    127.0.0.1 (it maps loopback addresses to it); Ray's token authentication, on by default
    for a local instance, keeps others out.
    """
    require_ray()
    if ray.is_initialized():
        yield RaySession(None, False, ray.cluster_resources().get("CPU", 0.0))
        return
    on_main = threading.current_thread() is threading.main_thread()
    saved_term = signal.getsignal(signal.SIGTERM) if on_main else None
    env = LOCAL_RAY_ENV if address is None else {}
    saved_env = {k: os.environ.get(k) for k in env}
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        for k, v in env.items():
            os.environ.setdefault(k, v)
        try:
            if address is None:
                _start_local_ray(config, quiet)
            else:
                ray.init(address=address, **quiet)
        except ConnectionError as e:
            raise ConfigError(f"--address {address!r}: no Ray cluster to join there ({e}); "
                              "give the HOST:PORT of a running head node, or 'auto'") from None
        yield RaySession(address, address is None, ray.cluster_resources().get("CPU", 0.0))
    finally:
        ray.shutdown()  # every process of a local instance ends here
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)  # ray.init replaced it
        for k, old in saved_env.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


class RayBackend:
    """The trainer's children as Ray actors (see the module docstring)."""

    name = "ray"

    def __init__(self, config: Config, model: torch.nn.Module, optimizer: SharedAdam,
                 session: RaySession) -> None:
        self.config, self.model, self.optimizer, self.session = config, model, optimizer, session
        self.server: Any = None
        self.actors: dict[str, Any] = {}
        self.tasks: dict[str, Any] = {}  # name -> the ObjectRef of the actor's run()
        self.totals = Totals()
        self.started: list[str] = []
        self.children_started = 0.0

    def start(self, generation: int) -> None:
        config = self.config
        # The server and the evaluator take no CPU slot: the cluster's CPUs go to workers
        # (the local backend's evaluator shares the cores too, at a lower priority).
        server_class = ray.remote(num_cpus=0, max_restarts=0)(ParameterServer)
        worker_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(A3CWorker)
        evaluator_class = ray.remote(num_cpus=0, max_restarts=-1,
                                     max_task_retries=-1)(A3CEvaluator)
        weights = flatten(list(self.model.parameters()), torch.zeros(flat_size(self.model)))
        # The actors find the server by name: a handle among an actor's constructor arguments
        # would live in the object store, which Ray cannot promise to keep for a restart.
        name = f"a3c-parameter-server-{uuid.uuid4().hex[:12]}"
        self.server = server_class.options(name=name).remote(
            config, weights, self.optimizer.state_dict(), config.workers)
        for i in range(config.workers):
            self.actors[f"worker-{i}"] = worker_class.remote(i, config, name, generation)
        self.actors["evaluator"] = evaluator_class.remote(config, name, generation)
        for child, actor in self.actors.items():
            self.tasks[child] = actor.run.remote()
        self.children_started = time.monotonic()

    def _call(self, method: Any, *args: Any) -> Any:
        """A call to the parameter server from the driver; its death ends the run."""
        try:
            return ray.get(method.remote(*args), timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as e:
            raise TrainingError(f"the parameter server is gone ({type(e).__name__}); resume "
                                "from the last checkpoint") from None

    def poll(self) -> Poll:
        """The server's totals and events (restarts among them: Ray restarts a dead actor);
        an actor whose run() ended, or workers that never started, as Fatal events."""
        if self.server is None:
            return Poll(self.totals)
        poll, self.started = self._call(self.server.poll)
        self.totals = poll.totals
        return Poll(self.totals, poll.events + self._ended())

    def _ended(self) -> list[Event]:
        """An actor's run() ends only on a stop, a divergence or an error."""
        found: list[Event] = []
        done, _ = ray.wait(list(self.tasks.values()), num_returns=len(self.tasks), timeout=0)
        for child, task in self.tasks.items():
            if task not in done:
                continue
            try:
                code = ray.get(task)
            except ray.exceptions.RayError as e:
                found.append(Fatal(child, f"{child} failed: "
                                          f"{str(e).strip().splitlines()[-1]}"))
                continue
            found.append(Fatal(child, diverged_message(child) if code == EXIT_DIVERGED
                               else f"{child} ended on its own (code {code})"))
        workers = len([n for n in self.started if n.startswith("worker")])
        if (workers < self.config.workers
                and time.monotonic() - self.children_started > START_TIMEOUT_S):
            found.append(Fatal("worker", (
                f"only {workers} of {self.config.workers} worker actors started within "
                f"{START_TIMEOUT_S:.0f} s: does the cluster have {self.config.workers} free "
                f"CPUs (it has {self.session.cpus:g})?")))
        return found

    def stop(self) -> Poll:
        """Stop flag on the server, a moment for the actors to finish, then kill them. The
        server stays until the final checkpoint; ray_session shuts everything down."""
        if self.server is None:
            return Poll(self.totals)
        events: list[Event] = []
        with contextlib.suppress(ray.exceptions.RayError, TimeoutError):
            ray.get(self.server.set_flag.remote("stop", True), timeout=10)
            ray.wait(list(self.tasks.values()), num_returns=len(self.tasks),
                     timeout=STOP_GRACE_S + 2.0)
        with contextlib.suppress(TrainingError):
            poll, _ = self._call(self.server.poll)
            self.totals = poll.totals
            events = poll.events
        for actor in self.actors.values():
            with contextlib.suppress(ray.exceptions.RayError):
                ray.kill(actor)
        self.tasks = {}
        return Poll(self.totals, events)

    def sync_model(self) -> bool:
        if self.server is None:
            return False
        try:
            model_state, optimizer_state = self._call(self.server.state)
        except TrainingError:
            return False
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        return True
