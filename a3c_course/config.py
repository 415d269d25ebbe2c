"""The one configuration object: typed, validated, with named presets.

The CLI, the notebooks, the trainer and saved runs (``config.json``, checkpoints) all use
:class:`Config`. Every value is checked in ``__post_init__``; a bad one raises
:class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

GAMES = {"pong": "ALE/Pong-v5", "spaceinvaders": "ALE/SpaceInvaders-v5"}
MODELS = ("gru", "stack")
# Non-Atari environments with vector observations: small enough to learn in a minute, so the
# tests can prove that the algorithm learns, not just runs.
CLASSIC_ENVS = ("CartPole-v1", "Acrobot-v1")


class ConfigError(ValueError):
    """A configuration value is out of range, of the wrong type, or unknown."""


def resolve_env_id(env: str) -> str:
    """Map a short name (``pong``) to its gymnasium id; pass ``ALE/...`` ids through."""
    key = env.lower().replace("-", "").replace("_", "")
    if key in GAMES:
        return GAMES[key]
    if env.startswith("ALE/"):
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)
        if env in gymnasium.registry:
            return env
    elif env in CLASSIC_ENVS:
        return env
    raise ConfigError(
        f"env={env!r} is not a known game: use one of {sorted(GAMES)} or an 'ALE/<Game>-v5' id"
        f" (or {'/'.join(CLASSIC_ENVS)} for quick checks)"
    )


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


@dataclass(frozen=True)
class Config:
    """Everything a run needs; the defaults are the `default` preset."""

    # Environment
    env: str = "pong"
    """game: 'pong', 'spaceinvaders' or any 'ALE/<Game>-v5' id"""
    frame_skip: int = 4
    """ALE frames per agent step (the action repeats)"""
    repeat_action_probability: float = 0.25
    """sticky actions: ALE v5's 0.25 is the modern protocol, 0.0 is deterministic"""
    max_pool_frames: bool = False
    """observe the pixel-wise max of each step's last two frames (DQN's fix for objects drawn
    on alternate frames only, such as SpaceInvaders' bullets), not the last frame alone"""
    life_loss_terminal: bool = False
    """in training, end the return (no bootstrap) where the game takes a life, without
    restarting the game: losing a life then costs the value of all that would have followed"""
    crop_top: int = 35
    """rows cut from the top of the 210-row frame (score board)"""
    crop_bottom: int = 15
    """rows cut from the bottom (border)"""
    frame_size: int = 42
    """side of the square network input after resizing"""
    grayscale: bool = True
    """one luminance channel instead of RGB"""
    standardize: bool = True
    """subtract each frame's mean and divide by its std, instead of the seed's plain 0..1"""
    stack_frames: int = 4
    """frames concatenated by the `stack` model (the `gru` model sees one)"""

    # Model
    model: str = "gru"
    """'gru': one frame + GRUCell; 'stack': the last `stack_frames` frames concatenated"""
    conv_channels: tuple[int, ...] = (16, 32, 32, 32)
    """output channels of each 3x3 stride-2 conv layer"""
    stack_widen_first: bool = False
    """`stack` model: its first layer as wide as its second (the seed's 12->16->16 for four RGB
    frames, where `gru` has 3->8->16); off, both models use `conv_channels` as given"""
    hidden_size: int = 256
    """GRUCell state size (`gru`) or width of the dense layer (`stack`)"""

    # A3C
    num_workers: int = 0
    """training processes; 0 means one per CPU core"""
    num_steps: int = 20
    """rollout length: steps between two updates (n of the n-step return)"""
    envs_per_worker: int = 8
    """games each worker plays side by side, acting for all of them in one batched forward
    pass and making one update from their rollouts (Hogwild across workers, a batch within
    one, as PAAC and GA3C do); 1 is the seed's loop"""
    lr: float = 3e-4
    """Adam learning rate"""
    lr_decay_steps: int = 0
    """decay the learning rate linearly from `lr` to 0 over this many agent steps (summed over
    workers; a budget past them trains on at lr 0); 0 keeps it constant"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 1.0
    """GAE lambda; 1.0 gives the plain n-step advantage R - V of the seed"""
    normalize_advantages: bool = False
    """rescale each update's advantages to mean 0 and std 1 (over all its steps and games)
    before the policy term; the seed uses them as they are"""
    entropy_coef: float = 0.01
    """weight of the entropy bonus"""
    value_coef: float = 0.5
    """weight of the value loss"""
    max_grad_norm: float = 40.0
    """gradients are clipped to this global norm before the hand-over"""
    clip_rewards: bool = True
    """clip training rewards to [-1, 1] (evaluation always reports the real score)"""

    # Budgets and evaluation
    max_steps: int = 20_000_000
    """stop after this many agent steps, summed over workers"""
    max_minutes: float = 0.0
    """stop after this many minutes of wall-clock time; 0 means no limit"""
    target_score: float | None = None
    """stop when the greedy agent's mean over `eval_episodes` episodes reaches this"""
    stop_at_target: bool = True
    """stop once the target is confirmed; False keeps training to the budget (best.pt keeps
    the best confirmed agent)"""
    eval_episodes: int = 10
    """episodes averaged to confirm the target score"""
    eval_interval_s: float = 0.0
    """pause between two greedy evaluation episodes (0: play continuously)"""
    eval_render: bool = False
    """show the evaluator's games in a window, as the seed did (needs a display)"""
    eval_nice: int = 10
    """scheduling niceness of the evaluator, so it yields CPU to the workers"""
    confirm_pause: bool = True
    """workers wait while the evaluator confirms the target (seconds instead of minutes)"""
    checkpoint_minutes: float = 5.0
    """minutes between two checkpoints (one is always written at the end)"""
    snapshot_minutes: float = 0.0
    """keep the shared weights every this many minutes in RUN_DIR/snapshots/ (small files,
    no optimizer, loadable by `a3c evaluate`), to watch the agent at each stage; 0: none"""
    seed: int = 0
    """random seed (workers use seed + 1000 * worker index)"""

    preset: str = "default"
    """name of the preset these values started from (informational)"""

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        hints = {f.name: f.type for f in dataclasses.fields(self)}
        for name in hints:
            _check_type(name, getattr(self, name), hints[name])
        resolve_env_id(self.env)
        _allowed("model", self.model, MODELS)
        _allowed("preset", self.preset, tuple(PRESETS))
        _between("frame_skip", self.frame_skip, 1, 64)
        _between("repeat_action_probability", self.repeat_action_probability, 0.0, 1.0)
        if self.max_pool_frames and (self.frame_skip < 2 or not is_atari(self.env_id)):
            raise ConfigError(
                f"max_pool_frames=True with env={self.env!r}, frame_skip={self.frame_skip}: "
                "allowed only for an Atari game with frame_skip >= 2 (two frames to pool)")
        if self.life_loss_terminal and not is_atari(self.env_id):
            raise ConfigError(f"life_loss_terminal=True with env={self.env!r}: allowed only "
                              "for an Atari game (the ALE counts the lives)")
        _at_least("crop_top", self.crop_top, 0)
        _at_least("crop_bottom", self.crop_bottom, 0)
        if self.crop_top + self.crop_bottom > 200:
            raise ConfigError(
                f"crop_top + crop_bottom = {self.crop_top + self.crop_bottom} leaves fewer than "
                "10 of the 210 rows: allowed is a sum of at most 200"
            )
        _between("frame_size", self.frame_size, 8, 1024)
        _between("stack_frames", self.stack_frames, 1, 64)
        if not self.conv_channels:
            raise ConfigError("conv_channels=() is empty: give at least one positive width")
        for c in self.conv_channels:
            if not 1 <= c <= 4096:
                raise ConfigError(
                    f"conv_channels={self.conv_channels}: widths must be 1 to 4096")
        if len(self.conv_channels) < 2 and self.model == "stack" and self.stack_widen_first:
            raise ConfigError("conv_channels needs at least 2 layers for the 'stack' model "
                              "with stack_widen_first=True")
        if self.frame_size / 2 ** len(self.conv_channels) < 1:
            raise ConfigError(
                f"conv_channels has {len(self.conv_channels)} stride-2 layers, too many for "
                f"frame_size={self.frame_size}: allowed is at most "
                f"{max(1, self.frame_size.bit_length() - 1)}"
            )
        _between("hidden_size", self.hidden_size, 1, 16384)
        _between("num_workers", self.num_workers, 0, 512)
        _between("num_steps", self.num_steps, 1, 10_000)
        _between("envs_per_worker", self.envs_per_worker, 1, 256)
        _positive("lr", self.lr)
        _between("lr_decay_steps", self.lr_decay_steps, 0, 10**12)
        _between("gamma", self.gamma, 0.0, 1.0)
        _between("gae_lambda", self.gae_lambda, 0.0, 1.0)
        _at_least("entropy_coef", self.entropy_coef, 0.0)
        _positive("value_coef", self.value_coef)
        _positive("max_grad_norm", self.max_grad_norm)
        _between("max_steps", self.max_steps, 1, 10**12)
        _at_least("max_minutes", self.max_minutes, 0.0, "a positive number of minutes, or 0")
        _between("eval_episodes", self.eval_episodes, 1, 10_000)
        _at_least("eval_interval_s", self.eval_interval_s, 0.0)
        _between("eval_nice", self.eval_nice, 0, 19)
        _positive("checkpoint_minutes", self.checkpoint_minutes)
        _at_least("snapshot_minutes", self.snapshot_minutes, 0.0,
                  "a positive number of minutes, or 0 (no snapshots)")
        _between("seed", self.seed, 0, 2**32 - 1)

    # ------------------------------------------------------------------ derived values
    @property
    def lr_decay_updates(self) -> float:
        """`lr_decay_steps` counted in updates (one update: `num_steps` steps of each of a
        worker's `envs_per_worker` games), the unit the optimizer counts in; 0: constant lr."""
        return self.lr_decay_steps / (self.num_steps * self.envs_per_worker)

    @property
    def env_id(self) -> str:
        """The gymnasium id of `env`."""
        return resolve_env_id(self.env)

    @property
    def workers(self) -> int:
        """`num_workers` with 0 resolved to the CPU count."""
        return self.num_workers or (os.cpu_count() or 1)

    @property
    def frame_channels(self) -> int:
        """Channels of one preprocessed frame."""
        return 1 if self.grayscale else 3

    @property
    def input_channels(self) -> int:
        """Channels the model's first layer reads."""
        frames = self.stack_frames if self.model == "stack" else 1
        return frames * self.frame_channels

    # ------------------------------------------------------------------ (de)serialisation
    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed, validated again."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}: allowed are {field_names()}")
        return dataclasses.replace(self, **changes)

    def changes_from_preset(self) -> dict[str, Any]:
        """The fields that shape learning and differ from the config's preset (labels for
        results: budgets, seeds, the game and the model are left out)."""
        base = make_config(self.preset).to_dict()
        mine = self.to_dict()
        # A field the model does not read changes nothing (the GRU has no widened layer).
        unused = {"stack_widen_first"} if self.model != "stack" else set()
        return learning_changes({k: v for k, v in mine.items()
                                 if k not in unused and base[k] != v})

    def relabelled(self) -> Config:
        """This config under the preset it differs least from in the fields that shape
        learning (its own preset on a tie).

        A result keeps the name of the preset it was run with, but a preset can change: the
        `default` of the runs made before issue 15 is today's `classic`. Labelled this way, an
        old result reads as what it is today, not as today's default with changes.
        """
        def differences(name: str) -> tuple[int, bool]:
            return len(self.replace(preset=name).changes_from_preset()), name != self.preset

        return self.replace(preset=min(PRESETS, key=differences))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Rebuild a config saved by :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        # Saved before a field existed, a config meant that field's behaviour back then, not
        # today's default: frames were plain 0..1 before `standardize` was added.
        for name, old_behaviour in FIELDS_ADDED_LATER.items():
            data.setdefault(name, old_behaviour)
        if isinstance(data.get("conv_channels"), list):
            data["conv_channels"] = tuple(data["conv_channels"])
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}: allowed are {field_names()}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def learning_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """The entries of a {field: value} dict that change how a run learns: budgets, seeds,
    the game, the model and labels left out (e.g. a `resume` row's "changed")."""
    return {k: v for k, v in changes.items() if k not in _NOT_A_VARIANT}


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def field_docs() -> dict[str, str]:
    """One line of help per field, read from the docstrings under each field."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Config))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = nxt.value.value.strip()  # type: ignore[attr-defined]
    return docs


# Fields that say how long or on what a run trains, not how it learns.
_NOT_A_VARIANT = {"env", "model", "num_workers", "seed", "max_steps", "max_minutes",
                  "target_score", "repeat_action_probability", "preset", "checkpoint_minutes",
                  "stop_at_target", "eval_render", "confirm_pause", "snapshot_minutes"}

# Fields added after runs were saved without them, with the behaviour those runs had.
FIELDS_ADDED_LATER: dict[str, Any] = {"standardize": False, "eval_render": False,
                                      "stop_at_target": True, "confirm_pause": False,
                                      "snapshot_minutes": 0.0, "envs_per_worker": 1,
                                      "stack_widen_first": True, "lr_decay_steps": 0,
                                      "normalize_advantages": False, "max_pool_frames": False,
                                      "life_loss_terminal": False}

# ---------------------------------------------------------------------- presets
PRESETS: dict[str, dict[str, Any]] = {
    # The network of the A3C code the seed cites (42x42 gray, four 3x3 stride-2 convs, a
    # 256-wide recurrent core, 20-step rollouts), with a 16-wide first layer and channels-last
    # convs for speed (benchmarks/results/throughput-*.json); standardized frames (learn several
    # times faster: benchmarks/results/time_to_win-*); one worker per core, each playing 8 games
    # with one batched forward pass, Adam 3e-4 (issue 15: 0.34 of the emulator's speed against
    # 0.17, and sticky-action Pong won on every held-out seed measured; README).
    "default": {},
    # The default until issue 15 (and the runs made with it then, which say "default" in their
    # files): the classic A3C loop, one game per worker, Adam 1e-4, the stack model's first
    # layer widened as the seed's was. What batching 8 games per worker buys is the difference
    # between this preset and the default.
    "classic": {"envs_per_worker": 1, "lr": 1e-4, "stack_widen_first": True},
    # Exactly the seed notebook: 160x160 RGB, conv 3->8->16->..., 8 processes, 30-step
    # rollouts, Adam, plain R - V advantage. Its learning rate and coefficients are those of
    # the public code it cites (ikostrikov/pytorch-a3c).
    "seed": {
        "frame_size": 160,
        "grayscale": False,
        "standardize": False,
        "conv_channels": (8, 16, 32, 64, 64),
        "stack_widen_first": True,
        "hidden_size": 256,
        "num_workers": 8,
        "envs_per_worker": 1,
        "num_steps": 30,
        "lr": 1e-4,
        "gae_lambda": 1.0,
        "entropy_coef": 0.01,
        "value_coef": 0.5,
        "max_grad_norm": 50.0,
        "preset": "seed",
    },
}


def make_config(preset: str = "default", **overrides: Any) -> Config:
    """The named preset with `overrides` applied; validates everything."""
    if preset not in PRESETS:
        raise ConfigError(f"preset={preset!r} is unknown: allowed are {sorted(PRESETS)}")
    values = {**PRESETS[preset], "preset": preset}
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown}: allowed are {field_names()}")
    values.update({k: v for k, v in overrides.items() if v is not None or k == "target_score"})
    return Config(**values)


def parse_value(name: str, text: str) -> Any:
    """Parse a command-line string for field `name` into the field's type."""
    if name not in field_names():
        raise ConfigError(f"unknown config field {name!r}: allowed are {field_names()}")
    default = getattr(Config(), name)
    try:
        if name == "conv_channels":
            return tuple(int(x) for x in text.replace("(", "").replace(")", "").split(",") if x)
        if name == "target_score":
            return None if text.lower() in ("none", "") else float(text)
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return type(default)(text)
    except ValueError:
        kinds = {"conv_channels": "comma-separated list of whole numbers",
                 "target_score": "number (or 'none')"}
        kind = kinds.get(name) or ("true/false" if isinstance(default, bool)
                                   else type(default).__name__)
        raise ConfigError(f"{name}={text!r} is not a valid {kind}") from None


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items (the CLI's and the benchmarks') into typed overrides."""
    overrides: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is not FIELD=VALUE")
        name, text = item.split("=", 1)
        overrides[name.strip()] = parse_value(name.strip(), text.strip())
    return overrides


# ---------------------------------------------------------------------- checks
def _check_type(name: str, value: Any, hint: Any) -> None:
    hint = str(hint)
    if hint == "bool":
        ok = isinstance(value, bool)
    elif hint == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint == "float | None":
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    elif hint == "str":
        ok = isinstance(value, str)
    elif hint.startswith("tuple"):
        ok = isinstance(value, tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    else:  # pragma: no cover - a new field with a new type must be added here
        raise TypeError(f"no type check for field {name} of type {hint}")
    if not ok:
        raise ConfigError(f"{name}={value!r} has the wrong type: expected {hint}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not allowed: give a finite number")


def _allowed(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown: allowed are {list(allowed)}")


def _at_least(name: str, value: float, low: float, allowed: str | None = None) -> None:
    if value < low:
        raise ConfigError(f"{name}={value!r} is out of range: allowed is {allowed or f'>= {low}'}")


def _positive(name: str, value: float) -> None:
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name}={value!r} is out of range: allowed is a finite number > 0")


def _between(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range: allowed is {low} to {high}")


__all__ = [
    "Config",
    "ConfigError",
    "GAMES",
    "MODELS",
    "PRESETS",
    "field_docs",
    "field_names",
    "make_config",
    "parse_sets",
    "parse_value",
    "resolve_env_id",
]
