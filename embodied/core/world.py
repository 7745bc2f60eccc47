"""Plain-data descriptions of a scene and of the world's state, shared by tasks and simulator.

A task samples a ``SceneSpec`` (which objects, where, which containers); the simulator
builds it and reports back a ``WorldState`` (where everything is now). Success predicates
and oracle plans are functions of these, so they can be tested on hand-placed scenes
without a physics engine. Units: metres, radians; frame: robot base, table top at z=0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied.core import vocab
from embodied.core.errors import ConfigError
from embodied.core.vocab import SHAPE_SIDES

TABLE_Z = 0.0
# Objects must stay inside this box (x, y) to count as "on the table / in the workspace".
WORKSPACE_X = (0.20, 0.85)
WORKSPACE_Y = (-0.45, 0.45)
# Thickness (m) of container floors: objects in a tray or bin stand this much above the table.
CONTAINER_FLOOR = 0.004

# Standard sizes (m). Tasks sample scenes with these; the simulator builds what the spec says.
OBJECT_SIZE = 0.04
OBJECT_HEIGHT = 0.04
# Standard physics of an object: mass (kg) and lateral friction (Bullet multiplies the frictions
# of the two bodies at a contact). ``envs.physics`` varies them.
OBJECT_MASS = 0.08
OBJECT_FRICTION = 1.0
TRAY_HALF_EXTENTS = (0.09, 0.07)  # inner half sizes (x, y) of the grey tray
BIN_HALF_EXTENTS = (0.055, 0.055)  # inner half sizes (x, y) of a coloured bin
# "put X left of Y" places X's centre this far from Y's centre along the relation's direction.
RELATION_DISTANCE = 0.09
# How close (m, centre to named point) an object must be to count as "at" a board location.
LOCATION_TOL = 0.05


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    size: float = 0.04  # footprint width (m): cube edge, cylinder diameter, polygon circum-diameter
    height: float = 0.04
    mass: float = OBJECT_MASS  # kg
    friction: float = OBJECT_FRICTION  # lateral friction coefficient

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def sides(self) -> int:
        return SHAPE_SIDES[self.shape]

    def to_dict(self) -> dict:
        return {"colour": self.colour, "shape": self.shape, "size": self.size, "height": self.height,
                "mass": self.mass, "friction": self.friction}

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectSpec":
        _require(d, ("colour", "shape"), "object")
        spec = cls(str(d["colour"]), str(d["shape"]), float(d.get("size", OBJECT_SIZE)), float(d.get("height", OBJECT_HEIGHT)),
                   float(d.get("mass", OBJECT_MASS)), float(d.get("friction", OBJECT_FRICTION)))
        if spec.mass <= 0 or spec.friction <= 0:
            raise ConfigError(f"object {spec.name!r}: mass and friction must be positive, got {spec.mass}, {spec.friction}")
        return spec


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # "tray" or "<colour> bin"
    colour: str  # "grey" for the tray
    center: tuple[float, float]
    half_extents: tuple[float, float]  # inner half sizes (x, y)
    wall_height: float = 0.02

    def slots(self, spacing: float = 0.054, margin: float = 0.028) -> list[tuple[float, float]]:
        """Drop points inside the container, spread out: the first is nearest the centre,
        each next one farthest from those before (so 2 objects in a bin sit diagonally)."""
        axes = []
        for c, h in zip(self.center, self.half_extents):
            n = max(1, int((2 * (h - margin)) // spacing) + 1)
            axes.append([c + (i - (n - 1) / 2) * spacing for i in range(n)])
        grid = [(x, y) for x in axes[0] for y in axes[1]]
        order = [min(grid, key=lambda p: (np.hypot(p[0] - self.center[0], p[1] - self.center[1]), p))]
        while len(order) < len(grid):
            rest = [p for p in grid if p not in order]
            order.append(max(rest, key=lambda p: (min(np.hypot(p[0] - q[0], p[1] - q[1]) for q in order), p)))
        return order

    def contains_xy(self, x: float, y: float, margin: float = 0.0) -> bool:
        return abs(x - self.center[0]) < self.half_extents[0] + margin and abs(y - self.center[1]) < self.half_extents[1] + margin

    def to_dict(self) -> dict:
        return {"name": self.name, "colour": self.colour, "center": list(self.center),
                "half_extents": list(self.half_extents), "wall_height": self.wall_height}

    @classmethod
    def from_dict(cls, d: dict) -> "ContainerSpec":
        _require(d, ("name", "colour", "center", "half_extents"), "container")
        return cls(str(d["name"]), str(d["colour"]), tuple(float(v) for v in d["center"]),
                   tuple(float(v) for v in d["half_extents"]), float(d.get("wall_height", 0.02)))


@dataclass
class Placement:
    """Initial pose of an object: on the table, or on top of another object (``on``)."""

    x: float
    y: float
    yaw: float = 0.0
    on: str | None = None  # name of the object it is stacked on

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "yaw": self.yaw, "on": self.on}

    @classmethod
    def from_dict(cls, d: dict) -> "Placement":
        _require(d, ("x", "y"), "placement")
        on = d.get("on")
        return cls(float(d["x"]), float(d["y"]), float(d.get("yaw", 0.0)), None if on is None else str(on))


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

    def container(self, name: str) -> ContainerSpec:
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-able form (lists and plain numbers only)."""
        return {
            "objects": [o.to_dict() for o in self.objects],
            "placements": {k: p.to_dict() for k, p in self.placements.items()},
            "containers": [c.to_dict() for c in self.containers],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SceneSpec":
        _require(d, ("objects", "placements"), "scene")
        return cls(
            objects=[ObjectSpec.from_dict(o) for o in d["objects"]],
            placements={str(k): Placement.from_dict(p) for k, p in d["placements"].items()},
            containers=[ContainerSpec.from_dict(c) for c in d.get("containers", [])],
        )


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

    # --- helpers for relational goals, locations and containers ---------------------------
    def copy(self) -> "WorldState":
        return WorldState(self.scene, {k: np.array(v, dtype=float) for k, v in self.positions.items()},
                          dict(self.yaws), self.held)

    def relation(self, name: str) -> str:
        """Where ``name`` is, as a scene-graph perception reports it: ``"in gripper"``,
        ``"in <container>"``, ``"on <object>"``, ``"on table"``, or ``""`` (none of these, e.g.
        tipped against another object)."""
        if self.held == name:
            return "in gripper"
        container = self.container_of(name)
        if container:
            return f"in {container}"
        below = self.supporting(name)
        if below:
            return f"on {below}"
        return "on table" if self.on_table(name) else ""

    def container_of(self, name: str) -> str | None:
        """The container ``name`` is in, if any."""
        return next((c.name for c in self.scene.containers if self.is_in(name, c.name)), None)

    def relation_target(self, relation: str, anchor: str, distance: float = RELATION_DISTANCE) -> tuple[float, float]:
        """Where "put X <relation> <anchor>" puts X's centre (x, y)."""
        dx, dy = vocab.RELATIONS[relation]
        a = self.positions[anchor]
        return float(a[0] + dx * distance), float(a[1] + dy * distance)

    def is_related(self, name: str, relation: str, anchor: str, along: tuple[float, float] = (0.045, 0.16),
                   perp_tol: float = 0.05) -> bool:
        """``name`` stands on the table ``relation`` of ``anchor`` ("left of", ...): its centre is
        ``along`` metres from the anchor's in the relation's direction and within ``perp_tol`` across."""
        dx, dy = vocab.RELATIONS[relation]
        d = self.positions[name][:2] - self.positions[anchor][:2]
        a = float(d[0] * dx + d[1] * dy)
        p = abs(float(d[0] * dy - d[1] * dx))
        return bool(self.on_table(name) and along[0] <= a <= along[1] and p <= perp_tol)

    def at_location(self, name: str, location: str, tol: float = LOCATION_TOL) -> bool:
        """``name`` stands on the table within ``tol`` of the named board location."""
        x, y = vocab.LOCATIONS[location]
        p = self.positions[name]
        return bool(self.on_table(name) and np.hypot(p[0] - x, p[1] - y) < tol)

    def free_slot(self, container: str, ignore: str | None = None, clearance: float = 0.045) -> tuple[float, float]:
        """The first of the container's ``slots()`` with no object centre within ``clearance``
        (``ignore`` excluded); the container centre when all are taken."""
        c = self.scene.container(container)
        others = [p for n, p in self.positions.items() if n != ignore]
        for x, y in c.slots():
            if all(np.hypot(p[0] - x, p[1] - y) >= clearance for p in others):
                return x, y
        return c.center


def _require(d: dict, keys: tuple[str, ...], what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"a {what} must be a dict (from to_dict()), got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ConfigError(f"{what} dict is missing {', '.join(missing)}; build it with the {what}'s to_dict()")
