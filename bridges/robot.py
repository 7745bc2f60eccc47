"""``DryRobot``: a robot that moves nothing, for bringing up a server and network first.

It implements ``embodied.core.protocols.Robot`` (the daemon's protocol, with its threading
contract): a blank camera and a still state, each step "takes" ``step_s`` seconds. The
simulated robot lives beside the simulator (``envs.sim_robot``), a robot made of an Arm,
cameras and perception in ``embodied.commands.robots``.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from embodied.core.observation import STATE_SIZE, Observation
from embodied.core.plan import PlanStep
from embodied.core.protocols import StepOutcome


class DryRobot:
    """Moves nothing. ``steps`` records what it was asked to execute (and when)."""

    name = "dry"
    max_history = 64  # steps sent as the observation's history (the protocol takes at most 512)

    def __init__(self, cameras: dict | None = None, instruction: str = "put red cube on blue cube", step_s: float = 0.2):
        self.cameras = {k: tuple(v) for k, v in (cameras or {"front": (224, 224)}).items()}
        self.instruction, self.step_s = instruction, float(step_s)
        self.steps: list[tuple[float, str]] = []
        self.history: list[str] = []
        self._stop = threading.Event()
        self._seq = 0

    def observe(self) -> Observation:
        self._seq += 1
        frames = {k: np.zeros((h, w, 3), np.uint8) for k, (h, w) in self.cameras.items()}
        return Observation(frames, np.zeros(STATE_SIZE, np.float32), self.instruction, list(self.history),
                           timestamp=time.time(), seq=self._seq)

    def execute(self, step: PlanStep) -> StepOutcome:
        self._stop.clear()
        self.steps.append((time.time(), step.text))
        if self._stop.wait(self.step_s):
            return StepOutcome(False, "halted", halted=True)
        self.history.append(step.text)
        del self.history[:-self.max_history]  # a dry run with episodes=null never resets: keep the last steps only
        return StepOutcome(True, "dry run")

    def hold(self) -> None:
        self._stop.set()

    def reset(self) -> dict:
        self.history = []
        return {"robot": "dry"}

    def close(self) -> None:
        self._stop.set()
