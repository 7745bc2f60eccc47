"""``SimRobot``: the simulated Panda of a ``TabletopEnv`` as a ``Robot`` the control daemon drives.

Episodes use seeds ``seed, seed+1, ...``. ``realtime`` paces physics to the wall clock (as
a real arm moves), so watchdog and emergency-stop timings mean what they would on hardware.
``hold`` interrupts a step within one physics step. The threading contract is
``embodied.core.protocols.Robot``'s.
"""

from __future__ import annotations

import threading
import time

from embodied.core.observation import Observation
from embodied.core.plan import PlanStep
from embodied.core.protocols import StepOutcome
from envs.tabletop_env import TabletopEnv


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
                 depth: bool = False, wrist_camera: bool = False, perception=None):
        """``perception``: None (ground truth) or a ``Perception`` object (the env's cameras then
        give everything the robot knows of the table; see ``envs.tabletop_env``)."""
        self.env = TabletopEnv(task, level=level, split=split, image_size=int(image_size), depth=depth,
                               wrist_camera=wrist_camera, privileged=privileged, perception=perception)
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
        """Render (and, with camera perception, perceive) the world as it is; the timestamp is the capture
        time. Runs on the daemon's observer thread, so it holds the simulation like ``execute`` does."""
        with self._busy:
            t = time.time()  # the world is still from here on: this is when the frames were taken
            obs = self.env.observation()
        obs.timestamp = t
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
