"""Plain ``key=value`` configuration for the robot side, where hydra may not be installed.

``python -m embodied.commands.daemon robot=dry server=tcp://host:5555 watchdog_s=0.5`` builds the
same settings that ``embodied daemon ...`` composes from configs/daemon.yaml; the defaults
live beside each ``main`` and tests check that they match the YAML files.
"""

from __future__ import annotations

import copy
import json

from embodied.core.errors import ConfigError


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    if text.startswith("[") and text.endswith("]"):
        return [_value(p.strip()) for p in text[1:-1].split(",") if p.strip()]
    return text


def parse_overrides(args: list[str], defaults: dict) -> dict:
    """Apply ``a.b=value`` overrides to a deep copy of ``defaults``; unknown keys are an error."""
    cfg = copy.deepcopy(defaults)
    for arg in args:
        key, sep, text = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {arg!r} is not key=value")
        *parents, leaf = key.lstrip("+").split(".")
        node = cfg
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(cfg))}")
            node = node[p]
        if leaf not in node and not key.startswith("+"):
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(node))} (prefix '+' to add one)")
        node[leaf] = _value(text)
    return cfg
