"""The scripted oracle planner: the task's oracle plan, computed from ``observation.privileged``.

It reads nothing else from the observation, so it runs the same in-process and on an
inference server behind the bridge (the privileged record is JSON-able). Simulator only:
a real robot has no privileged record. The task knowledge is handed in
(``OraclePlanner(envs.tasks.oracle_plan)``): this package does not import the simulator.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from embodied.core.errors import ObservationError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep

OraclePlan = Callable[[dict], Sequence[PlanStep]]


class OraclePlanner:
    """``plan(observation)`` -> iterator over the remaining plan's steps (ending with ``done``).

    ``oracle_plan(privileged)`` computes the remaining plan from a privileged record
    (``envs.tasks.oracle_plan``). Raises ``ObservationError`` at once when the observation
    has no privileged record.
    """

    name = "oracle"

    def __init__(self, oracle_plan: OraclePlan):
        self._oracle_plan = oracle_plan

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        priv = getattr(observation, "privileged", None)
        if priv is None:
            raise ObservationError(
                "the oracle planner needs observation.privileged (ground-truth goal and poses); "
                "create the env with privileged=True, e.g. TabletopEnv(task, privileged=True)"
            )
        return iter(self._oracle_plan(priv))

    def reset(self) -> None:
        """Stateless: nothing to forget between episodes."""
