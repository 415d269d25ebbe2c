"""The run directory: its files, and the one writer and reader of its metrics.

- ``config.json``   the run's :class:`Config`, written first
- ``metrics.jsonl`` one JSON object a line, append-only; every row has ``event``, ``time_s``
  and ``steps``; evaluation rows have ``eval_return``
- ``checkpoint.pt`` model, shared Adam state and counters, replaced atomically
- ``best.pt``       the agent whose confirmed greedy mean was best (when a target is set)
- ``snapshots/``    the shared weights every ``snapshot_minutes`` (``000600s.pt``: after 600 s
  of training), model only
- ``tensorboard/``  the same rows for TensorBoard (only with ``tensorboard=True``)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .config import Config, ConfigError

RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt")
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = "pip install 'a3c-course[tensorboard]'"
# Row fields that TensorBoard draws, per event, under "event/field".
TENSORBOARD_FIELDS = {
    "progress": ("steps_per_s", "policy_loss", "value_loss", "entropy", "grad_norm",
                 "skipped_share"),
    "episode": ("episode_return", "length"),
    "eval": ("eval_return", "eval_length"),
    "eval_confirm": ("eval_return",),
}


SNAPSHOTS_DIR = "snapshots"


def snapshot_path(run_dir: Path, time_s: float) -> Path:
    """Where the snapshot taken after `time_s` seconds of training goes (names sort in time)."""
    return run_dir / SNAPSHOTS_DIR / f"{int(time_s):06d}s.pt"


def snapshots(run_dir: str | Path) -> list[Path]:
    """A run's snapshots, oldest first."""
    return sorted((Path(run_dir) / SNAPSHOTS_DIR).glob("*s.pt"))


class RunDirError(ValueError):
    """The run directory cannot be used as asked (exists, or has nothing to resume)."""


def default_run_dir(config: Config) -> Path:
    """runs/<game>-<model>-<date-time>."""
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
        for old in snapshots(run_dir):
            old.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write `data` as indented JSON, atomically (a half-written file is worse than none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of a run's metrics.jsonl."""
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """Raise ConfigError, with the install command, when TensorBoard is not installed."""
    if not tensorboard_available():
        raise ConfigError(f"tensorboard=True needs TensorBoard, which is not installed: "
                          f"{TENSORBOARD_HINT}")


class MetricsLog:
    """metrics.jsonl (the trainer is its only writer), and optionally the same rows as
    TensorBoard scalars, with agent steps on the x axis."""

    def __init__(self, path: Path, keep_rows: int | None, tensorboard: bool = False) -> None:
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
        self.board: Any = None
        if tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(path.parent / TENSORBOARD_DIR))

    def write(self, row: dict[str, Any]) -> dict[str, Any]:
        self.file.write(json.dumps(row) + "\n")
        self.rows += 1
        if self.board is not None:
            for name in TENSORBOARD_FIELDS.get(row["event"], ()):
                value = row.get(name)
                if isinstance(value, (int, float)):
                    self.board.add_scalar(f"{row['event']}/{name}", value, row["steps"],
                                          walltime=None)
        return row

    def flush(self) -> None:
        self.file.flush()
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()
