"""config.py: presets, validation of every field, serialisation, command-line parsing."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from a3c_course.config import (
    PRESETS,
    Config,
    ConfigError,
    field_docs,
    field_names,
    make_config,
    parse_value,
    resolve_env_id,
)

# ---------------------------------------------------------------------- presets


def test_seed_preset_holds_the_seeds_choices() -> None:
    c = make_config("seed")
    assert c.preset == "seed"
    assert (c.frame_size, c.grayscale) == (160, False)  # 160x160 RGB
    assert c.frame_channels == 3
    assert c.num_workers == 8 and c.workers == 8
    assert c.num_steps == 30
    assert c.conv_channels[:2] == (8, 16)  # 3 -> 8 -> 16 -> ...
    assert (c.crop_top, c.crop_bottom) == (35, 15)
    assert c.gae_lambda == 1.0  # plain R - V advantage
    assert c.envs_per_worker == 1  # one game per process
    assert c.lr == 1e-4  # ikostrikov/pytorch-a3c's Adam, which the seed cites
    assert c.stack_widen_first  # its stack model: 12 -> 16 -> 16
    assert c.standardize is False  # plain 0..1 frames


def test_default_preset_differs_from_the_seed() -> None:
    default, seed = make_config(), make_config("seed")
    assert default == Config()
    assert default.preset == "default"
    assert (default.frame_size, default.grayscale) == (42, True)
    changed = {k for k, v in seed.to_dict().items() if default.to_dict()[k] != v}
    assert {"frame_size", "grayscale", "conv_channels", "num_workers", "num_steps",
            "envs_per_worker", "lr", "stack_widen_first"} <= changed


def test_every_preset_is_valid_and_knows_only_real_fields() -> None:
    for name, values in PRESETS.items():
        assert set(values) <= set(field_names()), name
        assert make_config(name).preset == name


def test_overrides_apply_on_top_of_the_preset() -> None:
    c = make_config("seed", num_workers=2, lr=3e-4)
    assert (c.num_workers, c.lr, c.frame_size) == (2, 3e-4, 160)
    # None means "not given" (a CLI flag left out).
    assert make_config("seed", num_workers=None).num_workers == 8


def test_derived_values() -> None:
    assert make_config(model="gru").input_channels == 1
    assert make_config(model="stack").input_channels == 4
    assert make_config("seed", model="stack").input_channels == 12
    assert make_config(num_workers=0).workers == (os.cpu_count() or 1)
    assert make_config().env_id == "ALE/Pong-v5"
    assert make_config(env="spaceinvaders").env_id == "ALE/SpaceInvaders-v5"


def test_lr_decay_steps_count_in_updates() -> None:
    # one update of a worker with 8 games and 20-step rollouts is 160 agent steps
    c = make_config(envs_per_worker=8, num_steps=20, lr_decay_steps=1_600_000)
    assert c.lr_decay_updates == 10_000
    assert make_config().lr_decay_updates == 0  # the default: a constant lr


def test_config_is_frozen_and_replace_validates() -> None:
    c = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0  # type: ignore[misc]
    assert c.replace(lr=2e-4).lr == 2e-4 and c.lr == 3e-4
    with pytest.raises(ConfigError, match="lr=-1"):
        c.replace(lr=-1.0)


def test_every_field_has_a_docstring() -> None:
    docs = field_docs()
    assert set(docs) == set(field_names())
    assert all(docs.values())


# ---------------------------------------------------------------------- validation

NAN, INF = float("nan"), float("inf")

# (field, bad value, text the error message must contain; None: "field=value!r")
BAD_VALUES: list[tuple[str, object, str | None]] = [
    ("env", 123, None),
    ("env", "tetris", None),
    ("env", "ALE/NoSuchGame-v5", None),
    ("frame_skip", 0, None),
    ("frame_skip", 2.5, None),
    ("repeat_action_probability", -0.1, None),
    ("repeat_action_probability", 1.5, None),
    ("repeat_action_probability", "0.25", None),
    ("repeat_action_probability", NAN, "repeat_action_probability=nan"),
    ("max_pool_frames", "yes", None),
    ("life_loss_terminal", 1, None),
    ("crop_top", -1, None),
    ("crop_bottom", -1, None),
    ("crop_bottom", 1.0, None),
    ("frame_size", 4, None),
    ("frame_size", "42", None),
    ("grayscale", 1, None),
    ("grayscale", "yes", None),
    ("stack_frames", 0, None),
    ("model", "lstm", None),
    ("model", None, None),
    ("conv_channels", (), None),
    ("conv_channels", (16, 0), None),
    ("conv_channels", [16, 32], None),
    ("conv_channels", (16, "32"), None),
    ("conv_channels", (16, 32, 32, 32, 32, 32, 32), "conv_channels has 7 stride-2 layers"),
    ("hidden_size", 0, None),
    ("hidden_size", 256.0, None),
    ("num_workers", -1, None),
    ("num_steps", 0, None),
    ("envs_per_worker", 0, None),
    ("envs_per_worker", 257, None),
    ("envs_per_worker", 2.0, None),
    ("lr", 0.0, None),
    ("lr", -1e-4, None),
    ("lr", INF, "lr=inf"),
    ("lr", "1e-4", None),
    ("lr_decay_steps", -1, None),
    ("lr_decay_steps", 1.5e6, None),
    ("gamma", 1.01, None),
    ("gamma", -0.5, None),
    ("gae_lambda", 2.0, None),
    ("normalize_advantages", 1, None),
    ("entropy_coef", -0.01, None),
    ("value_coef", 0.0, None),
    ("max_grad_norm", 0.0, None),
    ("clip_rewards", "no", None),
    ("clip_rewards", 0, None),
    ("max_steps", 0, None),
    ("max_steps", 1e6, None),
    ("max_minutes", -1.0, None),
    ("target_score", "18", None),
    ("eval_episodes", 0, None),
    ("eval_interval_s", -1.0, None),
    ("eval_render", 1, None),
    ("standardize", "yes", None),
    ("stop_at_target", 0, None),
    ("confirm_pause", "no", None),
    ("stack_widen_first", 1, None),
    ("eval_nice", 20, None),
    ("eval_nice", -1, None),
    ("checkpoint_minutes", 0.0, None),
    ("snapshot_minutes", -1.0, None),
    ("seed", -1, None),
    ("seed", True, None),
    ("preset", "fast", None),
]


@pytest.mark.parametrize(("field", "value", "expected"), BAD_VALUES,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES])
def test_bad_value_raises_config_error_naming_field_and_value(field: str, value: object,
                                                              expected: str | None) -> None:
    with pytest.raises(ConfigError) as info:
        Config(**{field: value})
    assert (expected or f"{field}={value!r}") in str(info.value)


def test_every_field_has_a_bad_value_in_the_table() -> None:
    # A new field without a validation test makes this fail.
    assert {f for f, _, _ in BAD_VALUES} == set(field_names())


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_crop_that_leaves_too_few_rows_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"crop_top \+ crop_bottom = 201"):
        Config(crop_top=150, crop_bottom=51)
    assert Config(crop_top=150, crop_bottom=50).crop_top == 150  # exactly 10 rows left


def test_stack_model_needs_two_conv_layers() -> None:
    assert Config(model="gru", conv_channels=(16,)).conv_channels == (16,)
    with pytest.raises(ConfigError, match="conv_channels.*'stack'"):
        Config(model="stack", conv_channels=(16,), stack_widen_first=True)


def test_allowed_values_at_the_edges_are_accepted() -> None:
    c = Config(repeat_action_probability=0.0, gamma=1.0, gae_lambda=0.0, entropy_coef=0.0,
               eval_nice=19, num_workers=0, seed=0, max_minutes=0.0, frame_size=8,
               conv_channels=(4, 4, 4), target_score=-21)
    assert c.target_score == -21


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="preset='fast' is unknown.*default.*seed"):
        make_config("fast")
    with pytest.raises(ConfigError, match="frame_sise"):
        make_config(frame_sise=84)
    with pytest.raises(ConfigError, match="frame_sise"):
        make_config().replace(frame_sise=84)
    with pytest.raises(ConfigError, match="frame_sise"):
        Config.from_dict({**make_config().to_dict(), "frame_sise": 84})
    with pytest.raises(ConfigError, match="frame_sise"):
        parse_value("frame_sise", "84")


def test_unknown_env_names_the_env_and_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        make_config(env="tetris")
    message = str(info.value)
    assert "env='tetris'" in message and "pong" in message and "spaceinvaders" in message


def test_resolve_env_id() -> None:
    assert resolve_env_id("pong") == "ALE/Pong-v5"
    assert resolve_env_id("Space_Invaders") == "ALE/SpaceInvaders-v5"
    assert resolve_env_id("ALE/Breakout-v5") == "ALE/Breakout-v5"
    assert resolve_env_id("CartPole-v1") == "CartPole-v1"
    with pytest.raises(ConfigError):
        resolve_env_id("MountainCar-v0")


# ---------------------------------------------------------------------- serialisation


@pytest.mark.parametrize("config", [
    make_config(),
    make_config("seed"),
    make_config("seed", model="stack", env="spaceinvaders", target_score=400.0, lr=3e-4),
    make_config(env="ALE/Breakout-v5", conv_channels=(8, 8), clip_rewards=False),
], ids=["default", "seed", "seed-overrides", "breakout"])
def test_to_dict_from_dict_round_trip_through_json(config: Config) -> None:
    data = json.loads(config.to_json())
    assert data == config.to_dict()
    assert isinstance(data["conv_channels"], list)
    again = Config.from_dict(data)
    assert again == config
    assert isinstance(again.conv_channels, tuple)


def test_from_dict_validates() -> None:
    with pytest.raises(ConfigError, match="a config must be a JSON object"):
        Config.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lr=-1"):
        Config.from_dict({**make_config().to_dict(), "lr": -1.0})


# ---------------------------------------------------------------------- parse_value


@pytest.mark.parametrize(("field", "text", "value"), [
    ("frame_size", "84", 84),
    ("lr", "3e-4", 3e-4),
    ("gamma", "1", 1.0),
    ("grayscale", "false", False),
    ("grayscale", "Yes", True),
    ("clip_rewards", "0", False),
    ("clip_rewards", "on", True),
    ("conv_channels", "8,16,32", (8, 16, 32)),
    ("conv_channels", "(8, 16)", (8, 16)),
    ("target_score", "18", 18.0),
    ("target_score", "None", None),
    ("env", "spaceinvaders", "spaceinvaders"),
    ("model", "stack", "stack"),
])
def test_parse_value(field: str, text: str, value: object) -> None:
    parsed = parse_value(field, text)
    assert parsed == value and type(parsed) is type(value)
    # What parse_value returns is what Config accepts.
    assert getattr(make_config(**{field: parsed}), field) == value


@pytest.mark.parametrize(("field", "text"), [
    ("frame_size", "eighty"),
    ("frame_size", "84.5"),
    ("lr", "fast"),
    ("grayscale", "maybe"),
    ("conv_channels", "8,a"),
    ("target_score", "high"),
])
def test_parse_value_refuses_bad_text(field: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_value(field, text)
    assert f"{field}={text!r}" in str(info.value)


def test_a_config_saved_before_standardize_existed_keeps_plain_frames() -> None:
    old = Config().to_dict()
    del old["standardize"]
    assert Config.from_dict(old).standardize is False
    assert Config.from_dict(Config().to_dict()).standardize is True  # today's default


def test_changes_from_preset_names_only_what_shapes_learning() -> None:
    assert make_config().changes_from_preset() == {}
    changed = make_config(hidden_size=128, seed=3, max_minutes=5.0, standardize=False)
    assert changed.changes_from_preset() == {"hidden_size": 128, "standardize": False}
    assert make_config("seed", num_workers=2).changes_from_preset() == {}


def test_relabelled_tells_a_result_by_the_preset_it_differs_least_from() -> None:
    # A run of the default before issue 15 recorded preset "default" and these values.
    before = make_config(model="stack", envs_per_worker=1, lr=1e-4, stack_widen_first=True)
    assert before.changes_from_preset() == {"stack_widen_first": True, "envs_per_worker": 1,
                                            "lr": 1e-4}
    assert before.relabelled().preset == "classic"
    assert before.relabelled().changes_from_preset() == {}
    assert before.replace(entropy_coef=0.003).relabelled().changes_from_preset() == {
        "entropy_coef": 0.003}
    # Today's default with one change stays the default; so does a tie.
    assert make_config(hidden_size=128).relabelled().preset == "default"
    assert make_config("seed", num_workers=2).relabelled().preset == "seed"
    assert make_config("classic").relabelled() == make_config("classic")
    # The GRU reads no stack_widen_first: it is no change for it.
    assert make_config(model="gru", stack_widen_first=True).changes_from_preset() == {}
