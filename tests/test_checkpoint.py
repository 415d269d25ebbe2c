"""checkpoint.py: round trip, atomic write, and a clear CheckpointError for every bad file."""

from __future__ import annotations

import os
import pickle
import random
import shlex
from pathlib import Path

import pytest
import torch

from a3c_course.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_compatible,
    check_optimizer_state,
    check_shapes,
    load_checkpoint,
    load_model,
    resolve_path,
    save_checkpoint,
)
from a3c_course.config import Config, make_config
from a3c_course.models import ActorCritic, build_model
from a3c_course.shared_adam import SharedAdam

# Small networks: the checks do not depend on size, and small files are quick to write.
SMALL = dict(frame_size=16, conv_channels=(4, 8), hidden_size=16)
ACTIONS = 6


def _trained(config: Config, seed: int = 0) -> tuple[ActorCritic, SharedAdam]:
    """A model and its optimizer after one step, so neither is in its initial state."""
    torch.manual_seed(seed)
    model = build_model(config, ACTIONS)
    optimizer = SharedAdam(model.parameters(), lr=1e-3)
    obs = torch.rand(2, config.input_channels, config.frame_size, config.frame_size)
    logits, value, _ = model(obs, model.initial_state(2))
    (logits.sum() + value.sum()).backward()
    optimizer.step()
    return model, optimizer


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Config, ActorCritic, SharedAdam]:
    config = make_config(env="spaceinvaders", model="gru", **SMALL)
    model, optimizer = _trained(config)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, config, model, optimizer, {"steps": 1234, "updates": 41})
    return path, config, model, optimizer


def _error(path: Path | str) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    return str(info.value)


# ---------------------------------------------------------------------- good files


def test_round_trip(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, config, model, optimizer = saved
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == config
    assert checkpoint.counters == {"steps": 1234, "updates": 41}
    assert checkpoint.model_state.keys() == model.state_dict().keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(checkpoint.model_state[key], tensor), key
    assert isinstance(checkpoint.torch_rng, torch.Tensor)

    # The optimizer state comes back into a fresh shared Adam, still in shared memory.
    fresh = SharedAdam(build_model(config, ACTIONS).parameters(), lr=1e-3)
    fresh.load_state_dict(checkpoint.optimizer_state)
    for s, t in zip(optimizer.state.values(), fresh.state.values(), strict=True):
        assert float(t["step"]) == 1.0
        assert torch.equal(s["exp_avg"], t["exp_avg"]) and t["exp_avg"].is_shared()


def test_load_model_plays_like_the_saved_one(
        saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, config, model, _ = saved
    loaded, loaded_config = load_model(path)
    assert loaded_config == config and not loaded.training
    obs = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        expected = model(obs, model.initial_state(3))
        got = loaded(obs, loaded.initial_state(3))
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)


def test_save_is_atomic_and_leaves_no_temporary_file(
        saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, config, _, _ = saved
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    # Overwriting replaces the file whole, again with no .tmp left behind.
    other, _ = _trained(config, seed=1)
    save_checkpoint(path, config, other, None, {"steps": 99})
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    checkpoint = load_checkpoint(path)
    assert checkpoint.counters == {"steps": 99} and checkpoint.optimizer_state is None
    assert torch.equal(checkpoint.model_state["policy.weight"], other.policy.weight)


def test_a_stale_temporary_file_does_not_matter(
        saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    # What a crash between write and rename leaves: a half-written .tmp beside the old file.
    path, config, model, _ = saved
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(path.read_bytes()[:100])
    assert load_checkpoint(path).counters["steps"] == 1234
    save_checkpoint(path, config, model)
    assert not tmp.exists()


def test_cartpole_checkpoint_round_trip(tmp_path: Path) -> None:
    config = make_config(env="CartPole-v1", hidden_size=8)
    torch.manual_seed(0)
    model = build_model(config, 2, obs_shape=(4,))
    save_checkpoint(tmp_path / "c.pt", config, model)
    loaded, _ = load_model(tmp_path / "c.pt")
    assert torch.equal(loaded.policy.weight, model.policy.weight)


# ---------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.pt")
    assert "nope.pt" in message and "does not exist" in message


def test_a_directory(tmp_path: Path) -> None:
    assert "is not a file" in _error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.touch()
    message = _error(path)
    assert "empty.pt" in message and "empty" in message


def test_truncated_checkpoint(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert "checkpoint.pt" in message and "truncated or corrupted" in message


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(random.Random(seed).randbytes(4096))
    message = _error(path)
    assert "noise.pt" in message and "not a torch checkpoint" in message


def test_random_bytes_inside_a_zip_header(tmp_path: Path) -> None:
    # Starts like a torch file, then garbage: still a CheckpointError, never another exception.
    path = tmp_path / "noise.pt"
    path.write_bytes(b"PK\x03\x04" + random.Random(0).randbytes(4096))
    assert "truncated or corrupted" in _error(path)


class _RunsCode:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "a3c-course", "model": _RunsCode(marker)}, path)
    message = _error(path)
    assert "evil.pt" in message and "refused" in message and "could run code" in message
    assert not marker.exists(), "loading the checkpoint ran code"
    # The file is really dangerous: an unsafe load does run it (which is why it is refused).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_bare_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": _RunsCode(marker)}))
    assert "evil.pkl" in _error(path)
    assert not marker.exists(), "loading the checkpoint ran code"


def test_a_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"a": torch.zeros(3)}, path)
    message = _error(path)
    assert "foreign.pt" in message and "not an a3c-course checkpoint" in message
    torch.save(torch.zeros(3), path)  # not even a dict
    assert "not an a3c-course checkpoint" in _error(path)


def test_a_bare_state_dict_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(build_model(make_config(**SMALL), ACTIONS).state_dict(), path)
    assert "not an a3c-course checkpoint" in _error(path)


def _rewrite(path: Path, **changes: object) -> None:
    """Load the raw payload, change some entries, save it again (a tampered checkpoint)."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_a_newer_format_version(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    _rewrite(saved[0], format_version=99)
    assert "format_version=99" in _error(saved[0])


def test_an_invalid_config(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, config, _, _ = saved
    _rewrite(path, config={**config.to_dict(), "lr": -1.0})
    message = _error(path)
    assert "invalid config" in message and "lr=-1.0" in message


def test_no_model_weights(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    _rewrite(saved[0], model=None)
    assert "no model weights" in _error(saved[0])


def test_weights_of_another_size(tmp_path: Path) -> None:
    # The file says frame_size=16 but holds a frame_size=42 network (same layers, wider GRU input).
    path = tmp_path / "mixed.pt"
    big = build_model(make_config(**{**SMALL, "frame_size": 42}), ACTIONS)
    save_checkpoint(path, make_config(**SMALL), big)
    message = _error(path)
    assert "mixed.pt" in message and "has shape" in message and "needs" in message


def test_weights_of_another_model(tmp_path: Path) -> None:
    # A stack network saved under a gru config: different layers altogether.
    path = tmp_path / "mixed.pt"
    stack = build_model(make_config(model="stack", **SMALL), ACTIONS)
    save_checkpoint(path, make_config(model="gru", **SMALL), stack)
    message = _error(path)
    assert "does not hold a 'gru' model" in message


def test_check_shapes_directly(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    checkpoint = load_checkpoint(saved[0])
    check_shapes(checkpoint)  # a good one passes
    wider = Checkpoint(checkpoint.config.replace(hidden_size=32), checkpoint.model_state)
    with pytest.raises(CheckpointError, match="needs"):
        check_shapes(wider)
    headless = Checkpoint(checkpoint.config, {})
    with pytest.raises(CheckpointError, match="policy.weight"):
        check_shapes(headless)


@pytest.mark.parametrize(("field", "value"), [
    ("env", "pong"), ("model", "stack"), ("frame_size", 32), ("grayscale", False),
    ("conv_channels", (4, 4)), ("hidden_size", 8), ("crop_top", 30)])
def test_resuming_with_a_config_that_shapes_another_model(
        saved: tuple[Path, Config, ActorCritic, SharedAdam], field: str, value: object) -> None:
    checkpoint = load_checkpoint(saved[0])
    other = checkpoint.config.replace(**{field: value})
    with pytest.raises(CheckpointError) as info:
        check_compatible(checkpoint, other)
    assert f"{field}={value!r}" in str(info.value)


def test_resuming_may_change_what_does_not_shape_the_model(
        saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    checkpoint = load_checkpoint(saved[0])
    check_compatible(checkpoint, checkpoint.config.replace(lr=3e-4, num_workers=2, seed=7))


def test_unknown_pretrained_name_lists_the_available_ones() -> None:
    with pytest.raises(CheckpointError) as info:
        resolve_path("pretrained:nope")
    message = str(info.value)
    assert "'nope'" in message and "available are [" in message
    assert "'nope'" in _error("pretrained:nope")


def test_resolve_path_passes_file_paths_through(tmp_path: Path) -> None:
    assert resolve_path(tmp_path / "x.pt") == tmp_path / "x.pt"
    assert resolve_path("runs/a/checkpoint.pt") == Path("runs/a/checkpoint.pt")


def test_weights_that_are_not_tensors(saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, _, model, _ = saved
    _rewrite(path, model={**model.state_dict(), "policy.weight": "not a tensor"})
    assert "are not tensors" in _error(path) and "policy.weight" in _error(path)


def test_counters_that_are_not_numbers(saved: tuple[Path, Config, ActorCritic, SharedAdam]
                                       ) -> None:
    _rewrite(saved[0], counters={"steps": "many"})
    assert "'counters' must map names to numbers" in _error(saved[0])


def test_optimizer_state_is_checked_before_resuming(
        saved: tuple[Path, Config, ActorCritic, SharedAdam]) -> None:
    path, _, model, optimizer = saved
    check_optimizer_state(load_checkpoint(path), model)  # the real one passes
    state = optimizer.state_dict()
    first = state["state"][0]
    wrong = {**state, "state": {**state["state"],
                                0: {**first, "exp_avg": torch.zeros(first["exp_avg"].numel() + 1)}}}
    _rewrite(path, optimizer=wrong)
    with pytest.raises(CheckpointError, match="exp_avg of parameter 0 has shape"):
        check_optimizer_state(load_checkpoint(path), model)
    _rewrite(path, optimizer={"state": {}})
    with pytest.raises(CheckpointError, match="optimizer state is malformed"):
        check_optimizer_state(load_checkpoint(path), model)
    _rewrite(path, optimizer=None)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        check_optimizer_state(load_checkpoint(path), model)


def test_saving_on_windows_skips_the_folder_sync(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows cannot open a folder to fsync it: the save must not try (and still land)."""
    from a3c_course import checkpoint as module

    opened: list[object] = []
    real_open = module.os.open
    monkeypatch.setattr(module.sys, "platform", "win32")
    monkeypatch.setattr(module.os, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    config = make_config(frame_size=42, conv_channels=(8, 8, 8), hidden_size=32)
    model = build_model(config, 6)
    save_checkpoint(tmp_path / "w.pt", config, model, None, {"steps": 5})
    assert opened == [] and load_checkpoint(tmp_path / "w.pt").counters["steps"] == 5
