"""Families that put single objects somewhere: in a container, at a board location,
relative to another object, and in a row."""

from __future__ import annotations

from embodied.core import vocab
from embodied.core.vocab import object_name
from embodied.core.world import RELATION_DISTANCE, WorldState
from envs.levels import Content
from envs.tasks.base import Episode
from envs.tasks.common import (
    MIN_SPACING,
    Resample,
    Sketch,
    SketchTask,
    build_scene,
    draw,
    draw_many,
    in_region,
    key_pool,
    layout_containers,
    sample_points,
)

REL_WORDS = {"left of": "to the left of", "right of": "to the right of", "in front of": "in front of", "behind": "behind"}


def _names(objs):
    return [object_name(*o) for o in objs]


class PutInContainer(SketchTask):
    family = "put_in_container"
    phrasings = (
        "put the {obj} in the {container}",
        "place the {obj} into the {container}",
        "pick up the {obj} and drop it in the {container}",
        "move the {obj} into the {container}",
        "the {obj} goes in the {container}",
    )
    heldout_phrasings = ("could you get the {obj} inside the {container}", "drop the {obj} into the {container}")
    l4_phrasings = ("put the {obj} and the {obj2} in the {container}", "place both the {obj} and the {obj2} into the {container}")
    l4_variant = "two objects into the same container in one instruction (training moves one)"

    def draw_scene(self, rng, c: Content):
        l4 = c.composition == "heldout"
        n_goal = 2 if l4 else 1
        bins = [vocab.bin_name(col) for col in rng.choice(vocab.TRAIN_COLOURS, 2, replace=False)]
        names = [["tray"], [bins[0]], ["tray", bins[0]], bins][int(rng.integers(4))]
        containers = layout_containers(rng, names)
        goal_objs = [draw(rng, key_pool(c), set())]
        goal_objs += draw_many(rng, n_goal - 1, c.pool, _names(goal_objs))
        others = draw_many(rng, int(rng.integers(2, 6 - n_goal)), c.pool, _names(goal_objs))
        objs = goal_objs + others
        scene = build_scene(rng, objs, sample_points(rng, len(objs), containers), containers)
        target = names[int(rng.integers(len(names)))]
        goal = {"objects": _names(goal_objs), "container": target}
        fields = {"obj": goal["objects"][0], "obj2": goal["objects"][-1], "container": target}
        return scene, goal, fields

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        c = episode.goal["container"]
        for o in episode.goal["objects"]:
            if not sk.w.is_in(o, c):
                sk.clear(o)
                sk.put(o, "in", c)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        return all(world.is_in(o, episode.goal["container"]) for o in episode.goal["objects"])


class MoveToLocation(SketchTask):
    family = "move_to_location"
    phrasings = (
        "move the {obj} to the {loc}",
        "put the {obj} at the {loc}",
        "slide the {obj} over to the {loc}",
        "take the {obj} to the {loc} of the table",
        "place the {obj} in the {loc} spot",
    )
    heldout_phrasings = ("the {obj} belongs at the {loc}", "bring the {obj} to the {loc} area")
    l4_phrasings = ("move the {obj} to the {loc} and the {obj2} to the {loc2}", "put the {obj} at the {loc}, then the {obj2} at the {loc2}")
    l4_variant = "two objects to two locations in one instruction (training moves one)"

    def draw_scene(self, rng, c: Content):
        l4 = c.composition == "heldout"
        k = 2 if l4 else 1
        locs = [str(x) for x in rng.choice(list(vocab.LOCATIONS), k, replace=False)]
        goal_objs = [draw(rng, key_pool(c), set())]
        goal_objs += draw_many(rng, k - 1, c.pool, _names(goal_objs))
        objs = goal_objs + draw_many(rng, int(rng.integers(2, 4)), c.pool, _names(goal_objs))
        keep_out = [(*vocab.LOCATIONS[loc], 0.11) for loc in locs]
        scene = build_scene(rng, objs, sample_points(rng, len(objs), [], keep_out=keep_out), [])
        moves = [[o, loc] for o, loc in zip(_names(goal_objs), locs)]
        fields = {"obj": moves[0][0], "loc": moves[0][1], "obj2": moves[-1][0], "loc2": moves[-1][1]}
        return scene, {"moves": moves}, fields

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        moves = episode.goal["moves"]
        sk.reserved = [vocab.LOCATIONS[loc] for _, loc in moves]
        for o, loc in moves:
            if sk.w.at_location(o, loc):
                continue
            sk.clear_point(vocab.LOCATIONS[loc], exclude={o})
            sk.clear(o)
            sk.move(o, loc)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        return all(world.at_location(o, loc) for o, loc in episode.goal["moves"])


def _offset(rel: str, k: float = 1.0) -> tuple[float, float]:
    dx, dy = vocab.RELATIONS[rel]
    return dx * RELATION_DISTANCE * k, dy * RELATION_DISTANCE * k


class PlaceRelative(SketchTask):
    family = "place_relative"
    phrasings = (
        "put the {obj} {rel} the {anchor}",
        "place the {obj} {rel} the {anchor}",
        "move the {obj} so it is {rel} the {anchor}",
        "set the {obj} down {rel} the {anchor}",
    )
    heldout_phrasings = ("the {obj} should end up {rel} the {anchor}", "position the {obj} {rel} the {anchor}")
    l4_phrasings = (
        "put the {obj} {rel} the {anchor}, then put the {obj2} {rel2} the {obj}",
        "place the {obj} {rel} the {anchor} and the {obj2} {rel2} the {obj}",
    )
    l4_variant = "two chained relations, the second anchored on the object just moved (training has one)"

    def draw_scene(self, rng, c: Content):
        l4 = c.composition == "heldout"
        rels = list(vocab.RELATIONS)
        rel = rels[int(rng.integers(4))]
        mover = draw(rng, key_pool(c), set())
        anchor = draw(rng, c.pool, _names([mover]))
        chain = []
        if l4:
            rel2 = rels[int(rng.integers(4))]
            if vocab.RELATIONS[rel2] == tuple(-v for v in vocab.RELATIONS[rel]):
                raise Resample
            chain = [draw(rng, c.pool, _names([mover, anchor]))]
        # the anchor first, with room for the target spot(s)
        off1 = _offset(rel)
        offs = [off1] + ([tuple(a + b for a, b in zip(off1, _offset(rel2)))] if l4 else [])
        apt = sample_points(rng, 1, [], pred=lambda i, x, y: all(in_region(x + dx, y + dy) for dx, dy in offs))[0]
        targets = [(apt[0] + dx, apt[1] + dy) for dx, dy in offs]
        others = draw_many(rng, int(rng.integers(1, 4)), c.pool, _names([mover, anchor] + chain))
        rest = [mover] + chain + others
        keep_out = [(x, y, MIN_SPACING) for x, y in targets]
        pts = sample_points(rng, len(rest), [], fixed=[apt] + targets, keep_out=keep_out)
        objs = [anchor] + rest
        scene = build_scene(rng, objs, [apt] + pts, [])
        m, a = object_name(*mover), object_name(*anchor)
        relations = [[m, rel, a]]
        fields = {"obj": m, "rel": REL_WORDS[rel], "anchor": a}
        if l4:
            z = object_name(*chain[0])
            relations.append([z, rel2, m])
            fields.update(obj2=z, rel2=REL_WORDS[rel2])
        return scene, {"relations": relations}, fields

    @staticmethod
    def _chain(rels: list, i: int) -> list[tuple[float, float]]:
        """Offsets from relation i's anchor to its target and to the targets of relations
        anchored (transitively) on its mover."""
        o, rel, _ = rels[i]
        off = _offset(rel)
        out = [off]
        for j in range(i + 1, len(rels)):
            if rels[j][2] == o:
                out += [(off[0] + dx, off[1] + dy) for dx, dy in PlaceRelative._chain(rels, j)]
        return out

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        rels = episode.goal["relations"]
        for i, (o, rel, a) in enumerate(rels):
            p = sk.w.positions[a]
            offs = self._chain(rels, i)
            if not all(in_region(p[0] + dx, p[1] + dy, 0.01) for dx, dy in offs):
                sk.clear(a)
                sk.park(a, room=offs, ignore={r[0] for r in rels[i:]})
            if sk.w.is_related(o, rel, a):
                continue
            target = sk.w.relation_target(rel, a)
            sk.clear_point(target, exclude={o, a})
            sk.clear(o)
            sk.put(o, rel, a)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        return all(world.is_related(o, rel, a) for o, rel, a in episode.goal["relations"])


LINE_ALONG = (0.05, 0.14)  # neighbour spacing accepted in a row (m)
LINE_PERP = 0.04  # how far a neighbour may sit off the row's axis (m)
DIRECTIONS = {"left to right": "right of", "right to left": "left of"}


class LineUp(SketchTask):
    family = "line_up"
    phrasings = (
        "line up the {o0}, the {o1} and the {o2} from {dir}",
        "put the {o0}, {o1} and {o2} in a row from {dir}",
        "arrange the {o0}, the {o1} and the {o2} in a line, {dir}",
    )
    heldout_phrasings = ("make a row: {o0}, then {o1}, then {o2}, going {dir}", "order the {o0}, {o1} and {o2} {dir} in a straight line")
    l4_phrasings = (
        "line up the {o0}, the {o1}, the {o2} and the {o3} from {dir}",
        "put the {o0}, {o1}, {o2} and {o3} in a row from {dir}",
    )
    l4_variant = "a row of 4 objects (training rows have 3)"

    def draw_scene(self, rng, c: Content):
        n = 4 if c.composition == "heldout" else 3
        direction = list(DIRECTIONS)[int(rng.integers(2))]
        rel = DIRECTIONS[direction]
        key = draw(rng, key_pool(c), set())
        line = [key] + draw_many(rng, n - 1, c.pool, _names([key]))
        line = [line[i] for i in rng.permutation(n)]
        offs = [_offset(rel, i) for i in range(1, n)]
        apt = sample_points(rng, 1, [], pred=lambda i, x, y: all(in_region(x + dx, y + dy) for dx, dy in offs))[0]
        slots = [(apt[0] + dx, apt[1] + dy) for dx, dy in offs]
        others = draw_many(rng, int(rng.integers(0, 3)), c.pool, _names(line))
        keep_out = [(x, y, MIN_SPACING) for x, y in slots]
        pts = sample_points(rng, n - 1 + len(others), [], fixed=[apt] + slots, keep_out=keep_out)
        scene = build_scene(rng, line + others, [apt] + pts, [])
        order = _names(line)
        fields = {f"o{i}": o for i, o in enumerate(order)} | {"dir": direction}
        return scene, {"order": order, "direction": direction}, fields

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        order = episode.goal["order"]
        rel = DIRECTIONS[episode.goal["direction"]]
        n = len(order)
        offs = [_offset(rel, i) for i in range(1, n)]
        anchor = order[0]
        p = sk.w.positions[anchor]
        k = 1
        if sk.on_table_free(anchor) and all(in_region(p[0] + dx, p[1] + dy, 0.01) for dx, dy in offs):
            while k < n and self._pair_ok(sk.w, order[k], rel, order[k - 1]):
                k += 1
        else:
            sk.clear(anchor)
            sk.park(anchor, room=offs, ignore=set(order))
        for j in range(k, n):
            target = sk.w.relation_target(rel, order[j - 1])
            sk.clear_point(target, exclude={order[j], order[j - 1]})
            sk.clear(order[j])
            sk.put(order[j], rel, order[j - 1])

    @staticmethod
    def _pair_ok(world: WorldState, obj: str, rel: str, prev: str) -> bool:
        return world.is_related(obj, rel, prev, along=LINE_ALONG, perp_tol=LINE_PERP)

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        order = episode.goal["order"]
        rel = DIRECTIONS[episode.goal["direction"]]
        return world.on_table(order[0]) and world.container_of(order[0]) is None and all(self._pair_ok(world, order[i], rel, order[i - 1]) for i in range(1, len(order)))


__all__ = ["PutInContainer", "MoveToLocation", "PlaceRelative", "LineUp", "REL_WORDS"]
