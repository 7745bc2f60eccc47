"""The scripted oracle planner: the task's oracle plan, computed from ``observation.privileged``.

It reads nothing else from the observation, so it runs the same in-process and on an
inference server behind the bridge (the privileged record is JSON-able). Simulator only:
a real robot has no privileged record.
"""

from __future__ import annotations

from typing import Iterator

from embodied.errors import ObservationError
from embodied.observation import Observation
from embodied.plan import PlanStep


class OraclePlanner:
    """``plan(observation)`` -> iterator over the remaining plan's steps (ending with ``done``).

    Raises ``ObservationError`` at once when the observation has no privileged record.
    """

    name = "oracle"

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        priv = getattr(observation, "privileged", None)
        if priv is None:
            raise ObservationError(
                "the oracle planner needs observation.privileged (ground-truth goal and poses); "
                "create the env with privileged=True, e.g. TabletopEnv(task, privileged=True)"
            )
        from envs.tasks import episode_from_privileged, get_task, world_from_privileged

        episode = episode_from_privileged(priv)
        world = world_from_privileged(priv, episode.scene)
        return iter(get_task(episode.family).oracle_plan(episode, world))

    def reset(self) -> None:
        """Stateless: nothing to forget between episodes."""
