"""Baseline planners for comparison in evaluations."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from embodied.core.observation import Observation
from embodied.core.plan import DONE, PlanStep, parse_step, valid_steps


class RandomPlanner:
    """Picks a uniformly random grammatical step over the perceived objects; says ``done``
    after a random number of steps. The floor any learned planner must beat."""

    name = "random"

    def __init__(self, seed: int = 0, max_steps: int = 4):
        self._seed = seed
        self._max_steps = max_steps
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self._seed)
        self._budget = int(self._rng.integers(1, self._max_steps + 1))

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        names = observation.detections
        containers = [n for n in names if n == "tray" or n.endswith(" bin")]
        objects = [n for n in names if n not in containers]
        if len(observation.history) >= self._budget or not objects:
            yield DONE
            return
        steps = [s for s in valid_steps(objects, containers) if s != "done"]
        yield parse_step(steps[int(self._rng.integers(len(steps)))])
