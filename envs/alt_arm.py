"""A second, independent Panda simulation for testing the skill controller off its tuning.

The skill controller was tuned on ``envs.panda.PandaArm`` in ``envs.sim.TabletopSim`` (240 Hz,
IK + joint position control, 0.08 kg objects, finger friction 1.5). This module is another
world built to differ in every place that matters to a grasp:

- its own ``BulletClient`` and world (``AltWorld``): 1 kHz physics, more solver iterations,
  the stock ``pybullet_data`` Panda, a table and objects built here, objects **1-2 kg** (drawn
  per object from a seeded generator) with **lower friction** (0.5; finger pads 1.0; Bullet
  multiplies the two, so a pinch holds with 0.5 against the objects' 1.0 x 1.5 in ``TabletopSim``);
- the arm (``VelocityPanda``) is a **resolved-rate Cartesian velocity controller**: every
  4 ms it tracks a straight-line trajectory with a trapezoidal speed profile
  (0.4 m/s, 2 m/s^2) through the damped least-squares inverse of the geometric Jacobian, with
  a null-space pull to a rest posture, and sends joint *velocities* (no IK, no position
  control). When the arm is blocked (the hand or what it holds pushing on something), the
  trajectory waits for it, and after 0.25 s without progress ``move_to`` gives up and returns
  False short of its target, as a real arm with a collision reflex does;
- the gripper closes at 8 cm/s per finger with a 70 N force limit (the real Panda's
  continuous grasp force) in velocity control, fingers coupled by a gear constraint like the
  real gripper's rack; ``close_gripper`` is True when the fingers stop more than 4 mm apart.
  ``coupled_fingers=False`` drives the two fingers independently instead (as many pybullet
  Panda setups do): both push at their force limit, so nothing holds the object along the
  closing direction and it floats there under the hand's accelerations;
- ``AltWorld.locate`` can add pose noise (``locate_noise``: metres and radians, seeded) and
  can hide an object under the hand (``occlude=True``: it raises ``UnknownObjectError`` as
  ``embodied.core.scene.PerceivedScene.locate`` does for an object the camera cannot see).

It implements ``embodied.core.protocols.Arm`` and shares no code with ``envs.panda`` or
``envs.sim``. ``placement_probe`` runs single ``put X on Y`` steps through it
(``benchmarks/placement_probe.py`` compares controllers with it).

Why one ~440-line module: it is a test fixture meant to be read whole, a world that shares no
code with the one it checks; splitting it would invite sharing.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from embodied.core.errors import ConfigError, UnknownObjectError
from embodied.core.protocols import ArmState, Pose
from embodied.core.vocab import SHAPE_SIDES
from embodied.core.world import CONTAINER_FLOOR, TABLE_Z, SceneSpec
from envs.bullet import connect, pybullet, pybullet_data

log = logging.getLogger(__name__)

PHYSICS_HZ = 1000
CONTROL_EVERY = 4  # physics steps per control tick (250 Hz)
ARM = tuple(range(7))
FINGERS = (9, 10)
GRASP_LINK = 11
HOME = (0.0, -0.9, 0.0, -2.4, 0.0, 1.55, 0.785)
REST = (0.0, -0.35, 0.0, -2.3, 0.0, 2.0, 0.785)  # null-space target while moving
TORQUE_LIMITS = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
JOINT_SPEED = (2.1, 2.1, 2.1, 2.1, 2.6, 2.6, 2.6)  # rad/s, the Panda's limits
V_MAX, A_MAX = 0.4, 2.0  # Cartesian speed (m/s) and acceleration (m/s^2) of a straight move
KP_POS, KP_ROT, K_NULL = 8.0, 5.0, 1.0  # 1/s
DAMPING = 0.02  # damped least squares
FINGER_SPEED = 0.08  # m/s per finger
GRIP_FORCE = 70.0  # N per finger
OPEN_WIDTH = 0.08
REACHED = 0.004  # m: move_to is True within this distance


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def _rot_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) that turns ``current`` into ``target`` (world frame)."""
    inv = np.array([-current[0], -current[1], -current[2], current[3]])
    d = _quat_mul(target, inv)
    if d[3] < 0:
        d = -d
    s = float(np.linalg.norm(d[:3]))
    if s < 1e-9:
        return np.zeros(3)
    return d[:3] / s * 2.0 * math.atan2(s, d[3])


def _nlerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    if float(np.dot(q0, q1)) < 0:
        q1 = -q1
    q = (1 - t) * q0 + t * q1
    return q / np.linalg.norm(q)


def _profile(dist: float, t: float, v_max: float = V_MAX, a_max: float = A_MAX) -> tuple[float, float]:
    """Distance covered and speed at time ``t`` of a trapezoidal profile over ``dist``."""
    ta = v_max / a_max  # time to full speed
    if dist < v_max * ta:  # a triangle: it never reaches full speed
        ta = math.sqrt(dist / a_max)
        top, tc = a_max * ta, 0.0
    else:
        top, tc = v_max, (dist - v_max * ta) / v_max
    if t <= 0:
        return 0.0, 0.0
    if t < ta:
        return 0.5 * a_max * t * t, a_max * t
    if t < ta + tc:
        return 0.5 * top * ta + top * (t - ta), top
    if t < 2 * ta + tc:
        r = 2 * ta + tc - t
        return dist - 0.5 * a_max * r * r, a_max * r
    return dist, 0.0


class VelocityPanda:
    """A Panda driven by resolved-rate Cartesian velocity control (see the module docstring)."""

    def __init__(self, world: "AltWorld"):
        self.world = world
        self.c = world.client
        self.robot = world.robot
        self._finger_cmd = FINGER_SPEED  # open
        self.v_max, self.a_max = V_MAX, A_MAX
        self.grip_force = GRIP_FORCE
        self.every = max(1, round(CONTROL_EVERY * world.hz / PHYSICS_HZ))
        self.reset()

    def reset(self) -> None:
        for j, q in zip(ARM, HOME):
            self.c.resetJointState(self.robot, j, q)
        for j in FINGERS:
            self.c.resetJointState(self.robot, j, OPEN_WIDTH / 2)
        self._command(np.zeros(7))
        self._fingers(FINGER_SPEED)

    # --- low level ----------------------------------------------------------------------
    def _q(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.c.getJointStates(self.robot, ARM)
        return np.array([x[0] for x in s]), np.array([x[1] for x in s])

    def _ee(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.c.getLinkState(self.robot, GRASP_LINK, computeForwardKinematics=True)
        return np.asarray(s[4]), np.asarray(s[5])

    def _width(self) -> float:
        return float(sum(s[0] for s in self.c.getJointStates(self.robot, FINGERS)))

    def _command(self, dq: np.ndarray) -> None:
        self.c.setJointMotorControlArray(self.robot, ARM, pybullet.VELOCITY_CONTROL, targetVelocities=dq.tolist(),
                                         forces=list(TORQUE_LIMITS))

    def _fingers(self, speed: float) -> None:
        self._finger_cmd = speed
        self.c.setJointMotorControlArray(self.robot, FINGERS, pybullet.VELOCITY_CONTROL, targetVelocities=[speed, speed],
                                         forces=[self.grip_force, self.grip_force])

    def _jacobian(self, q: np.ndarray) -> np.ndarray:
        fingers = [s[0] for s in self.c.getJointStates(self.robot, FINGERS)]
        full = list(q) + fingers
        lin, ang = self.c.calculateJacobian(self.robot, GRASP_LINK, [0, 0, 0], full, [0.0] * 9, [0.0] * 9)
        return np.vstack([np.asarray(lin)[:, :7], np.asarray(ang)[:, :7]])  # (6, 7)

    def _tick(self, p_des: np.ndarray, v_des: np.ndarray, q_des: np.ndarray) -> tuple[float, float]:
        """One control tick: command joint velocities toward the desired pose, step 4 ms of physics.
        Returns the position and orientation errors before the step."""
        q, _ = self._q()
        p, o = self._ee()
        e_p = p_des - p
        e_o = _rot_error(q_des, o)
        twist = np.concatenate([v_des + KP_POS * e_p, KP_ROT * e_o])
        J = self._jacobian(q)
        Jt = J.T
        pinv = Jt @ np.linalg.inv(J @ Jt + DAMPING ** 2 * np.eye(6))
        null = (np.eye(7) - pinv @ J) @ (K_NULL * (np.asarray(REST) - q))
        dq = pinv @ twist + null
        scale = float(np.max(np.abs(dq) / np.asarray(JOINT_SPEED)))
        if scale > 1.0:
            dq = dq / scale
        self._command(dq)
        self.world.step(self.every)
        return float(np.linalg.norm(e_p)), float(np.linalg.norm(e_o))

    # --- Arm protocol ---------------------------------------------------------------------
    def move_to(self, pose: Pose, max_seconds: float = 3.0) -> bool:
        """Straight line to ``pose``; True within 4 mm. Blocked for 0.25 s: False where it stopped."""
        target = np.asarray(pose.position, dtype=np.float64)
        q1 = np.asarray(pose.orientation, dtype=np.float64)
        q1 = q1 / np.linalg.norm(q1)
        p0, q0 = self._ee()
        dist = float(np.linalg.norm(target - p0))
        direction = (target - p0) / dist if dist > 1e-9 else np.zeros(3)
        dt = self.every / self.world.hz
        s_time = 0.0  # trajectory clock: it waits while the arm is held back (tracking error over 1 cm)
        total = 2 * self.v_max / self.a_max + dist / self.v_max
        best, since_best = float("inf"), 0
        for _ in range(int(max_seconds / dt)):
            s, v = _profile(dist, s_time, self.v_max, self.a_max)
            frac = s / dist if dist > 1e-9 else 1.0
            e_p, e_o = self._tick(p0 + direction * s, direction * v, _nlerp(q0, q1, min(1.0, frac)))
            if e_p < 0.01:
                s_time += dt
            err = float(np.linalg.norm(self._ee()[0] - target))
            if s_time >= total and err < 0.0015 and e_o < 0.02:
                break
            if err < best - 5e-4:
                best, since_best = err, 0
            else:
                since_best += 1
            if since_best * dt > 0.25 and (s_time >= total or e_p >= 0.01):
                break  # blocked (or settled as close as it gets)
        self.hold()
        return bool(np.linalg.norm(self._ee()[0] - target) < REACHED)

    def open_gripper(self) -> bool:
        self._fingers(FINGER_SPEED)
        for _ in range(int(0.8 * self.world.hz / self.every)):  # fully closed to open: 0.5 s
            self.world.step(self.every)
            if self._width() > OPEN_WIDTH - 0.002:
                break
        return self._width() > OPEN_WIDTH - 0.01

    def close_gripper(self) -> bool:
        """Close with 70 N per finger until the fingers stop; True when they stop apart (an object)."""
        self._fingers(-FINGER_SPEED)
        last = self._width()
        for _ in range(150):
            self.world.step(self.every * 2)
            w = self._width()
            if abs(w - last) < 1e-4:
                break
            last = w
        return self._width() > 0.004

    def state(self) -> ArmState:
        q, _ = self._q()
        p, o = self._ee()
        return ArmState(joint_positions=q, gripper_width=self._width(), ee_pose=Pose(p, o))

    def hold(self) -> None:
        """Zero joint velocities (a brake at the torque limits); the gripper keeps squeezing or stays open."""
        self._command(np.zeros(7))
        self._fingers(self._finger_cmd)


class AltWorld:
    """A tabletop with the stock Panda, heavy low-friction objects and containers; see the module docstring.

    ``mass`` (kg) is a (low, high) range drawn per object from ``seed``; ``friction`` the
    objects' lateral friction; ``finger_friction`` the finger pads'; ``locate_noise`` (metres,
    radians) and ``occlude``: what the camera behind ``locate`` gets wrong; ``coupled_fingers``:
    the real gripper's rack (True) or two independent finger drives; ``hz`` and
    ``solver_iterations``: the physics.
    """

    def __init__(self, mass: tuple[float, float] = (1.0, 2.0), friction: float = 0.5, finger_friction: float = 1.0,
                 seed: int = 0, locate_noise: tuple[float, float] = (0.0, 0.0), occlude: bool = False,
                 coupled_fingers: bool = True, hz: int = PHYSICS_HZ, solver_iterations: int = 100):
        if not (0 < mass[0] <= mass[1]) or friction <= 0 or finger_friction <= 0:
            raise ConfigError(f"AltWorld needs 0 < mass low <= high and positive frictions, got {mass}, {friction}, {finger_friction}")
        self.mass, self.friction, self.finger_friction = mass, friction, finger_friction
        self.locate_noise, self.occlude = locate_noise, occlude
        self.rng = np.random.default_rng(seed)
        self.client = connect()
        c = self.client
        c.setGravity(0, 0, -9.81)
        self.hz = hz
        c.setPhysicsEngineParameter(fixedTimeStep=1.0 / hz, numSolverIterations=solver_iterations, numSubSteps=0)
        half = (0.6, 0.8, 0.03)
        table = c.createMultiBody(0, c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half),
                                  basePosition=[0.4, 0.0, TABLE_Z - half[2]])
        c.changeDynamics(table, -1, lateralFriction=0.6)
        self.robot = c.loadURDF(os.path.join(pybullet_data.getDataPath(), "franka_panda", "panda.urdf"), [0, 0, TABLE_Z],
                                useFixedBase=True)
        for j in FINGERS:
            c.changeDynamics(self.robot, j, lateralFriction=finger_friction)
        self.coupled_fingers = coupled_fingers
        if coupled_fingers:  # the real gripper's rack: the fingers move as one
            gear = c.createConstraint(self.robot, FINGERS[0], self.robot, FINGERS[1], pybullet.JOINT_GEAR, [1, 0, 0], [0, 0, 0], [0, 0, 0])
            c.changeConstraint(gear, gearRatio=-1, erp=0.2, maxForce=200)
        self.arm = VelocityPanda(self)
        self.scene: SceneSpec | None = None
        self.bodies: dict[str, int] = {}
        self.masses: dict[str, float] = {}
        self.steps = 0

    # --- scene ------------------------------------------------------------------------------
    def load(self, scene: SceneSpec) -> None:
        """Replace the objects and containers with ``scene``'s, arm at home, gripper open; settle."""
        c = self.client
        for b in self.bodies.values():
            c.removeBody(b)
        self.bodies, self.masses, self.scene = {}, {}, scene
        self.arm.reset()
        for cont in scene.containers:
            hx, hy = cont.half_extents
            t, wh = 0.004, cont.wall_height / 2
            boxes = [((hx + 2 * t, hy + 2 * t, CONTAINER_FLOOR / 2), (0, 0, CONTAINER_FLOOR / 2)),
                     ((t, hy + 2 * t, wh), (hx + t, 0, wh)), ((t, hy + 2 * t, wh), (-hx - t, 0, wh)),
                     ((hx, t, wh), (0, hy + t, wh)), ((hx, t, wh), (0, -hy - t, wh))]
            col = c.createCollisionShapeArray([pybullet.GEOM_BOX] * 5, halfExtents=[b[0] for b in boxes],
                                              collisionFramePositions=[b[1] for b in boxes])
            body = c.createMultiBody(0, col, basePosition=[cont.center[0], cont.center[1], TABLE_Z])
            c.changeDynamics(body, -1, lateralFriction=0.6)
            self.bodies[cont.name] = body
        specs = {o.name: o for o in scene.objects}
        z: dict[str, float] = {}

        def centre_z(name: str) -> float:
            if name not in z:
                pl = scene.placements[name]
                if pl.on is None:
                    floor = CONTAINER_FLOOR if any(k.contains_xy(pl.x, pl.y) for k in scene.containers) else 0.0
                    z[name] = TABLE_Z + floor + specs[name].height / 2 + 0.0005
                else:
                    z[name] = centre_z(pl.on) + specs[pl.on].height / 2 + specs[name].height / 2 + 0.0005
            return z[name]

        for o in scene.objects:
            pl = scene.placements[o.name]
            mass = float(self.rng.uniform(*self.mass))
            body = c.createMultiBody(mass, self._shape(o), basePosition=[pl.x, pl.y, centre_z(o.name)],
                                     baseOrientation=c.getQuaternionFromEuler([0, 0, pl.yaw]))
            c.changeDynamics(body, -1, lateralFriction=self.friction, spinningFriction=0.001, restitution=0.0)
            self.bodies[o.name] = body
            self.masses[o.name] = mass
        self.steps = 0
        self.settle()

    def _shape(self, o) -> int:
        c = self.client
        n = SHAPE_SIDES[o.shape]
        if n == 4:
            return c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[o.size / 2, o.size / 2, o.height / 2])
        if n == 0:
            return c.createCollisionShape(pybullet.GEOM_CYLINDER, radius=o.size / 2, height=o.height)
        r, h = o.size / 2, o.height / 2
        pts = [(r * math.cos(2 * math.pi * k / n), r * math.sin(2 * math.pi * k / n), s) for k in range(n) for s in (-h, h)]
        return c.createCollisionShape(pybullet.GEOM_MESH, vertices=pts)

    # --- physics ----------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.client.stepSimulation()
        self.steps += n

    def settle(self, max_seconds: float = 2.0) -> None:
        """Hold the arm and step until no object moves faster than 5 mm/s."""
        self.arm.hold()
        ids = [self.bodies[o.name] for o in self.scene.objects] if self.scene else []
        for _ in range(int(max_seconds * self.hz) // 20):
            self.step(20)
            if all(max(map(abs, self.client.getBaseVelocity(b)[0])) < 0.005 for b in ids):
                break

    # --- perception ------------------------------------------------------------------------
    def true_pose(self, name: str) -> tuple[np.ndarray, float]:
        pos, orn = self.client.getBasePositionAndOrientation(self.bodies[name])
        return np.asarray(pos, dtype=np.float64), float(self.client.getEulerFromQuaternion(orn)[2])

    def locate(self, name: str) -> tuple[np.ndarray, float]:
        """The object's centre (3,) and yaw as a camera would report them: with ``locate_noise``
        (x/y in metres, yaw in radians, seeded) and, with ``occlude``, not at all when the hand
        is over it (``UnknownObjectError``)."""
        if name not in self.bodies:
            raise UnknownObjectError(f"alt world has no {name!r}")
        pos, yaw = self.true_pose(name)
        if self.occlude:
            hand = self.arm._ee()[0]
            if np.hypot(*(hand[:2] - pos[:2])) < 0.045 and hand[2] > pos[2] - 0.01:
                raise UnknownObjectError(f"the camera does not see {name!r}: the hand is over it")
        sxy, syaw = self.locate_noise
        if sxy or syaw:
            pos = pos + np.array([*self.rng.normal(0.0, sxy, 2), 0.0])
            yaw = yaw + float(self.rng.normal(0.0, syaw))
        return pos, yaw

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except pybullet.error:
                pass
            self.client = None


# --- the placement probe -----------------------------------------------------------------------
PROBE_SHAPES = ("cube", "cylinder", "triangle", "hexagon", "pentagon")


def probe_scene(k: int, seed: int = 0) -> SceneSpec:
    """Scene ``k`` of the probe: two objects of random shapes, poses and yaws, 12-25 cm apart."""
    from embodied.core.world import ObjectSpec, Placement

    rng = np.random.default_rng([seed, k])
    top = ObjectSpec("red", PROBE_SHAPES[int(rng.integers(len(PROBE_SHAPES)))])
    below = ObjectSpec("blue", "cube" if k % 2 == 0 else PROBE_SHAPES[int(rng.integers(len(PROBE_SHAPES)))])
    while True:
        a = rng.uniform((0.38, -0.22), (0.64, 0.22))
        b = rng.uniform((0.38, -0.22), (0.64, 0.22))
        if 0.12 <= np.hypot(*(a - b)) <= 0.25:
            break
    return SceneSpec([top, below], {top.name: Placement(float(a[0]), float(a[1]), float(rng.uniform(-1, 1))),
                                    below.name: Placement(float(b[0]), float(b[1]), float(rng.uniform(-1, 1)))})


def placement_probe(n: int = 12, seed: int = 0, world: AltWorld | None = None, world_kwargs: dict | None = None,
                    controller=None, **controller_kwargs) -> list[dict]:
    """``n`` single ``put red X on blue Y`` steps through a skill controller on ``VelocityPanda``.

    ``world``: an ``AltWorld`` to use (else one is built from ``world_kwargs`` and ``seed``);
    ``controller``: the controller class (default ``embodied.core.skills.SkillController``; a
    benchmark hands in an older one to compare). Each row: the step, the controller's result,
    the top object's final offset from the lower one's centre (cm), whether it rests on it
    (centred within 0.55 x its size and touching its top face: ``WorldState.is_on``), the two
    masses and the simulated seconds the step took.
    """
    if controller is None:
        from embodied.core.skills import SkillController as controller
    own = world is None
    world = world or AltWorld(seed=seed, **(world_kwargs or {}))
    rows = []
    try:
        for k in range(n):
            scene = probe_scene(k, seed)
            world.load(scene)
            top, below = scene.objects
            ctl = controller(world.arm, world.locate, scene.objects, scene.containers, **controller_kwargs)
            s0 = world.steps
            result = ctl.execute(f"put {top.name} on {below.name}")
            world.settle()
            p, _ = world.true_pose(top.name)
            q, _ = world.true_pose(below.name)
            offset = float(np.hypot(*(p[:2] - q[:2])))
            rests = offset < 0.55 * below.size and abs((p[2] - top.height / 2) - (q[2] + below.height / 2)) < 0.012
            rows.append({"step": f"put {top.name} on {below.name}", "success": bool(result.success), "reason": result.reason,
                         "offset_cm": round(offset * 100, 2), "on": bool(rests),
                         "mass_kg": [round(world.masses[top.name], 2), round(world.masses[below.name], 2)],
                         "sim_s": (world.steps - s0) / world.hz})
            log.info("probe %d: %s", k, rows[-1])
    finally:
        if own:
            world.close()
    return rows
