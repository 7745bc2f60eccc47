"""The simulator's cameras as ``embodied.core.camera.Camera`` sources, with their exact calibration.

A ``SimCameraSpec`` is a pinhole camera (eye, target, up, vertical field of view, resolution)
in the robot base frame. ``calibration(spec)`` is its true ``Calibration`` (what a perfect
``embodied calibrate`` would write); ``SimCamera(sim, spec)`` renders RGB and z-depth with
pybullet's TinyRenderer, timestamped at capture. ``light`` (direction), ``lighting``
(colour/intensity and the ambient, diffuse and specular coefficients) and ``jittered`` let
randomised rendering (``envs.variation``) change the light and move the camera (the
calibration then no longer matches exactly, as on a real robot).

TinyRenderer keeps the last light settings it was given *in the client*: a render that
passes only ``lightDirection`` inherits the colour and coefficients of the render before it.
``SimCamera`` therefore passes every light setting on every render (``DEFAULT_LIGHTING``
reproduces pybullet's defaults exactly).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import CameraError
from envs.bullet import pybullet

# OpenGL camera (x right, y up, z back) -> OpenCV camera (x right, y down, z forward)
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
DEFAULT_LIGHT = (0.4, 0.3, 1.0)


@dataclass(frozen=True)
class Lighting:
    """TinyRenderer's light besides its direction: colour (intensity) and shading coefficients."""

    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.6
    diffuse: float = 0.35
    specular: float = 0.05
    distance: float = 2.0

    def kwargs(self) -> dict:
        return {"lightColor": list(self.color), "lightAmbientCoeff": float(self.ambient), "lightDiffuseCoeff": float(self.diffuse),
                "lightSpecularCoeff": float(self.specular), "lightDistance": float(self.distance)}


DEFAULT_LIGHTING = Lighting()  # pybullet's own defaults (the look of envs.sim's frames)


@dataclass(frozen=True)
class SimCameraSpec:
    name: str
    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    fov_deg: float  # vertical field of view
    width: int
    height: int
    near: float = 0.05
    far: float = 2.5

    def view_matrix(self) -> list[float]:
        return list(pybullet.computeViewMatrix(self.eye, self.target, self.up))

    def projection_matrix(self) -> list[float]:
        return list(pybullet.computeProjectionMatrixFOV(self.fov_deg, self.width / self.height, self.near, self.far))

    def resized(self, width: int, height: int | None = None) -> "SimCameraSpec":
        return replace(self, width=int(width), height=int(height if height is not None else width))


# The model's overhead camera (envs.sim.FRONT_CAMERA), square.
FRONT = SimCameraSpec("front", eye=(0.47, 0.0, 0.95), target=(0.54, 0.0, 0.0), up=(1.0, 0.0, 0.0), fov_deg=45.0,
                      width=320, height=320)
# An oblique camera from the robot's left, for what the overhead view hides (stacks).
SIDE = SimCameraSpec("side", eye=(0.30, 0.62, 0.42), target=(0.55, 0.0, 0.02), up=(0.0, 0.0, 1.0), fov_deg=55.0,
                     width=320, height=240)
SPECS = {"front": FRONT, "side": SIDE}


def calibration(spec: SimCameraSpec) -> Calibration:
    """The exact intrinsics and extrinsics of a simulated camera."""
    f = (spec.height / 2) / math.tan(math.radians(spec.fov_deg) / 2)
    # TinyRenderer samples each pixel at its corner and flips the image vertically: the principal
    # point is (W/2, H/2 - 1) with pixel centres at integers, not the image centre (W/2 - 0.5, H/2 - 0.5).
    # Measured: back-projected depth of the bare table from oblique, rolled cameras at 128x128,
    # 320x240 and 640x480 has RMS height error 0.4 um with this K, 1.2-3.1 mm with the image centre.
    K = np.array([[f, 0.0, spec.width / 2], [0.0, f, spec.height / 2 - 1.0], [0.0, 0.0, 1.0]])
    V = np.asarray(spec.view_matrix(), dtype=np.float64).reshape(4, 4).T  # world -> OpenGL camera
    T_cam_base = _GL_TO_CV @ V  # base -> OpenCV camera
    return Calibration(spec.name, spec.width, spec.height, K, np.zeros(5), np.linalg.inv(T_cam_base),
                       {"method": "simulator ground truth"})


def z_depth(zbuf: np.ndarray, near: float, far: float) -> np.ndarray:
    """pybullet's depth buffer (0..1) -> z distance along the optical axis (metres)."""
    return (far * near / (far - (far - near) * zbuf)).astype(np.float32)


def jittered(spec: SimCameraSpec, rng: np.random.Generator, metres: float = 0.01, degrees: float = 1.0) -> SimCameraSpec:
    """The camera moved by about ``metres`` and turned by about ``degrees`` (randomised rendering)."""
    eye = np.asarray(spec.eye) + rng.normal(0.0, metres / math.sqrt(3), 3)
    fwd = np.asarray(spec.target) - np.asarray(spec.eye)
    dist = np.linalg.norm(fwd)
    # turn the viewing direction by a small random rotation
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = math.radians(rng.normal(0.0, degrees))
    R = _rotation(axis, ang)
    target = eye + R @ fwd
    up = R @ np.asarray(spec.up, float)
    return replace(spec, eye=tuple(eye), target=tuple(target * 1.0), up=tuple(up)) if dist > 0 else spec


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    C = 1 - c
    return np.array([[c + x * x * C, x * y * C - z * s, x * z * C + y * s],
                     [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
                     [z * x * C - y * s, z * y * C + x * s, c + z * z * C]])


class SimCamera:
    """Renders ``spec`` from a ``TabletopSim``; ``read`` captures a frame now (RGB + z-depth)."""

    def __init__(self, sim, spec: SimCameraSpec, depth: bool = True, light: tuple[float, float, float] = DEFAULT_LIGHT,
                 rgb_noise: float = 0.0, depth_noise: float = 0.0, seed: int = 0, lighting: Lighting = DEFAULT_LIGHTING):
        self.sim, self.spec, self.name = sim, spec, spec.name
        self.depth, self.light, self.lighting = depth, tuple(light), lighting
        self.rgb_noise, self.depth_noise = float(rgb_noise), float(depth_noise)
        self._rng = np.random.default_rng(seed)
        self._seq = 0
        self._latest: Frame | None = None
        self._matrices = (spec.view_matrix(), spec.projection_matrix())

    def connect(self) -> None:
        if self.sim.client is None:
            raise CameraError(f"camera {self.name!r}: the simulation is closed")

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self.sim.client is None:
            raise CameraError(f"camera {self.name!r}: the simulation is closed")
        s = self.spec
        t = time.time()
        view, proj = self._matrices
        _, _, rgba, zbuf, _ = self.sim.client.getCameraImage(
            s.width, s.height, view, proj, renderer=pybullet.ER_TINY_RENDERER,
            flags=pybullet.ER_NO_SEGMENTATION_MASK, shadow=0, lightDirection=list(self.light),
            **self.lighting.kwargs())
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(s.height, s.width, 4)[:, :, :3]  # (H, W, 3)
        if self.rgb_noise > 0:
            rgb = np.clip(rgb + self._rng.normal(0.0, self.rgb_noise, rgb.shape), 0, 255).astype(np.uint8)
        else:
            rgb = rgb.copy()
        depth = None
        if self.depth:
            depth = z_depth(np.asarray(zbuf, dtype=np.float32).reshape(s.height, s.width), s.near, s.far)  # (H, W)
            if self.depth_noise > 0:
                depth = (depth + self._rng.normal(0.0, self.depth_noise, depth.shape) * depth).astype(np.float32)
        self._seq += 1
        self._latest = Frame(self.name, rgb, t, self._seq, depth)
        return self._latest

    def latest(self) -> Frame | None:
        return self._latest

    def disconnect(self) -> None:
        self._latest = None
