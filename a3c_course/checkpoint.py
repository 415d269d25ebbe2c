"""Checkpoints: written atomically, read safely, checked against the model they claim to hold.

A checkpoint is a plain dict of tensors and JSON-able values, loaded with
``torch.load(weights_only=True)`` so a file can never run code. It is written to a temporary
file, flushed to disk and renamed over the old one, so a crash at any moment leaves the last
complete checkpoint in place.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Config, ConfigError, is_atari
from .envs import env_spaces
from .models import ActorCritic, build_model

FORMAT = "a3c-course"
FORMAT_VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
# Test hook: seconds to pause between writing the temporary file and renaming it, so a test
# can kill the trainer in the middle of a checkpoint.
WRITE_DELAY_ENV = "A3C_CHECKPOINT_WRITE_DELAY"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, foreign, or does not fit the model."""


@dataclass
class Checkpoint:
    config: Config
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    torch_rng: torch.Tensor | None = None


def save_checkpoint(path: str | Path, config: Config, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    counters: dict[str, Any] | None = None) -> None:
    """Write atomically: temporary file, fsync, rename over `path`."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        # clone: workers keep writing the shared tensors while this is being saved
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": _clone(optimizer.state_dict()) if optimizer is not None else None,
        "counters": dict(counters or {}),
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    delay = float(os.environ.get(WRITE_DELAY_ENV, "0") or 0)
    if delay > 0:
        import time

        time.sleep(delay)
    os.replace(tmp, path)
    _sync_directory(path.parent)


def _sync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX). Windows cannot open a folder as a file, and
    its rename is already recorded by the file system's journal: nothing to do there."""
    if sys.platform == "win32":
        return
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems refuse to sync a folder; the rename still happened
    finally:
        os.close(dir_fd)


def resolve_path(spec: str | Path) -> Path:
    """A file path, or ``pretrained:NAME`` for an agent shipped with the package."""
    spec = str(spec)
    if spec.startswith("pretrained:"):
        name = spec.split(":", 1)[1]
        path = PRETRAINED_DIR / f"{name}.pt"
        if not path.is_file():
            raise CheckpointError(
                f"pretrained agent {name!r} is unknown: available are {pretrained_names()}")
        return path
    return Path(spec)


def pretrained_names() -> list[str]:
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def load_checkpoint(spec: str | Path) -> Checkpoint:
    """Read and check a checkpoint; every problem is a :class:`CheckpointError`."""
    path = resolve_path(spec)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    with open(path, "rb") as f:
        magic = f.read(4)
    # torch.save writes a zip archive; anything else is garbage (or a bare pickle), which the
    # unpickler would misreport as unsafe or fail on with an arbitrary exception.
    if magic != b"PK\x03\x04":
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a torch checkpoint (not the zip archive torch.save "
            "writes): corrupted, or another kind of file?")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} was refused: it holds objects other than tensors and "
            f"plain values, which could run code ({_first_line(e)})") from None
    # Exception: a corrupted archive can make the unpickler fail with any error (IndexError,
    # KeyError, ...), and every problem must be a CheckpointError.
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a readable torch file (truncated or corrupted?): "
            f"{_first_line(e)}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is not an a3c-course checkpoint (no 'format': {FORMAT!r} entry)")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format_version={data.get('format_version')!r}: this "
            f"version of a3c-course reads format_version={FORMAT_VERSION}")
    try:
        config = Config.from_dict(data["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has an invalid config: {e}") from None
    model_state = data.get("model")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no model weights")
    bad = sorted(str(k) for k, v in model_state.items() if not torch.is_tensor(v))
    if bad:
        raise CheckpointError(f"checkpoint {str(path)!r}: model entries {bad[:4]} are not tensors")
    counters = data.get("counters") or {}
    if not isinstance(counters, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in counters.values()):
        raise CheckpointError(f"checkpoint {str(path)!r}: 'counters' must map names to numbers")
    checkpoint = Checkpoint(config, model_state, data.get("optimizer"), counters,
                            data.get("torch_rng"))
    check_shapes(checkpoint, path)
    return checkpoint


def check_shapes(checkpoint: Checkpoint, path: str | Path = "checkpoint") -> None:
    """The weights must be exactly those of the model the config describes."""
    state = checkpoint.model_state
    weight = state.get("policy.weight")
    if not torch.is_tensor(weight) or weight.ndim != 2:
        raise CheckpointError(f"checkpoint {str(path)!r} has no policy head ('policy.weight')")
    expected = _model_for(checkpoint.config, int(weight.shape[0])).state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not hold a {checkpoint.config.model!r} model: "
            f"missing {missing[:4]}, unexpected {extra[:4]}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: {key} has shape {tuple(state[key].shape)}, the "
                f"config's {checkpoint.config.model!r} model needs {tuple(tensor.shape)}")


def load_model(spec: str | Path) -> tuple[ActorCritic, Config]:
    """The model of a checkpoint, ready to play, with its config."""
    checkpoint = load_checkpoint(spec)
    num_actions = int(checkpoint.model_state["policy.weight"].shape[0])
    model = _model_for(checkpoint.config, num_actions)
    model.load_state_dict(checkpoint.model_state)
    model.eval()
    return model, checkpoint.config


def check_optimizer_state(checkpoint: Checkpoint, model: torch.nn.Module,
                          path: str | Path = "checkpoint") -> None:
    """A resumable checkpoint's Adam state: one (step, exp_avg, exp_avg_sq) per parameter,
    each moment shaped like its parameter."""
    state = checkpoint.optimizer_state
    params = list(model.parameters())
    if state is None:
        raise CheckpointError(f"cannot resume from {str(path)!r}: it has no optimizer state (an "
                              "exported agent, not a run)")
    groups = state.get("param_groups") if isinstance(state, dict) else None
    per_param = state.get("state") if isinstance(state, dict) else None
    if not isinstance(groups, list) or not isinstance(per_param, dict):
        raise CheckpointError(f"checkpoint {str(path)!r}: the optimizer state is malformed")
    ids = [i for g in groups if isinstance(g, dict) for i in g.get("params", [])]
    if ids != list(range(len(params))):
        raise CheckpointError(f"checkpoint {str(path)!r}: the optimizer state covers {len(ids)} "
                              f"parameters, the model has {len(params)}")
    for i, p in enumerate(params):
        entry = per_param.get(i)
        if not isinstance(entry, dict):
            raise CheckpointError(f"checkpoint {str(path)!r}: no optimizer state for parameter {i}")
        for key in ("exp_avg", "exp_avg_sq"):
            t = entry.get(key)
            if not torch.is_tensor(t) or tuple(t.shape) != tuple(p.shape):
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: optimizer {key} of parameter {i} has shape "
                    f"{tuple(t.shape) if torch.is_tensor(t) else None}, needs {tuple(p.shape)}")
        if not torch.is_tensor(entry.get("step")):
            raise CheckpointError(f"checkpoint {str(path)!r}: optimizer step {i} is not a tensor")


def _model_for(config: Config, num_actions: int) -> ActorCritic:
    obs_shape = None if is_atari(config.env_id) else env_spaces(config)[0]
    return build_model(config, num_actions, obs_shape)


def export_agent(src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """Write a checkpoint's model and config without the optimizer state (a third the size):
    a playable agent, as shipped in ``a3c_course/pretrained/``. Refuses to replace `dst`."""
    checkpoint = load_checkpoint(src)
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise CheckpointError(
            f"{str(dst)!r} exists: pass overwrite=True (--overwrite) to replace it")
    model = _model_for(checkpoint.config, int(checkpoint.model_state["policy.weight"].shape[0]))
    model.load_state_dict(checkpoint.model_state)
    counters = {k: v for k, v in checkpoint.counters.items() if k != "metrics_rows"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst, checkpoint.config, model, None, counters)
    return dst


def check_compatible(checkpoint: Checkpoint, config: Config) -> None:
    """Resuming with `config`: every field that shapes the model must match the checkpoint's."""
    shaping = ("env", "model", "frame_size", "grayscale", "stack_frames", "conv_channels",
               "hidden_size", "crop_top", "crop_bottom")
    for name in shaping:
        old, new = getattr(checkpoint.config, name), getattr(config, name)
        if old != new:
            raise CheckpointError(
                f"cannot resume: {name}={new!r} differs from the checkpoint's {name}={old!r}")


def _clone(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()  # no terminal colours
    return text[0][:200] if text else type(e).__name__
