"""Cameras as the rest of the system sees them: a ``Frame`` (timestamped at capture), a
``Calibration`` (intrinsics + the camera's pose in the robot base frame, a plain JSON file),
and the ``Camera`` protocol every source implements (simulator, OpenCV, RealSense, replay).

Conventions: pixels and the camera frame are OpenCV's (x right, y down, z forward, pixel
centres at integer coordinates); ``depth`` is the z distance along the optical axis in metres,
0 or NaN where the camera has no reading. ``T_base_camera`` maps camera coordinates to the
robot base frame (+x away from the robot, +y to its left, z up, table top at z = 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from embodied.core.errors import CalibrationError

CALIBRATION_FORMAT = "embodied-calibration"
CALIBRATION_VERSION = 1


@dataclass
class Frame:
    """One capture of one camera."""

    camera: str
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    timestamp: float  # time.time() at capture
    seq: int = 0
    depth: np.ndarray | None = None  # (H, W) float32 metres; 0 / NaN = no reading (aligned to rgb)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass
class Calibration:
    """Intrinsics and extrinsics of one camera, as ``embodied calibrate`` writes them."""

    camera: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) intrinsic matrix
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))  # OpenCV distortion (k1, k2, p1, p2, k3)
    T_base_camera: np.ndarray = field(default_factory=lambda: np.eye(4))  # (4, 4) camera -> robot base
    info: dict = field(default_factory=dict)  # how it was made: method, views, reprojection error, ...

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = np.asarray(self.dist, dtype=np.float64).ravel()
        self.T_base_camera = np.asarray(self.T_base_camera, dtype=np.float64).reshape(4, 4)
        if self.width < 1 or self.height < 1:
            raise CalibrationError(f"calibration of {self.camera!r}: width and height must be positive")
        if not (np.all(np.isfinite(self.K)) and np.all(np.isfinite(self.T_base_camera))):
            raise CalibrationError(f"calibration of {self.camera!r} holds NaN or inf")

    # --- geometry ------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray:
        """Camera centre in the base frame (3,)."""
        return self.T_base_camera[:3, 3].copy()

    def rays(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Unit-z rays (N, 3) in the camera frame for pixel coordinates (ignores distortion)."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        return np.stack([(np.asarray(u, float) - cx) / fx, (np.asarray(v, float) - cy) / fy, np.ones(np.shape(u))], -1)

    def backproject(self, u: np.ndarray, v: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Base-frame points (N, 3) of pixels (u, v) with z-depth ``depth`` (metres)."""
        cam = self.rays(u, v) * np.asarray(depth, float)[..., None]  # (N, 3) camera frame
        return cam @ self.T_base_camera[:3, :3].T + self.T_base_camera[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) and camera z (N,) of base-frame points (N, 3)."""
        T = np.linalg.inv(self.T_base_camera)
        cam = np.asarray(points, float) @ T[:3, :3].T + T[:3, 3]  # (N, 3)
        z = cam[:, 2]
        uv = cam[:, :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)[:, None] * self.K[[0, 1], [0, 1]] + self.K[:2, 2]
        return uv, z

    def plane_points(self, u: np.ndarray, v: np.ndarray, z_plane: float = 0.0) -> np.ndarray:
        """Base-frame points (N, 3) where the rays of pixels (u, v) meet the plane z = ``z_plane``
        (for cameras without depth)."""
        R, t = self.T_base_camera[:3, :3], self.T_base_camera[:3, 3]
        d = self.rays(u, v) @ R.T  # (N, 3) ray directions in the base frame
        s = (z_plane - t[2]) / np.where(np.abs(d[:, 2]) < 1e-9, -1e-9, d[:, 2])
        return t + d * s[:, None]

    # --- checks and files ----------------------------------------------------------------
    def check(self, frame: Frame) -> None:
        """A named error when ``frame`` does not come from the camera this calibration describes."""
        if frame.size != (self.width, self.height):
            raise CalibrationError(
                f"camera {frame.camera!r} gives {frame.size[0]}x{frame.size[1]} frames but its calibration is for "
                f"{self.width}x{self.height}: set the camera to that resolution or calibrate again (embodied calibrate)"
            )

    def to_dict(self) -> dict:
        return {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "camera": self.camera,
                "width": int(self.width), "height": int(self.height), "K": self.K.tolist(), "dist": self.dist.tolist(),
                "T_base_camera": self.T_base_camera.tolist(), "info": self.info}

    @classmethod
    def from_dict(cls, d: dict, source: str = "calibration") -> "Calibration":
        if not isinstance(d, dict) or d.get("format") != CALIBRATION_FORMAT:
            raise CalibrationError(f"{source}: not an {CALIBRATION_FORMAT} file (write one with `embodied calibrate`)")
        if d.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(f"{source}: version {d.get('version')!r}; this code reads version {CALIBRATION_VERSION}")
        missing = [k for k in ("camera", "width", "height", "K", "T_base_camera") if k not in d]
        if missing:
            raise CalibrationError(f"{source}: missing {', '.join(missing)}")
        try:
            return cls(str(d["camera"]), int(d["width"]), int(d["height"]), np.asarray(d["K"], float),
                       np.asarray(d.get("dist", np.zeros(5)), float), np.asarray(d["T_base_camera"], float), dict(d.get("info", {})))
        except (TypeError, ValueError) as e:
            raise CalibrationError(f"{source}: malformed values ({e})") from e

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        if not path.is_file():
            raise CalibrationError(f"no calibration file {str(path)!r}: write one with `embodied calibrate`")
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CalibrationError(f"{path}: cannot read it as JSON ({e})") from e
        return cls.from_dict(d, str(path))


@runtime_checkable
class Camera(Protocol):
    """A source of frames: the simulator's renderer, ``cv2.VideoCapture``, a RealSense, a replay."""

    name: str

    def connect(self) -> None: ...

    def read(self, timeout_s: float = 1.0) -> Frame: ...  # blocks; CameraError when no frame comes

    def latest(self) -> Frame | None: ...  # the newest frame read so far (None before the first)

    def disconnect(self) -> None: ...
