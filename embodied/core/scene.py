"""What perception reports: named objects with poses in the robot base frame, and the scene graph.

``PerceivedScene`` is the contract between perception and the rest: the planner reads its
``detections`` and ``relations`` (into ``Observation``), the skill controller reads object
poses through ``locate`` and geometry through ``object_specs`` / ``container_specs``.
Objects perception cannot name are kept with ``kind="unknown"`` and their pose, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import UnknownObjectError
from embodied.core.world import OBJECT_HEIGHT, OBJECT_SIZE, ContainerSpec, ObjectSpec

KINDS = ("object", "container", "unknown")


@dataclass
class PerceivedObject:
    """One thing on the table. ``name`` is a vocabulary name (``red cube``, ``tray``, ``blue bin``)
    or ``unknown <n>`` for what perception cannot name."""

    name: str
    kind: str  # "object" | "container" | "unknown"
    position: np.ndarray  # (3,) centre (containers: centre of the floor) in the base frame, metres
    yaw: float = 0.0  # radians about base z
    confidence: float = 1.0
    colour: str | None = None
    shape: str | None = None  # objects: cube, cylinder, ...; containers: tray, bin
    size: float = OBJECT_SIZE  # objects: footprint width; containers: inner width along x
    height: float = OBJECT_HEIGHT
    half_extents: tuple[float, float] = (0.0, 0.0)  # containers: inner half sizes (x, y)
    views: dict = field(default_factory=dict)  # camera -> {"bbox": [x, y, w, h], "contour": [[u, v], ...]}

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "position": [round(float(v), 5) for v in self.position],
                "yaw": round(float(self.yaw), 4), "confidence": round(float(self.confidence), 3), "colour": self.colour,
                "shape": self.shape, "size": round(float(self.size), 4), "height": round(float(self.height), 4)}


@dataclass
class PerceivedScene:
    """Everything one perception pass found; ``timestamp`` is the capture time of its frames."""

    objects: list[PerceivedObject]
    relations: dict[str, str] = field(default_factory=dict)  # named object -> "on table" | "on <obj>" | "in <cont>" | "in gripper"
    timestamp: float = 0.0
    ms: float = 0.0  # how long perception took

    def named(self) -> list[PerceivedObject]:
        return [o for o in self.objects if o.kind != "unknown"]

    @property
    def detections(self) -> list[str]:
        """Names of the named objects and containers (``Observation.detections``), sorted."""
        return sorted(o.name for o in self.named())

    def get(self, name: str) -> PerceivedObject:
        for o in self.objects:
            if o.name == name:
                return o
        raise UnknownObjectError(f"perception does not see {name!r}; it sees {', '.join(self.detections) or 'nothing'}")

    def locate(self, name: str) -> tuple[np.ndarray, float]:
        """Centre (3,) and yaw of a named object: the skill controller's ``locate``."""
        o = self.get(name)
        return np.asarray(o.position, dtype=np.float64), float(o.yaw)

    def object_specs(self) -> list[ObjectSpec]:
        """Geometry of the named objects for the skill controller."""
        return [ObjectSpec(o.colour, o.shape, float(o.size), float(o.height)) for o in self.objects if o.kind == "object"]

    def container_specs(self) -> list[ContainerSpec]:
        return [ContainerSpec(o.name, o.colour or "grey", (float(o.position[0]), float(o.position[1])),
                              (float(o.half_extents[0]), float(o.half_extents[1])))
                for o in self.objects if o.kind == "container"]

    def to_dict(self) -> dict:
        return {"objects": [o.to_dict() for o in self.objects], "relations": dict(self.relations),
                "timestamp": self.timestamp, "ms": round(self.ms, 3)}


@runtime_checkable
class Perception(Protocol):
    """Frames (+ depth) and their calibrations -> a ``PerceivedScene``.

    ``gripper`` (optional): the arm's grasp point (3,) and opening (m), so that an object
    between the fingers is reported ``in gripper``.
    """

    def perceive(self, frames: Mapping[str, Frame], calibrations: Mapping[str, Calibration],
                 gripper: tuple[np.ndarray, float] | None = None) -> PerceivedScene: ...
