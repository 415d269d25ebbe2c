"""The local backend: workers and the evaluator as processes on this machine, sharing the
model, the Adam state, the counters and the flags in shared memory (Hogwild).

Each child gets its own one-way pipe for its events: no lock is shared between processes,
so a child killed in the middle of sending cannot block the others (a killed sender just
closes its pipe). The trainer reads the pipes in :meth:`LocalBackend.poll`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready
from typing import Any

import torch

from .children import (
    EXIT_DIVERGED,
    STOP_GRACE_S,
    Event,
    Fatal,
    Poll,
    Restarted,
    SharedFlag,
    SharedState,
    WorkerCounters,
    diverged_message,
    evaluator_seed,
    worker_seed,
)
from .config import Config
from .evaluator import evaluator_process
from .shared_adam import SharedAdam
from .worker import train_worker

KILL_WAIT_S = 1.0  # after terminate(), how long before kill()


def _child_main(target: Any, *args: Any) -> None:
    """A child process's body: `target`, then an immediate exit with its code.

    Its pipe and counters need no flushing (a pipe write is done when send returns), and the
    interpreter's tear-down of torch and the emulator would cost the stop a second or more.
    """
    code = 0
    try:
        target(*args)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


class PipeSink:
    """A child's end of its event pipe (picklable, so spawn hands it to the child)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def put(self, event: Event) -> None:
        self.connection.send(event)


@dataclasses.dataclass
class _Child:
    process: mp.process.BaseProcess
    events: Connection  # the trainer's (reading) end of the child's pipe
    started: float  # time.monotonic() at its start


class LocalBackend:
    """Hogwild in shared memory: the seed's design, one process per worker."""

    name = "local"

    def __init__(self, config: Config, model: torch.nn.Module, optimizer: SharedAdam) -> None:
        self.config = config
        # spawn: each child starts a fresh interpreter, the start method that is safe with
        # torch's threads (fork can deadlock in OpenMP) and works the same on every OS.
        self.ctx = mp.get_context("spawn")
        self.shared = SharedState(model=model, optimizer=optimizer,
                                  counters=WorkerCounters(config.workers), stop=SharedFlag(),
                                  pause=SharedFlag(), events=None)  # type: ignore[arg-type]
        self.children: dict[str, _Child] = {}
        self.starts: dict[str, int] = {}
        self.generation = 0

    # ------------------------------------------------------------------ Backend
    def start(self, generation: int) -> None:
        self.generation = generation
        for i in range(self.config.workers):
            self._start(f"worker-{i}")
        self._start("evaluator")

    def poll(self) -> Poll:
        events = self._read(wait=False)
        for name, child in list(self.children.items()):
            if child.process.is_alive():
                continue
            child.process.join()
            code = child.process.exitcode
            events += self._read_all(child)  # its last words come before its death
            del self.children[name]
            if code == EXIT_DIVERGED:
                events.append(Fatal(name, diverged_message(name)))
            else:
                events.append(Restarted(name, code, time.monotonic() - child.started))
                self._start(name)
        return Poll(self.shared.counters.totals(), events)

    def sync_model(self) -> bool:
        return True  # the trainer's model and optimizer are the shared ones, always current

    def stop(self) -> Poll:
        """Stop flag; a short grace (reading their pipes, so none blocks on a full one);
        then terminate, then kill."""
        self.shared.stop.set()
        events = self._drain_while_alive(STOP_GRACE_S)
        for child in self.children.values():
            if child.process.is_alive():
                child.process.terminate()
        events += self._drain_while_alive(KILL_WAIT_S)
        for child in self.children.values():
            if child.process.is_alive():
                child.process.kill()
            child.process.join()
            events += self._read_all(child)
            child.events.close()
        self.children = {}
        return Poll(self.shared.counters.totals(), events)

    def _drain_while_alive(self, seconds: float) -> list[Event]:
        """Read the children's events until all have exited or `seconds` have passed."""
        events: list[Event] = []
        deadline = time.monotonic() + seconds
        while self._alive() and time.monotonic() < deadline:
            events += self._read(wait=True, timeout=0.05)
        return events

    # ------------------------------------------------------------------ children
    def _start(self, name: str) -> None:
        starts = self.starts[name] = self.starts.get(name, 0) + 1
        reader, writer = self.ctx.Pipe(duplex=False)
        shared = dataclasses.replace(self.shared, events=PipeSink(writer))
        target: Any
        if name == "evaluator":
            seed = evaluator_seed(self.config.seed, self.generation, starts)
            target, args = evaluator_process, (self.config, shared, os.getpid(), seed)
        else:
            index = int(name.split("-")[1])
            seed = worker_seed(self.config.seed, index, self.generation, starts)
            target, args = train_worker, (index, self.config, shared, os.getpid(), seed)
        process = self.ctx.Process(target=_child_main, args=(target, *args), name=f"a3c-{name}",
                                   daemon=True)
        process.start()
        writer.close()  # the child holds the only write end: its death closes the pipe
        self.children[name] = _Child(process, reader, time.monotonic())

    def _alive(self) -> bool:
        return any(child.process.is_alive() for child in self.children.values())

    def _read(self, wait: bool, timeout: float = 0.0) -> list[Event]:
        """Events waiting in the children's pipes (waiting up to `timeout` for the first)."""
        connections = [child.events for child in self.children.values()]
        events: list[Event] = []
        for connection in wait_ready(connections, timeout if wait else 0):
            events += _drain(connection)  # type: ignore[arg-type]
        return events

    def _read_all(self, child: _Child) -> list[Event]:
        return _drain(child.events)


def _drain(connection: Connection) -> list[Event]:
    """Every whole event in one pipe now; a closed or broken pipe has nothing more."""
    events: list[Event] = []
    try:
        while not connection.closed and connection.poll():
            events.append(connection.recv())
    except (EOFError, OSError):
        pass
    return events
