"""Perception on the server side: ``PerceivingPlanner(planner, perception, calibrations)``.

For robots that send raw camera frames (+ depth) and no detections: before the planner reads
an observation, the frames of the calibrated cameras go through perception, whose named
objects and scene graph replace ``detections`` and ``relations``. ``embodied serve
perception=camera calibration.front=front.json`` builds it around any planner.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, Mapping

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import ObservationError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep
from embodied.core.protocols import Planner
from embodied.core.scene import Perception


class PerceivingPlanner:
    """Wraps ``planner``: perceives each observation's frames first; see the module docstring."""

    def __init__(self, planner: Planner, perception: Perception, calibrations: Mapping[str, Calibration]):
        self.planner, self.perception, self.calibrations = planner, perception, dict(calibrations)
        self.name = getattr(planner, "name", type(planner).__name__)
        self.last_scene = None

    def __getattr__(self, item):  # metadata the server reads from the planner (cameras, state_size, ...)
        if item in ("planner", "perception", "calibrations"):
            raise AttributeError(item)
        return getattr(self.planner, item)

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        missing = [c for c in self.calibrations if c not in observation.frames]
        if missing:
            raise ObservationError(f"perception on the server needs frames from {sorted(self.calibrations)}; "
                                   f"missing {missing} (the robot sends {sorted(observation.frames)})")
        frames = {c: Frame(c, observation.frames[c], observation.timestamp, observation.seq, observation.depth.get(c))
                  for c in self.calibrations}
        scene = self.perception.perceive(frames, self.calibrations)
        self.last_scene = scene
        detections = scene.detections
        seen = replace(observation, detections=detections,
                       relations={k: v for k, v in scene.relations.items() if k in detections})
        return self.planner.plan(seen)

    def reset(self) -> None:
        self.planner.reset()
