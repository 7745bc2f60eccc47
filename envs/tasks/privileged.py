"""The privileged record: everything the scripted oracle needs, as JSON-able data.

``make_privileged(episode, world)`` is what the simulator puts in
``Observation.privileged``; ``episode_from_privileged`` and ``world_from_privileged`` rebuild
the episode and the world state from it, in-process or on the other side of the bridge.
"""

from __future__ import annotations

import numpy as np

from embodied.core.errors import ObservationError
from embodied.core.world import SceneSpec, WorldState
from envs.tasks.base import Episode

PRIVILEGED_KEYS = ("family", "level", "split", "seed", "instruction", "goal", "max_steps", "scene", "poses", "held")


def make_privileged(episode: Episode, world: WorldState) -> dict:
    """{family, level, split, seed, instruction, goal, max_steps, scene, poses, held};
    ``poses``: object name -> [x, y, z, yaw]. Plain lists, numbers and strings only."""
    return {
        "family": episode.family,
        "level": episode.level,
        "split": episode.split,
        "seed": int(episode.seed),
        "instruction": episode.instruction,
        "goal": episode.goal,
        "max_steps": int(episode.max_steps),
        "scene": episode.scene.to_dict(),
        "poses": {
            name: [float(v) for v in np.asarray(p, dtype=float)[:3]] + [float(world.yaws.get(name, 0.0))]
            for name, p in world.positions.items()
        },
        "held": world.held,
    }


def _check(priv) -> dict:
    if not isinstance(priv, dict):
        raise ObservationError(
            "observation.privileged is missing: the oracle needs the simulator's privileged record; "
            "create the env with privileged=True (TabletopEnv(..., privileged=True))"
        )
    missing = [k for k in PRIVILEGED_KEYS if k not in priv]
    if missing:
        raise ObservationError(f"observation.privileged lacks {', '.join(missing)}; build it with envs.tasks.make_privileged")
    return priv


def episode_from_privileged(priv: dict) -> Episode:
    p = _check(priv)
    return Episode.from_dict(p)


def world_from_privileged(priv: dict, scene: SceneSpec | None = None) -> WorldState:
    p = _check(priv)
    scene = scene if scene is not None else SceneSpec.from_dict(p["scene"])
    poses = p["poses"]
    unknown = sorted(set(poses) - set(scene.object_names))
    if unknown or len(poses) != len(scene.objects):
        raise ObservationError(f"privileged poses do not match the scene's objects (unknown: {unknown or 'none'})")
    positions = {n: np.asarray(v[:3], dtype=float) for n, v in poses.items()}
    yaws = {n: float(v[3]) if len(v) > 3 else 0.0 for n, v in poses.items()}
    held = p["held"]
    return WorldState(scene, positions, yaws, None if held is None else str(held))
