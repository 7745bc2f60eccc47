"""Pixels <-> the robot base frame for one calibrated camera, precomputed once per calibration.

A pixel (u, v) with z-depth d lands at ``origin + d * dirs[v, u]`` in the base frame
(``dirs`` is the ray of the pixel scaled to unit z in the camera frame, rotated into the
base frame), so a whole height map is one multiply-add: ``Z = origin_z + depth * dirs_z``.
Lens distortion (``Calibration.dist``) is undone once, here, with ``cv2.undistortPoints``.
"""

from __future__ import annotations

import cv2
import numpy as np

from embodied.core.camera import Calibration
from embodied.core.errors import CalibrationError


def calibration_key(cal: Calibration) -> tuple:
    """What makes two calibrations the same geometry (for caching)."""
    return (cal.camera, int(cal.width), int(cal.height), cal.K.tobytes(), cal.dist.tobytes(), cal.T_base_camera.tobytes())


class ViewGeometry:
    """Precomputed rays of one calibration; see the module docstring."""

    def __init__(self, cal: Calibration):
        R = cal.T_base_camera[:3, :3]
        if abs(np.linalg.det(R) - 1.0) > 1e-3:
            raise CalibrationError(f"calibration of {cal.camera!r}: T_base_camera's rotation is not a rotation (det {np.linalg.det(R):.3f})")
        self.cal = cal
        self.width, self.height = int(cal.width), int(cal.height)
        self.origin = cal.T_base_camera[:3, 3].astype(np.float64)  # (3,) camera centre in the base frame
        self.R = R.astype(np.float64)
        self.distorted = bool(np.any(np.abs(cal.dist) > 0))
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))  # (H, W)
        xn, yn = self.normalized(u.ravel(), v.ravel())
        d = xn[:, None] * R[:, 0] + yn[:, None] * R[:, 1] + R[:, 2]  # (H*W, 3)
        self.dirs = d.reshape(self.height, self.width, 3).astype(np.float32)  # (H, W, 3) base-frame ray per metre of z-depth (nominal)
        self.C: np.ndarray | None = None  # (3, 3) correction of the nominal rotation (``corrected``), None = none
        self.dz = np.ascontiguousarray(self.dirs[:, :, 2])  # (H, W)
        self.axis = R[:, 2].copy()  # (3,) optical axis in the base frame
        self.focal = float(np.sqrt(cal.K[0, 0] * cal.K[1, 1]))

    def dirs_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Base-frame rays (N, 3) float64 per metre of z-depth of pixels (rows, cols)."""
        d = self.dirs[rows, cols].astype(np.float64)
        return d if self.C is None else d @ self.C.T

    def corrected(self, C: np.ndarray, shift) -> "ViewGeometry":
        """This camera turned by ``C`` (3, 3) about its centre and moved by ``shift`` ((3,), or a
        number: up): the rays are shared with this geometry, only the height coefficients are recomputed."""
        g = object.__new__(ViewGeometry)
        g.__dict__.update(self.__dict__)
        C = np.asarray(C, float) if self.C is None else np.asarray(C, float) @ self.C  # the whole correction
        g.C = C
        g.R = C @ self.cal.T_base_camera[:3, :3]
        g.origin = self.origin + (np.array([0.0, 0.0, float(shift)]) if np.ndim(shift) == 0 else np.asarray(shift, float))
        d = self.dirs
        g.dz = (d[:, :, 0] * np.float32(C[2, 0]) + d[:, :, 1] * np.float32(C[2, 1]) + d[:, :, 2] * np.float32(C[2, 2])).astype(np.float32)
        g.axis = g.R[:, 2].copy()
        return g

    @property
    def looks_down(self) -> float:
        """Cosine between the optical axis and straight down (1 = overhead)."""
        return float(-self.axis[2])

    # --- rays ----------------------------------------------------------------------------------
    def normalized(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Undistorted normalised image coordinates (x/z, y/z) of pixels (N,) each."""
        K = self.cal.K
        if self.distorted:
            pts = np.stack([u, v], -1).reshape(-1, 1, 2).astype(np.float64)
            n = cv2.undistortPoints(pts, K, self.cal.dist).reshape(-1, 2)
            return n[:, 0], n[:, 1]
        return (np.asarray(u, float) - K[0, 2]) / K[0, 0], (np.asarray(v, float) - K[1, 2]) / K[1, 1]

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Base-frame ray directions (N, 3) per metre of z-depth of (sub)pixels u, v (N,)."""
        xn, yn = self.normalized(np.atleast_1d(u), np.atleast_1d(v))
        return xn[:, None] * self.R[:, 0] + yn[:, None] * self.R[:, 1] + self.R[:, 2]

    # --- depth -----------------------------------------------------------------------------------
    def heights(self, depth: np.ndarray) -> np.ndarray:
        """Base-frame z (H, W) float32 of every pixel; NaN where the depth has no reading (0 / NaN / inf)."""
        d = np.asarray(depth, dtype=np.float32)
        Z = d * self.dz + np.float32(self.origin[2])  # (H, W)
        Z[~(d > 0) | ~np.isfinite(d)] = np.nan
        return Z

    def points(self, depth: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Base-frame points (N, 3) of pixels (rows, cols) from their depth."""
        d = np.asarray(depth[rows, cols], dtype=np.float64)  # (N,)
        return self.origin + d[:, None] * self.dirs_at(rows, cols)

    def on_plane(self, u: np.ndarray, v: np.ndarray, z: float, dirs: np.ndarray | None = None) -> np.ndarray:
        """Base-frame points (N, 3) where the rays of (sub)pixels u, v meet the plane z = ``z``."""
        d = self.rays(u, v) if dirs is None else dirs.astype(np.float64)  # (N, 3)
        dz = np.where(np.abs(d[:, 2]) < 1e-9, -1e-9, d[:, 2])
        s = (z - self.origin[2]) / dz  # (N,) z-depth of the crossing
        return self.origin + d * s[:, None]

    def pixel_area(self, u: float, v: float, z: float) -> float:
        """Area (m^2) of one pixel around (u, v) on the plane z = ``z`` (the Jacobian of the ray /
        plane crossing, in plain floats: it is called per face; lens distortion is ignored here)."""
        K = self.cal.K
        fx, fy = float(K[0, 0]), float(K[1, 1])
        xn, yn = (u - float(K[0, 2])) / fx, (v - float(K[1, 2])) / fy
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = self.R.tolist()
        rx, ry, rz = xn * r00 + yn * r01 + r02, xn * r10 + yn * r11 + r12, xn * r20 + yn * r21 + r22
        if abs(rz) < 1e-9:
            return 0.0
        s = (z - float(self.origin[2])) / rz  # z-depth of the crossing
        ax, ay = s * (r00 - rx * r20 / rz) / fx, s * (r10 - ry * r20 / rz) / fx  # d point / d u
        bx, by = s * (r01 - rx * r21 / rz) / fy, s * (r11 - ry * r21 / rz) / fy  # d point / d v
        return abs(ax * by - ay * bx)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixel coordinates (N, 2) of base-frame points (N, 3), with the lens distortion."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cam = (pts - self.origin) @ self.R  # (N, 3) camera frame
        z = np.where(np.abs(cam[:, 2]) < 1e-9, 1e-9, cam[:, 2])
        if not self.distorted:
            K = self.cal.K
            return np.stack([cam[:, 0] / z * K[0, 0] + K[0, 2], cam[:, 1] / z * K[1, 1] + K[1, 2]], -1)
        uv, _ = cv2.projectPoints(cam.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.cal.K, self.cal.dist)
        return uv.reshape(-1, 2)


class GeometryCache:
    """``ViewGeometry`` per calibration, built on first use (a few ms at 640x480), kept for the next frames."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: dict[tuple, ViewGeometry] = {}

    def get(self, cal: Calibration) -> ViewGeometry:
        key = calibration_key(cal)
        g = self._items.get(key)
        if g is None:
            if len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            g = self._items[key] = ViewGeometry(cal)
        return g
