"""Plain-data descriptions of a scene and of the world's state, shared by tasks and simulator.

A task samples a ``SceneSpec`` (which objects, where, which containers); the simulator
builds it and reports back a ``WorldState`` (where everything is now). Success predicates
and oracle plans are functions of these, so they can be tested on hand-placed scenes
without a physics engine. Units: metres, radians; frame: robot base, table top at z=0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied.vocab import SHAPE_SIDES

TABLE_Z = 0.0
# Objects must stay inside this box (x, y) to count as "on the table / in the workspace".
WORKSPACE_X = (0.20, 0.85)
WORKSPACE_Y = (-0.45, 0.45)


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    size: float = 0.04  # footprint width (m): cube edge, cylinder diameter, polygon circum-diameter
    height: float = 0.04

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def sides(self) -> int:
        return SHAPE_SIDES[self.shape]


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # "tray" or "<colour> bin"
    colour: str  # "grey" for the tray
    center: tuple[float, float]
    half_extents: tuple[float, float]  # inner half sizes (x, y)
    wall_height: float = 0.02


@dataclass
class Placement:
    """Initial pose of an object: on the table, or on top of another object (``on``)."""

    x: float
    y: float
    yaw: float = 0.0
    on: str | None = None  # name of the object it is stacked on


@dataclass
class SceneSpec:
    objects: list[ObjectSpec]
    placements: dict[str, Placement]
    containers: list[ContainerSpec] = field(default_factory=list)

    @property
    def object_names(self) -> list[str]:
        return [o.name for o in self.objects]

    @property
    def container_names(self) -> list[str]:
        return [c.name for c in self.containers]

    def object(self, name: str) -> ObjectSpec:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(name)


@dataclass
class WorldState:
    """Where everything is now: object centre positions (3,) and yaw, plus scene geometry."""

    scene: SceneSpec
    positions: dict[str, np.ndarray]  # name -> (3,) centre of the object
    yaws: dict[str, float] = field(default_factory=dict)
    held: str | None = None  # object currently in the gripper, if any

    # --- geometric relations used by success predicates and oracles -------------------
    def bottom_z(self, name: str) -> float:
        return float(self.positions[name][2] - self.scene.object(name).height / 2)

    def top_z(self, name: str) -> float:
        return float(self.positions[name][2] + self.scene.object(name).height / 2)

    def is_on(self, top: str, below: str, xy_tol: float | None = None, z_tol: float = 0.012) -> bool:
        """``top`` rests on ``below``: centred within tolerance and touching its top face."""
        a, b = self.positions[top], self.positions[below]
        tol = xy_tol if xy_tol is not None else 0.55 * self.scene.object(below).size
        return bool(np.hypot(*(a[:2] - b[:2])) < tol and abs(self.bottom_z(top) - self.top_z(below)) < z_tol)

    def is_in(self, name: str, container: str) -> bool:
        c = next(c for c in self.scene.containers if c.name == container)
        p = self.positions[name]
        inside = abs(p[0] - c.center[0]) < c.half_extents[0] and abs(p[1] - c.center[1]) < c.half_extents[1]
        return bool(inside and self.bottom_z(name) < TABLE_Z + c.wall_height + 0.01)

    def on_table(self, name: str, z_tol: float = 0.012) -> bool:
        return bool(abs(self.bottom_z(name) - TABLE_Z) < z_tol + 0.006)  # containers have thin floors

    def supporting(self, name: str) -> str | None:
        """The object ``name`` rests on, if any."""
        return next((o for o in self.positions if o != name and self.is_on(name, o)), None)

    def clear(self, name: str) -> bool:
        """Nothing rests on ``name``."""
        return not any(self.is_on(o, name) for o in self.positions if o != name)

    def in_workspace(self, name: str) -> bool:
        p = self.positions[name]
        return bool(WORKSPACE_X[0] <= p[0] <= WORKSPACE_X[1] and WORKSPACE_Y[0] <= p[1] <= WORKSPACE_Y[1] and p[2] > TABLE_Z - 0.05)

    def off_table(self) -> list[str]:
        """Objects that fell off the table or left the workspace (failure condition)."""
        return [n for n in self.positions if not self.in_workspace(n)]
