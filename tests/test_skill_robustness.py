"""The skill controller's robustness, on a kinematic numpy arm that misbehaves on purpose.

``KinematicArm`` implements ``embodied.core.protocols.Arm`` without physics: a closed gripper
carries the object under the grasp point rigidly, ``open_gripper`` drops it onto whatever is
below. Each test makes it misbehave the way a real arm or camera does (the object slides
off after a release, shifts in the hand during the carry, hides under the hand, stands on a
support taller than the controller believes) and checks what the controller does about it.
"""

from __future__ import annotations

import numpy as np
import pytest

from embodied.core.errors import UnknownObjectError
from embodied.core.protocols import Arm, ArmState, Pose
from embodied.core.skills import RETRIES, SLOW_STEP, SLOW_ZONE, SkillController, top_down
from embodied.core.world import TABLE_Z, ObjectSpec

SPECS = [ObjectSpec("red", "cube"), ObjectSpec("blue", "cube"), ObjectSpec("green", "cylinder")]
START = {"red cube": (0.45, 0.15), "blue cube": (0.55, -0.10), "green cylinder": (0.62, 0.12)}


class KinematicArm:
    """Kinematic Panda stand-in. ``slides``: x shifts (m) applied to the object at successive
    releases; ``carry_shift``: how far (m) the held object slides across the finger pads during
    the first long move; ``occlude``: ``locate`` cannot see an object with the hand over it; ``z_error``: what
    ``locate`` gets wrong in height, per object (a depth error); ``topple``: the first release
    leaves the object lying on its side (its centre 12 mm above what is under it)."""

    def __init__(self, slides=(), carry_shift=None, occlude=False, z_error=None, topple=False):
        self.specs = {o.name: o for o in SPECS}
        self.height = {n: o.height for n, o in self.specs.items()}
        self.z_error = dict(z_error or {})
        self.topple = topple
        self.releases = 0
        self.pos = {n: np.array([x, y, self.height[n] / 2]) for n, (x, y) in START.items()}
        self.hand = np.array([0.16, 0.0, 0.39])
        self.width = 0.08
        self.held: str | None = None
        self.offset = np.zeros(3)
        self.slides = list(slides)
        self.carry_shift = carry_shift
        self.occlude = occlude
        self.commands: list[tuple[np.ndarray, str | None, bool]] = []  # (target, held, reached)

    # --- the world ------------------------------------------------------------------------
    def top_below(self, name: str, xy) -> float:
        tops = [TABLE_Z] + [p[2] + self.height[n] / 2 for n, p in self.pos.items()
                            if n != name and np.hypot(*(p[:2] - xy[:2])) < self.specs[n].size / 2]
        return max(tops)

    def locate(self, name: str):
        p = self.pos[name]
        if self.occlude and np.hypot(*(self.hand[:2] - p[:2])) < 0.045 and self.hand[2] > p[2] - 0.01:
            raise UnknownObjectError(f"the camera does not see {name!r} under the hand")
        return p + np.array([0.0, 0.0, self.z_error.get(name, 0.0)]), 0.0

    # --- Arm ------------------------------------------------------------------------------
    def move_to(self, pose: Pose, max_seconds: float = 3.0) -> bool:
        target = np.asarray(pose.position, dtype=float).copy()
        reached = True
        if self.held is not None:
            n = self.held
            if self.carry_shift is not None and np.hypot(*(target[:2] - self.hand[:2])) > 0.05:
                q = np.asarray(pose.orientation)
                yaw = 2 * np.arctan2(q[1], q[0])  # top_down(yaw) = (cos yaw/2, sin yaw/2, 0, 0)
                self.offset[:2] += self.carry_shift * np.array([np.cos(yaw), np.sin(yaw)])  # across the pads
                self.carry_shift = None
            floor = self.top_below(n, target[:2] + self.offset[:2]) + self.height[n] / 2 - self.offset[2]
            if target[2] < floor:  # the object stands on something: the hand stops there
                target[2], reached = floor, False
            self.pos[n] = target + self.offset
        self.hand = target
        self.commands.append((target.copy(), self.held, reached))
        return reached

    def close_gripper(self) -> bool:
        for n, p in self.pos.items():
            if np.hypot(*(p[:2] - self.hand[:2])) < 0.015 and abs(p[2] - self.hand[2]) < self.height[n] / 2:
                self.held, self.offset, self.width = n, p - self.hand, self.specs[n].size
                return True
        self.width = 0.0
        return False

    def open_gripper(self) -> bool:
        if self.held is not None:
            p = self.pos[self.held]
            if self.slides:
                p[0] += self.slides.pop(0)
            p[2] = self.top_below(self.held, p[:2]) + self.height[self.held] / 2
            if self.topple and self.releases == 0:
                p[0] += 0.04
                p[2] = self.top_below(self.held, p[:2]) + 0.012
            self.held = None
            self.releases += 1
        self.width = 0.08
        return True

    def state(self) -> ArmState:
        return ArmState(np.zeros(7), self.width, Pose(self.hand.copy(), top_down(0.0)))

    def hold(self) -> None:
        pass


def controller(arm: KinematicArm) -> SkillController:
    return SkillController(arm, arm.locate, SPECS)


def on(arm: KinematicArm, top: str, below: str) -> bool:
    a, b = arm.pos[top], arm.pos[below]
    return bool(np.hypot(*(a[:2] - b[:2])) < 0.01 and abs(a[2] - b[2] - 0.04) < 0.002)


def test_the_kinematic_arm_is_an_arm():
    assert isinstance(KinematicArm(), Arm)
    arm = KinematicArm()
    assert controller(arm).execute("put red cube on blue cube").success and on(arm, "red cube", "blue cube")


def test_a_placement_that_slid_off_is_verified_and_placed_again():
    arm = KinematicArm(slides=[0.04])  # the first release slides it 4 cm: off the blue cube
    result = controller(arm).execute("put red cube on blue cube")
    assert result.success and result.attempts == 2, result
    assert "attempt 1: red cube ended 4.0 cm from the centre of blue cube" in result.reason
    assert on(arm, "red cube", "blue cube")


def test_retries_are_bounded_and_every_attempt_is_reported():
    arm = KinematicArm(slides=[0.04] * 10)
    result = controller(arm).execute("put red cube on blue cube")
    assert not result.success and result.attempts == 1 + RETRIES
    assert result.reason.startswith("red cube ended 4.0 cm from the centre of blue cube")
    assert all(f"attempt {i}:" in result.reason for i in range(1, RETRIES + 1))
    assert len(arm.slides) == 10 - (1 + RETRIES)  # exactly that many releases


def test_an_object_that_fell_over_is_not_picked_again():
    arm = KinematicArm(topple=True)
    result = controller(arm).execute("put red cube on blue cube")
    assert not result.success and result.attempts == 1 and arm.releases == 1
    assert "no longer stands upright" in result.reason


def test_no_retries_when_asked_for_none():
    arm = KinematicArm(slides=[0.04])
    result = SkillController(arm, arm.locate, SPECS, retries=0).execute("put red cube on blue cube")
    assert not result.success and result.attempts == 1


def test_a_grasp_that_shifts_during_the_carry_is_measured_again_before_the_descent():
    arm = KinematicArm(carry_shift=0.015)
    result = controller(arm).execute("put red cube on blue cube")
    a, b = arm.pos["red cube"], arm.pos["blue cube"]
    assert np.hypot(*(a[:2] - b[:2])) < 0.002  # centred despite the 1.5 cm slip, on the first attempt
    assert result.success and result.attempts == 1, result


def test_grasp_is_judged_by_the_gripper_when_the_camera_cannot_see_under_the_hand():
    arm = KinematicArm(occlude=True)
    result = controller(arm).execute("put red cube on blue cube")
    assert result.success, result.reason
    assert on(arm, "red cube", "blue cube")


def test_fingers_closing_on_nothing_is_a_failed_grasp_with_its_reason():
    arm = KinematicArm()
    wrong = {n: (p + np.array([0.0, 0.05, 0.0]), 0.0) for n, p in arm.pos.items()}  # the camera is 5 cm off
    result = SkillController(arm, lambda n: (wrong[n][0].copy(), 0.0), SPECS).execute("put red cube on blue cube")
    assert not result.success and result.attempts == 1 + RETRIES
    assert result.reason.startswith("grasp of red cube failed: the fingers closed on nothing")


@pytest.mark.parametrize("error", [0.003, 0.008], ids=["in_the_slow_steps", "during_the_descent"])
def test_the_arm_stops_descending_where_the_object_meets_its_support(error):
    # the camera puts the blue cube too low: the red cube meets it ``error`` above where expected
    arm = KinematicArm(z_error={"blue cube": -error})
    result = controller(arm).execute("put red cube on blue cube")
    assert result.success, result.reason
    held = [(t, reached) for t, n, reached in arm.commands if n == "red cube"]
    stops = [i for i, (_, reached) in enumerate(held) if not reached]
    assert stops, "the hand never met the support"
    stop = stops[0]
    assert stop == len(held) - 1  # the gripper opened where the hand was held up: no pushing on
    if error < SLOW_ZONE:
        assert held[stop - 1][0][2] - held[stop][0][2] <= SLOW_STEP + 1e-9  # it met it on a slow step
    assert arm.pos["red cube"][2] == pytest.approx(0.06)  # resting on it
