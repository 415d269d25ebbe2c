"""a3c-course: Hogwild A3C on Atari Pong and SpaceInvaders, for teaching.

The modules, bottom to top: config, preprocess, envs, models, loss, shared_adam, worker,
evaluator, checkpoint, trainer, video, cli.
"""

from .config import PRESETS, Config, ConfigError, make_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "PRESETS", "make_config", "__version__"]
