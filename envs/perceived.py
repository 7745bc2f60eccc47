"""The tabletop seen through a perception module (``perception=camera``): what the robot knows
of the table comes from its cameras only, re-perceived whenever the world has moved.

``PerceivedTable(sim, perception)`` renders the perception cameras (``envs.cameras``), hands
the frames and their calibrations to the ``Perception`` it was given, and caches the result
until the simulation steps again. ``locate`` is what the skill controller reads, so every
object position the controller uses comes from perception, and a check after a motion
(did the object rise with the gripper? did it land where it was put?) sees a fresh view.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from embodied.core.camera import Calibration
from embodied.core.scene import PerceivedScene, Perception
from envs.cameras import SPECS, SimCamera, SimCameraSpec, calibration


class PerceivedTable:
    """Perception of a ``TabletopSim`` through simulated cameras; see the module docstring.

    ``specs``: the cameras to render (default: ``envs.cameras.SPECS``); ``calibrations``: what
    perception is told about them (default: their exact calibration; a randomised camera pose
    keeps the nominal calibration, as a real robot's would); ``camera_options``: rendering
    options for ``SimCamera`` (light, noise) per camera name.
    """

    def __init__(self, sim, perception: Perception, specs: Sequence[SimCameraSpec] | None = None,
                 calibrations: Mapping[str, Calibration] | None = None, camera_options: Mapping[str, dict] | None = None):
        self.sim, self.perception = sim, perception
        specs = list(specs) if specs is not None else list(SPECS.values())
        options = dict(camera_options or {})
        self.specs = {s.name: s for s in specs}
        self.cameras = {s.name: SimCamera(sim, s, **options.get(s.name, {})) for s in specs}
        self.calibrations = dict(calibrations) if calibrations is not None else {s.name: calibration(s) for s in specs}
        self._key: tuple | None = None
        self._scene: PerceivedScene | None = None
        self.passes = 0  # perception passes so far (cost accounting)

    def scene(self) -> PerceivedScene:
        """The perceived scene of the world as it is now (re-perceived after the simulation stepped)."""
        key = (id(self.sim.scene), self.sim.steps)
        if self._scene is None or key != self._key:
            frames = {name: cam.read() for name, cam in self.cameras.items()}
            arm = self.sim.arm.state() if self.sim.arm is not None else None
            gripper = (np.asarray(arm.ee_pose.position, dtype=np.float64), float(arm.gripper_width)) if arm else None
            self._scene = self.perception.perceive(frames, self.calibrations, gripper=gripper)
            self._key = key
            self.passes += 1
        return self._scene

    def locate(self, name: str) -> tuple[np.ndarray, float]:
        """Centre (3,) and yaw of ``name`` as perception sees it now (``UnknownObjectError`` when it does not)."""
        return self.scene().locate(name)

    def use_cameras(self, cameras: Mapping[str, SimCamera]) -> None:
        """Render through these cameras from now on (randomised ones); the calibrations stay as they are."""
        missing = sorted(set(self.calibrations) - set(cameras))
        if missing:
            raise ValueError(f"no camera for the calibrated view(s) {missing}")
        self.cameras = dict(cameras)
        self.forget()

    def forget(self) -> None:
        """Drop the cached scene (a new episode, or the world changed outside the physics)."""
        self._key, self._scene = None, None
