"""The task suite: families, sampling, levels, exact predicates and oracle plans (no physics)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.core import vocab
from embodied.core.errors import ConfigError
from embodied.core.plan import DONE, parse_step, validate_step
from embodied.core.world import OBJECT_HEIGHT, ContainerSpec, ObjectSpec, Placement, SceneSpec, WorldState
from envs import levels
from envs.tasks import TASKS, Episode, get_task
from envs.tasks.base import renders
from envs.tasks.common import Sketch, make_container, nominal_world

FAMILIES = (
    "put_in_container", "stack", "tower", "sort_by_colour", "move_to_location",
    "place_relative", "group_by_attribute", "unstack", "line_up", "clean_up_except",
)
LEVEL_SPLITS = [(lv, sp) for lv in levels.LEVELS for sp in levels.SPLITS]
H = OBJECT_HEIGHT / 2  # centre height of an object standing on the table


# --- hand-built scenes -------------------------------------------------------------------
def hand_scene(objects: list[str], containers: dict[str, tuple[float, float]] | None = None) -> SceneSpec:
    specs = [ObjectSpec(*o.split()) for o in objects]
    return SceneSpec(specs, {o: Placement(0.5, 0.0) for o in objects}, [make_container(n, c) for n, c in (containers or {}).items()])


def hand_world(scene: SceneSpec, poses: dict[str, tuple[float, float, float]], held: str | None = None) -> WorldState:
    return WorldState(scene, {n: np.array(p, dtype=float) for n, p in poses.items()}, {}, held)


def ep(family: str, scene: SceneSpec, goal: dict) -> Episode:
    return Episode(family, "L1", "test", 0, scene, "hand-made", goal)


def apply_plan(world: WorldState, plan) -> WorldState:
    """The plan's nominal effects (what the oracle assumes each step does)."""
    sk = Sketch(world)
    for step in plan:
        if not step.is_done:
            sk.emit(step)
    return sk.w


# --- the suite ---------------------------------------------------------------------------
def test_families_and_unknown_family():
    assert set(FAMILIES) <= set(TASKS)
    assert get_task("tower").family == "tower"
    with pytest.raises(ConfigError, match="put_in_container"):
        get_task("juggle")
    assert {f for f, t in TASKS.items() if t.scene_dependent} >= {"sort_by_colour", "group_by_attribute", "clean_up_except", "unstack"}


@pytest.mark.parametrize("family", FAMILIES)
def test_phrasings_are_several_and_distinct(family):
    t = get_task(family)
    assert len(t.phrasings) >= 3 and len(t.heldout_phrasings) >= 2 and t.l4_variant
    assert not set(t.phrasings) & set(t.heldout_templates())


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_is_deterministic(family):
    t = get_task(family)
    for level, split in LEVEL_SPLITS:
        a, b = t.sample(7, level, split), t.sample(7, level, split)
        assert a.to_dict() == b.to_dict()
    assert t.sample(7).to_dict() != t.sample(8).to_dict()
    # train and test placements come from different streams
    assert t.sample(7, "L1", "train").scene.to_dict() != t.sample(7, "L1", "test").scene.to_dict()


def test_bad_level_or_split_is_named_error():
    with pytest.raises(ConfigError, match="L1"):
        get_task("stack").sample(0, "L9")
    with pytest.raises(ConfigError, match="train"):
        get_task("stack").sample(0, "L1", "val")


@pytest.mark.parametrize("family", FAMILIES)
def test_scenes_are_valid_and_oracle_plans_reach_the_goal(family):
    t = get_task(family)
    for seed in range(6):
        for level, split in LEVEL_SPLITS:
            e = t.sample(seed, level, split)
            scene = e.scene
            names = scene.object_names
            assert 3 <= len(names) <= 7 and len(set(names)) == len(names)
            for o in scene.objects:
                assert o.colour in vocab.COLOURS and o.shape in vocab.SHAPES
            world = nominal_world(scene)
            assert not world.off_table()
            for n in names:  # reachable, and spaced out (stacks share a footprint)
                p = scene.placements[n]
                assert 0.35 <= p.x <= 0.70 and -0.30 <= p.y <= 0.30
                for m in names:
                    q = scene.placements[m]
                    if m != n and p.on is None and q.on is None:
                        assert np.hypot(p.x - q.x, p.y - q.y) >= 0.085
                for c in scene.containers:
                    assert not c.contains_xy(p.x, p.y, margin=0.04)
            assert not t.success(e, world), "a scene must not start solved"
            plan = t.oracle_plan(e, world)
            assert plan[-1] == DONE and all(not s.is_done for s in plan[:-1])
            for s in plan:
                assert parse_step(s.text) == s
                validate_step(s, names, scene.container_names)
            assert e.max_steps >= len(plan) + 3
            assert t.success(e, apply_plan(world, plan)), (family, seed, level, split, [s.text for s in plan])


def _objects(e: Episode):
    return [(o.colour, o.shape) for o in e.scene.objects]


@pytest.mark.parametrize("family", FAMILIES)
def test_level_partitions(family):
    t = get_task(family)
    for seed in range(10):
        for level in levels.LEVELS:
            tr = t.sample(seed, level, "train")
            assert all(levels.is_training_object(*o) for o in _objects(tr)), (level, seed)
            assert not get_task(family).is_heldout_phrasing(tr.instruction)
            assert any(renders(p, tr.instruction) for p in t.phrasings)
            te = t.sample(seed, level, "test")
            objs = _objects(te)
            if level == "L1":
                assert all(levels.is_training_object(*o) for o in objs)
                assert not get_task(family).is_heldout_phrasing(te.instruction)
            elif level == "L2":
                assert any(levels.is_heldout_combo(*o) for o in objs)
                assert not any(levels.is_unseen(*o) for o in objs)
                assert get_task(family).is_heldout_phrasing(te.instruction)
            elif level == "L3":
                assert any(levels.is_unseen(*o) for o in objs)
            else:
                assert all(levels.is_training_object(*o) for o in objs)
    # instructions that name their goal objects name a held-out / unseen one at L2 / L3
    if not t.scene_dependent:
        for seed in range(10):
            te = t.sample(seed, "L2", "test")
            assert any(vocab.object_name(*o) in te.instruction for o in levels.HELDOUT_COMBOS)
            te = t.sample(seed, "L3", "test")
            assert any(vocab.object_name(*o) in te.instruction for o in levels.UNSEEN_COMBOS)


def test_level_vocabularies_are_disjoint():
    assert not set(levels.TRAIN_COMBOS) & levels.HELDOUT_COMBOS
    assert not set(levels.TRAIN_COMBOS) & set(levels.UNSEEN_COMBOS)
    assert not levels.HELDOUT_COMBOS & set(levels.UNSEEN_COMBOS)
    # every training colour and shape is still seen in training
    assert {c for c, _ in levels.TRAIN_COMBOS} == set(vocab.TRAIN_COLOURS)
    assert {s for _, s in levels.TRAIN_COMBOS} == set(vocab.TRAIN_SHAPES)
    assert levels.is_heldout_combo("red", "cylinder") and not levels.is_heldout_combo("red", "cube")
    assert levels.is_unseen("pink", "cube") and levels.is_unseen("red", "hexagon") and not levels.is_unseen("red", "cube")
    assert get_task("stack").is_heldout_phrasing("balance the {obj} on top of the {base}")
    assert get_task("stack").is_heldout_phrasing("balance the red cube on top of the blue cube")
    assert not get_task("stack").is_heldout_phrasing("stack the red cube on the blue cube")


@pytest.mark.parametrize("family", FAMILIES)
def test_l4_is_the_heldout_composition(family):
    t = get_task(family)
    for seed in range(5):
        tr, te = t.sample(seed, "L4", "train"), t.sample(seed, "L4", "test")
        g = te.goal
        if family == "tower":
            assert len(g["order"]) == 4 and len(tr.goal["order"]) == 3
        elif family == "line_up":
            assert len(g["order"]) == 4 and len(tr.goal["order"]) == 3
        elif family == "group_by_attribute":
            assert g["attribute"] == "shape" and tr.goal["attribute"] == "colour"
        elif family == "sort_by_colour":
            assert len(g["bins"]) == 3 and len(tr.goal["bins"]) == 2
        elif family == "put_in_container":
            assert len(g["objects"]) == 2 and len(tr.goal["objects"]) == 1
        elif family == "move_to_location":
            assert len(g["moves"]) == 2 and len(tr.goal["moves"]) == 1
        elif family == "place_relative":
            assert len(g["relations"]) == 2 and len(tr.goal["relations"]) == 1
        elif family == "clean_up_except":
            assert "keep_colour" in g and "keep" in tr.goal
        elif family == "unstack":
            assert any(p.on and te.scene.placements[p.on].on for p in te.scene.placements.values())
            assert not any(p.on and tr.scene.placements[p.on].on for p in tr.scene.placements.values())
        elif family == "stack":
            assert any(p.on for p in te.scene.placements.values())
            assert not any(p.on for p in tr.scene.placements.values())


# --- exact predicates on hand-placed worlds ----------------------------------------------
def test_predicate_put_in_container():
    s = hand_scene(["red cube", "blue cube"], {"tray": (0.5, 0.27), "green bin": (0.5, -0.27)})
    t, e = get_task("put_in_container"), ep("put_in_container", s, {"objects": ["red cube"], "container": "tray"})
    assert t.success(e, hand_world(s, {"red cube": (0.52, 0.25, H + 0.004), "blue cube": (0.5, 0, H)}))
    assert not t.success(e, hand_world(s, {"red cube": (0.5, -0.27, H + 0.004), "blue cube": (0.5, 0, H)}))  # wrong bin
    assert not t.success(e, hand_world(s, {"red cube": (0.5, 0.15, H), "blue cube": (0.5, 0, H)}))  # beside it
    assert not t.success(e, hand_world(s, {"red cube": (0.5, 0.27, 0.2), "blue cube": (0.5, 0, H)}, held="red cube"))
    assert not t.success(e, hand_world(s, {"red cube": (0.5, 0.27, H + 0.004), "blue cube": (0.5, 0.6, H)}))  # one fell off
    assert t.failure(e, hand_world(s, {"red cube": (0.5, 0.27, H), "blue cube": (0.5, 0.6, H)}))


def test_predicate_stack_and_tower():
    s = hand_scene(["red cube", "blue cube", "green cylinder"])
    st, e = get_task("stack"), ep("stack", s, {"object": "red cube", "base": "blue cube"})
    on = {"blue cube": (0.5, 0, H), "red cube": (0.505, 0.005, 3 * H), "green cylinder": (0.6, 0.1, H)}
    assert st.success(e, hand_world(s, on))
    assert not st.success(e, hand_world(s, on | {"red cube": (0.5, 0.04, 3 * H)}))  # hanging off
    assert not st.success(e, hand_world(s, on | {"red cube": (0.5, 0.0, 3 * H + 0.03)}))  # floating
    assert not st.success(e, hand_world(s, on | {"red cube": (0.5, 0.1, H)}))
    tw = get_task("tower")
    e = ep("tower", s, {"order": ["green cylinder", "blue cube", "red cube"]})
    good = {"green cylinder": (0.5, 0, H), "blue cube": (0.5, 0, 3 * H), "red cube": (0.5, 0, 5 * H)}
    assert tw.success(e, hand_world(s, good))
    swapped = {"green cylinder": (0.5, 0, H), "red cube": (0.5, 0, 3 * H), "blue cube": (0.5, 0, 5 * H)}
    assert not tw.success(e, hand_world(s, swapped))
    assert not tw.success(e, hand_world(s, good | {"red cube": (0.6, 0, H)}))


def test_predicate_unstack():
    s = hand_scene(["red cube", "blue cube", "green cylinder"])
    t, e = get_task("unstack"), ep("unstack", s, {})
    flat = {"red cube": (0.4, 0, H), "blue cube": (0.5, 0, H), "green cylinder": (0.6, 0, H)}
    assert t.success(e, hand_world(s, flat))
    assert not t.success(e, hand_world(s, flat | {"red cube": (0.5, 0, 3 * H)}))


def test_predicate_sort_group_cleanup():
    s = hand_scene(["red cube", "red triangle", "blue cube", "green cylinder"], {"red bin": (0.45, 0.27), "blue bin": (0.45, -0.27)})
    t, e = get_task("sort_by_colour"), ep("sort_by_colour", s, {"bins": ["red bin", "blue bin"]})
    z = H + 0.004
    good = {"red cube": (0.43, 0.25, z), "red triangle": (0.47, 0.29, z), "blue cube": (0.45, -0.27, z), "green cylinder": (0.6, 0, H)}
    assert t.success(e, hand_world(s, good))
    assert not t.success(e, hand_world(s, good | {"green cylinder": (0.45, -0.25, z)}))  # no green bin: must stay out
    assert not t.success(e, hand_world(s, good | {"red triangle": (0.45, -0.25, z)}))  # wrong bin

    s2 = hand_scene(["red cube", "red triangle", "blue cube"], {"tray": (0.5, 0.27)})
    g = get_task("group_by_attribute")
    e = ep("group_by_attribute", s2, {"attribute": "colour", "value": "red", "container": "tray"})
    good = {"red cube": (0.45, 0.27, z), "red triangle": (0.55, 0.27, z), "blue cube": (0.5, 0, H)}
    assert g.success(e, hand_world(s2, good))
    assert not g.success(e, hand_world(s2, good | {"blue cube": (0.5, 0.25, z)}))
    assert not g.success(e, hand_world(s2, good | {"red triangle": (0.5, 0.1, H)}))
    e = ep("group_by_attribute", s2, {"attribute": "shape", "value": "cube", "container": "tray"})
    assert g.success(e, hand_world(s2, {"red cube": (0.45, 0.27, z), "blue cube": (0.55, 0.27, z), "red triangle": (0.5, 0, H)}))
    assert not g.success(e, hand_world(s2, good))

    c = get_task("clean_up_except")
    e = ep("clean_up_except", s2, {"container": "tray", "keep": ["blue cube"]})
    assert c.success(e, hand_world(s2, good))
    assert not c.success(e, hand_world(s2, good | {"blue cube": (0.5, 0.25, z)}))
    assert not c.success(e, hand_world(s2, good | {"red cube": (0.4, 0.0, H)}))
    e = ep("clean_up_except", s2, {"container": "tray", "keep_colour": "red"})
    assert c.success(e, hand_world(s2, {"red cube": (0.4, 0, H), "red triangle": (0.6, 0, H), "blue cube": (0.5, 0.27, z)}))
    assert not c.success(e, hand_world(s2, good))


def test_predicate_location_relative_line():
    s = hand_scene(["red cube", "blue cube", "green cylinder", "yellow cube"])
    rest = {"green cylinder": (0.45, -0.1, H), "yellow cube": (0.6, 0.1, H)}
    t = get_task("move_to_location")
    e = ep("move_to_location", s, {"moves": [["red cube", "top left"]]})
    x, y = vocab.LOCATIONS["top left"]
    assert t.success(e, hand_world(s, rest | {"red cube": (x + 0.02, y - 0.02, H), "blue cube": (0.5, 0, H)}))
    assert not t.success(e, hand_world(s, rest | {"red cube": (x + 0.07, y, H), "blue cube": (0.5, 0, H)}))
    assert not t.success(e, hand_world(s, rest | {"red cube": (x, y, 3 * H), "blue cube": (x, y, H)}))  # on top of another

    t = get_task("place_relative")
    e = ep("place_relative", s, {"relations": [["red cube", "left of", "blue cube"]]})
    assert t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.51, 0.09, H)}))
    assert not t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.51, -0.09, H)}))  # right of
    assert not t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.6, 0.09, H)}))  # diagonal
    assert not t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.5, 0.0, 3 * H)}))  # on it
    e = ep("place_relative", s, {"relations": [["red cube", "behind", "blue cube"]]})
    assert t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.59, 0.0, H)}))
    assert not t.success(e, hand_world(s, rest | {"blue cube": (0.5, 0, H), "red cube": (0.41, 0.0, H)}))  # in front

    t = get_task("line_up")
    e = ep("line_up", s, {"order": ["red cube", "blue cube", "green cylinder"], "direction": "left to right"})
    row = {"red cube": (0.5, 0.1, H), "blue cube": (0.5, 0.01, H), "green cylinder": (0.51, -0.08, H), "yellow cube": (0.65, 0.2, H)}
    assert t.success(e, hand_world(s, row))
    assert not t.success(e, hand_world(s, row | {"green cylinder": (0.5, 0.19, H)}))  # out of order
    assert not t.success(e, hand_world(s, row | {"green cylinder": (0.58, -0.08, H)}))  # not in line
    e = ep("line_up", s, {"order": ["red cube", "blue cube", "green cylinder"], "direction": "right to left"})
    assert not t.success(e, hand_world(s, row))


# --- closed-loop re-planning from perturbed states ---------------------------------------
def test_replan_after_drop_and_displacement():
    t = get_task("tower")
    s = hand_scene(["red cube", "blue cube", "green cube", "yellow cylinder"])
    e = ep("tower", s, {"order": ["red cube", "blue cube", "green cube"]})
    start = {"red cube": (0.45, 0.1, H), "blue cube": (0.6, 0.1, H), "green cube": (0.6, -0.1, H), "yellow cylinder": (0.45, -0.15, H)}
    # the first step succeeded, then the second object slipped off next to the tower
    w = hand_world(s, start | {"blue cube": (0.45, 0.1, 3 * H)})
    assert [x.text for x in t.oracle_plan(e, w)] == ["put green cube on blue cube", "done"]
    w = hand_world(s, start | {"blue cube": (0.45, 0.1, 3 * H), "green cube": (0.47, 0.15, H)})
    assert [x.text for x in t.oracle_plan(e, w)][0] == "put green cube on blue cube"
    # the base was knocked onto another object: take the base down first
    w = hand_world(s, start | {"red cube": (0.45, -0.15, 3 * H)})
    plan = t.oracle_plan(e, w)
    assert plan[0].verb in ("move", "put") and plan[0].object == "red cube" and plan[0].preposition != "on"
    assert t.success(e, apply_plan(w, plan))
    # a distractor sits on the base: clear it first
    w = hand_world(s, start | {"yellow cylinder": (0.45, 0.1, 3 * H)})
    plan = t.oracle_plan(e, w)
    assert plan[0].object == "yellow cylinder" and t.success(e, apply_plan(w, plan))


def test_replan_with_object_in_hand():
    t = get_task("put_in_container")
    s = hand_scene(["red cube", "blue cube", "green cube"], {"tray": (0.5, 0.27)})
    e = ep("put_in_container", s, {"objects": ["red cube"], "container": "tray"})
    base = {"red cube": (0.45, 0.0, H), "blue cube": (0.6, 0.0, H), "green cube": (0.5, -0.15, H)}
    w = hand_world(s, base | {"red cube": (0.5, 0.1, 0.2)}, held="red cube")
    assert [x.text for x in t.oracle_plan(e, w)] == ["put red cube in tray", "done"]
    w = hand_world(s, base | {"blue cube": (0.5, 0.1, 0.2)}, held="blue cube")  # holding the wrong one
    plan = t.oracle_plan(e, w)
    assert plan[0].object == "blue cube" and plan[1].text == "put red cube in tray"
    assert t.success(e, apply_plan(w, plan))


def test_replan_cleanup_and_stack():
    t = get_task("clean_up_except")
    s = hand_scene(["red cube", "blue cube", "green cube"], {"tray": (0.5, 0.27)})
    e = ep("clean_up_except", s, {"container": "tray", "keep": ["green cube"]})
    z = H + 0.004
    w = hand_world(s, {"red cube": (0.45, 0.27, z), "blue cube": (0.6, 0.0, H), "green cube": (0.55, 0.27, z)})
    plan = t.oracle_plan(e, w)  # the kept object fell in the tray: take it out, then finish
    assert plan[0].object == "green cube" and plan[0].preposition != "in"
    assert [x.text for x in plan[1:]] == ["put blue cube in tray", "done"]
    assert t.success(e, apply_plan(w, plan))

    t = get_task("stack")
    s = hand_scene(["red cube", "blue cube", "green cube"])
    e = ep("stack", s, {"object": "red cube", "base": "blue cube"})
    w = hand_world(s, {"red cube": (0.45, 0.1, H), "blue cube": (0.6, 0.0, H), "green cube": (0.6, 0.0, 3 * H)})
    plan = t.oracle_plan(e, w)
    assert plan[0].object == "green cube" and plan[1].text == "put red cube on blue cube"
    assert t.oracle_plan(e, apply_plan(w, plan)) == [DONE]


@pytest.mark.parametrize("family", FAMILIES)
def test_replan_from_random_perturbations(family):
    """Run part of the plan, knock one object somewhere else: the new plan still reaches the goal."""
    t = get_task(family)
    rng = np.random.default_rng(0)
    for seed in range(12):
        e = t.sample(seed, ("L1", "L4")[seed % 2], "test")
        world = nominal_world(e.scene)
        plan = t.oracle_plan(e, world)
        k = int(rng.integers(len(plan)))
        w = apply_plan(world, plan[:k])
        name = e.scene.object_names[int(rng.integers(len(e.scene.objects)))]
        if not Sketch(w).above(name):  # move it to a random spot (on the table or on another object)
            others = [o for o in w.positions if o != name and Sketch(w).above(o) == []]
            if rng.random() < 0.3 and others:
                o = others[int(rng.integers(len(others)))]
                w.positions[name] = w.positions[o] + np.array([0.0, 0.0, OBJECT_HEIGHT])
            else:
                w.positions[name] = np.array([rng.uniform(0.38, 0.67), rng.uniform(-0.27, 0.27), H])
        replan = t.oracle_plan(e, w)
        for s in replan:
            validate_step(s, e.scene.object_names, e.scene.container_names)
        assert t.success(e, apply_plan(w, replan)), (family, seed, [s.text for s in replan])


# --- records --------------------------------------------------------------------------------
def test_episode_and_scene_round_trip_through_json():
    for family in FAMILIES:
        e = get_task(family).sample(3, "L3", "test")
        d = json.loads(json.dumps(e.to_dict()))
        assert Episode.from_dict(d).to_dict() == e.to_dict()
    with pytest.raises(ConfigError):
        SceneSpec.from_dict({"objects": []})
    with pytest.raises(ConfigError):
        ContainerSpec.from_dict({"name": "tray"})
