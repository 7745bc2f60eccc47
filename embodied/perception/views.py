"""One camera's frame made ready for perception: checked against its calibration, colour
labels, base-frame heights from depth, and what the table looks like in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import PerceptionError
from embodied.perception.colour import ColourModel, Labels
from embodied.perception.geometry import ViewGeometry

MIN_TABLE_POINTS = 150  # table points (of ~700 on a grid) needed to correct a camera's pose from the table
MAX_TILT_DEG = 4.0  # larger disagreements with the calibration are not corrected (not the table, or a bad calibration)
TABLE_BAND = 0.006  # |z| (m) of pixels taken as the bare table when estimating its look and the depth noise


@dataclass
class View:
    name: str
    frame: Frame
    cal: Calibration
    geom: ViewGeometry
    labels: Labels
    Z: np.ndarray | None  # (H, W) float32 base-frame height of each pixel; NaN = no depth reading; None = no depth
    noise: float  # estimated depth noise as height noise (m), 0 without depth
    table_v: float  # median HSV value of the bare table (0..255)

    @property
    def has_depth(self) -> bool:
        return self.Z is not None

    @property
    def shape(self) -> tuple[int, int]:
        return self.geom.height, self.geom.width


def make_view(frame: Frame, cal: Calibration, geom: ViewGeometry, colours: ColourModel, use_depth: bool = True,
              refine: bool = True) -> View:
    """Check ``frame`` against ``cal`` (``CalibrationError``) and prepare it; ``PerceptionError``
    for frames that cannot be read (wrong dtype or shape). ``refine``: correct the camera's tilt
    and height from the table plane seen in depth (``table_correction``)."""
    rgb = np.asarray(frame.rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise PerceptionError(f"camera {frame.camera!r}: rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    cal.check(frame)
    labels = colours.label(np.ascontiguousarray(rgb))
    Z, noise = None, 0.0
    if use_depth and frame.depth is not None:
        depth = np.asarray(frame.depth)
        if depth.shape != rgb.shape[:2]:
            raise PerceptionError(f"camera {frame.camera!r}: depth is {depth.shape} but rgb is {rgb.shape[:2]}; they must be aligned")
        if refine:
            fix = table_correction(geom, depth, labels)
            if fix is not None:
                geom = geom.corrected(*fix)
        Z = geom.heights(depth)
        if not np.isfinite(Z).any():
            Z = None  # a depth image with no reading at all: perceive from colour alone
    sub = (slice(None, None, 4), slice(None, None, 4))  # every 16th pixel is plenty for two medians
    table = _table_pixels(labels, Z, sub)
    v = labels.hsv[:, :, 2][sub][table]
    table_v = float(np.median(v)) if v.size else 190.0
    if Z is not None:
        z = Z[sub][table]
        noise = float(1.4826 * np.median(np.abs(z - np.median(z)))) if z.size > 50 else 0.0
    return View(frame.camera, frame, cal, geom, labels, Z, noise, table_v)


def regeometry(view: View, geom: ViewGeometry) -> View:
    """``view`` seen through a corrected geometry (heights recomputed)."""
    Z = geom.heights(view.frame.depth) if view.Z is not None else None
    return View(view.name, view.frame, view.cal, geom, view.labels, Z, view.noise, view.table_v)


def table_correction(geom: ViewGeometry, depth: np.ndarray, labels: Labels, points: int = 700) -> tuple[np.ndarray, float] | None:
    """The turn (3, 3) about the camera centre and the height change (m) that put the table seen in
    depth at z = 0, or None when the table is not clearly seen or the calibration already agrees.

    A camera knocked by a degree moves everything it sees by ~1.7 cm at 1 m; the table plane pins
    two of its three angles and its height (turning about the vertical and sliding sideways
    leave the table where it is, and stay uncorrected). About ``points`` pixels on a grid are used."""
    H, W = depth.shape
    step = max(1, int(np.sqrt(H * W / points)))
    d = depth[step // 2::step, step // 2::step]  # (h, w)
    ok = ~labels.chroma[step // 2::step, step // 2::step] & (d > 0) & (d < 1e3)  # NaN fails both
    rr, cc = np.nonzero(ok)
    if len(rr) < MIN_TABLE_POINTS:
        return None
    rr, cc = rr * step + step // 2, cc * step + step // 2
    P = geom.points(depth, rr, cc)  # (N, 3) base frame, current calibration
    if _agrees(P):
        return None
    band = 0.08  # an oblique camera knocked by a degree sees the far table this far off
    P = P[np.abs(P[:, 2]) < band]
    n = np.array([0.0, 0.0, 1.0])
    centre = np.zeros(3)
    for _ in range(4):
        if len(P) < MIN_TABLE_POINTS:
            return None
        centre = P.mean(0)
        x, y, z = (P - centre).T
        # z = a x + b y (least squares; the table is never seen edge-on): 2x2 normal equations by hand
        sxx, sxy, syy, sxz, syz = x @ x, x @ y, y @ y, x @ z, y @ z
        det = sxx * syy - sxy * sxy
        if det <= 0:
            return None
        a, b = (syy * sxz - sxy * syz) / det, (sxx * syz - sxy * sxz) / det
        n = np.array([-a, -b, 1.0]) / np.sqrt(a * a + b * b + 1.0)
        dist = np.abs(x * n[0] + y * n[1] + z * n[2])
        tight = max(0.002, 3.75 * float(dist.mean()))  # ~3 sigma for normal scatter
        keep = dist < min(band / 2, tight)
        if band <= 0.004 and keep.mean() > 0.98:
            break
        band = min(band / 2, tight)
        P = P[keep]
    angle = float(np.arccos(np.clip(n[2], -1.0, 1.0)))
    if angle > np.radians(MAX_TILT_DEG):
        return None
    axis = np.cross(n, [0.0, 0.0, 1.0])
    s = np.linalg.norm(axis)
    C = np.eye(3) if s < 1e-12 else _rodrigues(axis / s, angle)
    z0 = float((C @ (centre - geom.origin))[2] + geom.origin[2])
    if angle < 2e-4 and abs(z0) < 3e-4:
        return None
    return C, -z0


def _agrees(P: np.ndarray) -> bool:
    """Most of the table points (N, 3) lie within a few millimetres of z = 0 with no slope: the
    calibration is right (the usual case, settled with one fit instead of four)."""
    near = P[np.abs(P[:, 2]) < 0.004]
    if len(near) < max(MIN_TABLE_POINTS, 0.6 * len(P)):
        return False
    x, y, z = (near - near.mean(0)).T
    sxx, sxy, syy, sxz, syz = x @ x, x @ y, y @ y, x @ z, y @ z
    det = sxx * syy - sxy * sxy
    if det <= 0:
        return False
    a, b = (syy * sxz - sxy * syz) / det, (sxx * syz - sxy * sxz) / det
    return bool(np.hypot(a, b) < 2e-4 and abs(float(near[:, 2].mean())) < 3e-4)


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _table_pixels(labels: Labels, Z: np.ndarray | None, sub) -> np.ndarray:
    """(h, w) bool over the pixels ``sub``: achromatic ones at table height (without depth: the achromatic ones)."""
    m = ~labels.chroma[sub]
    if Z is not None:
        with np.errstate(invalid="ignore"):
            m &= np.abs(Z[sub]) < TABLE_BAND
    return m


def blobs(mask: np.ndarray, min_px: int = 1) -> Iterator[tuple[int, int, np.ndarray]]:
    """8-connected regions of a (H, W) mask as (top row, left column, (h, w) bool region in its box).

    ``cv2.findContours`` + a labelling of each box is several times faster here than
    ``cv2.connectedComponentsWithStats`` on the whole frame."""
    m = mask.astype(np.uint8)
    cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for c in cs:
        x, y, w, h = cv2.boundingRect(c)
        if w * h < min_px:
            continue
        sub = m[y:y + h, x:x + w]
        n, lab = cv2.connectedComponents(sub, connectivity=8)
        if n > 2:
            u, v = c[0, 0]
            region = lab == lab[v - y, u - x]
        else:
            region = lab == 1
        if min_px <= 1 or int(region.sum()) >= min_px:
            yield y, x, region
