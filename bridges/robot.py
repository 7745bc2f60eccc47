"""The robot the control daemon drives: cameras + state, execute a step, hold.

A real robot implements ``Robot`` (see docs/daemon.md). Two implementations ship:
``SimRobot`` (the pybullet Panda in a ``TabletopEnv``, imported only when used) and
``DryRobot`` (moves nothing: a blank camera and a still state, each step "takes"
``step_s`` seconds; for bringing up a server and network before the arm is connected).

Threading contract: the daemon calls ``execute`` on its executor thread and everything
else on its control thread. ``hold`` may be called while ``execute`` is running: it must
stop all motion at once (the arm stays where it is, the gripper keeps its state), make
``execute`` return with ``halted=True``, and return only once the arm is still.
``observe`` is only called while no step executes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from embodied.errors import ConfigError
from embodied.observation import STATE_SIZE, Observation
from embodied.plan import PlanStep


@dataclass
class StepOutcome:
    success: bool
    reason: str = ""
    halted: bool = False  # stopped by hold() before it finished
    episode_over: bool = False  # the task is finished (success or not); the daemon starts the next episode


@runtime_checkable
class Robot(Protocol):
    name: str

    def observe(self) -> Observation: ...  # timestamp = capture time (time.time())

    def execute(self, step: PlanStep) -> StepOutcome: ...

    def hold(self) -> None: ...

    def reset(self) -> dict: ...  # start a new episode; returns a JSON-able description

    def close(self) -> None: ...


class DryRobot:
    """Moves nothing. ``steps`` records what it was asked to execute (and when)."""

    name = "dry"

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
        return StepOutcome(True, "dry run")

    def hold(self) -> None:
        self._stop.set()

    def reset(self) -> dict:
        self.history = []
        return {"robot": "dry"}

    def close(self) -> None:
        self._stop.set()


class _Halted(BaseException):
    """Raised inside the simulator's stepping to unwind a step that ``hold`` interrupted."""


class SimRobot:
    """The simulated Panda of ``envs.tabletop_env.TabletopEnv``; episodes use seeds ``seed, seed+1, ...``.

    ``realtime`` paces physics to the wall clock (as a real arm moves), so watchdog and
    emergency-stop timings mean what they would on hardware. ``hold`` interrupts a step
    within one physics step: every ``TabletopSim.step`` call checks for it.
    """

    name = "sim"

    def __init__(self, task: str = "stack", level: str = "L1", split: str = "test", seed: int = 0,
                 realtime: bool = True, image_size: int = 128, privileged: bool = True,
                 depth: bool = False, wrist_camera: bool = False):
        from envs.tabletop_env import TabletopEnv  # noqa: PLC0415 - pybullet only when a sim is wanted

        self.env = TabletopEnv(task, level=level, split=split, image_size=int(image_size), depth=depth,
                               wrist_camera=wrist_camera, privileged=privileged)
        self.seed, self.realtime = int(seed), bool(realtime)
        self._episode = -1
        self._last_success = False
        self._stop = threading.Event()
        self._busy = threading.Lock()
        self._clock: tuple[float, int] | None = None
        sim = self.env.sim
        self._raw_step = sim.step
        sim.step = self._guarded_step  # instance attribute: every physics step now checks for hold()

    def _guarded_step(self, n: int = 1) -> None:
        if self._stop.is_set():
            raise _Halted()
        self._raw_step(n)
        if self.realtime and self._clock is not None:
            t0, s0 = self._clock
            ahead = (self.env.sim.steps - s0) / 240.0 - (time.perf_counter() - t0)  # sim runs at 240 Hz
            if ahead > 0:
                time.sleep(ahead)

    def reset(self) -> dict:
        self._episode += 1
        seed = self.seed + self._episode
        self.env.reset(seed=seed)
        self._last_success = False
        ep = self.env.episode
        return {"seed": seed, "task": ep.family, "level": ep.level, "instruction": ep.instruction}

    def observe(self) -> Observation:
        obs = self.env.observation()
        obs.timestamp = time.time()
        return obs

    def execute(self, step: PlanStep) -> StepOutcome:
        with self._busy:
            self._stop.clear()
            self._clock = (time.perf_counter(), self.env.sim.steps)
            try:
                _, _, terminated, truncated, info = self.env.step(step.text)
            except _Halted:
                return StepOutcome(False, "halted", halted=True)
            finally:
                self._clock = None
            self._last_success = bool(info.get("success"))
            reason = info.get("error") or info.get("failure") or info.get("skill_reason") or ""
            ok = bool(info.get("skill_success")) and not info.get("error")
            return StepOutcome(ok, str(reason), episode_over=bool(terminated or truncated))

    def success(self) -> bool:
        """The task's success predicate on the current (settled) world."""
        with self._busy:
            env = self.env
            return bool(env.task.success(env.episode, env.world_state()))

    def hold(self) -> None:
        self._stop.set()
        with self._busy:  # an executing step unwinds within one physics step
            self.env.sim.arm.hold()
            self._stop.clear()

    def close(self) -> None:
        self._stop.set()
        with self._busy:
            self.env.close()


def make_robot(cfg) -> Robot:
    """``robot=sim`` | ``dry`` | ``module:callable`` (called with the ``robot_args`` mapping)."""
    kind = cfg.get("robot", "sim")
    from bridges.config import section  # noqa: PLC0415

    if kind == "sim":
        return SimRobot(**section(cfg, "sim"))
    if kind == "dry":
        return DryRobot(**section(cfg, "dry"))
    if isinstance(kind, str) and ":" in kind:
        import importlib  # noqa: PLC0415

        module, _, attr = kind.partition(":")
        return getattr(importlib.import_module(module), attr)(**section(cfg, "robot_args"))
    raise ConfigError(f"unknown robot {kind!r}; use sim, dry or module:callable (your hardware driver)")
