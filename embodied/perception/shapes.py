"""Footprints of the vocabulary's shapes, and fitting them to outline points in the base frame.

Every object is an upright prism (or cylinder) whose footprint is known up to its pose:
``size`` is the cube's edge, the cylinder's diameter and a polygon's circum-diameter
(``envs.sim`` builds polygons with a vertex at yaw 0; the cube is a box whose face normal
is at yaw). A convex footprint is described by its *support*: for a point p relative to the
centre, ``max_k p . n_k`` over the face normals n_k (``|p|`` for the circle); an outline point
lies where the support equals the apothem. Fitting = find centre and yaw that make the
support of every outline point equal the apothem (Gauss-Newton, robust weights), after a
grid search over yaw within the shape's symmetry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from embodied.core.vocab import SHAPE_SIDES
from embodied.core.world import OBJECT_SIZE


@dataclass(frozen=True)
class Footprint:
    shape: str
    sides: int  # 0 = circle
    apothem: float  # centre to a face (m); the radius for a circle
    radius: float  # centre to a vertex (m)
    normal_offset: float  # angle of the first face normal relative to the yaw
    period: float  # yaw symmetry (2 pi / n; 0 for the circle)
    area: float  # m^2


@lru_cache(maxsize=64)
def footprint(shape: str, size: float = OBJECT_SIZE) -> Footprint:
    n = SHAPE_SIDES[shape]
    if n == 0:
        r = size / 2
        return Footprint(shape, 0, r, r, 0.0, 0.0, math.pi * r * r)
    if shape == "cube":
        h = size / 2
        return Footprint(shape, 4, h, h * math.sqrt(2), 0.0, math.pi / 2, size * size)
    r = size / 2
    return Footprint(shape, n, r * math.cos(math.pi / n), r, math.pi / n, 2 * math.pi / n, n / 2 * r * r * math.sin(2 * math.pi / n))


def canonical_yaw(fp: Footprint, yaw: float) -> float:
    """The yaw within (-period/2, period/2] that draws the same footprint (0 for the circle)."""
    if fp.sides == 0:
        return 0.0
    p = fp.period
    return float(yaw - p * math.floor(yaw / p + 0.5))


def yaw_error(fp: Footprint, a: float, b: float) -> float:
    """Smallest angle between two yaws modulo the shape's symmetry (radians)."""
    if fp.sides == 0:
        return 0.0
    d = (a - b) % fp.period
    return float(min(d, fp.period - d))


def outline(fp: Footprint, centre, yaw: float, circle_points: int = 24) -> np.ndarray:
    """Vertices (M, 2) of the footprint at ``centre`` (x, y) and ``yaw``."""
    c = np.asarray(centre, float)[:2]
    if fp.sides == 0:
        t = np.linspace(0, 2 * math.pi, circle_points, endpoint=False)
        return c + fp.radius * np.stack([np.cos(t), np.sin(t)], -1)
    first = yaw + fp.normal_offset - math.pi / fp.sides  # vertex between the last and the first face
    t = first + 2 * math.pi * np.arange(fp.sides) / fp.sides
    return c + fp.radius * np.stack([np.cos(t), np.sin(t)], -1)


def _normals(fp: Footprint, yaws: np.ndarray) -> np.ndarray:
    """Face normal angles (A, n) for yaws (A,)."""
    return yaws[:, None] + fp.normal_offset + 2 * math.pi * np.arange(fp.sides)[None, :] / fp.sides


def support(fp: Footprint, rel: np.ndarray, yaw: float) -> np.ndarray:
    """Support (N,) of points ``rel`` (N, 2) relative to the centre."""
    if fp.sides == 0:
        return np.hypot(rel[:, 0], rel[:, 1])
    a = _normals(fp, np.array([yaw]))[0]  # (n,)
    return np.max(rel @ np.stack([np.cos(a), np.sin(a)]), axis=1)


def inside(fp: Footprint, centre, yaw: float, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which points (N, 2) lie within the footprint grown by ``margin`` (N,) bool."""
    return support(fp, np.asarray(pts, float)[:, :2] - np.asarray(centre, float)[:2], yaw) <= fp.apothem + margin


@dataclass
class Fit:
    shape: str
    centre: np.ndarray  # (2,) x, y
    yaw: float  # canonical (see canonical_yaw)
    rms: float  # RMS of the outline residuals (m) at the robust fit's pose
    scale: float  # mean support / apothem with the centre and yaw fitted (1 = the known size)
    n: int  # outline points used


@lru_cache(maxsize=64)
def _grid_table(fp: Footprint, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yaws (A,) over the symmetry period and the cosines and sines (A, n) of their face normals."""
    yaws = np.arange(0.0, fp.period, step)
    a = _normals(fp, yaws)
    return yaws, np.cos(a), np.sin(a)


def _grid(fp: Footprint, pts: np.ndarray, w: np.ndarray, centre: np.ndarray, step: float) -> tuple[float, float, float]:
    """Best yaw on a grid over the symmetry period (refined by a parabola), its weighted mean
    squared residual and the weighted mean support there."""
    rel = pts - centre  # (N, 2)
    sw = float(np.sum(w))
    if fp.sides == 0:
        sup = np.hypot(rel[:, 0], rel[:, 1])
        r = sup - fp.apothem
        return 0.0, float(np.dot(w, r * r) / sw), float(np.dot(w, sup) / sw)
    yaws, ca, sa = _grid_table(fp, step)
    sup = np.max(rel[:, 0, None, None] * ca[None] + rel[:, 1, None, None] * sa[None], axis=2)  # (N, A)
    cost = np.dot(w, (sup - fp.apothem) ** 2) / sw  # (A,)
    j = int(np.argmin(cost))
    c0, c1, c2 = cost[j - 1], cost[j], cost[(j + 1) % len(cost)]
    den = c0 - 2 * c1 + c2
    off = 0.5 * (c0 - c2) / den if den > 1e-18 else 0.0
    return float(yaws[j] + min(max(off, -0.5), 0.5) * step), float(c1), float(np.dot(w, sup[:, j]) / sw)


def fit(fp: Footprint, pts: np.ndarray, centre0, weights: np.ndarray | None = None, prior: tuple[np.ndarray, float] | None = None,
        noise: float = 0.001, iters: int = 6, yaw_step: float = math.radians(2.0), fix_centre: bool = False) -> Fit:
    """Fit the footprint to outline points ``pts`` (N, 2).

    ``centre0``: start (the centre, with ``fix_centre``: then only the yaw is searched);
    ``prior``: (centre (2,), sigma m) pulls the centre when the outline does not pin it (one
    visible face); ``noise``: expected outline noise (m) for the robust weights.
    """
    pts = np.asarray(pts, float)[:, :2]
    w0 = np.ones(len(pts)) if weights is None else np.asarray(weights, float)
    c = np.asarray(centre0, float)[:2].copy()
    yaw, cost, mean_sup = _grid(fp, pts, w0, c, yaw_step)
    if fix_centre:  # the grid's answer, unweighted by the robust weights
        return Fit(fp.shape, c, canonical_yaw(fp, yaw), math.sqrt(cost), mean_sup / fp.apothem, len(pts))
    w = w0
    for _ in range(iters):
        rel = pts - c  # (N, 2)
        if fp.sides == 0:
            r = np.maximum(np.hypot(rel[:, 0], rel[:, 1]), 1e-9)
            res = r - fp.apothem
            J = np.stack([-rel[:, 0] / r, -rel[:, 1] / r], -1)  # (N, 2)
        else:
            a = yaw + fp.normal_offset + 2 * math.pi * np.arange(fp.sides) / fp.sides  # (n,)
            ca, sa = np.cos(a), np.sin(a)
            proj = rel[:, :1] * ca + rel[:, 1:] * sa  # (N, n)
            k = np.argmax(proj, 1)
            res = proj[np.arange(len(pts)), k] - fp.apothem
            ck, sk = ca[k], sa[k]
            J = np.stack([-ck, -sk, sk * -rel[:, 0] + ck * rel[:, 1]], -1)  # (N, 3)
        hub = 2.0 * noise
        ares = np.abs(res)
        w = w0 * np.where(ares <= hub, 1.0, hub / np.maximum(ares, 1e-12))
        A = J.T @ (w[:, None] * J)
        A[np.diag_indices_from(A)] += 1e-9
        g = J.T @ (w * res)
        if prior is not None:
            pc, sigma = prior
            lam = float(w.sum()) * (noise / max(sigma, 1e-6)) ** 2 + 1e-6
            A[0, 0] += lam
            A[1, 1] += lam
            g[:2] += lam * (c - np.asarray(pc, float)[:2])
        step = np.linalg.solve(A, -g)
        c = c + np.clip(step[:2], -0.01, 0.01)
        if fp.sides:
            yaw += float(np.clip(step[2], -0.3, 0.3))
        if abs(step[0]) + abs(step[1]) < 2e-5:
            break
    sup = support(fp, pts - c, yaw)
    res = sup - fp.apothem
    rms = float(np.sqrt(np.sum(w0 * res ** 2) / max(np.sum(w0), 1e-12)))  # plain: a wrong shape's large residuals count in full
    return Fit(fp.shape, c, canonical_yaw(fp, yaw), rms, float(np.average(sup, weights=w0) / fp.apothem), len(pts))


def rank(pts: np.ndarray, centre0, shapes, size: float = OBJECT_SIZE, **kw) -> list[Fit]:
    """Fits of every shape in ``shapes`` to the outline, best (smallest RMS) first."""
    return sorted((fit(footprint(s, size), pts, centre0, **kw) for s in shapes), key=lambda f: f.rms)
