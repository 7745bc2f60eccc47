"""The simulated tabletop: pybullet world with a Franka Panda, a table, objects and containers.

Frame: robot base at the origin, table top at z = 0, +x away from the robot, +y to the
robot's left. Each ``TabletopSim`` owns its own ``BulletClient`` in DIRECT mode (never the
global client) and renders with the CPU TinyRenderer, only when asked for an image.

Speed notes: the Panda is loaded with its (small) collision meshes as visual meshes —
the stock visual meshes are ~10 MB and make each 128x128 render ~20x slower — and the
world is rebuilt from scratch (``resetSimulation``) for every scene, which takes a few
tens of milliseconds and makes a scene's physics independent of what came before it
(same scene -> same frames).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from embodied.core.errors import ConfigError
from embodied.core.vocab import COLOUR_RGBA, SHAPE_SIDES
from embodied.core.world import CONTAINER_FLOOR, TABLE_Z, ContainerSpec, ObjectSpec, SceneSpec, WorldState
from envs.bullet import connect, pybullet, pybullet_data
from envs.cameras import DEFAULT_LIGHTING
from envs.panda import FINGER_FRICTION, HZ, PandaArm
from envs.physics import PhysicsVariation, physics_variation

TIME_STEP = 1.0 / HZ
TABLE_RGBA = (0.82, 0.78, 0.70, 1.0)
TRAY_RGBA = (0.45, 0.45, 0.47, 1.0)
WALL_THICKNESS = 0.008


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: eye, target, up (robot base frame) and vertical field of view."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    fov_deg: float
    near: float = 0.05
    far: float = 2.5


# Above and slightly behind the workspace, looking down: image top = far (+x),
# image left = the robot's left (+y), so "top left" in LOCATIONS is top left in the image.
FRONT_CAMERA = Camera(eye=(0.47, 0.0, 0.95), target=(0.54, 0.0, 0.0), up=(1.0, 0.0, 0.0), fov_deg=45.0)


def _panda_urdf() -> str:
    """Write a copy of pybullet_data's Panda URDF that uses collision meshes for visuals."""
    root = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    with open(os.path.join(root, "panda.urdf")) as f:
        text = f.read()
    text = text.replace("package://meshes/visual/", "package://meshes/collision/")
    text = text.replace("package://meshes/", os.path.join(root, "meshes") + "/")
    fd, path = tempfile.mkstemp(suffix=".urdf", prefix="panda_")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _prism_mesh(sides: int, radius: float, height: float) -> tuple[list, list, list]:
    """Vertices, triangle indices and normals of an upright regular prism (flat-shaded)."""
    ring = [(radius * math.cos(2 * math.pi * k / sides), radius * math.sin(2 * math.pi * k / sides)) for k in range(sides)]
    h = height / 2
    verts: list = []
    normals: list = []
    idx: list = []

    def face(points, normal):
        base = len(verts)
        verts.extend(points)
        normals.extend([normal] * len(points))
        for k in range(1, len(points) - 1):
            idx.extend([base, base + k, base + k + 1])

    face([(x, y, h) for x, y in ring], (0, 0, 1))
    face([(x, y, -h) for x, y in reversed(ring)], (0, 0, -1))
    for k in range(sides):
        (x0, y0), (x1, y1) = ring[k], ring[(k + 1) % sides]
        nx, ny = (x0 + x1) / 2, (y0 + y1) / 2
        n = math.hypot(nx, ny)
        face([(x0, y0, -h), (x1, y1, -h), (x1, y1, h), (x0, y0, h)], (nx / n, ny / n, 0))
    return verts, idx, normals


class TabletopSim:
    """A pybullet tabletop with a Panda. ``load(scene)`` builds a scene; ``arm`` moves it.

    ``image_size`` is the side of the square camera images; ``depth`` adds depth maps;
    ``wrist_camera`` adds a camera on the gripper; ``grasp_assist`` see ``envs.panda``;
    ``physics``: heavier and slipperier objects (``envs.physics``: a preset name such as
    ``"heavy_slippery"``, a ``PhysicsVariation`` or its dict; None = each ``ObjectSpec``'s own
    mass and friction, by default today's 0.08 kg and 1.0). It may also be set (``sim.physics =``)
    between scenes; ``physics_record()`` says what the current scene was built with.
    """

    def __init__(self, image_size: int = 128, depth: bool = False, wrist_camera: bool = False, grasp_assist: bool = False,
                 physics: PhysicsVariation | str | dict | None = None):
        if not isinstance(image_size, int) or not 16 <= image_size <= 1024:
            raise ConfigError(f"image_size must be an int between 16 and 1024, got {image_size!r}")
        self.image_size = image_size
        self.depth = depth
        self.wrist_camera = wrist_camera
        self.grasp_assist = grasp_assist
        self.physics = physics
        self.built: SceneSpec | None = None  # the scene as built: ``scene`` with the physics variation applied
        self.client = connect()
        self._urdf = _panda_urdf()
        self.scene: SceneSpec | None = None
        self.robot = -1
        self.bodies: dict[str, int] = {}  # object and container names -> body id
        self._names: dict[int, str] = {}
        self.steps = 0  # physics steps since the scene was built
        self._frame_cache: tuple[tuple, dict] | None = None  # ((steps, scene id), frames)
        self._view = self.client.computeViewMatrix(FRONT_CAMERA.eye, FRONT_CAMERA.target, FRONT_CAMERA.up)
        self._proj = self.client.computeProjectionMatrixFOV(FRONT_CAMERA.fov_deg, 1.0, FRONT_CAMERA.near, FRONT_CAMERA.far)
        self.arm: PandaArm | None = None
        self.load(SceneSpec(objects=[], placements={}))

    # --- building -------------------------------------------------------------------
    @property
    def physics(self) -> PhysicsVariation | None:
        return self._physics

    @physics.setter
    def physics(self, spec) -> None:
        self._physics = physics_variation(spec)

    def physics_record(self) -> dict:
        """JSON-able: the variation (None: the scene's own) and each object's mass, friction and the finger friction."""
        built = self.built or self.scene
        return {"variation": self._physics.to_dict() if self._physics else None,
                "finger_friction": self._physics.finger_friction if self._physics else FINGER_FRICTION,
                "objects": {o.name: {"mass": o.mass, "friction": o.friction} for o in (built.objects if built else [])}}

    def load(self, scene: SceneSpec) -> None:
        """Build ``scene`` from scratch (robot at home, gripper open) and let it settle."""
        c = self.client
        c.resetSimulation()
        c.setGravity(0, 0, -9.81)
        c.setPhysicsEngineParameter(fixedTimeStep=TIME_STEP, numSolverIterations=60, deterministicOverlappingPairs=1)
        self.scene = scene
        self.bodies, self._names = {}, {}
        self.steps = 0
        self._frame_cache = None
        self._rest: dict[int, tuple] = {}  # body -> position where the last settle() left it
        self._build_table()
        self.robot = c.loadURDF(self._urdf, [0, 0, TABLE_Z], useFixedBase=True)
        for i in range(c.getNumJoints(self.robot)):
            rgba = (0.25, 0.25, 0.27, 1.0) if i >= 8 else (0.93, 0.93, 0.93, 1.0)
            c.changeVisualShape(self.robot, i, rgbaColor=rgba)
        c.changeVisualShape(self.robot, -1, rgbaColor=(0.93, 0.93, 0.93, 1.0))
        fingers = self._physics.finger_friction if self._physics else FINGER_FRICTION
        self.arm = PandaArm(self, grasp_assist=self.grasp_assist, finger_friction=fingers)
        for cont in scene.containers:
            self._add_container(cont)
        self.built = self._physics.apply(scene) if self._physics else scene
        self._add_objects(self.built)
        self.settle()

    def _build_table(self) -> None:
        c = self.client
        half = (0.55, 0.75, 0.025)
        col = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half)
        vis = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=TABLE_RGBA)
        table = c.createMultiBody(0, col, vis, basePosition=[0.45, 0.0, TABLE_Z - half[2]])
        c.changeDynamics(table, -1, lateralFriction=0.8)
        floor = c.createCollisionShape(pybullet.GEOM_PLANE)
        c.createMultiBody(0, floor, -1, basePosition=[0, 0, TABLE_Z - 0.75])
        self.table = table

    def _add_container(self, cont: ContainerSpec) -> None:
        c = self.client
        rgba = TRAY_RGBA if cont.name == "tray" else COLOUR_RGBA.get(cont.colour, TRAY_RGBA)
        hx, hy = cont.half_extents
        wt, wh = WALL_THICKNESS / 2, cont.wall_height / 2
        boxes = [
            ((hx + 2 * wt, hy + 2 * wt, CONTAINER_FLOOR / 2), (0, 0, CONTAINER_FLOOR / 2)),
            ((wt, hy + 2 * wt, wh), (hx + wt, 0, wh)),
            ((wt, hy + 2 * wt, wh), (-hx - wt, 0, wh)),
            ((hx, wt, wh), (0, hy + wt, wh)),
            ((hx, wt, wh), (0, -hy - wt, wh)),
        ]
        halves = [b[0] for b in boxes]
        frames = [b[1] for b in boxes]
        n = len(boxes)
        col = c.createCollisionShapeArray([pybullet.GEOM_BOX] * n, halfExtents=halves, collisionFramePositions=frames)
        vis = c.createVisualShapeArray([pybullet.GEOM_BOX] * n, halfExtents=halves, visualFramePositions=frames, rgbaColors=[rgba] * n)
        body = c.createMultiBody(0, col, vis, basePosition=[cont.center[0], cont.center[1], TABLE_Z])
        c.changeDynamics(body, -1, lateralFriction=0.8)
        self._register(cont.name, body)

    def _object_shapes(self, spec: ObjectSpec) -> tuple[int, int]:
        c = self.client
        rgba = COLOUR_RGBA[spec.colour]
        if spec.sides == 4:
            half = (spec.size / 2, spec.size / 2, spec.height / 2)
            return (
                c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half),
                c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half, rgbaColor=rgba),
            )
        if spec.sides == 0:
            return (
                c.createCollisionShape(pybullet.GEOM_CYLINDER, radius=spec.size / 2, height=spec.height),
                c.createVisualShape(pybullet.GEOM_CYLINDER, radius=spec.size / 2, length=spec.height, rgbaColor=rgba),
            )
        verts, idx, normals = _prism_mesh(spec.sides, spec.size / 2, spec.height)
        return (
            c.createCollisionShape(pybullet.GEOM_MESH, vertices=verts),  # convex hull
            c.createVisualShape(pybullet.GEOM_MESH, vertices=verts, indices=idx, normals=normals, rgbaColor=rgba),
        )

    def _add_objects(self, scene: SceneSpec) -> None:
        c = self.client
        specs = {o.name: o for o in scene.objects}
        for o in scene.objects:
            if o.colour not in COLOUR_RGBA or o.shape not in SHAPE_SIDES:
                raise ConfigError(f"object {o.name!r}: colours are {', '.join(COLOUR_RGBA)}; shapes are {', '.join(SHAPE_SIDES)}")
        missing = [n for n in specs if n not in scene.placements]
        if missing:
            raise ConfigError(f"scene has no placement for {', '.join(missing)}; add a Placement for every object")
        z: dict[str, float] = {}

        def centre_z(name: str, depth: int = 0) -> float:
            if name in z:
                return z[name]
            pl = scene.placements[name]
            if pl.on is None:
                floor = CONTAINER_FLOOR if any(c.contains_xy(pl.x, pl.y) for c in scene.containers) else 0.0
                z[name] = TABLE_Z + floor + specs[name].height / 2 + 0.0005
            else:
                if pl.on not in specs or depth > len(specs):
                    raise ConfigError(f"placement of {name!r} is on {pl.on!r}, which is not an object in the scene")
                below = centre_z(pl.on, depth + 1)
                z[name] = below + specs[pl.on].height / 2 + specs[name].height / 2 + 0.0005
            return z[name]

        for spec in scene.objects:
            pl = scene.placements[spec.name]
            col, vis = self._object_shapes(spec)
            orn = c.getQuaternionFromEuler([0, 0, pl.yaw])
            body = c.createMultiBody(spec.mass, col, vis, basePosition=[pl.x, pl.y, centre_z(spec.name)], baseOrientation=orn)
            c.changeDynamics(body, -1, lateralFriction=spec.friction, spinningFriction=0.002, rollingFriction=0.0001, restitution=0.0,
                             activationState=pybullet.ACTIVATION_STATE_ENABLE_SLEEPING)  # resting objects cost nothing
            self._register(spec.name, body)

    def _register(self, name: str, body: int) -> None:
        self.bodies[name] = body
        self._names[body] = name

    # --- stepping ---------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        for _ in range(n):
            self.client.stepSimulation()
        self.steps += n

    def settle(self, max_steps: int = 480, tol: float = 0.005, check_every: int = 12) -> int:
        """Step until no object moves faster than ``tol`` (m/s, rad/s / 10); returns steps taken.

        Resting objects sleep (Bullet deactivation) and cost nothing per step; an object
        teleported since the last settle (``resetBasePositionAndOrientation``) is woken here.
        """
        if self.arm is not None:
            self.arm.hold()
        ids = [self.bodies[o.name] for o in self.scene.objects] if self.scene else []
        for b in ids:  # wake objects moved from outside the physics (resetBasePositionAndOrientation)
            pos = self.client.getBasePositionAndOrientation(b)[0]
            if b not in self._rest or max(abs(u - v) for u, v in zip(pos, self._rest[b])) > 1e-5:
                self.client.changeDynamics(b, -1, activationState=pybullet.ACTIVATION_STATE_WAKE_UP)
        taken = 0
        while taken < max_steps:
            self.step(check_every)
            taken += check_every
            still = True
            for b in ids:
                v, w = self.client.getBaseVelocity(b)
                if self.client.getBasePositionAndOrientation(b)[0][2] < TABLE_Z - 0.3:
                    continue  # fell to the floor; it does not need to come to rest
                if max(map(abs, v)) > tol or max(map(abs, w)) > 10 * tol:
                    still = False
                    break
            if still:
                break
        self._rest = {b: self.client.getBasePositionAndOrientation(b)[0] for b in ids}
        return taken

    # --- state --------------------------------------------------------------------------
    def pose(self, name: str) -> tuple[np.ndarray, float]:
        """Centre position (3,) and yaw of an object or container."""
        pos, orn = self.client.getBasePositionAndOrientation(self.bodies[name])
        return np.asarray(pos, dtype=np.float64), float(self.client.getEulerFromQuaternion(orn)[2])

    def world_state(self) -> WorldState:
        positions, yaws = {}, {}
        for o in self.scene.objects:
            positions[o.name], yaws[o.name] = self.pose(o.name)
        return WorldState(scene=self.scene, positions=positions, yaws=yaws, held=self.arm.held if self.arm else None)

    # --- cameras --------------------------------------------------------------------------
    def _render(self, view, proj, segmentation: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        s = self.image_size
        flags = 0 if segmentation else pybullet.ER_NO_SEGMENTATION_MASK
        _, _, rgba, zbuf, seg = self.client.getCameraImage(
            s, s, view, proj, renderer=pybullet.ER_TINY_RENDERER, flags=flags,
            shadow=0, lightDirection=[0.4, 0.3, 1.0], **DEFAULT_LIGHTING.kwargs(),  # TinyRenderer keeps the last light settings
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(s, s, 4)[:, :, :3].copy()  # (H, W, 3)
        zbuf = np.asarray(zbuf, dtype=np.float32).reshape(s, s)  # (H, W) in [0, 1]
        segm = np.asarray(seg, dtype=np.int32).reshape(s, s) if segmentation else None
        return rgb, zbuf, segm

    @staticmethod
    def _metres(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
        return (far * near / (far - (far - near) * zbuf)).astype(np.float32)  # (H, W)

    def _wrist_matrices(self):
        c = self.client
        state = c.getLinkState(self.robot, 11, computeForwardKinematics=True)
        pos, orn = np.asarray(state[4]), state[5]
        rot = np.asarray(c.getMatrixFromQuaternion(orn)).reshape(3, 3)
        z, x = rot[:, 2], rot[:, 0]  # gripper approach axis and hand x axis
        eye = pos - 0.09 * z + 0.05 * x  # on the hand, in front of the fingers
        view = c.computeViewMatrix(eye.tolist(), (eye + z).tolist(), x.tolist())
        proj = c.computeProjectionMatrixFOV(70.0, 1.0, 0.01, 1.5)
        return view, proj

    def frames(self) -> dict:
        """Render the cameras once per sim state: ``{"front", "wrist"?, "front_depth"?,
        "wrist_depth"?, "detections"}``. Cached until the simulation steps again."""
        key = (self.steps, id(self.scene))
        if self._frame_cache is not None and self._frame_cache[0] == key:
            return self._frame_cache[1]
        out: dict = {}
        rgb, zbuf, seg = self._render(self._view, self._proj, segmentation=True)
        out["front"] = rgb
        if self.depth:
            out["front_depth"] = self._metres(zbuf, FRONT_CAMERA.near, FRONT_CAMERA.far)
        ids, counts = np.unique(seg[seg >= 0] & ((1 << 24) - 1), return_counts=True)
        seen = {int(i) for i, n in zip(ids, counts) if n >= 2}
        out["detections"] = sorted(self._names[b] for b in seen if b in self._names)
        if self.wrist_camera:
            view, proj = self._wrist_matrices()
            wrgb, wz, _ = self._render(view, proj, segmentation=False)
            out["wrist"] = wrgb
            if self.depth:
                out["wrist_depth"] = self._metres(wz, 0.01, 1.5)
        self._frame_cache = (key, out)
        return out

    def detections(self) -> list[str]:
        """Names of objects and containers visible in the front camera (the robot's perception)."""
        return list(self.frames()["detections"])

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.disconnect()
            except pybullet.error:
                pass
            self.client = None
        if self._urdf and os.path.exists(self._urdf):
            os.remove(self._urdf)
            self._urdf = ""

    def __del__(self):  # best effort; BulletClient also disconnects on deletion
        try:
            self.close()
        except Exception:
            pass
