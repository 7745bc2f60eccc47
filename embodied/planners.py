"""Build a planner by name: ``oracle``, ``model``, ``remote``, ``random``.

Imports happen inside the branches so that asking for the oracle never imports torch.
"""

from __future__ import annotations

from typing import Any

from embodied.errors import ConfigError
from embodied.planner import Planner

PLANNERS = ("oracle", "model", "remote", "random")
# Planners that read Observation.privileged (simulator ground truth).
PRIVILEGED_PLANNERS = ("oracle",)


def make_planner(name: str, options: Any = None) -> Planner:
    """``options`` is a mapping (or DictConfig) with the planner's settings, e.g. model_dir, device, server."""
    opts = dict(options or {})
    if name == "oracle":
        from policies.oracle import OraclePlanner

        return OraclePlanner()
    if name == "model":
        from policies.model_planner import ModelPlanner

        return ModelPlanner(
            model_dir=opts.get("model_dir", "checkpoints/default"),
            device=opts.get("device", "cpu"),
            use_engine=_flag(opts.get("use_engine", True), "use_engine"),
            keep_patches=opts.get("keep_patches"),
            cpu_compile=_flag(opts.get("cpu_compile", False), "cpu_compile"),
            object_aliases=_flag(opts.get("object_aliases", True), "object_aliases"),
            # a server interleaving N plans (concurrent_plans) batches them in one engine of N rows
            max_batch=_positive_int(next((opts[k] for k in ("max_batch", "concurrent_plans") if opts.get(k) is not None), 1),
                                    "concurrent_plans"),
        )
    if name == "remote":
        from bridges.remote import RemotePlanner

        return RemotePlanner(
            server=opts.get("server", "tcp://127.0.0.1:5555"),
            **{k: opts[k] for k in ("latency_ms", "jitter_ms", "loss", "timeout_s", "server_key", "client_key", "robot_id") if opts.get(k) is not None},
        )
    if name == "random":
        from policies.baselines import RandomPlanner

        return RandomPlanner(seed=int(opts.get("seed", 0)))
    raise ConfigError(f"unknown planner {name!r}; choose one of {', '.join(PLANNERS)}")


def _flag(value, key: str) -> bool:
    """A true/false option; anything else (``object_aliases=maybe``) is a named error, not a silent True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{key}={value!r}: expected true or false")


def _positive_int(value, key: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ConfigError(f"{key}={value!r}: expected a positive integer")
    return n
