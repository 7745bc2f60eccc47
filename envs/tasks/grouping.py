"""Families whose plan depends on what is on the table: sort by colour, group by an
attribute, clean up everything but some objects."""

from __future__ import annotations

from embodied.core import vocab
from embodied.core.vocab import object_name
from embodied.core.world import WorldState
from envs.levels import Content
from envs.tasks.base import Episode
from envs.tasks.common import (
    Resample,
    Sketch,
    SketchTask,
    build_scene,
    draw,
    draw_many,
    key_pool,
    layout_containers,
    sample_points,
)


def _names(objs):
    return [object_name(*o) for o in objs]


def _colour(world: WorldState, name: str) -> str:
    return world.scene.object(name).colour


class SortByColour(SketchTask):
    family = "sort_by_colour"
    scene_dependent = True
    phrasings = (
        "sort the objects into the bins of matching colour",
        "put each object in the bin of its colour",
        "sort the objects by colour",
        "put every object into the bin that matches its colour",
    )
    heldout_phrasings = ("tidy the objects into same-coloured bins", "match each object to the bin with its colour")
    l4_variant = "three colours into three bins (training sorts two)"

    def draw_scene(self, rng, c: Content):
        n_colours = 3 if c.composition == "heldout" else 2
        key = draw(rng, key_pool(c), set())
        colours = [key[0]]
        objs = [key]
        for _ in range(n_colours - 1):
            colours.append(draw(rng, c.pool, set(), lambda col, s: col not in colours)[0])
        for i, col in enumerate(colours):
            want = int(rng.integers(1, 3)) - (1 if i == 0 else 0)
            objs += draw_many(rng, want, c.pool, _names(objs), lambda cc, s, col=col: cc == col)
        if not any(o[0] == col for col in colours[1:] for o in objs):
            raise Resample
        if len(objs) < 3 or (len(objs) < 6 and rng.random() < 0.5):  # a distractor with no bin of its colour
            objs += [draw(rng, c.pool, _names(objs), lambda cc, s: cc not in colours)]
        if any(sum(o[0] == col for o in objs) == 0 for col in colours):
            raise Resample
        names = [vocab.bin_name(col) for col in colours]
        containers = layout_containers(rng, names)
        order = [objs[i] for i in rng.permutation(len(objs))]
        scene = build_scene(rng, order, sample_points(rng, len(order), containers), containers)
        return scene, {"bins": names}, {}

    @staticmethod
    def _bin_for(world: WorldState, name: str) -> str | None:
        b = vocab.bin_name(_colour(world, name))
        return b if b in world.scene.container_names else None

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        for o in sk.w.scene.object_names:
            b = self._bin_for(sk.w, o)
            if b is not None and not sk.w.is_in(o, b):
                sk.clear(o)
                sk.put(o, "in", b)
            elif b is None and sk.w.container_of(o) is not None:
                sk.clear(o)
                sk.park(o)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        for o in world.scene.object_names:
            b = self._bin_for(world, o)
            if (b is not None and not world.is_in(o, b)) or (b is None and world.container_of(o) is not None):
                return False
        return True


class GroupByAttribute(SketchTask):
    family = "group_by_attribute"
    scene_dependent = True
    phrasings = (
        "put all the {value} things in the {container}",
        "put every {value} object in the {container}",
        "collect the {value} objects in the {container}",
        "gather everything {value} into the {container}",
    )
    heldout_phrasings = ("find each {value} item and drop it in the {container}", "all {value} objects go in the {container}")
    l4_phrasings = ("gather up every {value} and put it in the {container}", "collect every {value} in the {container}")
    l4_variant = "group by shape (training groups by colour)"

    def draw_scene(self, rng, c: Content):
        attr = "shape" if c.composition == "heldout" else "colour"
        idx = 1 if attr == "shape" else 0
        key = draw(rng, key_pool(c), set())
        value = key[idx]
        match = [key] + draw_many(rng, int(rng.integers(0, 3)), c.pool, _names([key]), lambda *p: p[idx] == value)
        rest = draw_many(rng, int(rng.integers(max(1, 3 - len(match)), 4)), c.pool, _names(match), lambda *p: p[idx] != value)
        objs = [o for o in match + rest]
        objs = [objs[i] for i in rng.permutation(len(objs))]
        bin_colour = str(rng.choice(vocab.TRAIN_COLOURS))
        names = [["tray"], [vocab.bin_name(bin_colour)], ["tray", vocab.bin_name(bin_colour)]][int(rng.integers(3))]
        if len(match) > 2 and "tray" not in names:  # a bin holds two objects comfortably
            names = ["tray"] + names
        target = "tray" if len(match) > 2 else names[int(rng.integers(len(names)))]
        containers = layout_containers(rng, names)
        scene = build_scene(rng, objs, sample_points(rng, len(objs), containers), containers)
        goal = {"attribute": attr, "value": value, "container": target}
        return scene, goal, {"value": value, "container": target}

    @staticmethod
    def _matches(world: WorldState, goal: dict, name: str) -> bool:
        spec = world.scene.object(name)
        return (spec.colour if goal["attribute"] == "colour" else spec.shape) == goal["value"]

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        g = episode.goal
        for o in sk.w.scene.object_names:
            if self._matches(sk.w, g, o) and not sk.w.is_in(o, g["container"]):
                sk.clear(o)
                sk.put(o, "in", g["container"])
        for o in sk.w.scene.object_names:
            if not self._matches(sk.w, g, o) and sk.w.is_in(o, g["container"]):
                sk.clear(o)
                sk.park(o)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        g = episode.goal
        return all(world.is_in(o, g["container"]) == self._matches(world, g, o) for o in world.scene.object_names)


class CleanUpExcept(SketchTask):
    family = "clean_up_except"
    scene_dependent = True
    phrasings = (
        "put everything but the {keep} in the {container}",
        "put all the objects except the {keep} in the {container}",
        "clean up: everything goes in the {container} except the {keep}",
        "leave the {keep} out and put the rest in the {container}",
    )
    heldout_phrasings = (
        "apart from the {keep}, move every object into the {container}",
        "tidy everything into the {container} but keep the {keep} on the table",
    )
    l4_phrasings = ("put everything that is not {colour} in the {container}", "put all the objects except the {colour} ones in the {container}")
    l4_variant = "the exception is a colour, not one named object (training excepts one object)"

    def draw_scene(self, rng, c: Content):
        by_colour = c.composition == "heldout"
        key = draw(rng, key_pool(c), set())
        if by_colour:
            kept = [key] + draw_many(rng, int(rng.integers(0, 2)), c.pool, _names([key]), lambda cc, s: cc == key[0])
            rest = draw_many(rng, int(rng.integers(2, 4)), c.pool, _names(kept), lambda cc, s: cc != key[0])
        else:
            kept = [key]
            rest = draw_many(rng, int(rng.integers(2, 5)), c.pool, _names(kept))
        objs = kept + rest
        objs = [objs[i] for i in rng.permutation(len(objs))]
        containers = layout_containers(rng, ["tray"])
        scene = build_scene(rng, objs, sample_points(rng, len(objs), containers), containers)
        if by_colour:
            return scene, {"container": "tray", "keep_colour": key[0]}, {"colour": key[0], "container": "tray"}
        k = object_name(*key)
        return scene, {"container": "tray", "keep": [k]}, {"keep": k, "container": "tray"}

    @staticmethod
    def _kept(world: WorldState, goal: dict, name: str) -> bool:
        return name in goal.get("keep", ()) or _colour(world, name) == goal.get("keep_colour")

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        g = episode.goal
        for o in sk.w.scene.object_names:
            if self._kept(sk.w, g, o) and sk.w.container_of(o) is not None:
                sk.clear(o)
                sk.park(o)
        for o in sk.w.scene.object_names:
            if not self._kept(sk.w, g, o) and not sk.w.is_in(o, g["container"]):
                sk.clear(o)
                sk.put(o, "in", g["container"])

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        g = episode.goal
        for o in world.scene.object_names:
            if self._kept(world, g, o):
                if world.container_of(o) is not None:
                    return False
            elif not world.is_in(o, g["container"]):
                return False
        return True


__all__ = ["SortByColour", "GroupByAttribute", "CleanUpExcept"]
