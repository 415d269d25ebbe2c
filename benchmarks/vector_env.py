"""ale-py's native vector env against gymnasium's wrappers, per agent step, in one process.

Issue 15 asks whether ``ale_py.vector_env.AtariVectorEnv`` (frame skip, sticky actions and
auto-reset in C++) would make a worker's k games cheaper than gymnasium's ``SyncVectorEnv``
of k ``gym.make`` games, which the library uses. The native env has no crop, so it is asked
for whole grayscale frames and the library's own ``preprocess`` finishes the job. Four
pipelines step k games with the same random actions, in interleaved rounds (so a busy
machine slows each alike), one torch-free thread:

- ``native_bare``: AtariVectorEnv, whole frames, nothing else
- ``gymnasium_bare``: SyncVectorEnv of the bare games (:func:`a3c_course.envs.make_emulator`)
- ``native_preprocessed``: native_bare + crop/resize/standardize + frame stack in numpy
- ``library``: :func:`a3c_course.envs.make_worker_envs`, what a worker steps today

    python benchmarks/vector_env.py --model stack --set envs_per_worker=8 --rounds 7

writes benchmarks/results/vector_env-<preset>-<model>.json (microseconds per agent step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import common
import gymnasium as gym
import numpy as np

import a3c_course
from a3c_course.config import Config
from a3c_course.envs import make_emulator, make_worker_envs
from a3c_course.preprocess import preprocess


def native_env(config: Config) -> gym.vector.VectorEnv:
    """The config's game as ale-py's vector env: whole grayscale frames, one thread."""
    from ale_py.vector_env import AtariVectorEnv

    game = config.env_id.split("/")[-1].split("-")[0].lower()
    return AtariVectorEnv(
        game, config.envs_per_worker, num_threads=1, batch_size=0,
        repeat_action_probability=config.repeat_action_probability,
        frameskip=config.frame_skip, img_height=210, img_width=160, grayscale=True,
        stack_num=1, maxpool=False, noop_max=0, use_fire_reset=False, reward_clipping=False,
        autoreset_mode="SameStep")


def native_preprocessing(config: Config) -> Callable[[np.ndarray], np.ndarray]:
    """What make_env's wrappers do to a frame, on the native env's (k, 1, 210, 160) batch."""
    k, frames = config.envs_per_worker, config.stack_frames
    stacked = np.zeros((k, frames, config.frame_size, config.frame_size), np.float32)

    def finish(obs: np.ndarray) -> np.ndarray:
        stacked[:, :-1] = stacked[:, 1:]
        for i in range(k):
            stacked[i, -1] = preprocess(obs[i, 0], config.crop_top, config.crop_bottom,
                                        config.frame_size, True, config.standardize)[0]
        return stacked

    return finish


def time_steps(envs: gym.vector.VectorEnv, actions: np.ndarray,
               finish: Callable[[np.ndarray], Any] | None) -> float:
    """Microseconds per agent step over `actions` (steps x k)."""
    start = time.perf_counter()
    for a in actions:
        obs = envs.step(a)[0]
        if finish is not None:
            finish(obs)
    return 1e6 * (time.perf_counter() - start) / actions.size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_run_args(p)
    p.add_argument("--steps", type=int, default=30 if a3c_course.TEST_MODE else 300,
                   help="vector steps (of k agent steps) per pipeline and round")
    p.add_argument("--rounds", type=int, default=2 if a3c_course.TEST_MODE else 7)
    common.add_output_args(p, "vector_env-PRESET-MODEL")
    args = p.parse_args(argv)
    config, out = common.config_and_output(args, "vector_env")
    if not config.grayscale:
        p.error("--set grayscale=false: vector_env.py compares grayscale pipelines only "
                "(allowed: grayscale=true)")  # exit status 2, as for any bad argument
    header = common.provenance()
    k = config.envs_per_worker
    pipelines: dict[str, tuple[gym.vector.VectorEnv, Any]] = {
        "native_bare": (native_env(config), None),
        "gymnasium_bare": (gym.vector.SyncVectorEnv(
            [partial(make_emulator, config)] * k,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP), None),
        "native_preprocessed": (native_env(config), native_preprocessing(config)),
        "library": (make_worker_envs(config), None),
    }
    rng = np.random.default_rng(0)
    n_actions = int(pipelines["library"][0].single_action_space.n)
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    for envs, _ in pipelines.values():
        envs.reset(seed=0)
        time_steps(envs, rng.integers(0, n_actions, (20, k)), None)  # warm caches
    for _ in range(args.rounds):
        actions = rng.integers(0, n_actions, (args.steps, k))
        for name, (envs, finish) in pipelines.items():
            times[name].append(round(time_steps(envs, actions, finish), 1))
    for envs, _ in pipelines.values():
        envs.close()
    medians = {name: round(statistics.median(v), 1) for name, v in times.items()}
    result = {
        "benchmark": "vector_env",
        **header,
        "preset": args.preset,
        "model": args.model,
        "env": config.env_id,
        "envs_per_worker": k,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "us_per_agent_step": medians,
        "rounds_us_per_agent_step": times,
        # Below 1: the native env is the faster of the two.
        "native_over_gymnasium_bare": round(medians["native_bare"] / medians["gymnasium_bare"], 3),
        "native_preprocessed_over_library": round(
            medians["native_preprocessed"] / medians["library"], 3),
        "config": config.to_dict(),
    }
    common.write_json(out, result)
    print(" ".join(f"{n} {v:.0f} us" for n, v in medians.items()) + f" -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
