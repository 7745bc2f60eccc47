"""The interfaces every component codes against: Planner, Arm, Robot (and their records).

- ``Planner``: streams plan steps for an observation (the oracle, the model, the remote planner).
- ``Arm``: the few calls a skill needs (the pybullet Panda, or a real arm behind the same calls).
- ``Robot``: what the control daemon drives: observe, execute a step, hold (a robot composed
  of an Arm, cameras, perception and the skill controller, the simulator, or a dry run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from embodied.core.observation import Observation
from embodied.core.plan import PlanStep

# Planners that read Observation.privileged (simulator ground truth); every other planner is
# handed observations with it removed, and a client forwards it only to these.
PRIVILEGED_PLANNERS: tuple[str, ...] = ("oracle",)


@runtime_checkable
class Planner(Protocol):
    """Streams the remaining plan for an observation; ``reset()`` between episodes.

    Closed loop: the caller executes the first step, observes again and calls ``plan``
    again. Implementations: the oracle, the model planner, the remote (bridge) planner.
    """

    name: str

    def plan(self, observation: Observation) -> Iterator[PlanStep]: ...

    def reset(self) -> None: ...


@dataclass
class Pose:
    """A gripper pose in the robot base frame."""

    position: np.ndarray  # (3,) metres
    orientation: np.ndarray  # (4,) quaternion x, y, z, w


@dataclass
class ArmState:
    joint_positions: np.ndarray  # (7,)
    gripper_width: float  # metres
    ee_pose: Pose


@runtime_checkable
class Arm(Protocol):
    """The few calls a skill needs. The pybullet Panda implements it; so does a real arm.

    ``move_to`` blocks until the gripper reaches the pose (or gives up) and returns
    whether it got there; ``hold`` stops all motion where the arm is (safe hold).
    """

    def move_to(self, pose: Pose, max_seconds: float = 3.0) -> bool: ...

    def open_gripper(self) -> bool: ...

    def close_gripper(self) -> bool: ...

    def state(self) -> ArmState: ...

    def hold(self) -> None: ...


@dataclass
class StepOutcome:
    """What a robot reports after executing one plan step."""

    success: bool
    reason: str = ""
    halted: bool = False  # stopped by hold() before it finished
    episode_over: bool = False  # the task is finished (success or not); the daemon starts the next episode


@runtime_checkable
class Robot(Protocol):
    """What the control daemon drives.

    Threading contract: the daemon calls ``execute`` on its executor thread and everything
    else on its control thread. ``hold`` may be called while ``execute`` is running: it must
    stop all motion at once (the arm stays where it is, the gripper keeps its state), make
    ``execute`` return with ``halted=True``, and return only once the arm is still.
    ``observe`` is only called while no step executes.
    """

    name: str

    def observe(self) -> Observation: ...  # timestamp = capture time (time.time())

    def execute(self, step: PlanStep) -> StepOutcome: ...

    def hold(self) -> None: ...

    def reset(self) -> dict: ...  # start a new episode; returns a JSON-able description

    def close(self) -> None: ...
