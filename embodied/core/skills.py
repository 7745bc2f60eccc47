"""The skill controller: executes one plan step through any ``embodied.core.protocols.Arm``.

It needs no simulator: object poses come from a ``locate(name) -> (position (3,), yaw)``
callable (the simulator's ground truth, or a real robot's perception), and object and
container geometry from ``embodied.core.world`` records. Skills:

- ``put X on Y`` / ``put X in C`` / ``put X left of|right of|in front of|behind Y`` /
  ``move X to <location>``: pick X (above -> descend -> close -> lift -> verify that X
  rose with the gripper), carry at a safe height, place (above -> descend -> open ->
  retreat), then park the arm out of the camera's view;
- ``done``: nothing to do.

A step that does not parse, or names something not in the scene, is not executed: the
result carries the named error (``PlanSyntaxError``, ``UnknownObjectError``,
``IllegalStepError``) and its message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from embodied.core.errors import EmbodiedError
from embodied.core.plan import PlanStep, parse_step, validate_step
from embodied.core.protocols import Arm, Pose
from embodied.core.vocab import LOCATIONS, RELATIONS, SHAPE_SIDES
from embodied.core.world import CONTAINER_FLOOR, RELATION_DISTANCE, TABLE_Z, WORKSPACE_X, WORKSPACE_Y, ContainerSpec, ObjectSpec

Locate = Callable[[str], tuple[np.ndarray, float]]

SAFE_Z = 0.16  # carry height of the grasp point above the table (raised over tall stacks)
APPROACH = 0.07  # pre-grasp / pre-place height above the final pose
PARK = (0.16, 0.0, 0.39)  # Panda grasp point with the arm folded out of the front camera
FINGER_REACH = 0.05  # open finger's outer edge, from the grasp point along the closing direction
FINGER_DEPTH = 0.013  # finger tips reach this far below the grasp point


def _wrap(a: float, ref: float = 0.0) -> float:
    """Angle in [ref - pi/2, ref + pi/2): a top-down gripper is symmetric under a half turn."""
    return (a - ref + math.pi / 2) % math.pi - math.pi / 2 + ref


def _natural_yaw(xy) -> float:
    """Gripper yaw that keeps the Panda's wrist mid-range over (x, y): facing out from the base."""
    return math.atan2(float(xy[1]), float(xy[0]))


def _rect_gap(x: float, y: float, c: ContainerSpec) -> float:
    """Distance from (x, y) to a container's inner rectangle (0 inside)."""
    dx = max(abs(x - c.center[0]) - c.half_extents[0], 0.0)
    dy = max(abs(y - c.center[1]) - c.half_extents[1], 0.0)
    return float(np.hypot(dx, dy)) if (dx or dy) else 0.0


def _rot(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def top_down(yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a gripper pointing down, rotated ``yaw`` about world z.

    The fingers close along the direction ``yaw - pi/2``.
    """
    return np.array([math.cos(yaw / 2), math.sin(yaw / 2), 0.0, 0.0])


def grasp_yaw(shape: str, yaw: float, reference: float = 0.0) -> float:
    """Gripper yaw that closes the fingers across a face of the shape, nearest ``reference``.

    Polygons are built with a vertex at ``yaw``, so face normals are at ``yaw + pi/n``;
    a cube (a box) has face normals at ``yaw``. For odd n the finger opposite a face
    meets a vertex, so valid closing directions repeat every pi/n; for even n every 2pi/n.
    """
    n = SHAPE_SIDES[shape]
    if n == 0:
        return reference
    normal = yaw if n == 4 else yaw + math.pi / n
    period = math.pi / n if n % 2 else 2 * math.pi / n
    base = normal + math.pi / 2  # gripper yaw whose closing direction is ``normal``
    k = round((reference - base) / period)
    return base + k * period


@dataclass
class SkillResult:
    success: bool
    reason: str = ""
    error: EmbodiedError | None = None  # set when the step was rejected before moving


class SkillController:
    """Executes plan steps on ``arm`` for a scene of ``objects`` and ``containers``."""

    def __init__(self, arm: Arm, locate: Locate, objects: Sequence[ObjectSpec], containers: Sequence[ContainerSpec] = (),
                 park: tuple[float, float, float] | None = PARK):
        """``locate(name)`` returns an object's centre (3,) and yaw; ``park`` is where the
        grasp point waits between steps (out of the camera's view), None to stay put."""
        self.arm = arm
        self.park = park
        self.locate = locate
        self.objects = {o.name: o for o in objects}
        self.containers = {c.name: c for c in containers}
        self._grip_yaw = 0.0  # yaw of the last gripper motion, kept while retreating
        self._hang = (np.zeros(2), 0.0)  # held object's offset from the grasp point

    # --- public ------------------------------------------------------------------------
    def execute(self, step: PlanStep | str) -> SkillResult:
        """Run one step; never raises for bad steps (see the module docstring)."""
        try:
            if isinstance(step, str):
                step = parse_step(step)
            validate_step(step, list(self.objects), list(self.containers))
        except EmbodiedError as err:
            return SkillResult(False, str(err), err)
        if step.is_done:
            return SkillResult(True, "done")
        try:
            target = self._target(step)
            if target is None:
                return SkillResult(False, f"{step.text}: no free place for {step.object} there")
            picked = self._pick(step.object)
            if not picked.success:
                self._park()
                return picked
            placed = self._place(step.object, target)
            self._park()
            return placed
        except EmbodiedError as err:  # e.g. perception lost an object mid-skill
            self.arm.hold()
            return SkillResult(False, str(err), err)

    # --- targets -----------------------------------------------------------------------
    def _target(self, step: PlanStep) -> np.ndarray | None:
        """Where the object's centre should end up (x, y, z)."""
        obj = self.objects[step.object]
        if step.verb == "move":
            x, y = LOCATIONS[step.target]
            xy = self._free_spot([(x, y)] + self._ring(x, y, 0.03, 8), step.object, obj.size * 1.1)
            return None if xy is None else np.array([xy[0], xy[1], TABLE_Z + obj.height / 2])
        if step.preposition == "in":
            return self._in_container(step.object, self.containers[step.target])
        below_pos, _ = self.locate(step.target)
        below = self.objects[step.target]
        if step.preposition == "on":
            top = float(below_pos[2]) + below.height / 2
            return np.array([below_pos[0], below_pos[1], top + obj.height / 2])
        dx, dy = RELATIONS[step.preposition]
        x, y = below_pos[0] + dx * RELATION_DISTANCE, below_pos[1] + dy * RELATION_DISTANCE
        # candidates along the relation's direction, nearest first
        cands = [(x, y)] + [(x + dx * s + dy * o, y + dy * s - dx * o) for s, o in ((0.02, 0), (0, 0.02), (0, -0.02), (0.04, 0))]
        xy = self._free_spot(cands, step.object, max(obj.size, below.size) * 1.05)
        return None if xy is None else np.array([xy[0], xy[1], TABLE_Z + obj.height / 2])

    def _in_container(self, name: str, cont: ContainerSpec) -> np.ndarray | None:
        """The container's first free slot (``ContainerSpec.slots``), judged from ``locate``."""
        obj = self.objects[name]
        others = [self.locate(n)[0] for n in self.objects if n != name]
        clearance = 0.9 * obj.size
        for x, y in cont.slots():
            if all(np.hypot(p[0] - x, p[1] - y) >= clearance for p in others):
                return np.array([x, y, TABLE_Z + CONTAINER_FLOOR + obj.height / 2])
        return None

    @staticmethod
    def _ring(x: float, y: float, r: float, n: int) -> list[tuple[float, float]]:
        return [(x + r * math.cos(2 * math.pi * k / n), y + r * math.sin(2 * math.pi * k / n)) for k in range(n)]

    def _free_spot(self, cands, name: str, clearance: float) -> tuple[float, float] | None:
        """The first candidate inside the workspace with no other object within ``clearance``."""
        others = [self.locate(n)[0] for n in self.objects if n != name]
        for x, y in cands:
            if not (WORKSPACE_X[0] + 0.03 <= x <= WORKSPACE_X[1] - 0.03 and WORKSPACE_Y[0] + 0.03 <= y <= WORKSPACE_Y[1] - 0.03):
                continue
            if any(_rect_gap(x, y, c) < 0.5 * clearance + 0.012 for c in self.containers.values()):
                continue  # would stand on a container's wall
            if all(np.hypot(x - p[0], y - p[1]) >= clearance for p in others):
                return (x, y)
        return None

    # --- motions -----------------------------------------------------------------------
    def _safe_z(self, carrying: str | None = None) -> float:
        tops = (self.locate(n)[0][2] + o.height / 2 for n, o in self.objects.items() if n != carrying)
        tallest = max(tops, default=0.0)
        return max(SAFE_Z, tallest + 0.10)

    def _move(self, xyz, yaw: float) -> bool:
        return self.arm.move_to(Pose(np.asarray(xyz, dtype=np.float64), top_down(yaw)))

    def _clearance(self, xy, yaw: float, z_low: float, ignore: str) -> float:
        """How far (m) the open fingers at ``xy``/``yaw`` stay from walls and from other
        objects whose tops reach above ``z_low`` (the finger tips); negative = collision."""
        d = np.array([math.sin(yaw), -math.cos(yaw)])  # closing direction
        tips = [np.asarray(xy[:2]) + s * FINGER_REACH * d for s in (-1.0, 1.0)]
        score = 1.0
        for c in self.containers.values():
            if z_low > TABLE_Z + c.wall_height or not c.contains_xy(xy[0], xy[1], margin=0.01):
                continue
            for t in tips:
                inner = min(c.half_extents[0] - abs(t[0] - c.center[0]), c.half_extents[1] - abs(t[1] - c.center[1]))
                score = min(score, inner - 0.006)
        for n, o in self.objects.items():
            if n == ignore:
                continue
            p, _ = self.locate(n)
            if p[2] + o.height / 2 < z_low:
                continue
            score = min(score, *(float(np.hypot(*(t - p[:2]))) - o.size / 2 - 0.012 for t in tips))
        return score

    def _best_yaw(self, xy, candidates, z_low: float, ignore: str) -> tuple[float, float]:
        ref = _natural_yaw(xy)
        # clearance beyond 2 cm is all the same: then keep the wrist mid-range (nearest ``ref``)
        scored = [(round(min(self._clearance(xy, y, z_low, ignore), 0.02), 4), -abs(y - ref), y) for y in candidates]
        score, _, yaw = max(scored)
        return yaw, score

    def _pick(self, name: str) -> SkillResult:
        obj = self.objects[name]
        pos, yaw = self.locate(name)
        grasp_z = max(float(pos[2]) + obj.height / 2 - 0.022, TABLE_Z + 0.012)
        ref = _natural_yaw(pos)
        base = grasp_yaw(obj.shape, yaw, reference=ref)
        n = SHAPE_SIDES[obj.shape]
        period = math.pi / 8 if n == 0 else (math.pi / n if n % 2 else 2 * math.pi / n)
        cands = sorted({round(_wrap(base + k * period, ref), 6) for k in range(-8, 9)})
        gyaw, score = self._best_yaw(pos, cands, grasp_z - FINGER_DEPTH, name)
        if score < 0:  # fingers would hit a wall or a neighbour: grasp higher on the object
            grasp_z = max(grasp_z, min(float(pos[2]) + obj.height / 2 - 0.008, self._obstacle_top(pos, name) + FINGER_DEPTH + 0.003))
        safe = self._safe_z()
        self._grip_yaw = gyaw
        self.arm.open_gripper()
        if not self._move((pos[0], pos[1], safe), gyaw):
            return SkillResult(False, f"could not reach above {name}")
        self._move((pos[0], pos[1], grasp_z + APPROACH / 2), gyaw)
        self._move((pos[0], pos[1], grasp_z), gyaw)
        closed = self.arm.close_gripper()
        self._move((pos[0], pos[1], safe), gyaw)
        lifted, _ = self.locate(name)
        if not closed or lifted[2] < pos[2] + 0.5 * (safe - grasp_z):
            self.arm.open_gripper()
            return SkillResult(False, f"grasp of {name} failed")
        ee = self.arm.state().ee_pose.position
        # where the object hangs relative to the grasp point, in the gripper's yaw frame
        self._hang = (_rot(-gyaw) @ (lifted[:2] - ee[:2]), float(ee[2] - lifted[2]))
        return SkillResult(True, f"picked {name}")

    def _obstacle_top(self, xy, name: str) -> float:
        tops = [TABLE_Z + c.wall_height for c in self.containers.values() if c.contains_xy(xy[0], xy[1], margin=0.05)]
        for n, o in self.objects.items():
            p, _ = self.locate(n)
            if n != name and np.hypot(*(p[:2] - np.asarray(xy[:2]))) < FINGER_REACH + o.size:
                tops.append(float(p[2]) + o.height / 2)
        return max(tops, default=TABLE_Z)

    def _place(self, name: str, target: np.ndarray) -> SkillResult:
        local_xy, dz = self._hang
        above = target[2] + dz
        cands = [_natural_yaw(target) + k * math.pi / 8 for k in range(-4, 4)]
        yaw, score = self._best_yaw(target, cands, above - FINGER_DEPTH, name)
        if score < 0:  # release higher, above walls and neighbours
            above = max(above, self._obstacle_top(target, name) + FINGER_DEPTH + 0.004)
        hand = target[:2] - _rot(yaw) @ local_xy
        safe = max(self._safe_z(carrying=name), target[2] + 0.10)
        self._move((hand[0], hand[1], safe), yaw)
        self._move((hand[0], hand[1], above + APPROACH), yaw)
        self._move((hand[0], hand[1], above + 0.004), yaw)
        self.arm.open_gripper()
        self._move((hand[0], hand[1], above + APPROACH), yaw)
        self._grip_yaw = yaw
        pos, _ = self.locate(name)
        err = float(np.hypot(pos[0] - target[0], pos[1] - target[1]))
        if err > 0.02:
            return SkillResult(False, f"{name} ended {err * 100:.1f} cm from where it was placed")
        return SkillResult(True, f"placed {name}")

    def _park(self) -> None:
        state = self.arm.state().ee_pose.position
        if state[2] < self._safe_z():
            self._move((state[0], state[1], self._safe_z()), self._grip_yaw)
        if self.park is not None:
            self._move(self.park, 0.0)
        self.arm.hold()
