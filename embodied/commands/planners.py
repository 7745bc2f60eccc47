"""Build a planner by name: ``oracle``, ``model``, ``remote``, ``random``, or ``module:callable``.

The registry is a command-layer module: it is the one place that knows every planner
package. Imports happen inside the branches so that asking for the oracle never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from embodied.commands.config import flag, positive_int
from embodied.core.errors import ConfigError
from embodied.core.protocols import Planner

PLANNERS = ("oracle", "model", "remote", "random")


def check_planner(name) -> None:
    """A named error for a planner name that is neither known nor ``module:callable``."""
    if isinstance(name, str) and (name in PLANNERS or ":" in name):
        return
    import difflib

    close = difflib.get_close_matches(str(name), PLANNERS, n=1)
    raise ConfigError(f"unknown planner {name!r}; choose one of {', '.join(PLANNERS)} or module:callable"
                      + (f" (did you mean {close[0]!r}?)" if close else ""))


def make_planner(name: str, options: Any = None) -> Planner:
    """``options`` is a mapping (or DictConfig) with the planner's settings, e.g. model_dir, device, server;
    ``planner_args`` are the keyword arguments of a ``module:callable`` planner."""
    check_planner(name)
    opts = dict(options or {})
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"planner={name}: cannot load {attr!r} from {module!r} ({e})") from e
        return factory(**dict(opts.get("planner_args") or {}))
    if name == "oracle":
        from envs.tasks import oracle_plan
        from policies.oracle import OraclePlanner

        return OraclePlanner(oracle_plan)
    if name == "model":
        from embodied.model.planner import ModelPlanner

        return ModelPlanner(
            model_dir=opts.get("model_dir", "checkpoints/default"),
            device=opts.get("device", "cpu"),
            use_engine=flag(opts.get("use_engine", True), "use_engine"),
            keep_patches=opts.get("keep_patches"),
            cpu_compile=flag(opts.get("cpu_compile", False), "cpu_compile"),
            object_aliases=flag(opts.get("object_aliases", True), "object_aliases"),
            # a server interleaving N plans (concurrent_plans) batches them in one engine of N rows
            max_batch=positive_int(next((opts[k] for k in ("max_batch", "concurrent_plans") if opts.get(k) is not None), 1),
                                   "concurrent_plans"),
        )
    if name == "remote":
        from bridges.remote import RemotePlanner

        return RemotePlanner(
            server=opts.get("server", "tcp://127.0.0.1:5555"),
            **{k: opts[k] for k in ("latency_ms", "jitter_ms", "loss", "timeout_s", "server_key", "client_key", "robot_id") if opts.get(k) is not None},
        )
    from policies.baselines import RandomPlanner

    return RandomPlanner(seed=int(opts.get("seed", 0)))


def check_model_dir(model_dir) -> None:
    """A named error when ``model_dir`` holds no model (before anything is written)."""
    from pathlib import Path

    path = Path(str(model_dir))
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise ConfigError(f"model_dir={model_dir}: no model.safetensors and config.json there; "
                          "name a model directory written by `embodied train` (the default is checkpoints/default)")
