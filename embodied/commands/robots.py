"""Build the robot the control daemon drives: ``robot=sim`` | ``dry`` | ``arm`` | ``module:callable``.

``robot=arm`` composes a robot from parts (``bridges.arm_robot.ArmRobot``): your ``Arm``
(``arm=pkg.module:factory`` called with ``arm_args``), cameras by spec (``cameras.front=opencv:0``,
``realsense:<serial>``, ``replay:<dir>``, or ``sim:<name>`` for a simulated arm's own cameras),
their calibration files (``calibration.front=calib/front.json``; ``calibration=sim`` for the
simulator's exact ones) and the perception module.
"""

from __future__ import annotations

import importlib

from embodied.core.errors import ConfigError
from embodied.core.protocols import Robot

ROBOTS = ("sim", "dry", "arm")


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
        from embodied.commands.perception import make_perception
        from envs.sim_robot import SimRobot

        return SimRobot(**section(cfg, "sim"), perception=make_perception(cfg.get("perception", "ground_truth")))
    if kind == "arm":
        return make_arm_robot(cfg)
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


def _load(spec: str, what: str):
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{what}={spec!r}: expected module:callable (e.g. mypkg.robot:make_arm)")
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what}={spec}: cannot load {attr!r} from {module!r} ({e})") from e


def _camera(name: str, spec: str, arm):
    """A camera from its spec; ``sim:<name>[@<size>]`` is one of a simulated arm's own cameras."""
    if isinstance(spec, str) and spec.startswith("sim:"):
        if getattr(arm, "sim", None) is None:
            raise ConfigError(f"camera {spec!r} needs a simulated arm (arm=envs.sim_rig:panda)")
        from envs.sim_rig import camera

        base, _, size = spec[4:].partition("@")
        return camera(arm, base, int(size) if size else None, as_name=name)
    from embodied.perception.cameras import make_camera

    return make_camera(spec, name=name)


def make_arm_robot(cfg):
    """``robot=arm``: an ``ArmRobot`` from the ``arm``, ``arm_args``, ``cameras``, ``calibration``,
    ``instruction``, ``planner_cameras`` and ``frame_size`` settings (see configs/daemon.yaml)."""
    from bridges.arm_robot import ArmRobot
    from embodied.commands.perception import make_perception
    from embodied.core.camera import Calibration

    arm = _load(cfg.get("arm"), "arm")(**section(cfg, "arm_args"))
    specs = section(cfg, "cameras")
    if not specs:
        raise ConfigError("robot=arm needs cameras, e.g. cameras.front=opencv:0")
    cameras = {name: _camera(name, spec, arm) for name, spec in specs.items()}
    calib = cfg.get("calibration")
    files = {n: "sim" for n, s in specs.items() if str(s).startswith("sim:")} if calib == "sim" else section(cfg, "calibration")
    if not files:
        raise ConfigError("robot=arm needs calibration files, e.g. calibration.front=calib/front.json (embodied calibrate)")
    calibrations = {}
    for name, path in files.items():
        if path != "sim":
            calibrations[name] = Calibration.load(path)
            continue
        spec = str(specs.get(name, ""))
        if not spec.startswith("sim:"):
            raise ConfigError(f"calibration.{name}=sim is only for a simulated camera (cameras.{name}=sim:<name>)")
        from envs.sim_rig import exact_calibration

        base, _, size = spec[4:].partition("@")
        calibrations[name] = exact_calibration(base, int(size) if size else None)
        calibrations[name].camera = name
    instruction = cfg.get("instruction") or getattr(arm, "instruction", None)
    if not instruction:
        raise ConfigError("robot=arm needs an instruction, e.g. instruction='put the red cube in the tray'")
    frame_size = cfg.get("frame_size")
    return ArmRobot(arm, cameras, calibrations, make_perception("camera"), instruction,
                    planner_cameras=list(cfg.get("planner_cameras") or []) or None,
                    frame_size=tuple(frame_size) if frame_size else None, dry_run=bool(cfg.get("dry_run", False)))
