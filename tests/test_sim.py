"""The pybullet tabletop: scene building, cameras, perception, and Panda pick-and-place."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")

from embodied.core.protocols import Arm, Pose  # noqa: E402
from embodied.core.skills import grasp_yaw, top_down  # noqa: E402
from embodied.core.vocab import COLOUR_RGBA, SHAPES  # noqa: E402
from embodied.core.world import ContainerSpec, ObjectSpec, Placement, SceneSpec  # noqa: E402
from envs.sim import TabletopSim  # noqa: E402

COLOURS = ("red", "green", "blue", "yellow", "purple")


def every_shape_scene() -> SceneSpec:
    objs = [ObjectSpec(c, s) for c, s in zip(COLOURS, SHAPES)]
    xy = [(0.42, 0.12), (0.52, 0.12), (0.42, -0.12), (0.52, -0.12), (0.64, 0.0)]
    placements = {o.name: Placement(x, y, 0.3) for o, (x, y) in zip(objs, xy)}
    objs.append(ObjectSpec("orange", "cube"))
    placements["orange cube"] = Placement(0.42, 0.12, 0.0, on="red cube")
    containers = [
        ContainerSpec("tray", "grey", (0.55, 0.27), (0.09, 0.07)),
        ContainerSpec("pink bin", "pink", (0.55, -0.27), (0.055, 0.055)),
    ]
    return SceneSpec(objs, placements, containers)


@pytest.fixture(scope="module")
def sim():
    s = TabletopSim(image_size=128, depth=True, wrist_camera=True)
    yield s
    s.close()


def test_builds_every_shape_and_container_and_settles(sim):
    scene = every_shape_scene()
    sim.load(scene)
    world = sim.world_state()
    assert set(world.positions) == set(scene.object_names)
    for o in scene.objects:
        pl = scene.placements[o.name]
        p = world.positions[o.name]
        assert np.hypot(p[0] - pl.x, p[1] - pl.y) < 0.005, o.name  # settled where placed
        if pl.on is None:
            assert world.on_table(o.name), o.name
    assert world.is_on("orange cube", "red cube")
    assert world.held is None and world.off_table() == []


def test_cameras_render_shapes_dtypes_and_see_the_scene(sim):
    sim.load(every_shape_scene())
    f = sim.frames()
    assert f["front"].shape == (128, 128, 3) and f["front"].dtype == np.uint8
    assert f["wrist"].shape == (128, 128, 3) and f["wrist"].dtype == np.uint8
    assert f["front_depth"].shape == (128, 128) and f["front_depth"].dtype == np.float32
    d = f["front_depth"]
    assert 0.7 < float(np.median(d)) < 1.2  # the table is ~0.95 m below the camera
    # perception: every object and container is visible with the arm parked
    assert set(f["detections"]) == set(sim.scene.object_names) | {"tray", "pink bin"}
    # colours are rendered: some pixel close to each object's colour
    img = f["front"].astype(np.float32)
    for colour in COLOURS:
        rgb = np.array(COLOUR_RGBA[colour][:3]) * 255
        assert np.min(np.linalg.norm(img - rgb, axis=-1)) < 60, colour


def test_render_only_when_asked_and_cached_per_state(sim):
    sim.load(every_shape_scene())
    a = sim.frames()
    assert sim.frames() is a  # same sim state: no second render
    sim.step(1)
    assert sim.frames() is not a


def test_same_scene_gives_identical_frames(sim):
    sim.load(every_shape_scene())
    a = sim.frames()["front"].copy()
    sim.load(SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.5, 0.0)}))
    sim.load(every_shape_scene())
    assert np.array_equal(a, sim.frames()["front"])


def test_detections_follow_occlusion(sim):
    scene = SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.5, 0.0)})
    sim.load(scene)
    assert sim.detections() == ["red cube"]
    sim.arm.move_to(Pose(np.array([0.5, 0.0, 0.12]), top_down(0.0)))  # the hand covers it
    assert "red cube" not in sim.detections()


def test_panda_implements_arm_and_reaches(sim):
    sim.load(SceneSpec([], {}))
    assert isinstance(sim.arm, Arm)
    target = np.array([0.5, -0.1, 0.15])
    assert sim.arm.move_to(Pose(target, top_down(0.4)))
    st = sim.arm.state()
    assert st.joint_positions.shape == (7,)
    assert np.linalg.norm(st.ee_pose.position - target) < 0.005
    assert sim.arm.close_gripper() is False  # nothing between the fingers
    assert st.gripper_width > 0.07 and sim.arm.state().gripper_width < 0.01


@pytest.mark.parametrize("assist", [True, False], ids=["grasp_assist", "friction_only"])
@pytest.mark.parametrize("shape", SHAPES)
def test_pick_and_place_each_shape(sim, shape, assist):
    name = f"blue {shape}"
    sim.grasp_assist = assist
    sim.load(SceneSpec([ObjectSpec("blue", shape)], {name: Placement(0.45, 0.1, 0.4)}))
    sim.grasp_assist = False
    assert (sim.arm._constraint is None) and sim.arm.grasp_assist == assist
    arm = sim.arm
    pos, yaw = sim.pose(name)
    g = grasp_yaw(shape, yaw)
    assert arm.move_to(Pose(np.array([pos[0], pos[1], 0.12]), top_down(g)))
    assert arm.move_to(Pose(np.array([pos[0], pos[1], 0.018]), top_down(g)))
    assert arm.close_gripper() and arm.held == name
    assert (arm._constraint is not None) == assist
    assert arm.move_to(Pose(np.array([0.55, -0.15, 0.15]), top_down(g)))
    assert sim.pose(name)[0][2] > 0.1 and arm.held == name  # it came along
    assert arm.move_to(Pose(np.array([0.55, -0.15, 0.024]), top_down(g)))
    assert arm.open_gripper() and arm.held is None
    arm.move_to(Pose(np.array([0.55, -0.15, 0.15]), top_down(g)))
    sim.settle()
    world = sim.world_state()
    p = world.positions[name]
    assert np.hypot(p[0] - 0.55, p[1] + 0.15) < 0.012 and world.on_table(name)


@pytest.mark.parametrize("location", ["top left", "top right", "bottom left", "bottom right"])
def test_board_locations_are_where_the_image_shows_them(sim, location):
    from embodied.core.vocab import LOCATIONS

    x, y = LOCATIONS[location]
    sim.load(SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(x, y)}))
    img = sim.frames()["front"].astype(np.int32)
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    rows, cols = np.nonzero(red)
    assert len(rows) > 10
    vertical, horizontal = location.split()
    assert (rows.mean() < 64) == (vertical == "top")
    assert (cols.mean() < 64) == (horizontal == "left")


def test_settle_wakes_an_object_teleported_while_asleep(sim):
    sim.load(SceneSpec([ObjectSpec("red", "cube")], {"red cube": Placement(0.5, 0.0)}))
    sim.step(1200)  # long enough for Bullet to put the resting cube to sleep
    sim.client.resetBasePositionAndOrientation(sim.bodies["red cube"], [0.5, 0.1, 0.08], [0, 0, 0, 1])
    sim.settle()
    assert sim.world_state().on_table("red cube")
