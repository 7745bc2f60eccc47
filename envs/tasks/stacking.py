"""Families about stacks: stack two objects, build an ordered tower, take stacks apart."""

from __future__ import annotations

from embodied.core.vocab import object_name
from embodied.core.world import WorldState
from envs.levels import Content
from envs.tasks.base import Episode
from envs.tasks.common import Sketch, SketchTask, build_scene, draw, draw_many, key_pool, sample_points


def _names(objs):
    return [object_name(*o) for o in objs]


def _flat(colour: str, shape: str) -> bool:
    """Shapes that make a steady base (a triangle's top is too small to stack on)."""
    return shape != "triangle"


class Stack(SketchTask):
    family = "stack"
    phrasings = (
        "stack the {obj} on the {base}",
        "put the {obj} on top of the {base}",
        "place the {obj} onto the {base}",
        "pick up the {obj} and set it on the {base}",
    )
    heldout_phrasings = ("i want the {obj} sitting on the {base}", "balance the {obj} on top of the {base}")
    l4_variant = "one of the two objects starts covered by a third, so it must be uncovered first (training scenes have no stacks)"

    def draw_scene(self, rng, c: Content):
        l4 = c.composition == "heldout"
        obj = draw(rng, key_pool(c), set())
        base = draw(rng, c.pool, _names([obj]), _flat)
        others = draw_many(rng, int(rng.integers(1, 4)), c.pool, _names([obj, base]))
        objs = [obj, base] + others
        pts: list = list(sample_points(rng, len(objs), []))
        if l4:  # the first distractor starts on the object or on the base
            under = 0 if (_flat(*obj) and rng.random() < 0.5) else 1
            pts[2] = object_name(*objs[under])
        scene = build_scene(rng, objs, pts, [])
        o, b = object_name(*obj), object_name(*base)
        return scene, {"object": o, "base": b}, {"obj": o, "base": b}

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        o, b = episode.goal["object"], episode.goal["base"]
        if sk.w.is_on(o, b):
            return
        sk.clear(b)
        sk.clear(o)
        sk.put(o, "on", b)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        return world.is_on(episode.goal["object"], episode.goal["base"])


class Tower(SketchTask):
    family = "tower"
    phrasings = (
        "build a tower with the {o0} at the bottom, then the {o1}, then the {o2} on top",
        "stack the {o2} on the {o1} on the {o0}",
        "make a tower: {o0}, {o1}, {o2} from bottom to top",
        "put the {o1} on the {o0} and then the {o2} on the {o1}",
    )
    heldout_phrasings = (
        "from the bottom up, pile the {o0}, the {o1} and the {o2}",
        "i need a tower: {o0} first, {o1} next, {o2} last",
    )
    l4_phrasings = (
        "build a tower of four: the {o0} at the bottom, then the {o1}, the {o2} and the {o3} on top",
        "stack the {o0}, {o1}, {o2} and {o3} into one tower from bottom to top",
    )
    l4_variant = "a tower of 4 objects (training towers have 3)"

    def draw_scene(self, rng, c: Content):
        n = 4 if c.composition == "heldout" else 3
        key = draw(rng, key_pool(c), set())
        pos = n - 1 if not _flat(*key) else int(rng.integers(n))
        order: list = [None] * n
        order[pos] = key
        for i in range(n):
            if order[i] is None:
                taken = _names([o for o in order if o is not None])
                order[i] = draw(rng, c.pool, taken, None if i == n - 1 else _flat)
        others = draw_many(rng, int(rng.integers(0, 3)), c.pool, _names(order))
        objs = order + others
        scene = build_scene(rng, objs, sample_points(rng, len(objs), []), [])
        names = _names(order)
        return scene, {"order": names}, {f"o{i}": o for i, o in enumerate(names)}

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        order = episode.goal["order"]
        base = order[0]
        k = 1
        if sk.on_table_free(base):
            while k < len(order) and sk.w.is_on(order[k], order[k - 1]):
                k += 1
        else:
            sk.clear(base)
            sk.park(base)
        for j in range(k, len(order)):
            sk.clear(order[j - 1])
            sk.clear(order[j])
            sk.put(order[j], "on", order[j - 1])

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        order = episode.goal["order"]
        base = order[0]
        return (
            world.on_table(base)
            and world.container_of(base) is None
            and all(world.is_on(order[i], order[i - 1]) for i in range(1, len(order)))
        )


class Unstack(SketchTask):
    family = "unstack"
    scene_dependent = True
    phrasings = (
        "unstack all the blocks",
        "take every stack apart",
        "make sure nothing is stacked on anything",
        "put every object directly on the table",
    )
    heldout_phrasings = ("take everything off the stacks and set it on the table", "spread the stacked objects out on the table")
    l4_variant = "a stack 3 high (training stacks are 2 high)"

    def draw_scene(self, rng, c: Content):
        l4 = c.composition == "heldout"
        heights = [3] if l4 else [2] * int(rng.integers(1, 3))
        singles = int(rng.integers(1, 3))
        key = draw(rng, key_pool(c), set())
        stacks = []
        taken = _names([key])
        placed_key = False
        for h in heights:
            col = []
            for level in range(h):
                flat_needed = level < h - 1
                if not placed_key and (not flat_needed or _flat(*key)):
                    col.append(key)
                    placed_key = True
                else:
                    col.append(draw(rng, c.pool, taken, _flat if flat_needed else None))
                    taken.append(object_name(*col[-1]))
            stacks.append(col)
        single_objs = draw_many(rng, singles, c.pool, taken)
        bases = sample_points(rng, len(stacks) + singles, [])
        objs: list = []
        pts: list = []
        for col, pt in zip(stacks, bases):
            for level, o in enumerate(col):
                objs.append(o)
                pts.append(pt if level == 0 else object_name(*col[level - 1]))
        objs += single_objs
        pts += bases[len(stacks):]
        return build_scene(rng, objs, pts, []), {}, {}

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        for _ in range(2 * len(sk.w.positions)):
            up = [o for o in sk.w.positions if not sk.w.on_table(o)]
            if not up:
                return
            sk.park(max(up, key=lambda o: sk.w.positions[o][2]))

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        return all(world.on_table(o) for o in world.positions)


__all__ = ["Stack", "Tower", "Unstack"]
