"""Scenes and scoring for ``embodied bench perception`` (and its tests).

``episode_scenes`` yields the scenes of one test episode: at reset, after each of the first
oracle steps (run through ``TabletopEnv``), and with an object lifted in the gripper.
``Scorer`` matches a ``PerceivedScene`` against the ``WorldState`` and keeps the rates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from embodied.core.protocols import Pose
from embodied.core.scene import PerceivedScene
from embodied.core.skills import grasp_yaw, top_down
from embodied.core.world import WorldState
from embodied.perception.shapes import footprint, yaw_error

MATCH_M = 0.02  # a named object counts when its name is right and its centre within this
TIPPED_DEG = 10.0  # an object leaning more than this has no level top face (reported apart)


@dataclass
class Scene:
    key: str  # family/level/seed/stage
    sim: object  # envs.sim.TabletopSim, in this state
    world: WorldState
    gripper: tuple[np.ndarray, float]  # grasp point (3,), opening (m)
    tilts: dict  # object name -> degrees its axis leans from upright (a tipped object has no top face)


def _scene(key: str, sim) -> Scene:
    tilts = {}
    for o in sim.scene.objects:
        _, q = sim.client.getBasePositionAndOrientation(sim.bodies[o.name])
        up = np.asarray(sim.client.getMatrixFromQuaternion(q)).reshape(3, 3)[:, 2]
        tilts[o.name] = float(np.degrees(np.arccos(np.clip(up[2], -1.0, 1.0))))
    return Scene(key, sim, sim.world_state(), _gripper(sim), tilts)


def _gripper(sim) -> tuple[np.ndarray, float]:
    st = sim.arm.state()
    return np.asarray(st.ee_pose.position, float), float(st.gripper_width)


def episode_scenes(family: str, level: str, seed: int, mid_steps: int = 3, held: bool = True, split: str = "test") -> Iterator[Scene]:
    """The scenes of one episode (of the test split unless ``split``); see the module docstring."""
    from envs.tabletop_env import TabletopEnv
    from envs.tasks import make_privileged, oracle_plan

    env = TabletopEnv(family, level=level, split=split)
    try:
        env.reset(seed=seed)
        base = f"{family}/{level}/{seed}" if split == "test" else f"{family}/{level}/{split}/{seed}"
        yield _scene(f"{base}/start", env.sim)
        for k in range(mid_steps):
            plan = oracle_plan(make_privileged(env.episode, env.world_state()))
            if not plan or plan[0].is_done:
                break
            _, _, term, trunc, _ = env.step(plan[0].text)
            yield _scene(f"{base}/step{k + 1}", env.sim)
            if term or trunc:
                break
        if held:
            name = lift_one(env.sim, np.random.default_rng(seed))
            if name is not None:
                yield _scene(f"{base}/held", env.sim)
    finally:
        env.close()


def lift_one(sim, rng: np.random.Generator, lift_z: float = 0.2) -> str | None:
    """Grasp a clear object (nothing on it) from above and lift it; its name, or None when the grasp failed."""
    world = sim.world_state()
    names = sorted(n for n in world.positions if world.clear(n) and world.in_workspace(n))
    if not names:
        return None
    name = names[int(rng.integers(len(names)))]
    pos, yaw = sim.pose(name)
    spec = world.scene.object(name)
    gy = grasp_yaw(spec.shape, yaw, reference=math.atan2(pos[1], pos[0]))
    grasp_z = max(float(pos[2]) + spec.height / 2 - 0.022, 0.012)
    arm = sim.arm
    arm.open_gripper()
    arm.move_to(Pose(np.array([pos[0], pos[1], grasp_z + 0.12]), top_down(gy)))
    arm.move_to(Pose(np.array([pos[0], pos[1], grasp_z]), top_down(gy)))
    arm.close_gripper()
    arm.move_to(Pose(np.array([pos[0], pos[1], lift_z]), top_down(gy)))
    sim.step(24)
    return name if arm.held == name else None


def perceive_timed(perception, frames: dict, cals: dict, gripper, repeats: int) -> tuple[PerceivedScene, dict]:
    """Perceive ``repeats`` times; the last scene, and per clock the best and the median run:
    CPU time of this (perception's only) thread, and wall time. The best of a few runs is the
    cost of the work itself on a machine that other jobs share (as ``timeit`` reports)."""
    cpu, wall = [], []
    scene = None
    for _ in range(max(1, repeats)):
        t, w = time.thread_time(), time.perf_counter()
        scene = perception.perceive(frames, cals, gripper=gripper)
        cpu.append((time.thread_time() - t) * 1000.0)
        wall.append((time.perf_counter() - w) * 1000.0)
    return scene, {"cpu": float(np.min(cpu)), "cpu_median": float(np.median(cpu)), "wall": float(np.min(wall))}


def size_frames(sim, spec, width: int, height: int):
    """The front camera alone at ``width`` x ``height`` (RGB-D): frames, calibrations, render ms."""
    from envs.cameras import SimCamera, calibration

    s = spec.resized(width, height)
    t = time.perf_counter()
    frame = SimCamera(sim, s).read()
    return {s.name: frame}, {s.name: calibration(s)}, (time.perf_counter() - t) * 1000.0


def _pct(values, q):
    return None if not values else round(float(np.percentile(values, q)), 2)


class Scorer:
    """Rates over scenes; ``failures``: how many mismatches to keep as examples."""

    def __init__(self, failures: int = 40):
        self.keep = failures
        self.gt = self.tp = self.named = 0
        self.rel_ok = 0
        self.cont_gt = self.cont_tp = self.cont_named = 0
        self.err_mm: list[float] = []
        self.yaw_deg: list[float] = []
        self.cpu_ms: list[float] = []
        self.cpu_median_ms: list[float] = []
        self.wall_ms: list[float] = []
        self.render_ms: list[float] = []
        self.failures: list[dict] = []
        self.tipped = self.tipped_tp = 0
        self.by_stage: dict[str, list[int]] = {}

    def _fail(self, key: str, **info) -> None:
        if len(self.failures) < self.keep:
            self.failures.append({"scene": key, **info})

    def add(self, key: str, world: WorldState, scene: PerceivedScene, ms: dict, render_ms: float, frames: int, tilts: dict | None = None) -> None:
        tilts = tilts or {}
        self.cpu_ms.append(ms["cpu"] / frames)
        self.cpu_median_ms.append(ms["cpu_median"] / frames)
        self.wall_ms.append(ms["wall"] / frames)
        self.render_ms.append(render_ms)
        gone = set(world.off_table())
        named = {o.name: o for o in scene.objects if o.kind == "object"}
        self.named += len(named)
        stage = self.by_stage.setdefault(key.rsplit("/", 1)[-1].rstrip("0123456789"), [0, 0])
        for name, p in world.positions.items():
            if name in gone:
                self.named -= int(name in named)
                continue
            self.gt += 1
            stage[1] += 1
            tipped = tilts.get(name, 0.0) > TIPPED_DEG
            self.tipped += int(tipped)
            o = named.get(name)
            d = None if o is None else float(np.linalg.norm(o.position - p))
            rel = world.relation(name)
            if d is None or d >= MATCH_M:
                near = min(scene.objects, key=lambda x: float(np.linalg.norm(x.position - p)), default=None)
                self._fail(key, object=name, relation=rel, got=None if o is None else round(d * 1000, 1), tilt_deg=round(tilts.get(name, 0.0), 1),
                           nearest=None if near is None else f"{near.name} {np.round(near.position, 3).tolist()}")
                continue
            self.tipped_tp += int(tipped)
            self.tp += 1
            stage[0] += 1
            self.err_mm.append(d * 1000)
            spec = world.scene.object(name)
            self.yaw_deg.append(math.degrees(yaw_error(footprint(spec.shape, spec.size), o.yaw, world.yaws.get(name, 0.0))))
            got = scene.relations.get(name, "")
            if got == rel:
                self.rel_ok += 1
            else:
                self._fail(key, object=name, relation=rel, got_relation=got)
        for c in world.scene.containers:
            self.cont_gt += 1
            o = next((x for x in scene.objects if x.name == c.name and x.kind == "container"), None)
            if o is not None and np.hypot(*(o.position[:2] - np.asarray(c.center))) < MATCH_M:
                self.cont_tp += 1
            else:
                self._fail(key, container=c.name, got=None if o is None else np.round(o.position, 3).tolist())
        self.cont_named += sum(1 for o in scene.objects if o.kind == "container")

    def summary(self, brief: bool = False) -> dict:
        out = {
            "precision": round(self.tp / self.named, 4) if self.named else 0.0,
            "recall": round(self.tp / self.gt, 4) if self.gt else 0.0,
            "position_error_mm": {"p50": _pct(self.err_mm, 50), "p95": _pct(self.err_mm, 95)},
            "relation_accuracy": round(self.rel_ok / self.tp, 4) if self.tp else 0.0,
            "ms_per_frame": {"p50": _pct(self.cpu_ms, 50), "p95": _pct(self.cpu_ms, 95), "median_run_p50": _pct(self.cpu_median_ms, 50),
                             "wall_p50": _pct(self.wall_ms, 50),
                             "clock": "CPU time of perception's one thread (cv2.setNumThreads(1)) per frame: best of `repeats` runs of each frame set"},
            "render_ms_per_frame": {"p50": _pct(self.render_ms, 50)},
        }
        if brief:
            return out
        out.update({
            "yaw_error_deg": {"p50": _pct(self.yaw_deg, 50), "p95": _pct(self.yaw_deg, 95)},
            "containers": {"precision": round(self.cont_tp / self.cont_named, 4) if self.cont_named else None,
                           "recall": round(self.cont_tp / self.cont_gt, 4) if self.cont_gt else None},
            "objects": self.gt, "named": self.named, "matched": self.tp,
            "recall_by_stage": {k: round(v[0] / v[1], 4) if v[1] else None for k, v in self.by_stage.items()},
            "tipped": {"objects": self.tipped, "matched": self.tipped_tp, "note": f"objects leaning more than {TIPPED_DEG} deg (no level top face)",
                       "recall_upright": round((self.tp - self.tipped_tp) / (self.gt - self.tipped), 4) if self.gt > self.tipped else None},
            "failures": self.failures,
        })
        return out
