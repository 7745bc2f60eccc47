"""Containers: the grey tray and the coloured bins, found as large low regions of one colour.

Height tells a bin from an object of its colour: bin walls end at 2 cm, object tops start
at 4 cm (a red cube in a red bin is two things). The tray is the achromatic region clearly
darker than the table. A container's pose is a rectangle fitted to its points on the table
plane (robust extents along the ``cv2.minAreaRect`` axes); when the measured size is the
known one (``world.TRAY_HALF_EXTENTS`` / ``BIN_HALF_EXTENTS`` + the wall) the known inner
size is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from embodied.core.world import BIN_HALF_EXTENTS, CONTAINER_FLOOR, TRAY_HALF_EXTENTS
from embodied.perception.faces import OBJECT_MIN_Z
from embodied.perception.views import View, blobs

WALL = 0.008  # wall thickness (m) of the simulator's containers
WALL_HEIGHT = 0.02
MIN_FRACTION = 0.25  # of a container's outer area that must be visible to report it
DARKER = 0.8  # the tray is darker than this fraction of the table's brightness


@dataclass
class FoundContainer:
    name: str  # "tray" or "<colour> bin"
    colour: str
    centre: np.ndarray  # (2,) x, y of the floor's centre
    half_extents: tuple[float, float]  # inner half sizes (x, y) in the container's own axes
    yaw: float
    confidence: float
    camera: str
    rows: np.ndarray  # (P,) its pixels in that camera
    cols: np.ndarray

    def contains(self, xy, margin: float = 0.0) -> bool:
        d = _to_local(np.asarray(xy, float)[None, :2], self.centre, self.yaw)[0]
        return bool(abs(d[0]) < self.half_extents[0] + margin and abs(d[1]) < self.half_extents[1] + margin)

    def on_wall(self, pts: np.ndarray, margin: float = 0.004) -> np.ndarray:
        """(N,) bool: base-frame points (N, 3) on the walls or the floor."""
        d = _to_local(pts[:, :2], self.centre, self.yaw)
        hx, hy = self.half_extents
        within = (np.abs(d[:, 0]) < hx + 2 * WALL + margin) & (np.abs(d[:, 1]) < hy + 2 * WALL + margin)
        wall = within & ((np.abs(d[:, 0]) > hx - margin) | (np.abs(d[:, 1]) > hy - margin)) & (pts[:, 2] < WALL_HEIGHT + margin)
        floor = within & (pts[:, 2] < CONTAINER_FLOOR + margin)
        return wall | floor


def _to_local(xy: np.ndarray, centre: np.ndarray, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    d = xy - centre
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], -1)


def find_containers(view: View, colour_names: list[str]) -> list[FoundContainer]:
    """Every container ``view`` shows (at least a quarter of it)."""
    lab, hsv = view.labels, view.labels.hsv
    low = np.ones(view.shape, bool)
    if view.Z is not None:
        with np.errstate(invalid="ignore"):
            low = (view.Z < OBJECT_MIN_Z) & (view.Z > -0.01)
    out = []
    # bins: coloured and low
    bins = lab.chroma & low
    for y, x, region in blobs(bins, 30):
        rr, cc = np.nonzero(region)
        rows, cols = rr + y, cc + x
        k = np.bincount(lab.index[rows, cols]).argmax()
        found = _rectangle(view, rows, cols, f"{colour_names[k - 1]} bin", colour_names[k - 1], BIN_HALF_EXTENTS)
        if found is not None:
            out.append(found)
    # the tray: achromatic, darker than the table, low
    v = hsv[:, :, 2]
    tray = ~lab.chroma & low & (v < DARKER * view.table_v) & (v > 0.1 * view.table_v)
    regions = sorted(blobs(tray, 30), key=lambda b: -int(b[2].sum()))
    if regions:
        y, x, region = regions[0]
        rr, cc = np.nonzero(region)
        rows, cols = rr + y, cc + x
        found = _rectangle(view, rows, cols, "tray", "grey", TRAY_HALF_EXTENTS)
        if found is not None:
            out.append(found)
    return out


def _rectangle(view: View, rows: np.ndarray, cols: np.ndarray, name: str, colour: str, known: tuple[float, float]) -> FoundContainer | None:
    geom = view.geom
    if view.Z is not None:
        d = view.frame.depth[rows, cols]
        ok = np.isfinite(d) & (d > 0)
        rows, cols = rows[ok], cols[ok]
        pts = geom.points(view.frame.depth, rows, cols)[:, :2]
    else:
        pts = geom.on_plane(None, None, WALL_HEIGHT / 2, dirs=geom.dirs_at(rows, cols))[:, :2]
    if len(pts) < 20:
        return None
    outer = (known[0] + 2 * WALL) * (known[1] + 2 * WALL) * 4
    px = geom.pixel_area(float(cols.mean()), float(rows.mean()), WALL_HEIGHT / 2)
    if len(pts) * px < MIN_FRACTION * outer:
        return None
    (_, _), (_, _), ang = cv2.minAreaRect(pts.astype(np.float32))
    yaw = math.radians(ang)
    yaw = yaw - (math.pi / 2) * round(yaw / (math.pi / 2))  # the axis nearest the base x axis
    centre0 = pts.mean(0)
    loc = _to_local(pts, centre0, yaw)
    lo, hi = np.percentile(loc, [0.5, 99.5], axis=0)
    half = (hi - lo) / 2  # outer half sizes
    mid = (hi + lo) / 2
    c, s = math.cos(yaw), math.sin(yaw)
    centre = centre0 + np.array([c * mid[0] - s * mid[1], s * mid[0] + c * mid[1]])
    kx, ky = known[0] + 2 * WALL, known[1] + 2 * WALL
    if abs(half[0] - kx) < 0.02 and abs(half[1] - ky) < 0.02:
        inner, conf = known, 1.0
    elif abs(half[0] - ky) < 0.02 and abs(half[1] - kx) < 0.02:
        inner, conf, yaw = known, 1.0, yaw + math.pi / 2
    else:
        inner = (max(half[0] - 2 * WALL, 0.01), max(half[1] - 2 * WALL, 0.01))
        conf = 0.5
    if name == "tray" and conf < 1.0 and min(half) < 0.5 * min(known):
        return None  # a dark strip (the robot's fingers, a shadow) is not the tray
    if name != "tray" and conf < 1.0 and min(half) < 0.5 * min(known):
        return None
    fraction = min(1.0, len(pts) * px / outer)
    return FoundContainer(name, colour, centre, (float(inner[0]), float(inner[1])), float(yaw), conf * (0.5 + 0.5 * fraction),
                          view.name, rows, cols)
