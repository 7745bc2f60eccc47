"""Shared machinery of the task families: scene sampling and the oracle's plan sketch.

``Sketch`` is a symbolic copy of the world: the oracle emits plan steps into it and each
step's nominal effect is applied, so later steps see earlier ones (a parked object is where
it was parked). Oracles are computed from the *current* world state, so they re-plan from
anything: a dropped object, a displaced one, a stack that fell, a step that failed.
"""

from __future__ import annotations

import numpy as np

from embodied.core import vocab
from embodied.core.errors import ConfigError
from embodied.core.plan import DONE, PlanStep, validate_step
from embodied.core.world import (
    BIN_HALF_EXTENTS,
    CONTAINER_FLOOR,
    OBJECT_HEIGHT,
    OBJECT_SIZE,
    TABLE_Z,
    TRAY_HALF_EXTENTS,
    ContainerSpec,
    ObjectSpec,
    Placement,
    SceneSpec,
    WorldState,
)
from envs.levels import Content, check, content, episode_rng
from envs.tasks.base import Episode, Task

# Where object centres are sampled and may be placed (reachable by a Panda at the origin).
REGION_X = (0.36, 0.69)
REGION_Y = (-0.29, 0.29)
MIN_SPACING = 0.09  # centre to centre between objects at sampling (room for the fingers)
CONTAINER_CLEARANCE = 0.065  # object centre to a container's inner edge, at sampling
CONTAINER_ROW_Y = 0.27  # containers sit at y = +-this (the robot's left / right)
PARK_CLEARANCE = 0.085  # an object parked by the oracle keeps this far from other centres
FLOOR = CONTAINER_FLOOR  # objects in a container stand this much above the table


class Resample(Exception):
    """The sampler drew something unusable; draw again (internal to sampling)."""


# --- scene sampling ------------------------------------------------------------------
def draw(rng: np.random.Generator, pool, taken, pred=None) -> tuple[str, str]:
    """One (colour, shape) from ``pool`` whose name is not in ``taken`` and that satisfies ``pred``."""
    cands = [p for p in pool if vocab.object_name(*p) not in taken and (pred is None or pred(*p))]
    if not cands:
        raise Resample
    return cands[int(rng.integers(len(cands)))]


def draw_many(rng, n: int, pool, taken=(), pred=None) -> list[tuple[str, str]]:
    taken = set(taken)
    out = []
    for _ in range(n):
        p = draw(rng, pool, taken, pred)
        taken.add(vocab.object_name(*p))
        out.append(p)
    return out


def key_pool(c: Content):
    return c.key_pool or c.pool


def make_container(name: str, center: tuple[float, float]) -> ContainerSpec:
    if name == "tray":
        return ContainerSpec("tray", "grey", (float(center[0]), float(center[1])), TRAY_HALF_EXTENTS)
    colour = name.split()[0]
    return ContainerSpec(name, colour, (float(center[0]), float(center[1])), BIN_HALF_EXTENTS)


def layout_containers(rng: np.random.Generator, names: list[str]) -> list[ContainerSpec]:
    """Place 0-3 containers in the rows at the robot's left and right (y = +-CONTAINER_ROW_Y)."""
    def free_x(name):
        hx = (TRAY_HALF_EXTENTS if name == "tray" else BIN_HALF_EXTENTS)[0]
        return float(rng.uniform(REGION_X[0] + hx, REGION_X[1] + 0.01 - hx))

    side = 1.0 if rng.random() < 0.5 else -1.0
    y = CONTAINER_ROW_Y
    if len(names) == 0:
        return []
    if len(names) == 1:
        return [make_container(names[0], (free_x(names[0]), side * y))]
    if len(names) == 2:
        return [make_container(names[0], (free_x(names[0]), side * y)), make_container(names[1], (free_x(names[1]), -side * y))]
    if len(names) == 3 and "tray" not in names:
        return [
            make_container(names[0], (0.43, side * y)),
            make_container(names[1], (0.63, side * y)),
            make_container(names[2], (free_x(names[2]), -side * y)),
        ]
    raise ConfigError(f"cannot lay out containers {names}")


def rect_distance(x: float, y: float, c: ContainerSpec) -> float:
    """Distance from (x, y) to a container's inner rectangle (0 inside)."""
    dx = max(abs(x - c.center[0]) - c.half_extents[0], 0.0)
    dy = max(abs(y - c.center[1]) - c.half_extents[1], 0.0)
    return float(np.hypot(dx, dy))


def in_region(x: float, y: float, slack: float = 0.0) -> bool:
    return REGION_X[0] - slack <= x <= REGION_X[1] + slack and REGION_Y[0] - slack <= y <= REGION_Y[1] + slack


def sample_points(
    rng: np.random.Generator,
    n: int,
    containers: list[ContainerSpec],
    fixed: list[tuple[float, float]] = (),
    keep_out: list[tuple[float, float, float]] = (),
    pred=None,
    spacing: float = MIN_SPACING,
) -> list[tuple[float, float]]:
    """``n`` object centres in the region, ``spacing`` apart (and from ``fixed``), clear of
    containers and of each (x, y, radius) in ``keep_out``; ``pred(i, x, y)`` may veto a point."""
    pts: list[tuple[float, float]] = []
    for i in range(n):
        for _ in range(300):
            x = float(rng.uniform(*REGION_X))
            y = float(rng.uniform(*REGION_Y))
            if any(rect_distance(x, y, c) < CONTAINER_CLEARANCE for c in containers):
                continue
            if any(np.hypot(x - a, y - b) < spacing for a, b in list(fixed) + pts):
                continue
            if any(np.hypot(x - a, y - b) < r for a, b, r in keep_out):
                continue
            if pred is not None and not pred(i, x, y):
                continue
            pts.append((x, y))
            break
        else:
            raise Resample
    return pts


def point_ok(x, y, containers, others, keep_out=()) -> bool:
    """A single point is in the region, clear of containers, ``others`` and ``keep_out``."""
    return (
        in_region(x, y)
        and all(rect_distance(x, y, c) >= CONTAINER_CLEARANCE for c in containers)
        and all(np.hypot(x - a, y - b) >= MIN_SPACING for a, b in others)
        and all(np.hypot(x - a, y - b) >= r for a, b, r in keep_out)
    )


def build_scene(
    rng: np.random.Generator,
    objects: list[tuple[str, str]],
    points: list[tuple[float, float] | str],
    containers: list[ContainerSpec],
) -> SceneSpec:
    """Objects at ``points``; a point given as an object name stacks the object on that one."""
    specs = [ObjectSpec(c, s, OBJECT_SIZE, OBJECT_HEIGHT) for c, s in objects]
    placements: dict[str, Placement] = {}
    for spec, pt in zip(specs, points):
        yaw = float(rng.uniform(-0.5, 0.5))
        if isinstance(pt, str):
            below = placements[pt]
            placements[spec.name] = Placement(below.x, below.y, yaw, on=pt)
        else:
            placements[spec.name] = Placement(float(pt[0]), float(pt[1]), yaw)
    return SceneSpec(specs, placements, list(containers))


def nominal_world(scene: SceneSpec) -> WorldState:
    """The world exactly as the scene spec places it (stacks resting on their supports)."""
    positions: dict[str, np.ndarray] = {}
    yaws: dict[str, float] = {}

    def centre(name: str) -> np.ndarray:
        if name in positions:
            return positions[name]
        pl = scene.placements[name]
        h = scene.object(name).height
        if pl.on is None:
            z = TABLE_Z + h / 2 + (FLOOR if any(c.contains_xy(pl.x, pl.y) for c in scene.containers) else 0.0)
        else:
            below = centre(pl.on)
            z = below[2] + scene.object(pl.on).height / 2 + h / 2
        positions[name] = np.array([pl.x, pl.y, z], dtype=float)
        yaws[name] = pl.yaw
        return positions[name]

    for o in scene.objects:
        centre(o.name)
    return WorldState(scene, positions, yaws, None)


def pick_template(rng: np.random.Generator, task: Task, c: Content) -> str:
    if c.phrasings == "heldout":
        pool = task.heldout_phrasings
    elif c.composition == "heldout" and task.l4_phrasings:
        pool = task.l4_phrasings
    else:
        pool = task.phrasings
    return pool[int(rng.integers(len(pool)))]


# --- the oracle's sketch --------------------------------------------------------------
class Sketch:
    """A world copy that plan steps are written into, each applied with its nominal effect."""

    def __init__(self, world: WorldState):
        self.w = world.copy()
        self.steps: list[PlanStep] = []
        self.reserved: list[tuple[float, float]] = []
        self._objects = world.scene.object_names
        self._containers = world.scene.container_names

    # effects -------------------------------------------------------------------------
    def _rest(self, name: str, x: float, y: float, z_bottom: float) -> None:
        h = self.w.scene.object(name).height
        self.w.positions[name] = np.array([x, y, z_bottom + h / 2], dtype=float)
        self.w.held = None

    def emit(self, step: PlanStep) -> None:
        validate_step(step, self._objects, self._containers)
        if len(self.steps) > 60:
            raise ConfigError("oracle plan grew past 60 steps; the task's goal cannot be reached from this state")
        w = self.w
        if step.verb == "move":
            x, y = vocab.LOCATIONS[step.target]
            self._rest(step.object, x, y, TABLE_Z)
        elif step.preposition == "on":
            t = w.positions[step.target]
            self._rest(step.object, t[0], t[1], w.top_z(step.target))
        elif step.preposition == "in":
            x, y = w.free_slot(step.target, ignore=step.object)
            self._rest(step.object, x, y, TABLE_Z + FLOOR)
        else:
            x, y = w.relation_target(step.preposition, step.target)
            self._rest(step.object, x, y, TABLE_Z)
        self.steps.append(step)

    def put(self, obj: str, prep: str, target: str) -> None:
        self.emit(PlanStep("put", obj, prep, target))

    def move(self, obj: str, location: str) -> None:
        self.emit(PlanStep("move", obj, "to", location))

    # queries -------------------------------------------------------------------------
    def above(self, name: str) -> list[str]:
        """Everything stacked on ``name`` (directly or not), top first."""
        out: list[str] = []
        for o in self.w.positions:
            if o != name and o != self.w.held and self.w.is_on(o, name):
                out = self.above(o) + [o] + out
        # de-duplicate, keep order
        seen: set[str] = set()
        return [o for o in out if not (o in seen or seen.add(o))]

    def blockers(self, xy: tuple[float, float], exclude=(), radius: float = 0.07) -> list[str]:
        """Objects whose centre is within ``radius`` of ``xy`` (top of a stack first)."""
        near = [
            o for o, p in self.w.positions.items()
            if o not in exclude and o != self.w.held and np.hypot(p[0] - xy[0], p[1] - xy[1]) < radius
        ]
        return sorted(near, key=lambda o: -self.w.positions[o][2])

    def clearance(self, x: float, y: float, mover: str | None, ignore=()) -> float:
        d = [np.hypot(p[0] - x, p[1] - y) for o, p in self.w.positions.items() if o != mover and o not in ignore]
        d += [np.hypot(a - x, b - y) for a, b in self.reserved]
        d += [rect_distance(x, y, c) + 0.04 for c in self.w.scene.containers]
        return float(min(d)) if d else 1.0

    def on_table_free(self, name: str) -> bool:
        """Stands on the table itself: not on another object, not in a container."""
        return self.w.on_table(name) and self.w.container_of(name) is None

    # actions -------------------------------------------------------------------------
    def clear(self, name: str) -> None:
        """Park everything stacked on ``name``."""
        for o in self.above(name):
            self.park(o)

    def clear_point(self, xy: tuple[float, float], exclude=(), radius: float = 0.07) -> None:
        """Park objects standing where something is about to be put."""
        for o in self.blockers(xy, exclude, radius):
            self.clear(o)
            self.park(o)

    def park(self, name: str, room: list[tuple[float, float]] = (), ignore=()) -> None:
        """Put ``name`` down somewhere free: a board location if one is free, else next to an
        object on the table. ``room``: offsets from the spot that must be free too."""
        def score(x, y):
            s = self.clearance(x, y, name, ignore)
            for dx, dy in room:
                if not in_region(x + dx, y + dy, 0.01):
                    return -1.0
                s = min(s, self.clearance(x + dx, y + dy, name, ignore))
            return s

        locs = [(score(*vocab.LOCATIONS[loc]), -i, loc) for i, loc in enumerate(vocab.LOCATIONS)]
        best = max(locs)
        if best[0] >= PARK_CLEARANCE:
            self.move(name, best[2])
            return
        rels = []
        for i, anchor in enumerate(self.w.scene.object_names):
            if anchor == name or anchor in ignore or not self.on_table_free(anchor) or not self.w.clear(anchor):
                continue
            for j, rel in enumerate(vocab.RELATIONS):
                x, y = self.w.relation_target(rel, anchor)
                if in_region(x, y):
                    rels.append((score(x, y), -i, -j, anchor, rel))
        best_rel = max(rels) if rels else None
        if best_rel is not None and best_rel[0] >= PARK_CLEARANCE:
            self.put(name, best_rel[4], best_rel[3])
        elif best_rel is not None and best_rel[0] > best[0]:
            self.put(name, best_rel[4], best_rel[3])
        else:
            self.move(name, best[2])


class SketchTask(Task):
    """A family whose oracle writes into a ``Sketch``. Subclasses implement ``draw_scene``
    (scene, goal, template fields), ``plan_into`` and ``goal_met``."""

    def draw_scene(self, rng: np.random.Generator, c: Content) -> tuple[SceneSpec, dict, dict]:
        raise NotImplementedError

    def plan_into(self, episode: Episode, sk: Sketch) -> None:
        raise NotImplementedError

    def goal_met(self, episode: Episode, world: WorldState) -> bool:
        raise NotImplementedError

    def sample(self, seed: int, level: str = "L1", split: str = "test") -> Episode:
        check(level, split)
        c = content(level, split)
        rng = episode_rng(self.family, level, split, seed)
        for _ in range(500):
            try:
                scene, goal, fields = self.draw_scene(rng, c)
            except Resample:
                continue
            template = pick_template(rng, self, c)
            ep = Episode(self.family, level, split, int(seed), scene, template.format(**fields), goal)
            world = nominal_world(scene)
            if self.goal_met(ep, world):
                continue
            ep.max_steps = 2 * len(self.oracle_plan(ep, world)) + 4
            return ep
        raise ConfigError(f"{self.family}: could not sample a scene for seed {seed} at {level}/{split}")

    def oracle_plan(self, episode: Episode, world: WorldState) -> list[PlanStep]:
        sk = Sketch(world)
        held = world.held
        if held is not None:
            probe = Sketch(world)
            self.plan_into(episode, probe)
            if not probe.steps or probe.steps[0].object != held:
                sk.park(held)
        self.plan_into(episode, sk)
        return sk.steps + [DONE]

    def success(self, episode: Episode, world: WorldState) -> bool:
        return world.held is None and not world.off_table() and self.goal_met(episode, world)
