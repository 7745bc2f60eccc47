"""Oracle demonstrations: run the scripted oracle in the simulator and record every re-planning point.

    embodied datagen level=L1 episodes=200 out=data/l1 workers=2

``episodes`` is per task family; only the TRAIN split of the level is used. Each row (see
``embodied.data.dataset.COLUMNS``) holds the camera frame(s) as PNG, the state vector,
the instruction, the steps already executed and the target: the oracle's remaining plan
(``step; step; done``) computed from the current world state. After the task succeeds one
more row is recorded whose target is ``done``.

Recovery data: a fraction ``perturb`` of episodes is disturbed once, after a random step:
``undo`` puts the moved object back where it was (the grasp failed), ``drop`` leaves it
part-way between where it was and where it went (dropped in transit), ``displace`` moves
a random object to a free spot. The history still lists the step, but the oracle
re-plans from the world, so the model learns to trust the camera over the history.

Wording: ``phrasing=train`` rewords the instruction of a share ``phrasing_share`` of the episodes
from their goal (``envs.tasks.phrasing``; the scenes, plans and perturbations stay those of the
templates' data); ``phrasing=dev`` is refused: that wording is held out for measuring.

Shards (``<family>-<level>-<first seed>.parquet``, ``episodes_per_shard`` episodes each)
are written atomically; finished shards are skipped on a re-run (resumable). Worker
processes each own a simulator. ``datagen_summary.json`` reports examples per minute.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.commands.ray_backend import RayOptions, check_backend
from embodied.core.errors import ConfigError
from embodied.core.plan import DONE, PlanStep, format_plan
from embodied.data.lerobot import EE_TARGETS

PERTURBATIONS: tuple[str, ...] = ("undo", "drop", "displace")


@dataclass
class DatagenConfig:
    level: str = "L1"
    episodes: int = 100  # per task family
    out: str = "data/l1"
    workers: int = 1
    tasks: Any = "all"  # "all", a list (tasks=[stack,tower]) or a comma-separated string
    seed: int = 0  # first episode seed
    episodes_per_shard: int = 10
    perturb: float = 0.4  # fraction of episodes disturbed once
    image_size: int = 128
    done_rows: bool = True  # record a final "done" row after success
    progress: bool = True
    perception: str = "ground_truth"  # camera: rows record what perception sees; the arm acts on perceived poses
    phrasing: str = "templates"  # templates | train: reword a share of the instructions from the goal (never dev)
    phrasing_share: float = 0.5  # phrasing=train: the share of episodes reworded; the rest keep the template
    backend: str = "process"  # process | ray: shards as Ray tasks (embodied.commands.ray_backend)
    ray: RayOptions = field(default_factory=RayOptions)


@dataclass
class _Unit:
    family: str
    level: str
    seeds: list[int]
    path: str
    perturb: float
    image_size: int
    done_rows: bool
    perception: str = "ground_truth"
    phrasing: str = "templates"
    phrasing_share: float = 0.0


def target_text(steps: list[PlanStep]) -> str:
    """The remaining plan as training target: ``step; step; done``."""
    steps = list(steps)
    if not steps or not steps[-1].is_done:
        steps.append(DONE)
    return format_plan(steps)


def _row(obs, unit: _Unit, seed: int, step_index: int, target: str, perturbation: str) -> dict:
    from embodied.data.dataset import encode_png

    cams = sorted(obs.frames)
    return {
        "task": unit.family, "level": unit.level, "seed": int(seed), "episode": f"{unit.family}-{unit.level}-{seed}",
        "step": int(step_index), "instruction": obs.instruction, "history": list(obs.history), "target": target,
        "cameras": cams, "frames": [encode_png(obs.frames[c]) for c in cams],
        "state": [float(v) for v in np.asarray(obs.state, dtype=np.float32)],
        "detections": list(obs.detections), "perturbation": perturbation,
        "relations": [obs.relations.get(d, "") for d in obs.detections],
    }


# The end-effector targets of the step taken from a row (LeRobot export: the action, EE_TARGET_NAMES): the
# pose at which the gripper closed (grasp) and the pose at which it opened again (release), each x, y, z
# (m, robot base frame) and quaternion x, y, z, w; for ``done`` or a step that never moved, the pose held, twice.


class _ArmTap:
    """Records what the skill controller commands the arm during one step (move_to poses, gripper
    closes and opens), by wrapping the arm's methods for the step; the motion is unchanged."""

    METHODS = ("move_to", "close_gripper", "open_gripper")

    def __init__(self, arm):
        self.arm, self.calls = arm, []

    def __enter__(self) -> "_ArmTap":
        for name in self.METHODS:
            original = getattr(self.arm, name)

            def tapped(*args, _name=name, _original=original, **kwargs):
                if _name == "move_to":
                    pose = args[0] if args else kwargs["pose"]
                    self.calls.append(np.concatenate([np.asarray(pose.position, float), np.asarray(pose.orientation, float)]))
                else:
                    self.calls.append(_name)
                return _original(*args, **kwargs)

            setattr(self.arm, name, tapped)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.METHODS:
            self.arm.__dict__.pop(name, None)

    def targets(self, held: np.ndarray) -> list[float]:
        """[grasp pose (7), release pose (7)]: the last commanded pose before the gripper closed, and
        the last before it opened after that; ``held`` (7) where the step did not get there."""
        grasp = release = None
        last = None
        for c in self.calls:
            if isinstance(c, np.ndarray):
                last = c
            elif c == "close_gripper" and grasp is None:
                grasp = last
            elif c == "open_gripper" and grasp is not None and release is None:
                release = last
        grasp = held if grasp is None else grasp
        release = grasp if release is None else release
        return [float(v) for v in np.concatenate([grasp, release])]


def _free_spot(world, rng: random.Random, avoid: str) -> tuple[float, float] | None:
    from envs.tasks.common import REGION_X, REGION_Y

    others = [p for n, p in world.positions.items() if n != avoid]
    for _ in range(60):
        x, y = rng.uniform(*REGION_X), rng.uniform(*REGION_Y)
        if any(np.hypot(x - p[0], y - p[1]) < 0.09 for p in others):
            continue
        if any(abs(x - c.center[0]) < c.half_extents[0] + 0.05 and abs(y - c.center[1]) < c.half_extents[1] + 0.05
               for c in world.scene.containers):
            continue
        return x, y
    return None


def _perturb(env, kind: str, step: PlanStep, before: dict, rng: random.Random) -> bool:
    """Disturb the world after ``step`` (see module docstring). Returns whether it changed anything."""
    sim = env.unwrapped.sim
    world = sim.world_state()
    if kind in ("undo", "drop"):
        name = step.object
        if not name or name not in before or not world.clear(name):
            return False
        old, new = np.asarray(before[name]), world.positions[name]
        if kind == "undo":
            x, y = float(old[0]), float(old[1])
            z = float(old[2]) + 0.005
        else:
            t = rng.uniform(0.3, 0.7)
            x, y = float(old[0] + t * (new[0] - old[0])), float(old[1] + t * (new[1] - old[1]))
            if any(np.hypot(x - p[0], y - p[1]) < 0.07 for n, p in world.positions.items() if n != name):
                spot = _free_spot(world, rng, name)
                if spot is None:
                    return False
                x, y = spot
            z = world.scene.object(name).height / 2 + 0.005
    else:
        movable = [n for n in world.positions if world.clear(n)]
        if not movable:
            return False
        name = rng.choice(movable)
        spot = _free_spot(world, rng, name)
        if spot is None:
            return False
        x, y = spot
        z = world.scene.object(name).height / 2 + 0.005
    yaw = rng.uniform(-np.pi, np.pi)
    sim.client.resetBasePositionAndOrientation(sim.bodies[name], [x, y, z], sim.client.getQuaternionFromEuler([0, 0, yaw]))
    sim.client.resetBaseVelocity(sim.bodies[name], [0, 0, 0], [0, 0, 0])
    sim.settle()
    return True


def reworded(unit: _Unit, seed: int) -> bool:
    """Whether episode ``seed`` of a shard gets reworded instructions (its own stream: the perturbations
    and the scenes are those of the templates' data)."""
    return random.Random(f"phrasing:{unit.family}:{unit.level}:{seed}").random() < unit.phrasing_share


def run_unit(unit: _Unit) -> dict:
    """Run the episodes of one shard and write it. Returns counts for the summary."""
    from embodied.commands.perception import make_perception
    from embodied.data.dataset import write_shard
    from envs.tabletop_env import TabletopEnv
    from envs.tasks import oracle_plan
    from envs.tasks.phrasing import reword
    from policies.oracle import OraclePlanner

    t0 = time.time()
    oracle = OraclePlanner(oracle_plan)
    env = TabletopEnv(unit.family, unit.level, split="train", image_size=unit.image_size, privileged=True,
                      perception=make_perception(unit.perception))
    rows: list[dict] = []
    successes = perturbed = 0
    try:
        for seed in unit.seeds:
            rng = random.Random(f"{unit.family}:{unit.level}:{seed}")
            env.reset(seed=seed)
            base = env.unwrapped
            if unit.phrasing != "templates" and reworded(unit, seed):
                base.episode.instruction = reword(base.episode, unit.phrasing)
            max_steps = base.episode.max_steps
            perturb_at = rng.choice((0, 0, 0, 1, 1, 2)) if rng.random() < unit.perturb else -1
            kind = rng.choice(PERTURBATIONS)
            applied = ""
            for t in range(max_steps + 2):
                obs = base.observation()
                steps = list(oracle.plan(obs))
                rows.append(_row(obs, unit, seed, t, target_text(steps), applied))
                step = steps[0]
                if step.is_done:
                    break
                before = {n: p.copy() for n, p in base.sim.world_state().positions.items()}
                with _ArmTap(base.sim.arm) as tap:
                    _, _, terminated, truncated, info = env.step(step.text)
                rows[-1][EE_TARGETS] = tap.targets(np.asarray(obs.state, float)[8:15])
                if t == perturb_at and not applied and not info.get("failure"):
                    if _perturb(env, kind, step, before, rng):  # may undo a success: re-plan from there
                        applied = kind
                        perturbed += 1
                        continue
                if info.get("success"):
                    successes += 1
                    if unit.done_rows:
                        rows.append(_row(base.observation(), unit, seed, t + 1, "done", applied))
                    break
                if terminated or truncated:
                    break
    finally:
        env.close()
    for r in rows:  # done rows (and a last row cut by the step limit): the pose held
        r.setdefault(EE_TARGETS, [float(v) for v in r["state"][8:15]] * 2)
    write_shard(rows, unit.path)
    return {"rows": len(rows), "episodes": len(unit.seeds), "successes": successes, "perturbed": perturbed,
            "seconds": time.time() - t0}


def plan_units(cfg: DatagenConfig) -> list[_Unit]:
    from embodied.commands.perception import check_perception
    from envs.tasks import TASKS
    from envs.tasks.phrasing import DATA_WORDINGS, check_wording

    names = cfg.tasks.split(",") if isinstance(cfg.tasks, str) else list(cfg.tasks or [])
    families = list(TASKS) if cfg.tasks == "all" else [str(t).strip() for t in names if str(t).strip()]
    if not families:
        raise ConfigError("tasks is empty; use tasks=all or name families, e.g. tasks=[stack,tower]")
    unknown = [f for f in families if f not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task families {unknown}; families are {', '.join(TASKS)}")
    if cfg.episodes < 1 or cfg.episodes_per_shard < 1 or cfg.workers < 1:
        raise ConfigError("episodes, episodes_per_shard and workers must be >= 1")
    if not 0.0 <= cfg.perturb <= 1.0:
        raise ConfigError(f"perturb must be a fraction in [0, 1], got {cfg.perturb}")
    check_perception(cfg.perception)
    check_wording(cfg.phrasing, DATA_WORDINGS)  # dev wording is held out: never in training data
    if not 0.0 <= cfg.phrasing_share <= 1.0:
        raise ConfigError(f"phrasing_share must be a fraction in [0, 1], got {cfg.phrasing_share}")
    tag = "" if cfg.perception == "ground_truth" else f"-{cfg.perception}"  # shards of the two modes never mix
    share = cfg.phrasing_share if cfg.phrasing != "templates" else 0.0
    if share > 0:  # reworded shards are named apart too
        tag += f"-{cfg.phrasing}{round(100 * share)}"
    out = Path(cfg.out)
    units = []
    for start in range(0, cfg.episodes, cfg.episodes_per_shard):
        for fam in families:  # interleave families so a partial run covers all of them
            seeds = list(range(cfg.seed + start, cfg.seed + min(cfg.episodes, start + cfg.episodes_per_shard)))
            units.append(_Unit(fam, cfg.level, seeds, str(out / f"{fam}-{cfg.level}-{seeds[0]:07d}{tag}.parquet"),
                               cfg.perturb, cfg.image_size, cfg.done_rows, cfg.perception,
                               cfg.phrasing if share > 0 else "templates", share))
    return units


def generate(cfg: DatagenConfig) -> dict:
    """Write all missing shards; returns the summary (also written to ``datagen_summary.json``)."""
    import multiprocessing as mp

    from tqdm import tqdm

    from envs.levels import LEVELS

    if cfg.level not in LEVELS:
        raise ConfigError(f"unknown level {cfg.level!r}; levels are {', '.join(LEVELS)}")
    units = plan_units(cfg)
    check_backend(cfg.backend, cfg.ray)
    todo = [u for u in units if not Path(u.path).is_file()]
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    totals = {"rows": 0, "episodes": 0, "successes": 0, "perturbed": 0}
    bar = tqdm(total=sum(len(u.seeds) for u in todo), desc="datagen episodes", unit="ep", disable=not cfg.progress,
               dynamic_ncols=True)
    pool = None
    if cfg.backend == "ray":
        from embodied.commands.ray_backend import run_datagen_units

        results = run_datagen_units(todo, cfg.workers, cfg.ray, run_unit)
    elif cfg.workers == 1:
        results = map(run_unit, todo)
    else:
        pool = mp.get_context("spawn").Pool(cfg.workers)
        results = pool.imap_unordered(run_unit, todo)
    try:
        for r in results:
            for k in totals:
                totals[k] += r[k]
            bar.update(r["episodes"])
            bar.set_postfix(rows=totals["rows"], per_min=f"{60 * totals['rows'] / max(1e-9, time.time() - t0):.0f}")
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    seconds = time.time() - t0
    summary = {
        **totals, "seconds": round(seconds, 1), "workers": cfg.workers, "backend": cfg.backend,
        "examples_per_minute": round(60 * totals["rows"] / seconds, 1) if seconds > 0 and totals["rows"] else 0.0,
        "oracle_success_rate": totals["successes"] / totals["episodes"] if totals["episodes"] else None,
        "shards_written": len(todo), "shards_skipped": len(units) - len(todo), "level": cfg.level,
        "episodes_per_family": cfg.episodes,
    }
    (Path(cfg.out) / "datagen_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(cfg) -> int:
    """Entry point for ``embodied datagen`` (a composed DictConfig)."""
    from embodied.commands.config import validated

    summary = generate(validated(cfg, DatagenConfig))
    print(json.dumps(summary))
    return 0
