"""Objects no camera sees the top of: the lower ones of a stack, one under the gripper.

What is left of the coloured pixels once the top faces, the containers and the objects
already found explain theirs is side-face evidence: base-frame points (from depth) on the
object's vertical faces. Points on a prism's side lie on its footprint's outline, so the
same outline fit names the shape and finds the centre, with the object above (if any) as a
prior for the centre. Height: under an object, it ends where that one starts; otherwise the
top of its points, snapped to the table, a container floor or an object's top when close.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from embodied.perception.containers import FoundContainer
from embodied.perception.shapes import footprint, rank
from embodied.perception.things import Solid
from embodied.perception.views import View

MIN_Z = 0.006  # m above the table: lower coloured points are floor, not object
MIN_POINTS = 10  # side-face points needed for a hypothesis
SNAP = 0.012  # bottoms this close to a support level are put on it


@dataclass
class Evidence:
    camera: str
    colour: int
    points: np.ndarray  # (N, 3) base frame
    rows: np.ndarray  # (N,)
    cols: np.ndarray
    eye: np.ndarray  # (3,) camera centre


@dataclass
class Hidden:
    colour: int
    shape: str | None
    centre: np.ndarray  # (2,)
    yaw: float
    bottom: float
    top: float
    confidence: float
    evidence: list[Evidence] = field(default_factory=list)
    held: bool = False  # explained as the object between the gripper's fingers


def leftover(view: View, used: np.ndarray, containers: list[FoundContainer], solids: list[Solid], size: float) -> list[Evidence]:
    """Coloured points of ``view`` not explained by its faces (``used``, (H, W) bool), the containers or ``solids``."""
    if view.Z is None:
        return []
    with np.errstate(invalid="ignore"):
        m = view.labels.chroma & (view.Z > MIN_Z) & ~used
    rows, cols = np.nonzero(m)
    if len(rows) < MIN_POINTS:
        return []
    pts = view.geom.points(view.frame.depth, rows, cols)  # (N, 3)
    keep = np.ones(len(pts), bool)
    for c in containers:
        keep &= ~c.on_wall(pts)
    margin = 0.006 + 3.0 * view.noise
    for s in solids:
        keep &= ~s.holds(pts, size, margin)
    rows, cols, pts = rows[keep], cols[keep], pts[keep]
    if len(rows) < MIN_POINTS:
        return []
    mask = np.zeros(view.shape, np.uint8)
    mask[rows, cols] = 1
    n, cc = cv2.connectedComponents(mask, connectivity=8)
    lab = cc[rows, cols]
    out = []
    colour = view.labels.index[rows, cols]
    for i in range(1, n):
        region = lab == i
        if region.sum() < MIN_POINTS:
            continue
        for k in np.unique(colour[region]):  # touching regions of different colours are different objects
            sel = region & (colour == k)
            if sel.sum() >= MIN_POINTS:
                out.append(Evidence(view.name, int(k), pts[sel], rows[sel], cols[sel], view.geom.origin))
    return out


def hypotheses(evidence: list[Evidence], solids: list[Solid], shapes: tuple[str, ...], size: float, height: float,
               levels: list[float], noise: float, gripper=None) -> list[Hidden]:
    """Objects that explain the leftover evidence, the largest piece of evidence first; a piece
    (from any camera) that mostly lies in an object already made joins it and the object is
    fitted again from all its pieces. With ``gripper`` (grasp point, opening), the evidence
    between the fingers is one object held there (``held_object``)."""
    if gripper is not None and float(gripper[1]) > 0.01:
        near = [e for e in evidence if _at_gripper(e, gripper)]
        if near:
            colour = max({e.colour for e in near}, key=lambda k: sum(len(e.points) for e in near if e.colour == k))
            mine = [e for e in near if e.colour == colour]
            h = held_object(mine, gripper, shapes, size, height, noise)
            if h is not None:
                hs = Solid(h.shape, h.centre, h.yaw, h.bottom, h.top)
                rest = []
                for e in evidence:
                    if any(e is m for m in mine):
                        continue
                    if e.colour == h.colour and np.mean(hs.holds(e.points, size, 0.015)) > 0.5:
                        h.evidence.append(e)
                    else:
                        rest.append(e)
                return [h] + hypotheses(rest, solids, shapes, size, height, levels, noise)
    made: list[Hidden] = []
    margin = 0.008 + 3.0 * noise
    for ev in sorted(_by_layer(evidence, height), key=lambda e: -len(e.points)):
        for i, h in enumerate(made):
            solid = Solid(h.shape, h.centre, h.yaw, h.bottom, h.top)
            if h.colour == ev.colour and np.mean(solid.holds(ev.points, size, margin)) >= 0.5:
                again = _explain(h.evidence + [ev], solids, shapes, size, height, levels, noise)
                made[i] = again if again is not None and (again.shape or not h.shape) else h
                if made[i] is h:
                    h.evidence.append(ev)
                break
        else:
            h = _explain([ev], solids, shapes, size, height, levels, noise)
            if h is not None:
                made.append(h)
    return made


def _by_layer(evidence: list[Evidence], height: float) -> list[Evidence]:
    """Split evidence spanning more than one object height into layers (a same-colour stack)."""
    out = []
    for ev in evidence:
        z = ev.points[:, 2]
        if z.max() - z.min() <= 1.35 * height:
            out.append(ev)
            continue
        top = z.max()
        while top > z.min() + 0.3 * height:
            sel = (z <= top + 1e-6) & (z > top - height)
            if sel.sum() >= MIN_POINTS:
                out.append(Evidence(ev.camera, ev.colour, ev.points[sel], ev.rows[sel], ev.cols[sel], ev.eye))
            top -= height
    return out


def _explain(group: list[Evidence], solids: list[Solid], shapes, size: float, height: float, levels: list[float], noise: float) -> Hidden | None:
    P = np.concatenate([e.points for e in group])  # (N, 3)
    zmax = float(P[:, 2].max())
    xy = P[:, :2].mean(0)
    above = [s for s in solids if np.hypot(*(s.centre - xy)) < 0.035 and abs(s.bottom - zmax) < 0.02]
    if above:
        s = min(above, key=lambda s: abs(s.bottom - zmax))
        top, prior = s.bottom, (s.centre, 0.01)
        c0 = s.centre
    else:
        top = zmax
        away = np.zeros(2)
        for e in group:
            d = e.points[:, :2].mean(0) - e.eye[:2]
            away += d / max(np.linalg.norm(d), 1e-9)
        c0 = xy + footprint("cube", size).apothem * away / max(np.linalg.norm(away), 1e-9)
        prior = (c0, 0.02)
    bottom = top - height
    supports = list(levels) + [s.top for s in solids if np.hypot(*(s.centre - c0)) < 0.03]
    near = [lv for lv in supports if abs(bottom - lv) < SNAP]
    if near:
        bottom = min(near, key=lambda lv: abs(bottom - lv))
        top = bottom + height
    elif not above and bottom < min(levels) + height / 2:
        # an upright prism stands on something: this one would sink into the table (one lying on its side)
        return Hidden(group[0].colour, None, xy, 0.0, min(levels), min(levels) + height, 0.1, group)
    side = P[(P[:, 2] < zmax - 0.003) & (P[:, 2] > bottom + 0.002)][:, :2]
    conf = min(1.0, len(P) / 60.0)
    if len(side) < MIN_POINTS:
        return Hidden(group[0].colour, None, c0, 0.0, bottom, top, 0.2 * conf, group)
    fits = rank(side, c0, shapes, size=size, prior=prior, noise=max(noise, 7e-4))
    best = fits[0]
    margin = (fits[1].rms - best.rms) / max(noise, 7e-4) if len(fits) > 1 else 5.0
    good = best.rms < 4.0 * max(noise, 7e-4) + 0.001
    conf *= 0.85 * (1.0 - np.exp(-max(margin, 0.0)))
    return Hidden(group[0].colour, best.shape if good else None, best.centre, best.yaw, bottom, top, float(conf), group)


GRIP_REACH = 0.05  # evidence within this (m, horizontally) of the grasp point and near its height is the held object
PAD_SQUEEZE = 0.001  # the fingers' joint reading ends about this much (m) below the object's width
GRIP_WIDTH_SIGMA = 0.003  # how well (m) that reading tells the width (measured: 0.0382-0.0396 on 4 cm, 0.0335 on a triangle's 3 cm)


def _at_gripper(e: Evidence, gripper) -> bool:
    g = np.asarray(gripper[0], float)
    p = e.points
    near = (np.hypot(p[:, 0] - g[0], p[:, 1] - g[1]) < GRIP_REACH) & (np.abs(p[:, 2] - g[2]) < 0.04)
    return bool(near.mean() > 0.5)


def grip_width(shape: str, size: float) -> float:
    """How far apart the fingers stop on ``shape`` grasped across a face (``skills.grasp_yaw``):
    face to face for even sides and the circle, face to vertex for odd sides."""
    fp = footprint(shape, size)
    if fp.sides == 0 or fp.sides % 2 == 0:
        return 2 * fp.apothem
    return fp.apothem + fp.radius


def held_object(group: list[Evidence], gripper, shapes, size: float, height: float, noise: float) -> Hidden | None:
    """The object between the fingers: centred near the grasp point (the skill grasps 2.2 cm below
    its top), its shape from its visible sides and from how far the fingers closed."""
    g, opening = np.asarray(gripper[0], float), float(gripper[1])
    P = np.concatenate([e.points for e in group])
    centre_z = g[2] + 0.002
    bottom, top = centre_z - height / 2, centre_z + height / 2
    side = P[(P[:, 2] < top - 0.003) & (P[:, 2] > bottom + 0.002)][:, :2]
    sig = max(noise, 7e-4)
    if len(side) < MIN_POINTS // 2:
        return Hidden(group[0].colour, None, g[:2].copy(), 0.0, bottom, top, 0.2, group, held=True)
    fits = rank(side, g[:2], shapes, size=size, prior=(g[:2], 0.01), noise=sig)
    scores = [f.rms / sig + 0.5 * ((opening + PAD_SQUEEZE - grip_width(f.shape, size)) / GRIP_WIDTH_SIGMA) ** 2 for f in fits]
    order = np.argsort(scores)
    best = fits[order[0]]
    margin = scores[order[1]] - scores[order[0]] if len(order) > 1 else 5.0
    conf = min(1.0, len(P) / 60.0) * (1.0 - np.exp(-max(margin, 0.0) / 2.0))
    good = best.rms < 4.0 * sig + 0.001
    return Hidden(group[0].colour, best.shape if good else None, best.centre, best.yaw, bottom, top, float(conf), group, held=True)
