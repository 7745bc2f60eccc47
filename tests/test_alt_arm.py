"""The skill controller through an independent Panda it was not tuned on (``envs.alt_arm``).

``VelocityPanda`` is a Cartesian velocity controller at 1 kHz (no IK, no position control),
its objects weigh 1-2 kg with friction 0.5 against finger pads of 1.0, and its camera
(``AltWorld.locate``) can be blind under the hand and noisy. The placement tests fail on the
controller before the robustness work (it asked the camera for the object under the hand
after the lift and stopped with the camera's error).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")

from embodied.core.errors import UnknownObjectError  # noqa: E402
from embodied.core.protocols import Arm, Pose  # noqa: E402
from embodied.core.skills import top_down  # noqa: E402
from embodied.core.world import ObjectSpec, Placement, SceneSpec  # noqa: E402
from envs.alt_arm import AltWorld, placement_probe, probe_scene  # noqa: E402

CAMERA = {"occlude": True, "locate_noise": (0.002, 0.02)}  # blind under the hand, 2 mm / 0.02 rad noise


@pytest.fixture(scope="module")
def world():
    w = AltWorld(seed=0)
    yield w
    w.close()


def test_velocity_panda_is_an_arm_that_reaches_and_stops_when_blocked(world):
    world.load(SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.5, 0.1)}))
    arm = world.arm
    assert isinstance(arm, Arm)
    target = np.array([0.45, -0.1, 0.2])
    assert arm.move_to(Pose(target, top_down(0.5)))
    assert np.linalg.norm(arm.state().ee_pose.position - target) < 0.004
    assert arm.close_gripper() is False and arm.state().gripper_width < 0.004  # nothing between the fingers
    assert arm.open_gripper() and arm.state().gripper_width > 0.07
    # straight down into the table: held back by it, it gives up short of the target
    assert arm.move_to(Pose(np.array([0.45, -0.1, -0.03]), top_down(0.5)), max_seconds=2.0) is False
    assert arm.state().ee_pose.position[2] > 0.0


def test_the_objects_are_heavy_and_the_camera_is_blind_under_the_hand(world):
    w = AltWorld(seed=3, occlude=True)
    try:
        w.load(SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.5, 0.1)}))
        assert 1.0 <= w.masses["red cube"] <= 2.0
        assert w.client.getDynamicsInfo(w.bodies["red cube"], -1)[1] == pytest.approx(0.5)
        w.locate("red cube")  # seen with the arm away
        w.arm.move_to(Pose(np.array([0.5, 0.1, 0.12]), top_down(0.0)))
        with pytest.raises(UnknownObjectError):
            w.locate("red cube")
    finally:
        w.close()


def test_probe_scenes_are_seeded():
    assert probe_scene(3, seed=0).to_dict() == probe_scene(3, seed=0).to_dict()
    assert probe_scene(3, seed=0).to_dict() != probe_scene(4, seed=0).to_dict()


def test_heavy_placements_with_a_camera_blind_under_the_hand():
    """Fast version of the 12-placement probe: 3 heavy ``put X on Y`` through a blind, noisy camera."""
    rows = placement_probe(3, seed=0, world_kwargs=CAMERA)
    assert all(r["success"] and r["on"] for r in rows), rows
    assert all(r["offset_cm"] < 1.0 for r in rows), rows


@pytest.mark.slow
@pytest.mark.parametrize("world_kwargs", [{}, CAMERA, {"coupled_fingers": False}],
                         ids=["perfect_camera", "blind_noisy_camera", "independent_fingers"])
def test_twelve_heavy_placements_stay_on(world_kwargs):
    """The probe of ``benchmarks/placement_probe.py`` (seed 0). Before the robustness work: 0, 12
    (the camera's error) and 2 (7.5 and 4.0 cm off) of the 12 did not end on the lower object."""
    rows = placement_probe(12, seed=0, world_kwargs=world_kwargs)
    slid = [r for r in rows if not r["on"]]
    assert not slid, slid
    assert all(r["success"] for r in rows), rows
