"""``embodied serve``: an inference server that streams plan steps to robots over ZeroMQ.

    embodied serve planner=model bind=tcp://*:5555 [curve.secret_key=... curve.authorized=...]
    python -m embodied.commands.serve planner=module:callable bind=...   # without hydra

The command builds the planner and hands it to ``bridges.server.InferenceServer``.
``DEFAULTS`` equal ``configs/serve.yaml`` (a test keeps them so).
"""

from __future__ import annotations

import logging
import signal
import sys

from bridges.protocol import MAX_MESSAGE_BYTES
from bridges.server import InferenceServer
from embodied.commands.planners import check_planner, make_planner
from embodied.commands.robots import section
from embodied.core.errors import ConfigError
from embodied.core.protocols import Planner

DEFAULTS = {
    "planner": "oracle",
    "planner_args": {},
    "model_dir": "checkpoints/default",
    "device": "cpu",
    "keep_patches": None,
    "object_aliases": True,
    "cpu_compile": False,
    "bind": "tcp://127.0.0.1:5555",
    "max_message_bytes": MAX_MESSAGE_BYTES,
    "default_deadline_ms": 30000.0,
    "concurrent_plans": 1,
    "max_queued": 64,
    "max_robots_per_connection": 16,
    "curve": {"secret_key": None, "authorized": None},
    "max_seconds": None,
    "perception": "ground_truth",
    "calibration": {},
}


def load_planner(spec, cfg=None) -> Planner:
    """A planner from a config: a name for ``make_planner``, or ``module:callable`` (called with
    ``planner_args``; for your own planners and tests)."""
    if not isinstance(spec, str) and hasattr(spec, "get"):  # a hydra config group node
        spec = spec.get("name")
    if not isinstance(spec, str) or not spec:
        raise ConfigError("set planner=<name> (oracle, model, ...) or planner=module:callable")
    check_planner(spec)
    return make_planner(spec, cfg)


def with_perception(planner: Planner, cfg) -> Planner:
    """``perception=camera``: the server perceives each observation's frames (the cameras named in
    ``calibration``) before the planner reads it; ``ground_truth``: the robot's detections are used."""
    from embodied.commands.perception import check_perception, make_perception

    if check_perception(cfg.get("perception", "ground_truth")) == "ground_truth":
        return planner
    files = section(cfg, "calibration")
    if not files:
        raise ConfigError("perception=camera on the server needs calibration files, e.g. calibration.front=calib/front.json")
    from embodied.core.camera import Calibration
    from embodied.perception.serving import PerceivingPlanner

    return PerceivingPlanner(planner, make_perception("camera"), {n: Calibration.load(p) for n, p in files.items()})


def main(cfg) -> None:
    """Serve until SIGINT, SIGTERM or ``max_seconds``."""
    curve = section(cfg, "curve")
    keys = None
    if curve.get("secret_key"):
        from bridges.keys import server_keys

        keys = server_keys(curve["secret_key"], curve.get("authorized"))
    server = InferenceServer(
        with_perception(load_planner(cfg.get("planner"), cfg), cfg),
        cfg.get("bind", DEFAULTS["bind"]),
        max_message_bytes=cfg.get("max_message_bytes", MAX_MESSAGE_BYTES),
        default_deadline_ms=cfg.get("default_deadline_ms", DEFAULTS["default_deadline_ms"]),
        concurrent_plans=cfg.get("concurrent_plans", 1),
        max_queued=cfg.get("max_queued", DEFAULTS["max_queued"]),
        max_robots_per_connection=cfg.get("max_robots_per_connection", DEFAULTS["max_robots_per_connection"]),
        keys=keys,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    print(f"[server] listening on {server.address}", flush=True)
    try:
        server.serve(max_seconds=cfg.get("max_seconds"))
    finally:
        server.close()
        print(f"[server] stopped; {server.health()}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bridges.config import parse_overrides

    try:
        main(parse_overrides(sys.argv[1:], DEFAULTS))
    except ConfigError as e:
        print(f"embodied serve: error: {e}", file=sys.stderr)
        sys.exit(2)
