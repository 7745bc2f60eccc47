"""A printed calibration board in the simulator: an image (a ChArUco pattern) on a thin plate.

``BoardPlate(sim, image, px_per_m)`` adds a plate to a ``TabletopSim`` (after ``sim.load``,
which clears the world) whose printed face shows ``image`` at ``px_per_m`` texels per metre.
The plate is a mesh with explicit UVs (``createVisualShape(GEOM_MESH, vertices, indices, uvs,
normals)`` + ``loadTexture`` + ``changeVisualShape(textureUniqueId=...)``): a pybullet box
maps its texture per face, a mesh maps it exactly. It has no collision shape and no mass, so
it can hang anywhere in front of a camera (intrinsics views) or lie on the table.

Its pose is the frame at the centre of the printed face: x along the image's rows (rightwards),
y down the image, z into the plate (the OpenCV board frame's axes). TinyRenderer samples the
texture at the nearest texel; in the test renders the ChArUco corners it finds lie within
~0.3 px of where the geometry puts them.

The image is any array: perception's ``ChArUcoBoard.board_image`` makes one (a command or a
test hands it over; envs does not import perception).
"""

from __future__ import annotations

import math
import os
import tempfile

import cv2
import numpy as np

from envs.bullet import pybullet
from envs.cameras import SimCameraSpec, calibration


def quaternion(R: np.ndarray) -> list[float]:
    """(x, y, z, w) of a rotation matrix (Shepperd's method: exact for 180-degree turns too)."""
    R = np.asarray(R, dtype=np.float64)
    tr = float(np.trace(R))
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(max(1.0 + R[i, i] - R[j, j] - R[k, k], 1e-12)) * 2
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    n = math.sqrt(sum(v * v for v in q))
    return [v / n for v in q]


def _plate_mesh(w: float, h: float, thickness: float, texels: tuple[int, int], grid: int):
    """Vertices, indices, uvs and normals of a w x h plate: the printed face (z = 0, facing -z)
    as a grid of quads, the back and the sides mapped to the image's corner texel (its margin)."""
    verts, uvs, normals, idx = [], [], [], []
    nx, ny = max(1, grid), max(1, round(grid * h / w))
    for j in range(ny + 1):
        for i in range(nx + 1):
            verts.append((-w / 2 + w * i / nx, -h / 2 + h * j / ny, 0.0))
            uvs.append((i / nx, 1.0 - j / ny))  # pybullet's texture v runs up the image
            normals.append((0.0, 0.0, -1.0))
    for j in range(ny):
        for i in range(nx):
            a = j * (nx + 1) + i
            b, c, d = a + 1, a + nx + 1, a + nx + 2
            idx += [a, d, b, a, c, d]  # counter-clockwise seen from -z (the printed side)
    corner = (0.5 / texels[0], 1.0 - 0.5 / texels[1])  # the top-left texel: white margin

    def quad(points, normal):
        base = len(verts)
        verts.extend(points)
        uvs.extend([corner] * 4)
        normals.extend([normal] * 4)
        idx.extend([base, base + 1, base + 2, base, base + 2, base + 3])

    t, x0, x1, y0, y1 = thickness, -w / 2, w / 2, -h / 2, h / 2
    quad([(x0, y0, t), (x0, y1, t), (x1, y1, t), (x1, y0, t)], (0.0, 0.0, 1.0))  # back
    quad([(x0, y0, 0), (x1, y0, 0), (x1, y0, t), (x0, y0, t)], (0.0, -1.0, 0.0))
    quad([(x1, y1, 0), (x0, y1, 0), (x0, y1, t), (x1, y1, t)], (0.0, 1.0, 0.0))
    quad([(x0, y1, 0), (x0, y0, 0), (x0, y0, t), (x0, y1, t)], (-1.0, 0.0, 0.0))
    quad([(x1, y0, 0), (x1, y1, 0), (x1, y1, t), (x1, y0, t)], (1.0, 0.0, 0.0))
    return verts, idx, uvs, normals


class BoardPlate:
    """An image printed on a thin plate in a ``TabletopSim``; ``set_pose(T_base_face)`` moves it."""

    def __init__(self, sim, image: np.ndarray, px_per_m: float, thickness: float = 0.003, grid: int = 8):
        img = np.asarray(image)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"board image must be (H, W) or (H, W, 3) uint8, got {img.shape} {img.dtype}")
        self.sim = sim
        self.height_px, self.width_px = img.shape[:2]
        self.size_m = (self.width_px / px_per_m, self.height_px / px_per_m)
        self.thickness = float(thickness)
        c = sim.client
        verts, idx, uvs, normals = _plate_mesh(*self.size_m, self.thickness, (self.width_px, self.height_px), grid)
        vis = c.createVisualShape(pybullet.GEOM_MESH, vertices=verts, indices=idx, uvs=uvs, normals=normals, rgbaColor=[1, 1, 1, 1])
        self.body = c.createMultiBody(baseMass=0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vis, basePosition=[0, 0, -1])
        fd, path = tempfile.mkstemp(suffix=".png", prefix="board_")
        os.close(fd)
        try:
            cv2.imwrite(path, np.ascontiguousarray(img[:, :, 2::-1]))  # RGB -> BGR
            self.texture = c.loadTexture(path)
        finally:
            os.remove(path)
        c.changeVisualShape(self.body, -1, textureUniqueId=self.texture, rgbaColor=[1, 1, 1, 1])

    def set_pose(self, T_base_face: np.ndarray) -> None:
        """Put the centre of the printed face at ``T_base_face`` (4x4; z into the plate)."""
        T = np.asarray(T_base_face, dtype=np.float64)
        self.sim.client.resetBasePositionAndOrientation(self.body, T[:3, 3].tolist(), quaternion(T[:3, :3]))

    def remove(self) -> None:
        if self.sim.client is not None and self.body >= 0:
            self.sim.client.removeBody(self.body)
            self.body = -1


def _rot(axis, angle: float) -> np.ndarray:
    x, y, z = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def facing_poses(spec: SimCameraSpec, n: int, seed: int = 0, distance: tuple[float, float] = (0.35, 0.5),
                 tilt_deg: float = 45.0, spread: float = 0.25) -> list[np.ndarray]:
    """``n`` board poses (T_base_face) in front of camera ``spec`` for intrinsics views: the
    board faces the camera from ``distance`` metres, tilted up to ``tilt_deg`` about its x and y
    axes, turned up to ~30 degrees, its centre shifted up to ``spread`` of the image from the centre."""
    rng = np.random.default_rng(seed)
    cal = calibration(spec)
    f = cal.K[0, 0]
    tilt = math.radians(tilt_deg)
    poses = []
    for _ in range(int(n)):
        d = rng.uniform(*distance)
        off = np.array([rng.uniform(-spread, spread) * spec.width, rng.uniform(-spread, spread) * spec.height]) / f * d
        R = _rot((1, 0, 0), rng.uniform(-tilt, tilt)) @ _rot((0, 1, 0), rng.uniform(-tilt, tilt)) @ _rot((0, 0, 1), rng.uniform(-0.5, 0.5))
        T_cam_face = np.eye(4)
        T_cam_face[:3, :3] = R
        T_cam_face[:3, 3] = (off[0], off[1], d)
        poses.append(cal.T_base_camera @ T_cam_face)
    return poses


def camera_at(name: str, T_base_camera: np.ndarray, fov_deg: float, width: int, height: int,
              near: float = 0.02, far: float = 2.5) -> SimCameraSpec:
    """A ``SimCameraSpec`` whose OpenCV camera frame is ``T_base_camera`` (e.g. a camera on the gripper)."""
    T = np.asarray(T_base_camera, dtype=np.float64)
    eye = T[:3, 3]
    return SimCameraSpec(name, eye=tuple(eye), target=tuple(eye + T[:3, 2]), up=tuple(-T[:3, 1]), fov_deg=fov_deg,
                         width=int(width), height=int(height), near=near, far=far)
