"""``ArmRobot``: a robot made of parts, an ``Arm``, cameras, a perception module and the skill controller.

Bringing up new hardware means writing an ``Arm`` (``embodied.core.protocols``: move_to,
open/close gripper, state, hold) and naming a camera and a calibration file; everything else
is here. ``observe`` reads every camera, perceives the table (objects, poses, scene graph)
and builds the ``Observation`` the planner reads; ``execute`` runs one plan step through the
skill controller, whose object poses come from perception only, re-perceived whenever the
arm has moved since the last look. The daemon drives it like any ``Robot`` (its threading
contract: ``hold`` may come from another thread while ``execute`` runs).

Imports only the ground (numpy): perception and cameras are handed in.
"""

from __future__ import annotations

import threading
from typing import Mapping, Sequence

import numpy as np

from embodied.core.camera import Calibration, Camera, Frame
from embodied.core.errors import CalibrationError, EmbodiedError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep, validate_step
from embodied.core.protocols import Arm, StepOutcome
from embodied.core.scene import PerceivedScene, Perception
from embodied.core.skills import SkillController

MOVED_M = 0.002  # the grasp point moved this far (or the gripper opened or closed) -> look again


def resize_area(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``img`` (H, W, C) resized to ``size`` = (height, width) by averaging (numpy only)."""
    h, w = img.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return img
    ys = (np.arange(th + 1) * h / th).astype(int)  # (th + 1,) row edges
    xs = (np.arange(tw + 1) * w / tw).astype(int)  # (tw + 1,) column edges
    acc = np.add.reduceat(np.add.reduceat(img.astype(np.float32), ys[:-1], axis=0), xs[:-1], axis=1)  # (th, tw, C)
    counts = np.outer(np.diff(ys), np.diff(xs))[..., None]  # (th, tw, 1)
    return np.clip(acc / counts + 0.5, 0, 255).astype(img.dtype)


class ArmRobot:
    """An ``Arm`` + cameras + perception + the skill controller, as a ``Robot``; see the module docstring.

    ``calibrations`` name the cameras perception looks through (each is checked against its
    first frame: a resolution that does not match is a ``CalibrationError`` at start);
    ``planner_cameras`` the frames the planner gets (default: every camera), resized to
    ``frame_size`` (height, width) when given.
    """

    name = "arm"

    def __init__(self, arm: Arm, cameras: Mapping[str, Camera], calibrations: Mapping[str, Calibration],
                 perception: Perception, instruction: str, planner_cameras: Sequence[str] | None = None,
                 frame_size: tuple[int, int] | None = None, dry_run: bool = False):
        missing = sorted(set(calibrations) - set(cameras))
        if missing:
            raise CalibrationError(f"calibrations for cameras that are not configured: {missing}; cameras: {sorted(cameras)}")
        if not calibrations:
            raise CalibrationError("no calibration: perception needs at least one calibrated camera (embodied calibrate)")
        self.arm, self.cameras, self.calibrations = arm, dict(cameras), dict(calibrations)
        self.perception, self.instruction = perception, str(instruction)
        self.planner_cameras = list(planner_cameras) if planner_cameras else list(self.cameras)
        unknown = [c for c in self.planner_cameras if c not in self.cameras]
        if unknown:
            raise CalibrationError(f"planner_cameras names unknown cameras {unknown}; cameras: {sorted(self.cameras)}")
        self.frame_size = tuple(frame_size) if frame_size else None
        self.dry_run = bool(dry_run)  # see everything, plan everything, move nothing
        self.history: list[str] = []
        self.scene: PerceivedScene | None = None
        self._looked_at: tuple[np.ndarray, float] | None = None  # arm pose of the last perception
        self._seq = 0
        self._stop = threading.Event()
        for cam in self.cameras.values():
            cam.connect()
        first = self._read()
        for name, cal in self.calibrations.items():
            cal.check(first[name])

    # --- Robot protocol ---------------------------------------------------------------------
    def observe(self) -> Observation:
        frames = self._read()
        scene = self._perceive(frames)
        self._seq += 1
        st = self.arm.state()
        state = np.concatenate([st.joint_positions, [st.gripper_width], st.ee_pose.position,
                                st.ee_pose.orientation]).astype(np.float32)  # (STATE_SIZE,)
        images = {}
        for name in self.planner_cameras:
            rgb = frames[name].rgb
            images[name] = resize_area(rgb, self.frame_size) if self.frame_size else rgb
        detections = scene.detections
        return Observation(images, state, self.instruction, list(self.history),
                           depth={n: frames[n].depth for n in self.planner_cameras if frames[n].depth is not None and not self.frame_size},
                           detections=detections, relations={k: v for k, v in scene.relations.items() if k in detections},
                           timestamp=min(f.timestamp for f in frames.values()), seq=self._seq)

    def execute(self, step: PlanStep) -> StepOutcome:
        self._stop.clear()
        scene = self.scene if self.scene is not None else self._perceive(self._read())
        if self.dry_run:  # check the step against what perception sees, and do not move
            try:
                validate_step(step, [o.name for o in scene.object_specs()], [c.name for c in scene.container_specs()])
            except EmbodiedError as e:
                return StepOutcome(False, f"dry run: {e}")
            target = "" if step.is_done else f" ({step.object} seen at {np.round(scene.locate(step.object)[0], 3).tolist()})"
            return StepOutcome(True, f"dry run: would {step.text}{target}")
        controller = SkillController(self.arm, self._locate, scene.object_specs(), scene.container_specs())
        result = controller.execute(step)
        if self._stop.is_set():
            return StepOutcome(False, "halted", halted=True)
        if result.success or result.error is None:
            self.history.append(step.text)
        self.scene = None  # the world has changed: look again next time
        return StepOutcome(result.success, result.reason)

    def hold(self) -> None:
        self._stop.set()
        self.arm.hold()

    def reset(self) -> dict:
        self.history = []
        self.scene = None
        return {"robot": "arm", "instruction": self.instruction, "cameras": sorted(self.cameras)}

    def close(self) -> None:
        self._stop.set()
        for cam in self.cameras.values():
            cam.disconnect()
        close = getattr(self.arm, "close", None)
        if callable(close):
            close()

    # --- internals -----------------------------------------------------------------------------
    def _read(self) -> dict[str, Frame]:
        return {name: cam.read() for name, cam in self.cameras.items()}

    def _perceive(self, frames: Mapping[str, Frame]) -> PerceivedScene:
        st = self.arm.state()
        grip = (np.asarray(st.ee_pose.position, dtype=np.float64), float(st.gripper_width))
        self.scene = self.perception.perceive({n: frames[n] for n in self.calibrations}, self.calibrations, gripper=grip)
        self._looked_at = grip
        return self.scene

    def _locate(self, name: str) -> tuple[np.ndarray, float]:
        """Perceived pose of ``name``; looks again when the arm has moved since the last look."""
        if self._stop.is_set():
            raise EmbodiedError("halted")
        st = self.arm.state()
        pos, width = np.asarray(st.ee_pose.position, dtype=np.float64), float(st.gripper_width)
        last = self._looked_at
        if self.scene is None or last is None or np.linalg.norm(pos - last[0]) > MOVED_M or abs(width - last[1]) > MOVED_M:
            self._perceive(self._read())
        return self.scene.locate(name)
