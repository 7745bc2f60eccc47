"""The ``embodied`` command: ``embodied <command> [key=value ...]``.

Each command composes ``configs/<command>.yaml`` with hydra's compose API, applies the
``key=value`` overrides, and calls the command module's ``main(cfg)``. Command modules are
imported lazily, so that ``embodied daemon`` on a robot never imports torch.
``embodied <command> --help`` lists the command's keys with their defaults and comments.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys

from embodied.commands.config import compose, describe
from embodied.core.errors import ConfigError

# command -> (config name, module with main(cfg))
COMMANDS: dict[str, tuple[str, str]] = {
    "rollout": ("rollout", "embodied.commands.rollout"),
    "eval": ("eval", "embodied.commands.eval"),
    "datagen": ("datagen", "embodied.commands.datagen"),
    "export": ("export", "embodied.commands.export"),
    "train": ("train", "embodied.commands.train"),
    "serve": ("serve", "embodied.commands.serve"),
    "daemon": ("daemon", "embodied.commands.daemon"),
    "keygen": ("keygen", "embodied.commands.keygen"),
    "perceive": ("perceive", "embodied.commands.perceive"),
    "calibrate": ("calibrate", "embodied.commands.calibrate"),
    "bench engine": ("bench_engine", "embodied.commands.bench_engine"),
    "bench bridge": ("bench_bridge", "embodied.commands.bench_bridge"),
    "bench perception": ("bench_perception", "embodied.commands.bench_perception"),
}

USAGE = """usage: embodied <command> [key=value ...]      embodied <command> --help

commands:
  rollout   one episode, optional mp4:  embodied rollout planner=oracle task=stack level=L1 seed=0 video=true
  eval      success rates over the task suite:  embodied eval planner=model level=L1 episodes=50 workers=2 out=runs/eval
  compare   paired comparison of two eval dirs:  embodied compare runs/a runs/b
  datagen   oracle demonstrations as Parquet:  embodied datagen level=L1 episodes=500 out=data/l1 workers=2
  export    demonstrations for other tools:  embodied export data=data/l1 format=lerobot out=exports/l1
  train     train the PaLM-E-style planner:  embodied train data=data/l1 out=runs/model
  serve     inference server over ZeroMQ:  embodied serve planner=model bind=tcp://*:5555
  daemon    robot control loop:  embodied daemon robot=sim server=tcp://127.0.0.1:5555
  perceive  what the cameras see, drawn:  embodied perceive source=sim task=tower steps=3 out=runs/perceive
  keygen    CurveZMQ key pairs:  embodied keygen out=keys
  calibrate camera calibration, ChArUco board:  embodied calibrate mode=extrinsics source=opencv:0 board_pose=[0.5,0,0] intrinsics=calibration/front.json
  bench     benchmarks:  embodied bench engine|bridge [key=value ...]

Configs live in configs/<command>.yaml; any key can be overridden as key=value.
"""

HELP = ("-h", "--help", "help")


def _resolve(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv[0] == "bench":
        raise ConfigError("usage: embodied bench " + "|".join(c.split()[1] for c in COMMANDS if c.startswith("bench ")) + " [key=value ...]")
    if argv[0] in COMMANDS:
        return argv[0], argv[1:]
    close = difflib.get_close_matches(argv[0], [c.split()[0] for c in COMMANDS] + ["compare"], n=1)
    raise ConfigError(f"unknown command {argv[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + "\n" + USAGE)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv or argv[0] in HELP:
        print(USAGE)
        return 0
    try:
        if argv[0] == "compare":
            from embodied.commands.compare import main as compare_main

            return compare_main(argv[1:]) or 0
        command, overrides = _resolve(argv)
        config_name, module = COMMANDS[command]
        if any(o in HELP for o in overrides):
            print(f"embodied {command}\n\n{describe(config_name)}")
            return 0
        cfg = compose(config_name, overrides)
        result = importlib.import_module(module).main(cfg)
        return int(result) if isinstance(result, int) else 0
    except ConfigError as e:
        print(f"embodied: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
