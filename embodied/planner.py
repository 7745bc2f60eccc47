"""The Planner and Arm interfaces every component codes against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from embodied.observation import Observation
from embodied.plan import PlanStep


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
