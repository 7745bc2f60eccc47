"""``embodied daemon``: the robot control loop against an inference server.

    embodied daemon robot=sim server=tcp://host:5555 [hz=20 watchdog_s=1 stale_s=1 ...]
    python -m embodied.commands.daemon robot=dry server=...   # a robot computer without hydra

``DEFAULTS`` equal ``configs/daemon.yaml`` (a test keeps them so): the plain ``key=value``
form needs neither hydra nor torch, only numpy, pyzmq and msgpack.
"""

from __future__ import annotations

import signal
import sys

from bridges.client import BridgeClient, Faults
from bridges.daemon import Daemon
from bridges.daemon_settings import JsonlLog, Settings
from embodied.commands.robots import make_robot, section

DEFAULTS = {
    "robot": "sim",
    "perception": "ground_truth",
    "server": "tcp://127.0.0.1:5555",
    "robot_id": "robot0",
    "hz": 20.0,
    "watchdog_s": 1.0,
    "heartbeat_s": 0.2,
    "stale_s": 1.0,
    "deadline_ms": 2000.0,
    "codec": "raw",
    "backoff_s": 0.1,
    "backoff_max_s": 2.0,
    "episodes": 1,
    "max_seconds": None,
    "max_repeats": None,
    "log": "runs/daemon.jsonl",
    "rate_log_s": 1.0,
    "echo": False,
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "loss": 0.0,
    "curve": {"server_key": None, "client_key": None},
    "sim": {"task": "stack", "level": "L1", "split": "test", "seed": 0, "realtime": True, "image_size": 128},
    "dry": {"cameras": {"front": [224, 224]}, "instruction": "put red cube on blue cube", "step_s": 0.2},
    "robot_args": {},
    "arm": None,
    "arm_args": {},
    "cameras": {},
    "calibration": {},
    "instruction": None,
    "planner_cameras": [],
    "frame_size": None,
    "dry_run": False,
}


def build(cfg) -> tuple[Daemon, JsonlLog]:
    """A daemon (robot, client, log) from a config mapping (see configs/daemon.yaml)."""
    settings = Settings.from_config(cfg)  # checked before anything connects or moves
    curve = section(cfg, "curve")
    keys = None
    if curve.get("client_key") or curve.get("server_key"):
        from bridges.keys import client_keys

        keys = client_keys(curve.get("client_key"), curve.get("server_key"))
    faults = Faults(float(cfg.get("latency_ms") or 0), float(cfg.get("jitter_ms") or 0), float(cfg.get("loss") or 0))
    robot_id = cfg.get("robot_id", "robot0")
    client = BridgeClient(cfg.get("server", DEFAULTS["server"]), robot_id, codec=cfg.get("codec", "raw"),
                          keys=keys, faults=faults)
    log = JsonlLog(cfg.get("log"), echo=bool(cfg.get("echo", False)), robot_id=robot_id)
    return Daemon(make_robot(cfg), client, settings, log), log


def main(cfg) -> int:
    """Run the daemon until its episodes are done, ``max_seconds``, SIGINT or SIGTERM; SIGUSR1 is an e-stop."""
    daemon, log = build(cfg)
    signal.signal(signal.SIGUSR1, lambda *_: daemon.request_estop("SIGUSR1"))
    signal.signal(signal.SIGINT, lambda *_: daemon.request_shutdown("SIGINT"))
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_shutdown("SIGTERM"))
    try:
        return daemon.run()
    finally:
        daemon.robot.close()
        log.close()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from bridges.config import parse_overrides
    from embodied.core.errors import ConfigError

    try:
        sys.exit(main(parse_overrides(sys.argv[1:], DEFAULTS)))
    except ConfigError as e:
        print(f"embodied daemon: error: {e}", file=sys.stderr)
        sys.exit(2)
