"""What perception cannot name but must not drop: the support of an object that floats (no camera
sees what holds it up) and achromatic things on the table (colours outside the vocabulary)."""

from __future__ import annotations

import cv2
import numpy as np

from embodied.perception.containers import FoundContainer
from embodied.perception.things import Thing
from embodied.perception.views import View, blobs

ROBOT_Z = 0.3  # a region reaching this high (m) is the arm
GRIPPER_RADIUS = 0.12  # achromatic regions this close (m) to the grasp point are the hand and fingers
MIN_HEIGHT = 0.012  # achromatic pixels this far above the table (m) are a thing on it
MIN_AREA = 6e-4  # m^2 of top face to report an achromatic thing


def _near_gripper(t, gripper, height: float) -> bool:
    """Between or right under the fingers (held, or about to be): nothing need hold it up."""
    if gripper is None:
        return False
    g = np.asarray(gripper[0], float)
    return bool(np.hypot(*(t.centre - g[:2])) < 0.06 and abs(t.bottom + height / 2 - g[2]) < 0.06)


def supports(things: list, height: float, levels: list[float], gripper) -> list:
    """An unknown thing under every object whose bottom is an object height or more above any
    support level with nothing found beneath it (one per missing layer)."""
    out: list = []
    for t in list(things):
        if t.source == "held" or _near_gripper(t, gripper, height):
            continue
        b = t.bottom
        while min(abs(b - lv) for lv in levels) > 0.5 * height and b > min(levels) + 0.5 * height:
            below = [s for s in things + out if s is not t and np.hypot(*(s.centre - t.centre)) < 0.03 and abs(s.bottom + height - b) < 0.015]
            if below:
                break
            u = Thing(None, None, t.centre.copy(), b - height, 0.0, 0.2, "support")
            out.append(u)
            b -= height
    return out


def achromatic(views: list[View], containers: list[FoundContainer], things: list, height: float, size: float, gripper) -> list:
    """Things above the table that have no vocabulary colour (overhead-most camera with depth)."""
    view = next((v for v in views if v.Z is not None), None)
    if view is None:
        return []
    chroma = cv2.dilate(view.labels.chroma.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    with np.errstate(invalid="ignore"):
        m = (view.Z > MIN_HEIGHT) & ~chroma
    out = []
    g = None if gripper is None else np.asarray(gripper[0], float)
    for y, x, sub in blobs(m, 6):
        h, w = sub.shape
        rr, cc_ = np.nonzero(sub)
        rows, cols = rr + y, cc_ + x
        z = view.Z[rows, cols]
        if np.nanmax(z) > ROBOT_Z:
            continue
        pts = view.geom.points(view.frame.depth, rows, cols)  # (N, 3)
        if g is not None and np.min(np.linalg.norm(pts - g, axis=1)) < GRIPPER_RADIUS:
            continue
        keep = np.ones(len(pts), bool)
        for c in containers:
            keep &= ~c.on_wall(pts, margin=0.01)
        for t in things:
            keep &= ~t.solid(height).holds(pts, size, 0.008)
        if keep.sum() < 6:
            continue
        pts = pts[keep]
        level = float(np.percentile(pts[:, 2], 95))
        top = pts[np.abs(pts[:, 2] - level) < max(0.004, 3 * view.noise)]
        area = len(top) * view.geom.pixel_area(float(cols.mean()), float(rows.mean()), level)
        if area < MIN_AREA:
            continue
        t = Thing(None, None, top[:, :2].mean(0), max(level - height, 0.0), 0.0, 0.3, "achromatic")
        t.views[view.name] = {"bbox": [int(x), int(y), int(w), int(h)],
                              "contour": cv2.convexHull(np.stack([cols, rows], -1).astype(np.int32)).reshape(-1, 2).tolist()}
        out.append(t)
    return out
