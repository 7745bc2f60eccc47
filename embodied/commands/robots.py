"""Build the robot the control daemon drives: ``robot=sim`` | ``dry`` | ``module:callable``."""

from __future__ import annotations

import importlib

from embodied.core.errors import ConfigError
from embodied.core.protocols import Robot

ROBOTS = ("sim", "dry")


def section(cfg, key: str) -> dict:
    """``cfg[key]`` as a plain dict (works for dicts and omegaconf DictConfig)."""
    node = cfg.get(key) if cfg is not None else None
    if node is None:
        return {}
    if hasattr(node, "items"):
        return {k: node[k] for k in node}
    raise ConfigError(f"setting {key!r} must be a mapping")


def make_robot(cfg) -> Robot:
    """``robot=sim`` (the simulated Panda), ``dry`` (moves nothing) or ``module:callable``
    (your hardware driver, called with the ``robot_args`` mapping)."""
    kind = cfg.get("robot", "sim")
    if kind == "sim":
        from envs.sim_robot import SimRobot

        return SimRobot(**section(cfg, "sim"))
    if kind == "dry":
        from bridges.robot import DryRobot

        return DryRobot(**section(cfg, "dry"))
    if isinstance(kind, str) and ":" in kind:
        module, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"robot={kind}: cannot load {attr!r} from {module!r} ({e})") from e
        return factory(**section(cfg, "robot_args"))
    raise ConfigError(f"unknown robot {kind!r}; use {', '.join(ROBOTS)} or module:callable (your hardware driver)")
