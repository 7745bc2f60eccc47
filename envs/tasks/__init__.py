"""The task suite: ``TASKS`` (family -> Task), ``get_task``, and the privileged record the
scripted oracle plans from (``make_privileged`` and its inverses).

Families: put_in_container, stack, tower, sort_by_colour, move_to_location, place_relative,
group_by_attribute, unstack, line_up, clean_up_except. See docs/tasks.md.
"""

from __future__ import annotations

from embodied.core.errors import ConfigError
from embodied.core.plan import PlanStep
from envs.tasks.base import Episode, Task
from envs.tasks.grouping import CleanUpExcept, GroupByAttribute, SortByColour
from envs.tasks.placing import LineUp, MoveToLocation, PlaceRelative, PutInContainer
from envs.tasks.privileged import episode_from_privileged, make_privileged, world_from_privileged
from envs.tasks.stacking import Stack, Tower, Unstack

TASKS: dict[str, Task] = {
    t.family: t
    for t in (
        PutInContainer(),
        Stack(),
        Tower(),
        SortByColour(),
        MoveToLocation(),
        PlaceRelative(),
        GroupByAttribute(),
        Unstack(),
        LineUp(),
        CleanUpExcept(),
    )
}


def get_task(family: str) -> Task:
    """The task of a family; an unknown name raises ``ConfigError`` listing the families."""
    try:
        return TASKS[family]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task family {family!r}; families are {', '.join(TASKS)}") from None


def oracle_plan(privileged: dict) -> list[PlanStep]:
    """The remaining oracle plan (ending with ``done``) from a privileged record
    (``make_privileged``): what ``policies.oracle.OraclePlanner`` is handed."""
    episode = episode_from_privileged(privileged)
    world = world_from_privileged(privileged, episode.scene)
    return get_task(episode.family).oracle_plan(episode, world)


__all__ = ["TASKS", "get_task", "oracle_plan", "Episode", "Task", "make_privileged", "episode_from_privileged", "world_from_privileged"]
