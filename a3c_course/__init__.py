"""a3c-course: Hogwild A3C on Atari Pong and SpaceInvaders, for teaching.

The modules, bottom to top: config, preprocess, envs, models, loss, shared_adam, children
(the contract between the trainer and its children), worker, evaluator, checkpoint, rundir,
local_backend and ray_backend, trainer, video, plots, cli.
"""

from .config import PRESETS, Config, ConfigError, make_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "PRESETS", "TEST_MODE", "make_config", "__version__"]

import os as _os

TEST_MODE: bool = _os.environ.get("A3C_TEST_MODE", "") not in ("", "0")
"""One switch for quick runs: notebooks and benchmarks shrink their budgets when set, and the
trainer writes its progress rows every 2 s instead of 10 s."""
