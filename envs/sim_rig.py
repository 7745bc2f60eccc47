"""A simulated rig for the composed robot (``embodied daemon robot=arm``): the Panda as a bare
``Arm`` in a task's scene, and the simulator's cameras, so that the real-robot path (Arm +
cameras + calibration + perception + skill controller) runs end to end in simulation.

    embodied daemon robot=arm arm=envs.sim_rig:panda +arm_args.task=stack \\
        "cameras={front: sim:front, side: sim:side}" calibration=sim
"""

from __future__ import annotations

from dataclasses import replace

from envs.cameras import SPECS, SimCamera, calibration
from envs.panda import PandaArm
from envs.sim import TabletopSim
from envs.tasks import get_task


def panda(task: str = "stack", level: str = "L1", seed: int = 0, split: str = "test") -> PandaArm:
    """The Panda of a fresh simulation holding the scene of ``task`` (episode ``seed``).

    The returned arm carries ``sim`` (its simulation) and ``instruction`` (the episode's), which
    a real arm does not have; nothing else of the task reaches the robot.
    """
    episode = get_task(task).sample(int(seed), level, split)
    sim = TabletopSim()
    sim.load(episode.scene)
    arm = sim.arm
    arm.instruction = episode.instruction
    arm.episode = episode
    return arm


def camera(arm: PandaArm, name: str, size: int | None = None, as_name: str | None = None) -> SimCamera:
    """A simulated camera (``envs.cameras.SPECS[name]``, square ``size`` if given) looking at ``arm``'s
    simulation, called ``as_name`` (default ``name``)."""
    spec = SPECS[name] if size is None else SPECS[name].resized(size)
    return SimCamera(arm.sim, replace(spec, name=as_name or name))


def exact_calibration(name: str, size: int | None = None):
    spec = SPECS[name] if size is None else SPECS[name].resized(size)
    return calibration(spec)
