"""Gymnasium ids for the task families: ``embodied/<CamelCaseFamily>-v0``.

``register_all()`` is called when ``envs`` is imported. It imports neither pybullet nor the
task suite (the entry point is a string); the level and split are constructor kwargs
(``gymnasium.make("embodied/Stack-v0", level="L2")``) or reset options
(``env.reset(seed=0, options={"level": "L3"})``).
"""

from __future__ import annotations

FAMILIES: tuple[str, ...] = (
    "put_in_container", "stack", "tower", "sort_by_colour", "move_to_location",
    "place_relative", "group_by_attribute", "unstack", "line_up", "clean_up_except",
)
ENTRY_POINT = "envs.tabletop_env:TabletopEnv"


def env_id(family: str) -> str:
    """``"put_in_container"`` -> ``"embodied/PutInContainer-v0"``."""
    return "embodied/" + "".join(w.capitalize() for w in family.split("_")) + "-v0"


def register_all() -> list[str]:
    """Register one id per family (idempotent); returns the ids. No-op without gymnasium."""
    try:
        import gymnasium
    except ImportError:  # the robot side may run without gymnasium; nothing to register
        return []
    ids = []
    for family in FAMILIES:
        eid = env_id(family)
        if eid not in gymnasium.registry:
            gymnasium.register(id=eid, entry_point=ENTRY_POINT, kwargs={"task": family})
        ids.append(eid)
    return ids
