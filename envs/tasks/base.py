"""The Task contract: sample a scene from a seed, write the instruction, know the oracle
plan, and check success with an exact predicate (after objects settle).

Tasks are independent of the simulator: they read and write ``envs.spec`` data only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from embodied.plan import PlanStep
from envs.spec import SceneSpec, WorldState


@dataclass
class Episode:
    family: str
    level: str  # "L1".."L4"
    split: str  # "train" or "test"
    seed: int
    scene: SceneSpec
    instruction: str
    goal: dict[str, Any] = field(default_factory=dict)  # JSON-able goal parameters
    max_steps: int = 10


class Task(ABC):
    """One task family. Subclasses set ``family`` and implement the three methods."""

    family: str = ""
    # True when the plan depends on what is on the table, not only on the instruction text.
    scene_dependent: bool = False

    @abstractmethod
    def sample(self, seed: int, level: str = "L1", split: str = "test") -> Episode:
        """A deterministic episode for (seed, level, split)."""

    @abstractmethod
    def oracle_plan(self, episode: Episode, world: WorldState) -> list[PlanStep]:
        """The remaining plan from the current world state, ending with ``done``."""

    @abstractmethod
    def success(self, episode: Episode, world: WorldState) -> bool:
        """Exact success predicate on a settled world state."""
