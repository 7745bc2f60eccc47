"""Registering a second camera to the first through the objects both see.

The table plane fixes a depth camera's tilt and height (``views.table_correction``) but not
its turn about the vertical or a sideways slide; an oblique camera knocked by a degree then
puts what it sees ~1.4 cm off. Its coloured points on objects the overhead camera has named
must lie on those prisms (side points on the footprint's outline, top points inside it), so
a planar turn and shift of the camera that puts them there (robust Gauss-Newton, lightly
held at zero) registers it. Neither camera knows the robot's frame better than the other, so
the results are then moved to the weighted mean of their frames (``frame_fix``).
"""

from __future__ import annotations

import math

import numpy as np

from embodied.perception.shapes import footprint
from embodied.perception.things import Solid
from embodied.perception.views import View, regeometry

MIN_POINTS = 40  # points on named objects needed to register
MIN_Z = 0.006  # m: lower coloured points are a container's floor
MAX_SHIFT, MAX_TURN = 0.04, math.radians(4.0)  # larger corrections are not trusted
# Smaller ones are within what the fit can tell (cameras exactly where their calibration says
# register at 2.0-2.5 mm and 0.06-0.17 deg over 20 L1 scenes; 1 cm / 1 degree knocks at a median 9.7 mm):
MIN_SHIFT, MIN_TURN = 0.004, math.radians(0.3)
PRIOR_SHIFT, PRIOR_TURN = 0.02, math.radians(2.0)  # how firmly the correction is held at zero
# A registered oblique camera's frame weighs this against the overhead camera's (1): its own
# slide and its turn about the vertical (uncorrected by the table; ~1.4 cm at its range per
# degree) make its frame about twice as uncertain.
SECOND_WEIGHT = 0.5


def register(view: View, solids: list[tuple[int, Solid]], size: float, step: int = 2) -> tuple[View, tuple | None]:
    """``view`` with its geometry turned and shifted onto ``solids`` ((colour index, solid) of the
    named objects, base frame), and that correction (turn, shift x, shift y, about x, about y);
    unchanged (and None) when too little is shared or the fit is doubtful."""
    if view.Z is None or not solids:
        return view, None
    Z = view.Z[::step, ::step]
    idx = view.labels.index[::step, ::step]
    with np.errstate(invalid="ignore"):
        rr, cc = np.nonzero((idx > 0) & (Z > MIN_Z))
    if len(rr) < MIN_POINTS:
        return view, None
    rows, cols = rr * step, cc * step
    P = view.geom.points(view.frame.depth, rows, cols)  # (N, 3)
    k = idx[rr, cc]
    pts, owner = [], []
    for j, (colour, s) in enumerate(solids):
        near = (k == colour) & (np.hypot(P[:, 0] - s.centre[0], P[:, 1] - s.centre[1]) < 0.05) \
            & (P[:, 2] > s.bottom + 0.003) & (P[:, 2] < s.top + 0.01)
        pts.append(P[near])
        owner.append(np.full(int(near.sum()), j))
    P, own = np.concatenate(pts), np.concatenate(owner)
    if len(P) < MIN_POINTS:
        return view, None
    q = P[:, :2].mean(0)
    x = np.zeros(3)  # turn, shift x, shift y
    noise = 0.002
    prior = 0.05 * np.array([(noise / PRIOR_TURN) ** 2, (noise / PRIOR_SHIFT) ** 2, (noise / PRIOR_SHIFT) ** 2])
    for _ in range(8):
        c, s = math.cos(x[0]), math.sin(x[0])
        rel = P[:, :2] - q
        moved = np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], -1) + q + x[1:]
        res, J = _residuals(moved, P[:, 2], own, solids, size, rel, x[0])
        w = np.where(np.abs(res) <= noise, 1.0, noise / np.maximum(np.abs(res), 1e-12))
        lam = prior * w.sum()
        dx = np.linalg.solve(J.T @ (w[:, None] * J) + np.diag(lam), -(J.T @ (w * res) + lam * x))
        x += dx
        if np.max(np.abs(dx)) < 1e-5:
            break
    if abs(x[0]) > MAX_TURN or np.hypot(x[1], x[2]) > MAX_SHIFT or (abs(x[0]) < MIN_TURN and np.hypot(x[1], x[2]) < MIN_SHIFT):
        return view, None
    Rz = np.array([[math.cos(x[0]), -math.sin(x[0]), 0.0], [math.sin(x[0]), math.cos(x[0]), 0.0], [0.0, 0.0, 1.0]])
    o = view.geom.origin
    q3 = np.array([q[0], q[1], o[2]])
    shift = (np.eye(3) - Rz) @ (q3 - o) + np.array([x[1], x[2], 0.0])
    return regeometry(view, view.geom.corrected(Rz, shift)), (float(x[0]), float(x[1]), float(x[2]), float(q[0]), float(q[1]))


def _residuals(xy: np.ndarray, z: np.ndarray, own: np.ndarray, solids, size: float, rel: np.ndarray, turn: float):
    """Residuals (N,) and Jacobian (N, 3) of points against their prisms: a side point's support
    minus the apothem; a top point only when outside."""
    res = np.zeros(len(xy))
    J = np.zeros((len(xy), 3))
    c, s = math.cos(turn), math.sin(turn)
    drot = np.stack([-s * rel[:, 0] - c * rel[:, 1], c * rel[:, 0] - s * rel[:, 1]], -1)  # d moved / d turn
    for j, (_, sol) in enumerate(solids):
        m = own == j
        if not m.any():
            continue
        fp = footprint(sol.shape or "cylinder", size)
        d = xy[m] - sol.centre
        if fp.sides == 0:
            r = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
            sup, n = r, d / r[:, None]
        else:
            a = sol.yaw + fp.normal_offset + 2 * math.pi * np.arange(fp.sides) / fp.sides
            proj = d[:, :1] * np.cos(a) + d[:, 1:] * np.sin(a)
            kk = np.argmax(proj, 1)
            sup = proj[np.arange(len(d)), kk]
            n = np.stack([np.cos(a[kk]), np.sin(a[kk])], -1)
        r = sup - fp.apothem
        top = z[m] > sol.top - 0.004
        r = np.where(top, np.maximum(r, 0.0), r)
        active = ~top | (r > 0)
        res[m] = r
        J[m, 0] = np.where(active, (n * drot[m]).sum(1), 0.0)
        J[m, 1] = np.where(active, n[:, 0], 0.0)
        J[m, 2] = np.where(active, n[:, 1], 0.0)
    return res, J


def frame_fix(corrections: list[tuple], weight: float = SECOND_WEIGHT) -> tuple | None:
    """The turn and shift that move results from the first camera's frame to the weighted mean of
    all the cameras' frames: with no landmark in view, each camera's own (uncorrectable) slide
    is as likely as the others', so their mean is the best guess of the robot's frame. Each
    registered camera weighs ``weight`` against the first camera's 1."""
    if not corrections:
        return None
    k = weight / (1.0 + weight * len(corrections))
    c = np.asarray(corrections, float)  # (n, 5)
    return (-k * c[:, 0].sum(), -k * c[:, 1].sum(), -k * c[:, 2].sum(), float(c[:, 3].mean()), float(c[:, 4].mean()))


def apply_fix(fix: tuple, xy: np.ndarray, yaw: float) -> tuple[np.ndarray, float]:
    """A point (2,) and a yaw moved by ``frame_fix``'s result."""
    turn, tx, ty, qx, qy = fix
    c, s = math.cos(turn), math.sin(turn)
    d = np.asarray(xy, float)[:2] - (qx, qy)
    return np.array([qx + c * d[0] - s * d[1] + tx, qy + s * d[0] + c * d[1] + ty]), float(yaw + turn)
