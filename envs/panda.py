"""The simulated Franka Panda, implementing ``embodied.core.protocols.Arm``.

``move_to`` solves pybullet IK (with rest poses for the null space) along interpolated
Cartesian waypoints and drives the joints with position control, stepping the simulation
until the gripper reaches the pose or time runs out.

Grasping is physical by default: the two fingers are gear-coupled (as on the real Panda, so
the object is centred between them instead of being shoved across by whichever finger
touches first) and friction holds the object. Optional grasp assist (``grasp_assist=True``,
a documented simplification): when ``close_gripper`` ends with *both* fingers touching the
same object, a fixed constraint attaches it to the hand until ``open_gripper``; nothing is
attached when the fingers close on air or on one side of an object. Both settings passed
the same oracle sweeps (320/320 episodes, 8 seeds x 10 families x L1-L4).
"""

from __future__ import annotations

import math

import numpy as np

from embodied.core.protocols import ArmState, Pose
from envs.bullet import pybullet

ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget: between the finger tips
HOME_JOINTS = (0.0, -1.45, 0.0, -2.85, 0.0, 1.45, 0.785)  # folded back, out of the front camera
REST_JOINTS = (0.0, -0.30, 0.0, -2.20, 0.0, 1.95, 0.785)  # IK null-space bias when reaching
MAX_WIDTH = 0.08
ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FINGER_FORCE = 60.0
FINGER_FRICTION = 1.5  # lateral friction of the finger pads
HZ = 240  # physics steps per simulated second
SPEED = 1.0  # m/s along Cartesian paths
WAYPOINT = 0.02  # m between IK waypoints
TURN_WAYPOINT = 0.15  # rad of hand rotation between IK waypoints (a turn in place is interpolated too)


def _slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    a = math.acos(d)
    return (math.sin((1 - t) * a) * q0 + math.sin(t * a) * q1) / math.sin(a)


class PandaArm:
    """The Panda in a ``TabletopSim``. Poses are of the grasp point between the finger tips."""

    def __init__(self, sim, grasp_assist: bool = False, finger_friction: float = FINGER_FRICTION):
        """Attach to ``sim`` (a ``TabletopSim`` whose Panda was just loaded) and go home."""
        self.sim = sim
        self.c = sim.client
        self.robot = sim.robot
        self.grasp_assist = grasp_assist
        self._held: str | None = None
        self._constraint: int | None = None
        info = [self.c.getJointInfo(self.robot, j) for j in range(self.c.getNumJoints(self.robot))]
        movable = [j for j, i in enumerate(info) if i[2] != pybullet.JOINT_FIXED]  # 7 arm + 2 fingers
        self._lower = [info[j][8] for j in movable]
        self._upper = [info[j][9] for j in movable]
        self._ranges = [hi - lo for lo, hi in zip(self._lower, self._upper)]
        self._rest = list(REST_JOINTS) + [0.04, 0.04]
        for j, q in zip(ARM_JOINTS, HOME_JOINTS):
            self.c.resetJointState(self.robot, j, q)
        for j in FINGER_JOINTS:
            self.c.resetJointState(self.robot, j, MAX_WIDTH / 2)
            self.c.changeDynamics(self.robot, j, lateralFriction=finger_friction, spinningFriction=0.01)
        # couple the fingers like the real Panda's: without this, two saturated finger motors
        # are in neutral balance and the first finger to touch shoves the object across
        gear = self.c.createConstraint(self.robot, FINGER_JOINTS[0], self.robot, FINGER_JOINTS[1], pybullet.JOINT_GEAR,
                                       [1, 0, 0], [0, 0, 0], [0, 0, 0])
        self.c.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=100)
        self._finger_target = MAX_WIDTH / 2
        self._drive(list(HOME_JOINTS))
        self._drive_fingers(self._finger_target)

    # --- low level ------------------------------------------------------------------------
    def _joints(self) -> np.ndarray:
        return np.array([s[0] for s in self.c.getJointStates(self.robot, ARM_JOINTS)])  # (7,)

    def _drive(self, q) -> None:
        self.c.setJointMotorControlArray(
            self.robot, ARM_JOINTS, pybullet.POSITION_CONTROL, targetPositions=list(q),
            forces=list(ARM_FORCES), positionGains=[0.3] * 7,
        )

    def _drive_fingers(self, each: float) -> None:
        self._finger_target = each
        self.c.setJointMotorControlArray(
            self.robot, FINGER_JOINTS, pybullet.POSITION_CONTROL, targetPositions=[each, each],
            forces=[FINGER_FORCE, FINGER_FORCE], positionGains=[0.3, 0.3],
        )

    def _ik(self, pos, orn, iterations: int = 50) -> list[float]:
        q = self.c.calculateInverseKinematics(
            self.robot, EE_LINK, list(pos), list(orn),
            lowerLimits=self._lower, upperLimits=self._upper, jointRanges=self._ranges, restPoses=self._rest,
            maxNumIterations=iterations, residualThreshold=1e-4,
        )
        return list(q[:7])

    def _ee(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.c.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True)
        return np.asarray(s[4]), np.asarray(s[5])

    def _width(self) -> float:
        return float(sum(s[0] for s in self.c.getJointStates(self.robot, FINGER_JOINTS)))

    @property
    def held(self) -> str | None:
        """The object in the gripper: attached by the grasp assist, or still pinched by both fingers."""
        if self._held is None or self._constraint is not None:
            return self._held
        return self._held if self._pinched() == self._held else None

    # --- Arm protocol -------------------------------------------------------------------
    def move_to(self, pose: Pose, max_seconds: float = 3.0) -> bool:
        """Move the grasp point to ``pose`` along a straight line; True when within 5 mm.

        If the arm ends far off (IK driven into joint limits by a large wrist turn), it
        returns to the rest posture in joint space and tries the straight line once more.
        """
        if self._line(pose, max_seconds):
            return True
        if np.linalg.norm(self._ee()[0] - np.asarray(pose.position)) < 0.02:
            return False
        self._go_joints(REST_JOINTS, max_seconds)
        return self._line(pose, max_seconds)

    def _go_joints(self, q, max_seconds: float) -> None:
        self._drive(list(q))
        for _ in range(int(max_seconds * HZ) // 8):
            self.sim.step(8)
            if np.max(np.abs(self._joints() - np.asarray(q))) < 0.02:
                break

    def _line(self, pose: Pose, max_seconds: float) -> bool:
        target = np.asarray(pose.position, dtype=np.float64)
        q1 = np.asarray(pose.orientation, dtype=np.float64)
        q1 = q1 / np.linalg.norm(q1)
        p0, q0 = self._ee()
        dist = float(np.linalg.norm(target - p0))
        turn = 2 * math.acos(min(1.0, abs(float(np.dot(q0, q1)))))  # radians the hand turns
        n = max(1, int(math.ceil(dist / WAYPOINT)), int(math.ceil(turn / TURN_WAYPOINT)))
        per = max(1, int(round(WAYPOINT / SPEED * HZ)))
        budget = int(max_seconds * HZ)
        used = 0
        for k in range(1, n + 1):
            t = k / n
            self._drive(self._ik(p0 + t * (target - p0), _slerp(q0, q1, t), iterations=8))
            self.sim.step(per)
            used += per
            if used >= budget:
                break
        self._drive(self._ik(target, q1, iterations=100))
        stalled = 0
        while used < budget:  # let the joints arrive; re-solve IK when they stop short
            self.sim.step(4)
            used += 4
            vel = max(abs(s[1]) for s in self.c.getJointStates(self.robot, ARM_JOINTS))
            err = float(np.linalg.norm(self._ee()[0] - target))
            if err < 0.003 and vel < 0.1:
                break
            stalled = stalled + 1 if vel < 0.05 else 0
            if stalled >= 3:
                if err < 0.005:
                    break
                self._drive(self._ik(target, q1, iterations=100))
                stalled = 0
        return bool(np.linalg.norm(self._ee()[0] - target) < 0.005)

    def open_gripper(self) -> bool:
        """Release (removing the grasp-assist constraint) and open fully; True when open."""
        if self._constraint is not None:
            self.c.removeConstraint(self._constraint)
            self._constraint = None
        self._held = None
        self._drive_fingers(MAX_WIDTH / 2)
        for _ in range(30):
            self.sim.step(4)
            if self._width() > MAX_WIDTH - 0.004:
                return True
        return self._width() > MAX_WIDTH - 0.01

    def close_gripper(self) -> bool:
        """Close until the fingers stop; True when they stopped on an object (not on air)."""
        self._drive_fingers(0.0)
        last = self._width()
        for _ in range(40):
            self.sim.step(4)
            w = self._width()
            if abs(w - last) < 2e-4:
                break
            last = w
        obj = self._pinched()
        if obj is not None and self.grasp_assist and self._constraint is None:
            self._attach(obj)
        if obj is not None:
            self._held = obj
        return obj is not None

    def state(self) -> ArmState:
        pos, orn = self._ee()
        return ArmState(joint_positions=self._joints(), gripper_width=self._width(), ee_pose=Pose(pos, orn))

    def hold(self) -> None:
        """Stop where the arm is; the gripper keeps its state (and what it holds)."""
        self._drive(self._joints())
        self._drive_fingers(self._finger_target)

    # --- grasp assist -------------------------------------------------------------------
    def _pinched(self) -> str | None:
        """The object touched by both fingers, if any."""
        touching = []
        for link in FINGER_JOINTS:  # finger link index == finger joint index
            bodies = {cp[2] for cp in self.c.getContactPoints(bodyA=self.robot, linkIndexA=link)}
            touching.append({self.sim._names.get(b) for b in bodies} - {None})
        both = touching[0] & touching[1]
        objects = [o.name for o in self.sim.scene.objects if o.name in both]
        return objects[0] if objects else None

    def _attach(self, name: str) -> None:
        body = self.sim.bodies[name]
        self.c.changeDynamics(body, -1, activationState=pybullet.ACTIVATION_STATE_WAKE_UP)
        ee_pos, ee_orn = self._ee()
        ob_pos, ob_orn = self.c.getBasePositionAndOrientation(body)
        inv_pos, inv_orn = self.c.invertTransform(ee_pos.tolist(), ee_orn.tolist())
        rel_pos, rel_orn = self.c.multiplyTransforms(inv_pos, inv_orn, ob_pos, ob_orn)
        self._constraint = self.c.createConstraint(
            self.robot, EE_LINK, body, -1, pybullet.JOINT_FIXED, [0, 0, 0],
            parentFramePosition=rel_pos, childFramePosition=[0, 0, 0],
            parentFrameOrientation=rel_orn, childFrameOrientation=[0, 0, 0, 1],
        )
        self.c.changeConstraint(self._constraint, maxForce=300)
