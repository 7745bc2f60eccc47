"""The skill controller executes each kind of plan step on the simulated Panda."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pybullet")

from embodied.core.errors import IllegalStepError, PlanSyntaxError, UnknownObjectError  # noqa: E402
from embodied.core.skills import SkillController, SkillResult, grasp_yaw  # noqa: E402
from embodied.core.world import BIN_HALF_EXTENTS, TRAY_HALF_EXTENTS, ContainerSpec, ObjectSpec, Placement, SceneSpec  # noqa: E402
from envs.sim import TabletopSim  # noqa: E402

OBJECTS = [ObjectSpec("red", "cube"), ObjectSpec("green", "cylinder"), ObjectSpec("blue", "triangle"),
           ObjectSpec("yellow", "hexagon"), ObjectSpec("purple", "pentagon")]
PLACES = {"red cube": (0.42, 0.10, 0.2), "green cylinder": (0.55, 0.12, 0.0), "blue triangle": (0.44, -0.12, -0.3),
          "yellow hexagon": (0.60, -0.08, 0.5), "purple pentagon": (0.66, 0.06, 0.1)}
CONTAINERS = [ContainerSpec("tray", "grey", (0.50, 0.30), TRAY_HALF_EXTENTS),
              ContainerSpec("orange bin", "orange", (0.50, -0.30), BIN_HALF_EXTENTS)]


def scene() -> SceneSpec:
    return SceneSpec(list(OBJECTS), {n: Placement(x, y, yaw) for n, (x, y, yaw) in PLACES.items()}, list(CONTAINERS))


@pytest.fixture(scope="module")
def sim():
    s = TabletopSim()
    yield s
    s.close()


@pytest.fixture
def ctl(sim):
    sc = scene()
    sim.load(sc)
    return SkillController(sim.arm, sim.pose, sc.objects, sc.containers)


def run(sim, ctl, text: str) -> SkillResult:
    result = ctl.execute(text)
    sim.settle()
    return result


def test_put_on(sim, ctl):
    assert run(sim, ctl, "put blue triangle on red cube").success
    assert run(sim, ctl, "put purple pentagon on blue triangle").success
    w = sim.world_state()
    assert w.is_on("blue triangle", "red cube") and w.is_on("purple pentagon", "blue triangle")


@pytest.mark.parametrize("container", ["tray", "orange bin"])
def test_put_in_container_uses_free_spots(sim, ctl, container):
    for name in ("red cube", "green cylinder", "yellow hexagon"):
        assert run(sim, ctl, f"put {name} in {container}").success, name
    w = sim.world_state()
    assert all(w.is_in(n, container) for n in ("red cube", "green cylinder", "yellow hexagon"))
    pts = [w.positions[n][:2] for n in ("red cube", "green cylinder", "yellow hexagon")]
    assert min(np.hypot(*(a - b)) for i, a in enumerate(pts) for b in pts[i + 1:]) > 0.035  # not on top of each other


@pytest.mark.parametrize("relation", ["left of", "right of", "in front of", "behind"])
def test_put_relative(sim, ctl, relation):
    assert run(sim, ctl, f"put green cylinder {relation} yellow hexagon").success
    assert sim.world_state().is_related("green cylinder", relation, "yellow hexagon")


@pytest.mark.parametrize("location", ["top left", "bottom right", "center"])
def test_move_to_location(sim, ctl, location):
    assert run(sim, ctl, f"move blue triangle to {location}").success
    assert sim.world_state().at_location("blue triangle", location)


def test_arm_parks_out_of_the_camera_after_a_step(sim, ctl):
    assert run(sim, ctl, "move red cube to top right").success
    assert set(sim.detections()) == set(sim.scene.object_names) | {"tray", "orange bin"}


def test_no_free_place_is_a_failed_result(sim):
    sc = SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.45, 0.0)},
                   [ContainerSpec("tray", "grey", (0.64, 0.22), TRAY_HALF_EXTENTS)])  # covers "top left"
    sim.load(sc)
    ctl = SkillController(sim.arm, sim.pose, sc.objects, sc.containers)
    result = ctl.execute("move red cube to top left")
    assert not result.success and "no free place" in result.reason and result.error is None


def test_done_does_nothing(sim, ctl):
    before = sim.world_state().positions
    assert ctl.execute("done") == SkillResult(True, "done")
    after = sim.world_state().positions
    assert all(np.allclose(before[n], after[n]) for n in before)


@pytest.mark.parametrize("text, error", [
    ("put pink cube on red cube", UnknownObjectError),
    ("put red cube in cyan bin", UnknownObjectError),
    ("put red cube on pink cylinder", UnknownObjectError),
    ("put red cube on red cube", IllegalStepError),
    ("fly red cube to the moon", PlanSyntaxError),
])
def test_bad_steps_are_reported_not_raised(sim, ctl, text, error):
    steps = sim.steps
    result = ctl.execute(text)
    assert not result.success and isinstance(result.error, error)
    assert result.reason == str(result.error) and result.reason
    assert sim.steps == steps  # nothing moved


def test_grasp_yaw_closes_across_faces():
    # a cube is grasped across its faces: closing direction (yaw - pi/2) parallel to a face normal
    g = grasp_yaw("cube", 0.3)
    assert math.isclose(math.cos(4 * (g - math.pi / 2 - 0.3)), 1.0, abs_tol=1e-9)
    # a triangle with a vertex at yaw 0 has face normals at 60, 180, 300 degrees
    g = grasp_yaw("triangle", 0.0)
    closing = (g - math.pi / 2) % (math.pi / 3)
    assert math.isclose(closing, 0.0, abs_tol=1e-9) or math.isclose(closing, math.pi / 3, abs_tol=1e-9)
    assert grasp_yaw("cylinder", 1.0, reference=0.2) == 0.2


def test_grasp_is_verified_by_the_gripper_when_the_camera_cannot_see_under_the_hand(sim, ctl):
    """A real camera loses the object under the hand (``locate`` raises a named error, as
    ``PerceivedScene.locate`` does): the grasp is judged by the fingers' opening instead."""
    from embodied.core.errors import UnknownObjectError

    def blind(name):
        pos, yaw = sim.pose(name)
        hand = sim.arm.state().ee_pose.position
        if np.hypot(*(hand[:2] - pos[:2])) < 0.045 and hand[2] > pos[2] - 0.01:
            raise UnknownObjectError(f"the camera does not see {name!r}: the hand is over it")
        return pos, yaw

    blind_ctl = SkillController(sim.arm, blind, ctl.objects.values(), ctl.containers.values())
    result = run(sim, blind_ctl, "put blue triangle on red cube")
    assert result.success and result.attempts == 1, result.reason
    assert sim.world_state().is_on("blue triangle", "red cube")
    result = run(sim, blind_ctl, "put green cylinder in tray")
    assert result.success, result.reason
    assert sim.world_state().is_in("green cylinder", "tray")


def test_a_grasp_of_nothing_is_retried_then_reported(sim, ctl):
    """The camera says the cube is 6 cm from where it is: the fingers close on air every time."""
    def off(name):
        pos, yaw = sim.pose(name)
        return (pos + np.array([0.0, 0.06, 0.0]), yaw) if name == "red cube" else (pos, yaw)

    bad = SkillController(sim.arm, off, ctl.objects.values(), ctl.containers.values(), retries=1)
    result = run(sim, bad, "put red cube in tray")
    assert not result.success and result.attempts == 2
    assert result.reason.startswith("grasp of red cube failed: the fingers closed on nothing (attempt 1: grasp of red cube failed")
    assert np.hypot(*(sim.pose("red cube")[0][:2] - np.array(PLACES["red cube"][:2]))) < 0.01  # left where it was
