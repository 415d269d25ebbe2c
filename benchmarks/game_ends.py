"""How a greedy SpaceInvaders agent's games end: invaded with lives to spare, or on its last life.

    python benchmarks/game_ends.py pretrained:spaceinvaders --episodes 30

Plays AGENT (a checkpoint file or pretrained:NAME) greedily with sticky actions on the
validation seeds (select_agent.py's; --seed 20000000 gives the ship seeds) and reads the lives
the ALE counts after every step. A shot takes one life; invaders that reach the ground end the
game at once and the counter drops to 0 from whatever was left. So a game that loses two or
more lives in its last step was **invaded** with lives to spare; one that ends losing its
**last life** was shot, or invaded on that life (the counter cannot tell those apart). For
every game it keeps the score, its length, and the step, score and lives left at each drop of
the counter. Writes benchmarks/results/game_ends-<name>.json (--out, --name) and prints how
many games ended each way, with their mean scores.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common

from a3c_course.checkpoint import CheckpointError, load_model
from a3c_course.envs import make_env
from a3c_course.evaluator import PlayedStep, play_episode


def how_it_ended(game_over: bool, lives_before_last_step: int) -> str:
    """'invaded' (the game ended taking two or more lives at once), 'last life' (it ended on
    its last life: shot, or invaded then) or 'cut short' (the episode's step limit ended it
    before the game did)."""
    if not game_over:
        return "cut short"
    return "invaded" if lives_before_last_step > 1 else "last life"


def play(agent: str, episodes: int, seed: int, sticky: float) -> list[dict[str, Any]]:
    """Greedy games of `agent`: each one's score, length, lives lost and how it ended."""
    model, config = load_model(agent)
    config = config.replace(repeat_action_probability=sticky)
    if "SpaceInvaders" not in config.env_id:
        raise ValueError(f"agent {agent!r} plays {config.env_id}: the endings told here are "
                         "SpaceInvaders', allowed is a SpaceInvaders agent")
    env = make_env(config, train=False)
    ale = env.unwrapped.ale
    games = []
    for game in range(episodes):
        lives_lost: list[dict[str, float]] = []
        # The lives before the game's first step are unknown here (reset happens inside
        # play_episode); a life is never lost on the first step.
        so_far: dict[str, Any] = {"score": 0.0, "lives": None, "before_last": None}

        def on_step(step: PlayedStep, lives_lost: list = lives_lost, so_far: dict = so_far
                    ) -> None:
            so_far["score"] += step.reward
            lives = ale.lives()
            if so_far["lives"] is not None and lives < so_far["lives"]:
                lives_lost.append({"step": step.step, "score": so_far["score"],
                                   "lives_left": lives})
            so_far["before_last"], so_far["lives"] = so_far["lives"], lives

        score, steps = play_episode(model, env, seed=seed + game, on_step=on_step)
        ended = how_it_ended(ale.game_over(), so_far["before_last"] or 0)
        games.append({"seed": seed + game, "score": score, "steps": steps,
                      "lives_before_last_step": so_far["before_last"], "ended": ended,
                      "lives_lost": lives_lost})
        print(f"game {game + 1}/{episodes}: {score:.0f} in {steps} steps, {ended}",
              file=sys.stderr, flush=True)
    env.close()
    return games


def summary(games: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each way a game ended: how many games, their mean, lowest and highest score."""
    out = {}
    for ended in ("invaded", "last life", "cut short"):
        scores = [g["score"] for g in games if g["ended"] == ended]
        if scores:
            out[ended] = {"games": len(scores), "mean_score": round(sum(scores) / len(scores), 1),
                          "min_score": min(scores), "max_score": max(scores)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_agent_play_args(p, "SpaceInvaders", episodes=30, kind="game_ends")
    args = p.parse_args(argv)
    common.check_agent_play_args(p, args)

    header = common.provenance()
    try:
        games = play(args.agent, args.episodes, args.seed, args.repeat_action_probability)
    except (CheckpointError, ValueError) as e:
        p.error(str(e))

    out, result = common.agent_play_result(args, "game_ends", header)
    scores = [g["score"] for g in games]
    result |= {
        "mean_score": round(sum(scores) / len(scores), 3),
        "by_ending": summary(games),
        "games": games,
    }
    common.write_json(out, result)
    told = "; ".join(f"{k}: {v['games']} games, mean {v['mean_score']:.1f} "
                     f"({v['min_score']:.0f}-{v['max_score']:.0f})"
                     for k, v in result["by_ending"].items())
    print(f"{args.episodes} games, mean {result['mean_score']:.1f}. {told} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
