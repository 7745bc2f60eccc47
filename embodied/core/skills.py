"""The skill controller: executes one plan step through any ``embodied.core.protocols.Arm``.

It needs no simulator: object poses come from a ``locate(name) -> (position (3,), yaw)``
callable (the simulator's ground truth, or a real robot's perception), and object and
container geometry from ``embodied.core.world`` records. Skills:

- ``put X on Y`` / ``put X in C`` / ``put X left of|right of|in front of|behind Y`` /
  ``move X to <location>``: pick X (above -> descend -> close -> lift -> verify),
  carry at a safe height, place (above -> measure where X hangs -> descend, the last
  millimetres in a slow step that stops at contact -> open -> retreat), park the arm out of
  the camera's view, then verify where X ended; a failed grasp or placement is picked and
  placed again (``retries``);
- ``done``: nothing to do.

Robust to what the controller cannot know in advance (mass, friction, a gripper whose grasp
shifts under load, small pose errors, an arm whose ``move_to`` stops short):

- grasp verification reads the gripper: after the lift the fingers must still stand apart
  (something between them) and not have closed further than at the grasp (nothing slipped
  out); where ``locate`` still sees X it must also have risen with the hand. An X the camera
  cannot see under the hand (``locate`` raising a named error) is judged by the gripper alone;
- the held object's offset from the grasp point is measured after the lift and measured
  again above the place, after the carry: a heavy object slides on the finger pads, and the
  hand is moved so that X, not the hand, is over the target (across the pads; along the
  closing direction a coupled gripper holds it, and fingers driven apart let it float, where
  moving the hand would only push it about). It is set down at the yaw it was picked at
  where that is as clear as any (no needless turn of a loaded wrist);
- open fingers are kept off tall neighbours with the hand body too (long along the closing
  direction), and off container walls from outside;
- release at contact: the last ``SLOW_ZONE`` above the expected contact is descended in
  ``SLOW_STEP`` steps down to ``RELEASE`` above it, and ends early at the first sign of
  support: the hand stops short of its command (``move_to`` False or the grasp point
  stalling), or X stops following the hand (pushed up in the grasp, as ``locate`` sees it).
  The arm then stops where it is (no pressing on: that pins the fingers and tilts X) and opens;
- bounded retries with a reason per attempt in ``SkillResult.reason``.

A step that does not parse, or names something not in the scene, is not executed: the
result carries the named error (``PlanSyntaxError``, ``UnknownObjectError``,
``IllegalStepError``) and its message.

Why one ~500-line module: it is one class whose skills share one set of geometric margins
(the constants above) and one verify/retry loop; most of its length is those rules' comments.
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
HAND_REACH, HAND_HALF_WIDTH = 0.09, 0.03  # the hand body: half its length along the closing direction, half its width
HAND_ABOVE = 0.045  # the hand body's underside above the grasp point
WALL = 0.01  # container wall thickness (m) assumed when keeping open fingers off a wall from outside
SLOW_ZONE = 0.004  # the last this-many metres above the expected contact are descended in steps
SLOW_STEP = 0.003  # m per step of the slow descent
RELEASE = 0.001  # the slow descent ends this far above the expected contact, where the gripper opens
CONTACT = 0.0015  # m: the hand short of its command, or X pushed up in the hand, by this much = contact
MIN_WIDTH = 0.004  # gripper opening (m) that means something is between the fingers
SLIP_WIDTH = 0.008  # fingers closing this much further after the grasp = the object slipped out
SHIFT = 0.005  # m: the held object found this far from where it was measured after the lift: re-aim the hand
UPRIGHT_TOL = 0.0025  # m: a centre this close to half its height above a surface stands (a hexagon on its side: 2.7 mm low)
RETRIES = 2  # extra pick-and-place attempts after a failed grasp or placement


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
    attempts: int = 0  # pick-and-place attempts made (0: nothing moved)


class _Failed(Exception):
    """A pick or place went wrong; ``args[0]`` says how. ``retry``: another attempt may fix it."""

    def __init__(self, reason: str, retry: bool = True, picking: np.ndarray | None = None):
        super().__init__(reason)
        self.retry = retry
        self.picking = picking  # a failed grasp: where the object was when it began


class SkillController:
    """Executes plan steps on ``arm`` for a scene of ``objects`` and ``containers``."""

    def __init__(self, arm: Arm, locate: Locate, objects: Sequence[ObjectSpec], containers: Sequence[ContainerSpec] = (),
                 park: tuple[float, float, float] | None = PARK, retries: int = RETRIES):
        """``locate(name)`` returns an object's centre (3,) and yaw (a named ``EmbodiedError`` when
        it cannot see it); ``park`` is where the grasp point waits between steps (out of the
        camera's view), None to stay put; ``retries``: extra pick-and-place attempts after a
        failed grasp or a placement that verification rejects."""
        self.arm = arm
        self.park = park
        self.locate = locate
        self.retries = int(retries)
        self.objects = {o.name: o for o in objects}
        self.containers = {c.name: c for c in containers}
        self._grip_yaw = 0.0  # yaw of the last gripper motion, kept while retreating
        self._hang = (np.zeros(2), 0.0)  # held object's offset from the grasp point
        self._seen: dict[str, tuple[np.ndarray, float]] = {}  # last pose ``locate`` gave per object

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
            return self._pick_and_place(step)
        except EmbodiedError as err:  # e.g. perception lost an object mid-skill
            self.arm.hold()
            return SkillResult(False, str(err), err)

    def _pick_and_place(self, step: PlanStep) -> SkillResult:
        name = step.object
        failures: list[str] = []
        for attempt in range(1, self.retries + 2):
            target = self._target(step)
            if target is None:
                failures.append(f"{step.text}: no free place for {name} there")
                return SkillResult(False, _reasons(failures), attempts=attempt - 1)
            try:
                self._pick(name)
                self._place(name, target)
                self._park()
                self._verify(step, name, target)
            except _Failed as f:
                self._park()
                failures.append(str(f))
                if not f.retry:
                    break
                if attempt > self.retries:
                    break
                if not self._upright(name):
                    failures[-1] += "; it no longer stands upright, so it is not picked again"
                    break  # fingers closing on a fallen prism push it about (off the table, even)
                now = self._look(name)
                if f.picking is not None and now is not None and np.hypot(*(now[0][:2] - f.picking[:2])) > 0.03:
                    failures[-1] += f"; the fingers pushed it {np.hypot(*(now[0][:2] - f.picking[:2])) * 100:.0f} cm, so it is not picked again"
                    break
                continue
            done = f"placed {name}"
            return SkillResult(True, f"{done} on attempt {attempt} ({_numbered(failures)})" if failures else done, attempts=attempt)
        return SkillResult(False, _reasons(failures), attempts=len(failures))

    def _upright(self, name: str) -> bool:
        """Whether ``name`` stands (as far as its height above what is under it says) upright:
        its centre half its height above the table, a container floor or an object top."""
        seen = self._look(name)
        if seen is None:
            return False
        p, obj = seen[0], self.objects[name]
        floors = [TABLE_Z] + [TABLE_Z + CONTAINER_FLOOR for c in self.containers.values() if c.contains_xy(p[0], p[1])]
        for n, o in self.objects.items():
            q = self._where(n)[0]
            if n != name and np.hypot(*(q[:2] - p[:2])) < o.size / 2 + 0.005:
                floors.append(float(q[2]) + o.height / 2)
        return any(abs(p[2] - f - obj.height / 2) < UPRIGHT_TOL for f in floors)

    # --- perception ----------------------------------------------------------------------
    def _look(self, name: str) -> tuple[np.ndarray, float] | None:
        """Where ``locate`` sees ``name`` now; None when it cannot (e.g. under the hand)."""
        try:
            pose = self.locate(name)
        except EmbodiedError:
            return None
        self._seen[name] = (np.asarray(pose[0], dtype=np.float64), float(pose[1]))
        return self._seen[name]

    def _where(self, name: str) -> tuple[np.ndarray, float]:
        """Where ``name`` is now, or where it was last seen; ``locate``'s error if never seen."""
        pose = self._look(name)
        if pose is not None:
            return pose
        if name in self._seen:
            return self._seen[name]
        return self.locate(name)  # raises the named error

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
        below_pos, _ = self._where(step.target)
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
        others = [self._where(n)[0] for n in self.objects if n != name]
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
        others = [self._where(n)[0] for n in self.objects if n != name]
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
        tops = (self._where(n)[0][2] + o.height / 2 for n, o in self.objects.items() if n != carrying)
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
            if z_low > TABLE_Z + c.wall_height:
                continue
            if c.contains_xy(xy[0], xy[1], margin=0.01):
                for t in tips:
                    inner = min(c.half_extents[0] - abs(t[0] - c.center[0]), c.half_extents[1] - abs(t[1] - c.center[1]))
                    score = min(score, inner - 0.006)
            else:  # outside: an open finger must not reach over the wall either
                outer = ContainerSpec(c.name, c.colour, c.center, (c.half_extents[0] + WALL, c.half_extents[1] + WALL))
                score = min(score, *(_rect_gap(t[0], t[1], outer) - 0.006 for t in tips))
        hand_low = z_low + FINGER_DEPTH + HAND_ABOVE  # underside of the hand body
        for n, o in self.objects.items():
            if n == ignore:
                continue
            p, _ = self._where(n)
            top = p[2] + o.height / 2
            if top < z_low:
                continue
            score = min(score, *(float(np.hypot(*(t - p[:2]))) - o.size / 2 - 0.012 for t in tips))
            if top > hand_low:  # tall enough to meet the hand itself, which is long along the closing direction
                across, along = np.abs(_rot(-yaw) @ (p[:2] - np.asarray(xy[:2], dtype=np.float64)))
                gap = float(np.hypot(max(across - HAND_HALF_WIDTH, 0.0), max(along - HAND_REACH, 0.0)))
                score = min(score, gap - o.size / 2 - 0.005)
        return score

    def _best_yaw(self, xy, candidates, z_low: float, ignore: str) -> tuple[float, float]:
        ref = _natural_yaw(xy)
        # clearance beyond 2 cm is all the same: then keep the wrist mid-range (nearest ``ref``)
        scored = [(round(min(self._clearance(xy, y, z_low, ignore), 0.02), 4), -abs(y - ref), y) for y in candidates]
        score, _, yaw = max(scored)
        return yaw, score

    def _pick(self, name: str) -> None:
        """Grasp ``name`` and lift it to the carry height; ``_Failed`` when it is not in the hand."""
        obj = self.objects[name]
        pos, yaw = self.locate(name)  # it must be seen to be picked (the named error otherwise)
        pos = np.asarray(pos, dtype=np.float64)
        self._seen[name] = (pos, float(yaw))
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
            raise _Failed(f"could not reach above {name}", retry=False)
        self._move((pos[0], pos[1], grasp_z + APPROACH / 2), gyaw)
        self._move((pos[0], pos[1], grasp_z), gyaw)
        closed = self.arm.close_gripper()
        at_grasp = self.arm.state()
        self._move((pos[0], pos[1], safe), gyaw)
        width = self.arm.state().gripper_width
        lifted = self._look(name)  # None: the camera cannot see it under the hand; the gripper says
        why = ""
        if not closed or at_grasp.gripper_width < MIN_WIDTH:
            why = "the fingers closed on nothing"
        elif width < MIN_WIDTH or width < at_grasp.gripper_width - SLIP_WIDTH:
            why = "it slipped out of the fingers"
        elif lifted is not None and lifted[0][2] < pos[2] + 0.5 * (safe - grasp_z):
            why = "it did not rise with the hand"
        if why:
            self.arm.open_gripper()
            raise _Failed(f"grasp of {name} failed: {why}", picking=pos)
        if lifted is not None:
            ee, at = self.arm.state().ee_pose.position, lifted[0]
        else:  # unseen: it hangs where the fingers closed on it
            ee, at = at_grasp.ee_pose.position, pos
        # where the object hangs relative to the grasp point, in the gripper's yaw frame
        self._hang = (_rot(-gyaw) @ (at[:2] - ee[:2]), float(ee[2] - at[2]))

    def _place_yaw(self, name: str, target: np.ndarray, held: float) -> tuple[float, float]:
        """Gripper yaw to set ``name`` down at ``target`` with, and its clearance score: ``held``
        (no turn) when it is within a quarter turn of mid-range there and as clear as the best."""
        contact = target[2] + self._hang[1]
        ref = _natural_yaw(target)
        cands = [ref + k * math.pi / 8 for k in range(-4, 4)] + [_wrap(held, ref)]  # all within a quarter turn of ref
        yaw, score = self._best_yaw(target, cands, contact - FINGER_DEPTH, name)
        if abs(held - ref) < math.pi / 2 and round(min(self._clearance(target, held, contact - FINGER_DEPTH, name), 0.02), 4) >= score:
            yaw = held  # as good as the best: set it down without turning (a turn can shift a grasp)
        return yaw, score

    def _obstacle_top(self, xy, name: str) -> float:
        tops = [TABLE_Z + c.wall_height for c in self.containers.values() if c.contains_xy(xy[0], xy[1], margin=0.05)]
        for n, o in self.objects.items():
            p, _ = self._where(n)
            if n != name and np.hypot(*(p[:2] - np.asarray(xy[:2]))) < FINGER_REACH + o.size:
                tops.append(float(p[2]) + o.height / 2)
        return max(tops, default=TABLE_Z)

    def _place(self, name: str, target: np.ndarray) -> None:
        """Carry the held ``name`` over ``target``, set it down on contact and let go."""
        local_xy, dz = self._hang
        contact = target[2] + dz  # grasp point height at which the object touches its support
        held = self._grip_yaw  # the yaw it was picked at
        yaw, score = self._place_yaw(name, target, held)
        lift = 0.0  # release this much above the contact: over walls and neighbours the fingers would hit
        if score < 0:
            lift = max(0.0, self._obstacle_top(target, name) + FINGER_DEPTH + 0.004 - contact)
        safe = max(self._safe_z(carrying=name), target[2] + 0.10)
        hand = target[:2] - _rot(yaw) @ local_xy
        self._move((hand[0], hand[1], safe), yaw)  # the carry (turning on the way, where the place needs another yaw)
        self._grip_yaw = yaw
        self._move((hand[0], hand[1], contact + lift + APPROACH), yaw)
        # the carry is over: measure again where the object hangs (a grasp can shift under load)
        seen = self._look(name)
        if seen is not None:
            ee = self.arm.state().ee_pose.position
            now_xy, now_dz = _rot(-yaw) @ (seen[0][:2] - ee[:2]), float(ee[2] - seen[0][2])
            if np.hypot(*now_xy) < FINGER_REACH and abs(now_dz - dz) < 0.03:  # still in the hand
                # across the fingers (the hand frame's x) a shift is the object sliding on the pads:
                # aim for it. Along the closing direction (y) a coupled gripper does not let it
                # move, and one that does (fingers driven apart) lets it float: moving the hand
                # would only push it about, so that part keeps the lift's measurement.
                local_xy, dz = np.array([now_xy[0], local_xy[1]]), now_dz
                self._hang = (local_xy, dz)
                contact = target[2] + dz
                if lift:
                    lift = max(0.0, self._obstacle_top(target, name) + FINGER_DEPTH + 0.004 - contact)
                moved = target[:2] - _rot(yaw) @ local_xy
                if np.hypot(*(moved - hand)) > SHIFT:
                    hand = moved
                    self._move((hand[0], hand[1], contact + lift + APPROACH), yaw)
        if lift:  # released in the air, above the obstacles
            self._move((hand[0], hand[1], contact + lift + 0.004), yaw)
        elif self._move((hand[0], hand[1], contact + SLOW_ZONE), yaw):
            self._set_down(name, hand, yaw, contact, dz)
        else:
            self.arm.hold()  # held up before the slow zone: it already stands on something
        self.arm.open_gripper()
        self._move((hand[0], hand[1], max(contact + lift + APPROACH, self._safe_z())), yaw)  # straight up, clear of it all

    def _set_down(self, name: str, hand, yaw: float, contact: float, dz: float) -> None:
        """Descend in ``SLOW_STEP`` steps from ``SLOW_ZONE`` above ``contact`` to ``RELEASE``
        above it, stopping early where something holds the object up, then stop there
        (``hold``: no pressing on, which pins and tilts a held object)."""
        z = contact + SLOW_ZONE
        last = float(self.arm.state().ee_pose.position[2])
        while z > contact + RELEASE + 1e-9:
            z = max(z - SLOW_STEP, contact + RELEASE)
            reached = self._move((hand[0], hand[1], z), yaw)
            now = float(self.arm.state().ee_pose.position[2])
            stalled = last - now < SLOW_STEP / 2 and now > z + CONTACT  # the hand stopped short of its command
            last = now
            if not reached or stalled:
                break
            seen = self._look(name)
            if seen is not None and seen[0][2] > now - dz + CONTACT:
                break  # pushed up in the grasp: it stands on something already
        self.arm.hold()

    def _verify(self, step: PlanStep, name: str, target: np.ndarray) -> None:
        """With the arm parked: did ``name`` end where the step wanted it? ``_Failed`` if not."""
        seen = self._look(name)
        if seen is None:
            raise _Failed(f"{name} is not seen after placing it", retry=False)
        pos, obj = seen[0], self.objects[name]
        if step.preposition == "on":
            below = self.objects[step.target]
            bpos = self._where(step.target)[0]
            err = float(np.hypot(*(pos[:2] - bpos[:2])))
            high = float(pos[2] - (bpos[2] + below.height / 2 + obj.height / 2))
            ok = err < 0.5 * below.size and abs(high) < 0.01
            where = f"{err * 100:.1f} cm from the centre of {step.target}" + ("" if abs(high) < 0.01 else f", {high * 100:+.1f} cm off its top")
        elif step.preposition == "in":
            cont = self.containers[step.target]
            err = float(np.hypot(*(pos[:2] - target[:2])))
            ok = cont.contains_xy(pos[0], pos[1]) and pos[2] - obj.height / 2 < TABLE_Z + cont.wall_height + 0.01
            where = f"{err * 100:.1f} cm from where it was placed" + ("" if ok else f", not in {step.target}")
        else:
            err = float(np.hypot(*(pos[:2] - target[:2])))
            ok = err < 0.02 and abs(pos[2] - target[2]) < 0.01
            where = f"{err * 100:.1f} cm from where it was placed" + ("" if abs(pos[2] - target[2]) < 0.01 else ", not on the table")
        if not ok:
            raise _Failed(f"{name} ended {where}")

    def _park(self) -> None:
        state = self.arm.state().ee_pose.position
        if state[2] < self._safe_z() - 0.01:
            self._move((state[0], state[1], self._safe_z()), self._grip_yaw)
        if self.park is not None:
            self._move(self.park, 0.0)
        self.arm.hold()


def _numbered(failures: list[str]) -> str:
    return "; ".join(f"attempt {i}: {f}" for i, f in enumerate(failures, 1))


def _reasons(failures: list[str]) -> str:
    """One reason per failed attempt, the last first: "<last> (attempt 1: ...; attempt 2: ...)"."""
    if len(failures) == 1:
        return failures[0]
    return f"{failures[-1]} ({_numbered(failures[:-1])})"
