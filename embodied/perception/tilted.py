"""Tops that lean: an object tipped against a wall or another object shows its top at a slant,
so it has no level plateau. A plane fitted to its points (RANSAC, then least squares) that
leans less than ``MAX_TILT_DEG`` is taken as its top: the outline is fitted in that plane's
own coordinates (the footprint is the same polygon there) and the centre lies half a height
below the top's centre along the plane's normal.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from embodied.perception.faces import LEVEL_TOL
from embodied.perception.hidden import Evidence
from embodied.perception.shapes import footprint, rank
from embodied.perception.views import View

MIN_TILT_DEG, MAX_TILT_DEG = 6.0, 40.0
MIN_INLIERS = 25
ITERATIONS = 48


def plane(points: np.ndarray, tol: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Normal (3,) pointing up, a point on it (3,) and the inlier mask (N,) of the largest plane in ``points`` (N, 3)."""
    n_pts = len(points)
    if n_pts < MIN_INLIERS:
        return None
    best, best_n = None, 0
    for _ in range(ITERATIONS):
        a, b, c = points[rng.choice(n_pts, 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-9:
            continue
        n /= norm
        inl = np.abs((points - a) @ n) < tol
        k = int(inl.sum())
        if k > best_n:
            best, best_n = inl, k
    if best is None or best_n < MIN_INLIERS:
        return None
    P = points[best]
    centre = P.mean(0)
    _, vecs = np.linalg.eigh((P - centre).T @ (P - centre))
    n = vecs[:, 0] if vecs[2, 0] > 0 else -vecs[:, 0]
    return n, centre, np.abs((points - centre) @ n) < tol


def tilted_top(ev: Evidence, view: View, shapes, size: float, height: float, seed: int = 0):
    """(shape, centre (3,), yaw, confidence, rows, cols) of a leaning object whose top is in ``ev``, or None."""
    tol = max(LEVEL_TOL, 2.5 * view.noise)
    found = plane(ev.points, tol, np.random.default_rng(seed))
    if found is None:
        return None
    n, centre, inl = found
    tilt = math.degrees(math.acos(min(1.0, float(n[2]))))
    if not MIN_TILT_DEG <= tilt <= MAX_TILT_DEG:
        return None
    rows, cols = ev.rows[inl], ev.cols[inl]
    H, W = view.shape
    y0, x0 = int(rows.min()), int(cols.min())
    m = np.zeros((int(rows.max()) - y0 + 1, int(cols.max()) - x0 + 1), np.uint8)
    m[rows - y0, cols - x0] = 1
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    pad = np.pad(m, 1)
    h, w = m.shape
    outside = np.stack([pad[1:h + 1, 2:] == 0, pad[1:h + 1, :w] == 0, pad[2:, 1:w + 1] == 0, pad[:h, 1:w + 1] == 0]) & (m > 0)
    d, er, ec = np.nonzero(outside)
    dr, dc = np.array([0, 0, 1, -1])[d], np.array([1, -1, 0, 0])[d]
    nr, nc = er + y0 + dr, ec + x0 + dc
    inimg = (nr >= 0) & (nr < H) & (nc >= 0) & (nc < W)
    u, v = ec + x0 + dc / 2.0, er + y0 + dr / 2.0
    rays = view.geom.rays(u, v)  # (M, 3) per metre of z-depth
    s = ((centre - view.geom.origin) @ n) / np.where(np.abs(rays @ n) < 1e-9, 1e-9, rays @ n)
    edge3 = view.geom.origin + rays * s[:, None]  # (M, 3) the crack points on the plane
    zn = np.full(len(nr), np.nan)
    zn[inimg] = view.Z[nr[inimg], nc[inimg]]
    with np.errstate(invalid="ignore"):
        trusted = inimg & (zn == zn) & ~(zn > edge3[:, 2] + tol)  # not next to something higher (an occluder)
    if trusted.sum() < 12:
        return None
    e1 = np.array([1.0, 0.0, 0.0]) - n * n[0]
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    to2 = lambda p: np.stack([(p - centre) @ e1, (p - centre) @ e2], -1)  # noqa: E731  (plane coordinates)
    fits = rank(to2(edge3[trusted]), np.zeros(2), shapes, size=size, noise=0.0012)
    best = fits[0]
    if best.rms > 0.0025 or abs(best.scale - 1.0) > 0.2:
        return None
    margin = (fits[1].rms - best.rms) / 0.0012 if len(fits) > 1 else 5.0
    top = centre + best.centre[0] * e1 + best.centre[1] * e2
    along = math.cos(best.yaw) * e1 + math.sin(best.yaw) * e2
    conf = 0.8 * (1.0 - math.exp(-max(margin, 0.0))) * min(1.0, float(trusted.mean()) / 0.9)
    fp = footprint(best.shape, size)
    yaw = math.atan2(along[1], along[0])
    return best.shape, top - n * height / 2, yaw if fp.sides else 0.0, float(conf), rows, cols
