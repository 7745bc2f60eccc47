"""The scene graph from perceived poses, with the simulator's semantics (``WorldState.relation``):
"in gripper", then "in <container>", then "on <object>", then "on table"; nothing when none holds
(an object tipped against another). Tolerances are the ground truth's."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from embodied.core.scene import PerceivedObject
from embodied.core.world import TABLE_Z

ON_XY = 0.55  # of the lower object's size: centres closer than this can be stacked
ON_Z = 0.012  # bottom of the upper to top of the lower (m)
TABLE_TOL = 0.018  # bottom above the table (m) still "on table" (container floors are thin)
IN_Z = 0.01  # bottom at most wall height + this (m) to be in a container
GRIP_XY = 0.03  # object centre to grasp point, horizontally (m)
GRIP_Z = 0.035  # and vertically
GRIP_SLACK = 0.012  # the fingers close to at most the object's width + this


def bottom(o: PerceivedObject) -> float:
    return float(o.position[2] - o.height / 2)


def top(o: PerceivedObject) -> float:
    return float(o.position[2] + o.height / 2)


def held_object(objects: Sequence[PerceivedObject], gripper: tuple[np.ndarray, float] | None) -> PerceivedObject | None:
    """The object between the fingers: centred at the grasp point, the fingers closed on it, off its support."""
    if gripper is None:
        return None
    g, opening = np.asarray(gripper[0], float), float(gripper[1])
    best, dist = None, np.inf
    for o in objects:
        if o.kind == "container":
            continue
        dxy = float(np.hypot(*(o.position[:2] - g[:2])))
        dz = abs(float(o.position[2] - g[2]))
        if dxy < GRIP_XY and dz < GRIP_Z and opening < o.size + GRIP_SLACK and bottom(o) > TABLE_Z + 0.005 and dxy + dz < dist:
            best, dist = o, dxy + dz
    return best


def relation(o: PerceivedObject, objects: Sequence[PerceivedObject], wall_heights: dict[str, float], held: PerceivedObject | None) -> str:
    if held is not None and o is held:
        return "in gripper"
    b = bottom(o)
    for c in objects:
        if c.kind != "container":
            continue
        hx, hy = c.half_extents
        d = o.position[:2] - c.position[:2]
        cs, sn = np.cos(c.yaw), np.sin(c.yaw)
        lx, ly = cs * d[0] + sn * d[1], -sn * d[0] + cs * d[1]
        if abs(lx) < hx and abs(ly) < hy and b < TABLE_Z + wall_heights.get(c.name, 0.02) + IN_Z:
            return f"in {c.name}"
    for below in objects:
        if below is o or below.kind == "container":
            continue
        if np.hypot(*(o.position[:2] - below.position[:2])) < ON_XY * below.size and abs(b - top(below)) < ON_Z:
            return f"on {below.name}"
    if abs(b - TABLE_Z) < TABLE_TOL:
        return "on table"
    return ""


def scene_graph(objects: Sequence[PerceivedObject], gripper: tuple[np.ndarray, float] | None = None,
                wall_heights: dict[str, float] | None = None) -> dict[str, str]:
    """Relations of the named objects (containers and unknowns have none; empty relations are left out)."""
    held = held_object([o for o in objects if o.kind == "object"], gripper)
    out = {}
    for o in objects:
        if o.kind != "object":
            continue
        r = relation(o, objects, wall_heights or {}, held)
        if r:
            out[o.name] = r
    return out
