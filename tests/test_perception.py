"""Perception from pixels (``embodied.perception``) on real renders of the simulator: names,
poses and the scene graph against the simulator's ground truth, and the bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("pybullet")
cv2 = pytest.importorskip("cv2")

from embodied.core.camera import Frame  # noqa: E402
from embodied.core.errors import CalibrationError, PerceptionError  # noqa: E402
from embodied.core.scene import Perception  # noqa: E402
from embodied.core.vocab import COLOURS, SHAPES  # noqa: E402
from embodied.core.world import BIN_HALF_EXTENTS, TRAY_HALF_EXTENTS, ContainerSpec, ObjectSpec, Placement, SceneSpec  # noqa: E402
from embodied.perception.draw import draw  # noqa: E402
from embodied.perception.shapes import footprint, yaw_error  # noqa: E402
from embodied.perception.tabletop import TabletopPerception  # noqa: E402
from envs.cameras import FRONT, SIDE, SimCamera, calibration  # noqa: E402
from envs.sim import TabletopSim  # noqa: E402
from envs.variation import RenderVariation  # noqa: E402

SPECS = {"front": FRONT, "side": SIDE}
CALS = {k: calibration(s) for k, s in SPECS.items()}


@pytest.fixture(scope="module")
def sim():
    s = TabletopSim()
    yield s
    s.close()


@pytest.fixture(scope="module")
def perception():
    return TabletopPerception()


def render(sim, specs=SPECS, depth=True) -> dict:
    return {k: SimCamera(sim, s, depth=depth).read() for k, s in specs.items()}


def scene_of(objects, containers=()) -> SceneSpec:
    """``objects``: (colour, shape, x, y, yaw[, on])."""
    specs, placements = [], {}
    for o in objects:
        c, s, x, y, yaw = o[:5]
        spec = ObjectSpec(c, s)
        specs.append(spec)
        placements[spec.name] = Placement(x, y, yaw, on=o[5] if len(o) > 5 else None)
    return SceneSpec(specs, placements, list(containers))


def bin_(colour, x, y):
    return ContainerSpec(f"{colour} bin", colour, (x, y), BIN_HALF_EXTENTS)


def tray(x, y):
    return ContainerSpec("tray", "grey", (x, y), TRAY_HALF_EXTENTS)


def check_named(seen, world, names=None, tol=0.005, yaw_deg=6.0):
    """Every object (or those in ``names``) is named, within ``tol`` m, yaw within ``yaw_deg``."""
    for name in names or world.positions:
        obj = seen.get(name)
        assert obj.kind == "object", f"{name}: {obj}"
        err = float(np.linalg.norm(obj.position - world.positions[name]))
        assert err < tol, f"{name} is {err * 1000:.1f} mm off: {obj.position} vs {world.positions[name]}"
        spec = world.scene.object(name)
        dyaw = math.degrees(yaw_error(footprint(spec.shape, spec.size), obj.yaw, world.yaws[name]))
        assert dyaw < yaw_deg, f"{name}: yaw {dyaw:.1f} deg off"


def test_it_is_a_perception():
    assert isinstance(TabletopPerception(), Perception)


@pytest.mark.parametrize("shift", [0, 1])
def test_every_colour_and_shape_is_named_with_pose(sim, perception, shift):
    rng = np.random.default_rng(shift)
    objects = [(c, s, 0.33 + 0.05 * i, -0.24 + 0.12 * ((j + shift) % 5) + 0.02 * (i % 2), float(rng.uniform(-3, 3)))
               for i, c in enumerate(COLOURS) for j, s in enumerate(SHAPES)]
    sim.load(scene_of(objects))
    seen = perception.perceive(render(sim), CALS)
    world = sim.world_state()
    assert len(world.positions) == 40
    check_named(seen, world)
    assert not [o for o in seen.objects if o.kind == "unknown"]
    assert all(r == "on table" for r in seen.relations.values()) and len(seen.relations) == 40
    assert all(0.0 < o.confidence <= 1.0 for o in seen.objects)


def test_empty_table(sim, perception):
    sim.load(SceneSpec([], {}, []))
    seen = perception.perceive(render(sim), CALS)
    assert seen.objects == [] and seen.relations == {}


def test_containers_and_a_red_cube_in_the_red_bin(sim, perception):
    scene = scene_of([("red", "cube", 0.50, 0.27, 0.4), ("pink", "hexagon", 0.46, -0.27, 0.2), ("blue", "cylinder", 0.55, -0.05, 0.0),
                      ("cyan", "pentagon", 0.50, -0.30, 1.0)],
                     [bin_("red", 0.50, 0.27), tray(0.50, -0.27)])
    sim.load(scene)
    seen = perception.perceive(render(sim), CALS)
    world = sim.world_state()
    check_named(seen, world)
    for c in scene.containers:
        got = seen.get(c.name)
        assert got.kind == "container" and np.hypot(*(got.position[:2] - np.asarray(c.center))) < 0.005
        assert np.allclose(got.half_extents, c.half_extents)
    assert seen.relations == {n: world.relation(n) for n in world.positions}
    assert seen.relations["red cube"] == "in red bin" and seen.relations["cyan pentagon"] == "in tray"
    assert {c.name for c in seen.container_specs()} == {"red bin", "tray"}


def test_stacks_are_found_through_the_side_camera(sim, perception):
    scene = scene_of([("red", "cylinder", 0.45, 0.10, 0.3), ("blue", "cube", 0.45, 0.10, 0.1, "red cylinder"),
                      ("green", "cube", 0.60, -0.10, 0.2), ("green", "triangle", 0.60, -0.10, 0.5, "green cube"),
                      ("orange", "hexagon", 0.55, 0.15, 0.0), ("yellow", "cube", 0.55, 0.15, 0.3, "orange hexagon"),
                      ("purple", "cylinder", 0.55, 0.15, 0.0, "yellow cube")])
    sim.load(scene)
    world = sim.world_state()
    assert world.relation("purple cylinder") == "on yellow cube"  # a tower of three stood
    seen = perception.perceive(render(sim), CALS)
    check_named(seen, world, tol=0.008, yaw_deg=10.0)
    assert seen.relations == {n: world.relation(n) for n in world.positions}
    # the overhead camera alone cannot see under the blue cube: what holds it up is there, unnamed
    alone = perception.perceive(render(sim, {"front": FRONT}), CALS)
    assert "red cylinder" not in alone.detections
    p = world.positions["red cylinder"]
    assert any(o.kind == "unknown" and np.linalg.norm(o.position - p) < 0.02 for o in alone.objects)
    assert alone.relations["blue cube"].startswith("on unknown")


def test_touching_objects_of_one_colour_and_of_two(sim, perception):
    scene = scene_of([("red", "cube", 0.50, 0.00, 0.0), ("red", "cylinder", 0.50, 0.0405, 0.0),
                      ("blue", "triangle", 0.60, -0.15, 0.0), ("green", "cube", 0.60, -0.15 + 0.0305, 0.0)])
    sim.load(scene)
    world = sim.world_state()
    seen = perception.perceive(render(sim), CALS)
    check_named(seen, world, tol=0.006, yaw_deg=8.0)


def test_object_half_out_of_view_is_reported(sim, perception):
    cal = CALS["front"]
    # where the left image border meets the top of an object standing at x = 0.5
    edge = cal.plane_points(np.array([0.0]), np.array([cal.height / 2]), 0.04)[0]
    scene = scene_of([("yellow", "cube", 0.5, float(edge[1]) - 0.005, 0.0), ("blue", "cylinder", 0.5, 0.0, 0.0)])
    sim.load(scene)
    world = sim.world_state()
    seen = perception.perceive(render(sim, {"front": FRONT}), CALS)
    p = world.positions["yellow cube"]
    near = [o for o in seen.objects if np.linalg.norm(o.position[:2] - p[:2]) < 0.015]
    assert len(near) == 1, seen.to_dict()
    assert near[0].colour == "yellow"
    check_named(seen, world, ["blue cylinder"])
    sim.load(scene_of([("yellow", "cube", 0.5, 0.2, 0.0)]))  # the same cube in full view is surer of itself
    assert near[0].confidence < perception.perceive(render(sim, {"front": FRONT}), CALS).get("yellow cube").confidence


def test_depth_holes(sim, perception):
    scene = scene_of([("red", "cube", 0.45, 0.10, 0.3), ("green", "hexagon", 0.60, -0.10, 0.2), ("purple", "pentagon", 0.55, 0.2, 0.4)])
    sim.load(scene)
    world = sim.world_state()
    frames = render(sim, {"front": FRONT})
    f = frames["front"]
    depth = f.depth.copy()
    cal = CALS["front"]
    uv = {n: cal.project(np.array([world.positions[n] + [0, 0, 0.02]]))[0][0] for n in world.positions}
    u, v = np.round(uv["red cube"]).astype(int)
    depth[v - 2: v + 12, u - 12: u + 2] = np.nan  # a hole biting a corner of the cube
    u, v = np.round(uv["green hexagon"]).astype(int)
    depth[v - 15: v + 15, u - 15: u + 15] = 0.0  # no reading at all over the whole hexagon
    depth[:40, :40] = np.nan  # and a patch of bare table
    holed = {"front": Frame("front", f.rgb, f.timestamp, f.seq, depth)}
    seen = perception.perceive(holed, CALS)
    check_named(seen, world, ["red cube", "purple pentagon"], tol=0.005)
    hexagon = seen.get("green hexagon")
    assert np.linalg.norm(hexagon.position[:2] - world.positions["green hexagon"][:2]) < 0.01
    assert hexagon.confidence <= seen.get("purple pentagon").confidence


def test_without_depth_objects_on_the_table_are_found_by_ray_and_plane(sim, perception):
    scene = scene_of([("red", "cube", 0.45, 0.10, 0.3), ("green", "hexagon", 0.60, -0.10, 0.2), ("cyan", "triangle", 0.40, -0.2, 0.4),
                      ("orange", "cylinder", 0.65, 0.15, 0.0)])
    sim.load(scene)
    world = sim.world_state()
    no_depth = render(sim, {"front": FRONT}, depth=False)
    assert no_depth["front"].depth is None
    seen = perception.perceive(no_depth, CALS)
    check_named(seen, world, ["red cube", "green hexagon", "cyan triangle"], tol=0.005, yaw_deg=10.0)
    # the cylinder's smooth-shaded top and polygonal side leave its outline near a square's: named or not, it is there
    p = world.positions["orange cylinder"]
    assert any(o.colour == "orange" and np.linalg.norm(o.position - p) < 0.005 for o in seen.objects)
    assert set(seen.relations.values()) == {"on table"}
    assert max(o.confidence for o in seen.objects) < 0.75  # heights assumed, not measured
    off = TabletopPerception(use_depth=False).perceive(render(sim, {"front": FRONT}), CALS)
    assert off.detections == seen.detections


def test_the_gripper_holds_what_is_between_its_fingers(sim, perception):
    from embodied.commands.perception_scenes import lift_one

    sim.load(scene_of([("orange", "cube", 0.55, 0.05, 0.3), ("blue", "cylinder", 0.45, -0.15, 0.0)]))
    rng = np.random.default_rng(1)
    name = None
    while name != "orange cube":
        sim.load(scene_of([("orange", "cube", 0.55, 0.05, 0.3), ("blue", "cylinder", 0.45, -0.15, 0.0)]))
        name = lift_one(sim, rng)
    world = sim.world_state()
    assert world.held == "orange cube"
    st = sim.arm.state()
    gripper = (np.asarray(st.ee_pose.position), float(st.gripper_width))
    seen = perception.perceive(render(sim), CALS, gripper=gripper)
    assert seen.relations.get("orange cube") == "in gripper"
    assert np.linalg.norm(seen.get("orange cube").position - world.positions["orange cube"]) < 0.01
    assert seen.relations["blue cylinder"] == "on table"
    # the same frames without the gripper's state: nothing is "in gripper"
    assert "in gripper" not in perception.perceive(render(sim), CALS).relations.values()


def test_an_object_of_no_vocabulary_colour_is_unknown_with_its_pose(sim, perception):
    sim.load(scene_of([("red", "cube", 0.45, 0.10, 0.3), ("blue", "hexagon", 0.60, -0.10, 0.2)]))
    sim.client.changeVisualShape(sim.bodies["blue hexagon"], -1, rgbaColor=[0.95, 0.95, 0.95, 1.0])  # white
    world = sim.world_state()
    seen = perception.perceive(render(sim), CALS)
    check_named(seen, world, ["red cube"])
    unknown = [o for o in seen.objects if o.kind == "unknown"]
    assert len(unknown) == 1 and unknown[0].name.startswith("unknown")
    assert np.linalg.norm(unknown[0].position[:2] - world.positions["blue hexagon"][:2]) < 0.01
    assert "blue hexagon" not in seen.detections and "unknown 1" not in seen.relations


def test_bad_inputs_raise_named_errors(sim, perception):
    sim.load(SceneSpec([], {}, []))
    frames = render(sim, {"front": FRONT})
    with pytest.raises(CalibrationError, match="320x320"):
        perception.perceive(frames, {"front": calibration(FRONT.resized(640, 480))})
    with pytest.raises(CalibrationError, match="no calibration"):
        perception.perceive(frames, {"side": CALS["side"]})
    f = frames["front"]
    with pytest.raises(PerceptionError, match="depth"):
        perception.perceive({"front": Frame("front", f.rgb, 0.0, 0, f.depth[:100])}, CALS)
    with pytest.raises(PerceptionError, match="uint8"):
        perception.perceive({"front": Frame("front", f.rgb.astype(np.float32), 0.0, 0, f.depth)}, CALS)
    with pytest.raises(PerceptionError, match="no frames"):
        perception.perceive({}, CALS)


def test_randomised_rendering_is_recorded_and_keeps_the_names(sim, perception):
    scene = scene_of([("pink", "pentagon", 0.45, 0.10, 0.3), ("red", "cube", 0.60, -0.10, 0.2), ("cyan", "hexagon", 0.55, 0.2, 0.4)],
                     [bin_("red", 0.50, -0.27)])
    sim.load(scene)
    world = sim.world_state()
    var = RenderVariation.sample(7, scene, SPECS)
    again = RenderVariation.from_dict(json.loads(json.dumps(var.to_dict())))
    assert again.to_dict() == var.to_dict() == RenderVariation.sample(7, scene, SPECS).to_dict()
    assert var.to_dict() != RenderVariation.sample(8, scene, SPECS).to_dict()
    plain = render(sim)["front"].rgb
    var.apply(sim)
    frames = {k: c.read() for k, c in var.cameras(sim, SPECS).items()}
    var.restore(sim)
    assert np.abs(frames["front"].rgb.astype(int) - plain).mean() > 2  # it did change the picture
    assert np.array_equal(render(sim)["front"].rgb, plain)  # and restore() undid it
    seen = perception.perceive(frames, CALS)  # the nominal calibration, as a real robot's
    check_named(seen, world, tol=0.02, yaw_deg=10.0)
    assert seen.relations == {n: world.relation(n) for n in world.positions}


def test_draw_marks_what_was_seen(sim, perception):
    sim.load(scene_of([("red", "cube", 0.45, 0.10, 0.3), ("blue", "hexagon", 0.60, -0.10, 0.2)], [tray(0.5, -0.27)]))
    frames = render(sim)
    seen = perception.perceive(frames, CALS)
    for name, frame in frames.items():
        img = draw(frame, seen, CALS[name])
        s = math.ceil(480 / frame.rgb.shape[1])
        assert img.dtype == np.uint8 and img.shape == (frame.rgb.shape[0] * s, frame.rgb.shape[1] * s, 3)
        big = cv2.resize(frame.rgb, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        assert (np.abs(img.astype(int) - big).sum(-1) > 60).mean() > 0.005  # outlines and text were drawn
    with pytest.raises(CalibrationError):
        draw(frames["front"], seen, CALS["side"])
