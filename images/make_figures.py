"""Draw the course's explanatory figures from real ALE frames and the library's own models.

    python images/make_figures.py          # writes images/preprocessing.png,
                                           # images/process_diagram.png, images/models.png

matplotlib only; every number on the figures (shapes, rows, parameter counts) is computed
here from `a3c_course`, so the figures follow the library when it changes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from a3c_course import make_config  # noqa: E402
from a3c_course.envs import make_env  # noqa: E402
from a3c_course.models import build_model, count_parameters  # noqa: E402
from a3c_course.preprocess import (  # noqa: E402
    crop,
    resize,
    scale,
    standardize,
    to_grayscale,
)

HERE = Path(__file__).resolve().parent
COMMAND = "made by: python images/make_figures.py"
DPI = 100
# The frame shown: seeded reset, seeded random actions, this many agent steps in (the Pong
# ball is in play there).
SEED, STEP = 0, 45


def raw_frame(game: str, steps: int = STEP, seed: int = SEED) -> np.ndarray:
    """The raw 210x160 RGB screen after `steps` seeded random actions (library env)."""
    env = make_env(make_config("seed", env=game), train=False, render_mode="rgb_array")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(steps):
        env.step(env.action_space.sample())
    frame = env.render()
    env.close()
    return frame


def footer(fig: plt.Figure, text: str) -> None:
    fig.text(0.995, 0.005, f"{text}   ({COMMAND})", ha="right", va="bottom", fontsize=7,
             color="0.4")


# ---------------------------------------------------------------------- preprocessing
def preprocessing_figure(path: Path) -> None:
    """raw -> crop (the seed's input) -> gray -> 42x42 -> standardize (the default input)."""
    seed, default = make_config("seed"), make_config("default")
    top, bottom = seed.crop_top, seed.crop_bottom
    games = {"Pong": "pong", "SpaceInvaders": "spaceinvaders"}
    fig, axes = plt.subplots(2, 5, figsize=(13.5, 7.2), gridspec_kw={"wspace": 0.35})
    for row, (title, game) in enumerate(games.items()):
        raw = raw_frame(game)
        cropped = crop(raw, top, bottom)
        gray = to_grayscale(cropped)
        small = scale(resize(gray, default.frame_size))
        standardized = standardize(resize(gray, default.frame_size))
        ax = axes[row, 0]
        ax.imshow(raw)
        # Shade what the crop throws away: score board on top, border at the bottom.
        for y0, h in ((0, top), (raw.shape[0] - bottom, bottom)):
            ax.add_patch(Rectangle((-0.5, y0 - 0.5), raw.shape[1], h, color="red", alpha=0.35))
        ax.set_title(f"{title}: raw 3x210x160\nred: top {top} / bottom {bottom} rows cut",
                     fontsize=9)
        axes[row, 1].imshow(cropped)
        axes[row, 1].set_title(f"crop: 3x{cropped.shape[0]}x{cropped.shape[1]}\n"
                               "= seed input (already 160x160), /255", fontsize=9)
        axes[row, 2].imshow(gray, cmap="gray", vmin=0, vmax=255)
        axes[row, 2].set_title(f"grayscale: 1x{gray.shape[0]}x{gray.shape[1]}", fontsize=9)
        axes[row, 3].imshow(small, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[row, 3].set_title(f"resize (area): 1x{small.shape[0]}x{small.shape[1]}\n"
                               "/255, drawn on 0..1", fontsize=9)
        # Standardized values have no fixed range: a symmetric one keeps 0 (the mean) mid-gray.
        limit = float(np.abs(standardized).max())
        axes[row, 4].imshow(standardized, cmap="gray", vmin=-limit, vmax=limit,
                            interpolation="nearest")
        axes[row, 4].set_title(f"standardize (own mean, std)\n= default input, "
                               f"drawn on \u00b1{limit:.1f}", fontsize=9)
        axes[row, 0].tick_params(labelsize=7)
        for col in range(1, 5):
            # Pixel ticks only on the raw frame: they would collide with the arrows.
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        for col in range(4):
            # An arrow between neighbouring panels, in figure coordinates.
            a, b = axes[row, col].get_position(), axes[row, col + 1].get_position()
            fig.add_artist(FancyArrowPatch((a.x1 + 0.005, (a.y0 + a.y1) / 2),
                                           (b.x0 - 0.005, (b.y0 + b.y1) / 2),
                                           transform=fig.transFigure, arrowstyle="-|>",
                                           mutation_scale=14, color="0.3"))
    fig.suptitle("Preprocessing: seed preset = crop only (3x160x160 RGB, /255); "
                 "default preset = crop, gray, 42x42, standardized", fontsize=11)
    footer(fig, f"real ALE frames: reset(seed={SEED}), {STEP} seeded random steps")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------------- process diagram
def box(ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str,
        fontsize: float = 9, weight: str = "normal", lw: float = 1.2) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
                                facecolor=color, edgecolor="0.25", linewidth=lw))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize,
            weight=weight, wrap=True)


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str,
          text: str = "", text_xy: tuple[float, float] | None = None, style: str = "-|>",
          ls: str = "-", rad: float = 0.0, fontsize: float = 8) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color,
                                 linewidth=1.6, linestyle=ls,
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text(*text_xy, text, color=color, fontsize=fontsize, ha="center", va="center")


def process_diagram(path: Path) -> None:
    """Hogwild: shared model + shared Adam in shared memory, N workers, the evaluator."""
    fig, ax = plt.subplots(figsize=(11, 6.6))
    ax.set_xlim(0, 16)
    ax.set_ylim(0, 10)
    ax.axis("off")
    sync, grads, evalc = "tab:blue", "tab:red", "tab:green"

    # Shared memory: one copy of the weights and of Adam's moments, visible to every process.
    ax.add_patch(FancyBboxPatch((3.3, 6.3), 8.4, 3.2, boxstyle="round,pad=0.05",
                                facecolor="#fff4d6", edgecolor="0.3", linestyle="--"))
    ax.text(7.5, 9.2, "shared memory (tensors moved there by .share_memory())", ha="center",
            fontsize=9, style="italic")
    box(ax, 3.6, 6.6, 3.9, 2.3, "shared model\nActorCritic\n(the one set of weights)",
        "#ffe08a", weight="bold")
    box(ax, 8.3, 6.6, 3.1, 2.3, "SharedAdam\nstep, m, v\nin shared memory", "#ffd0a0",
        weight="bold")
    arrow(ax, (8.3, 7.75), (7.5, 7.75), "0.2")
    ax.text(7.9, 7.25, "step()", fontsize=7.5, ha="center")

    # Evaluator: greedy play with its own copy, reloaded after each episode.
    box(ax, 0.1, 6.6, 2.7, 2.3, "evaluator\n(process)\ngreedy: argmax\nreal score ->\n"
        "metrics.jsonl", "#d8f0d8", fontsize=8.5)
    arrow(ax, (3.6, 7.75), (2.8, 7.75), evalc, ls="--")
    ax.text(1.45, 9.35, "loads the shared weights\nafter each episode", color=evalc,
            fontsize=8, ha="center")

    # The trainer owns the processes.
    box(ax, 12.3, 6.6, 3.5, 2.3, "trainer\n(main process)\nstarts, watches,\nrestarts;"
        " checkpoint.pt", "#eeeeee", fontsize=8.5)

    # Workers: each its own process with its own env and local model.
    xs = [0.3, 4.3, 10.0]
    targets = [4.3, 5.55, 6.8]  # where each worker's arrows meet the shared model
    for i, (x, tx) in enumerate(zip(xs, targets, strict=True)):
        name = "worker N" if i == 2 else f"worker {i + 1}"
        ax.add_patch(FancyBboxPatch((x, 0.5), 3.4, 3.4, boxstyle="round,pad=0.05",
                                    facecolor="#e8f0fb", edgecolor="0.3"))
        ax.text(x + 1.7, 3.6, f"{name} (process)", ha="center", fontsize=9, weight="bold")
        box(ax, x + 0.2, 0.7, 1.3, 1.6, "env\n(ALE,\npre-\nprocess)", "#ffffff", fontsize=8)
        box(ax, x + 1.8, 0.7, 1.4, 1.6, "local\nmodel", "#cfe0f7", fontsize=8)
        arrow(ax, (x + 1.5, 1.9), (x + 1.8, 1.9), "0.3")
        arrow(ax, (x + 1.8, 1.1), (x + 1.5, 1.1), "0.3")
        ax.text(x + 1.7, 2.85, "play n steps: a ~ softmax(logits)\nthen loss, backward, clip",
                ha="center", fontsize=7.5)
        lx = x + 2.5
        arrow(ax, (tx - 0.2, 6.6), (lx - 0.25, 3.95), sync)
        arrow(ax, (lx + 0.25, 3.95), (tx + 0.2, 6.6), grads)
    ax.text(8.85, 2.2, ". . .", fontsize=18, ha="center")
    ax.text(1.3, 5.5, "copy weights (sync)\nbefore every rollout", color=sync, fontsize=8.5,
            ha="center")
    ax.text(1.3, 4.45, "hand over gradients\nshared.grad = local.grad,\nthen Adam step()",
            color=grads, fontsize=8.5, ha="center")
    ax.text(13.3, 5.1, "no locks: each worker updates\nthe shared weights whenever\nits "
            "rollout is done (Hogwild)", fontsize=8.5, ha="center", style="italic")
    fig.suptitle("Hogwild A3C: one shared model and optimizer, N workers, one evaluator",
                 fontsize=12)
    footer(fig, "diagram")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


# ---------------------------------------------------------------------- model diagrams
def layer_rows(preset: str, kind: str, num_actions: int = 6) -> tuple[list[tuple], int]:
    """[(label, output shape text, changed_vs_other_model)] from a real forward pass."""
    config = make_config(preset, model=kind)
    model = build_model(config, num_actions)
    other = build_model(config.replace(model="stack" if kind == "gru" else "gru"), num_actions)

    def convs(m: torch.nn.Module) -> list[tuple[int, int]]:
        return [(c.in_channels, c.out_channels) for c in m.encoder
                if isinstance(c, torch.nn.Conv2d)]

    differs = [a != b for a, b in zip(convs(model), convs(other), strict=True)]
    x = torch.zeros(1, config.input_channels, config.frame_size, config.frame_size)
    rows = [(f"input ({config.input_channels // config.frame_channels} frame"
             f"{'s' if kind == 'stack' else ''})", "x".join(map(str, x.shape[1:])), True)]
    n = 0
    with torch.no_grad():
        for layer in model.encoder:
            x = layer(x)
            if isinstance(layer, torch.nn.Conv2d):
                n += 1
                rows.append((f"conv{n} {layer.in_channels}->{layer.out_channels}, 3x3 s2, ReLU",
                             "x".join(map(str, x.shape[1:])), differs[n - 1]))
    rows.append(("flatten", str(model.feature_size), False))
    core = (f"GRUCell {model.feature_size}->{model.hidden_size}" if kind == "gru"
            else f"Linear {model.feature_size}->{model.hidden_size}, ReLU")
    rows.append((core, str(model.hidden_size), True))
    rows.append((f"policy {model.hidden_size}->{num_actions} | value {model.hidden_size}->1",
                 f"{num_actions} logits, 1 value", False))
    return rows, count_parameters(model)


def models_figure(path: Path) -> None:
    """The GRU and the stack network of both presets, as block diagrams with real shapes."""
    panels = [("seed", "gru"), ("seed", "stack"), ("default", "gru"), ("default", "stack")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 6))
    for ax, (preset, kind) in zip(axes, panels, strict=True):
        rows, params = layer_rows(preset, kind)
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 9.5)
        ax.axis("off")
        step = 9.4 / len(rows)
        for i, (label, shape, changed) in enumerate(rows):
            y = 9.6 - (i + 1) * step
            color = "#ffd9a8" if changed else "#dbe8f7"
            box(ax, 0.2, y + 0.12, 8.4, step - 0.35, f"{label}\n{shape}", color, fontsize=8)
            if i:
                arrow(ax, (4.4, y + step + 0.12), (4.4, y + step - 0.23), "0.3")
            if kind == "gru" and label.startswith("GRUCell"):
                # The recurrence: h_t goes back into the GRUCell at the next step.
                ax.add_patch(FancyArrowPatch((8.65, y + 0.3), (8.65, y + step - 0.35),
                                             connectionstyle="bar,fraction=-0.9",
                                             arrowstyle="-|>", mutation_scale=12,
                                             color="tab:red", linewidth=1.6))
                ax.text(9.25, y + step / 2 - 0.05, "h", color="tab:red", fontsize=10,
                        va="center")
        name = "GRU (1 frame + GRUCell)" if kind == "gru" else "stack (4 frames)"
        ax.set_title(f"{preset} preset: {name}\n{params:,} parameters", fontsize=10)
    fig.text(0.5, 0.035, "orange: where a preset's two models differ (first conv layers, core). "
             "Shapes are C x H x W, from a forward pass of a3c_course.models.build_model.",
             ha="center", fontsize=8.5)
    fig.subplots_adjust(top=0.88, bottom=0.09)
    footer(fig, "6 actions (Pong, SpaceInvaders)")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main() -> None:
    torch.manual_seed(0)
    preprocessing_figure(HERE / "preprocessing.png")
    process_diagram(HERE / "process_diagram.png")
    models_figure(HERE / "models.png")
    for name in ("preprocessing.png", "process_diagram.png", "models.png"):
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
