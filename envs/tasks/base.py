"""The Task contract: sample a scene from a seed, write the instruction, know the oracle
plan, and check success with an exact predicate (after objects settle).

Tasks are independent of the simulator: they read and write ``embodied.core.world`` data only.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from embodied.core.errors import ConfigError
from embodied.core.plan import PlanStep
from embodied.core.world import SceneSpec, WorldState


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

    def to_dict(self) -> dict:
        """JSON-able form; ``Episode.from_dict`` inverts it."""
        return {"family": self.family, "level": self.level, "split": self.split, "seed": self.seed,
                "scene": self.scene.to_dict(), "instruction": self.instruction, "goal": self.goal,
                "max_steps": self.max_steps}

    @classmethod
    def from_dict(cls, d: dict) -> "Episode":
        missing = [k for k in ("family", "level", "split", "seed", "scene", "instruction", "goal") if k not in d]
        if missing:
            raise ConfigError(f"episode dict is missing {', '.join(missing)}; build it with Episode.to_dict()")
        return cls(str(d["family"]), str(d["level"]), str(d["split"]), int(d["seed"]), SceneSpec.from_dict(d["scene"]),
                   str(d["instruction"]), dict(d["goal"]), int(d.get("max_steps", 10)))


def renders(template: str, text: str) -> bool:
    """Whether ``text`` could be ``template`` with its {fields} filled in."""
    pattern = re.sub(r"\\\{[a-z0-9_]+\\\}", ".+?", re.escape(template))
    return re.fullmatch(pattern, text) is not None


class Task(ABC):
    """One task family. Subclasses set ``family`` and implement the three methods."""

    family: str = ""
    # True when the plan depends on what is on the table, not only on the instruction text.
    scene_dependent: bool = False
    # Instruction templates ("{obj}"-style fields): training ones, held-out ones (L2 test)
    # and the L4 variant's (L4 test; empty = the training ones). ``l4_variant`` says in words
    # which composition L4 holds out.
    phrasings: tuple[str, ...] = ()
    heldout_phrasings: tuple[str, ...] = ()
    l4_phrasings: tuple[str, ...] = ()
    l4_variant: str = ""

    def heldout_templates(self) -> tuple[str, ...]:
        """Templates never used by a train split."""
        return self.heldout_phrasings + self.l4_phrasings

    def is_heldout_phrasing(self, text: str) -> bool:
        """``text`` (a template or a rendered instruction) is never used in training for this family."""
        return any(t == text or renders(t, text) for t in self.heldout_templates())

    def failure(self, episode: Episode, world: WorldState) -> str | None:
        """Why the episode has failed for good (an object off the table), or None."""
        gone = world.off_table()
        return f"off the table or out of the workspace: {', '.join(gone)}" if gone else None

    @abstractmethod
    def sample(self, seed: int, level: str = "L1", split: str = "test") -> Episode:
        """A deterministic episode for (seed, level, split)."""

    @abstractmethod
    def oracle_plan(self, episode: Episode, world: WorldState) -> list[PlanStep]:
        """The remaining plan from the current world state, ending with ``done``."""

    @abstractmethod
    def success(self, episode: Episode, world: WorldState) -> bool:
        """Exact success predicate on a settled world state."""
