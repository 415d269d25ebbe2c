"""Where a greedy Pong agent loses its points: the steps before every point it lost.

    python benchmarks/lost_points.py checkpoints/pong-default-gru-84px-sticky-s3/best.pt \
        --episodes 10

Plays AGENT (a checkpoint file or pretrained:NAME) greedily with sticky actions on the
validation seeds (select_agent.py's) and follows the ball and the agent's paddle in the Atari's
RAM (Pong only). For every point the opponent scores it keeps the last --context steps: the
ball's and the paddle's positions after each step, the action, the policy's probabilities and
the value. Writes benchmarks/results/lost_points-<name>.json (--out, --name) and prints a
summary: the points lost, and how many of them the agent's value had called won a few steps
before (V > 0.5: it expected to score, then missed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common

from a3c_course.checkpoint import CheckpointError, load_model
from a3c_course.envs import make_env
from a3c_course.evaluator import PlayedStep, play_episode

# Pong's RAM (the addresses the Atari annotated-RAM literature uses, AtariARI among them).
BALL_X, BALL_Y, PADDLE_Y = 49, 54, 51
EXPECTED_WIN = 0.5  # a value above this: the agent counted on winning the point


def play(agent: str, episodes: int, seed: int, sticky: float, context: int
         ) -> tuple[list[float], list[dict[str, Any]]]:
    """Greedy games of `agent`; their scores and every lost point's last `context` steps."""
    model, config = load_model(agent)
    config = config.replace(repeat_action_probability=sticky)
    if "Pong" not in config.env_id:
        raise ValueError(f"agent {agent!r} plays {config.env_id}: the RAM addresses here "
                         "are Pong's, allowed is a Pong agent")
    env = make_env(config, train=False)
    ram = env.unwrapped.ale.getRAM
    scores, lost, recent = [], [], []

    for game in range(episodes):
        def on_step(step: PlayedStep, game: int = game) -> None:
            now = ram()
            recent.append({"step": step.step, "action": step.action,
                           "probs": [round(float(p), 3) for p in step.probs],
                           "value": round(step.value, 3), "reward": step.reward,
                           "ball_x": int(now[BALL_X]), "ball_y": int(now[BALL_Y]),
                           "paddle_y": int(now[PADDLE_Y])})
            del recent[:-context]
            if step.reward < 0:
                lost.append({"game": game, "step": step.step, "steps": list(recent)})

        recent.clear()
        score, _ = play_episode(model, env, seed=seed + game, on_step=on_step)
        scores.append(score)
        print(f"game {game + 1}/{episodes}: {score:+.0f}", file=sys.stderr, flush=True)
    env.close()
    return scores, lost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_agent_play_args(p, "Pong", episodes=10, kind="lost_points")
    p.add_argument("--context", type=int, default=12, help="steps kept before each lost point")
    args = p.parse_args(argv)
    common.check_agent_play_args(p, args, "context")

    header = common.provenance()
    try:
        scores, lost = play(args.agent, args.episodes, args.seed, args.repeat_action_probability,
                            args.context)
    except (CheckpointError, ValueError) as e:
        p.error(str(e))

    def expected_win(point: dict[str, Any]) -> bool:
        return any(s["value"] > EXPECTED_WIN for s in point["steps"])

    out, result = common.agent_play_result(args, "lost_points", header)
    result |= {
        "context": args.context,
        "scores": scores,
        "mean_score": round(sum(scores) / len(scores), 3),
        "points_lost": len(lost),
        "lost_after_expecting_to_win": sum(map(expected_win, lost)),
        "lost": lost,
    }
    common.write_json(out, result)
    print(f"{args.episodes} games, mean {result['mean_score']:+.2f}: {len(lost)} points lost, "
          f"{result['lost_after_expecting_to_win']} of them after the value said V > "
          f"{EXPECTED_WIN} (expected to score) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
