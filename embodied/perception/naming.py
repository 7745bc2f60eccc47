"""Naming top faces: which shape (outline fit + area), where (centre), which way (yaw), how sure.

A face seen whole is centred at its area centroid (unbiased, sub-millimetre); a face cut by
the image border, a depth hole or an occluder is centred by fitting the shape to its
trusted edges alone. Touching faces of one colour arrive as one region: when it fits no
single shape, it is cut into 2..4 parts (k-means on the plane) and kept cut when every
part fits. Faces of one object seen by several cameras are fitted together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from embodied.perception.faces import Face
from embodied.perception.shapes import Fit, fit, footprint

COMPLETE = 0.9  # trusted fraction of the outline for a face to count as seen whole
MIN_EDGES = 8  # trusted edge points needed to name a shape
MAX_EDGES = 160  # edge points per face used in fits (every k-th beyond this)
SIDE_NOISE = 0.0008  # m: scatter of side-face points (from depth, on the surface) about the outline
ASSUMED_HEIGHT = 0.7  # confidence factor of a face whose height was assumed (no depth), not measured
AREA_WEIGHT = 8.0  # score per unit of relative area error (a whole face), against RMS / noise


@dataclass
class Named:
    """A face (or faces of one object from several cameras) with its best shape."""

    faces: list[Face]
    colour: int
    shape: str | None  # None: no vocabulary shape fits
    centre: np.ndarray  # (2,) x, y
    level: float  # z of the top face
    yaw: float
    confidence: float
    fits: list[Fit] = field(default_factory=list)
    complete: bool = False
    refit: bool = False  # faces from other cameras joined: fit again from all of them

    @property
    def primary(self) -> Face:
        return max(self.faces, key=lambda f: int(f.trusted.sum()))


def edge_noise(face: Face, depth_noise: float = 0.0) -> float:
    """Expected scatter (m) of a face's crack points: a pixel's width / sqrt(12), plus depth noise."""
    return float(np.hypot(face.pixel_size / math.sqrt(12.0), depth_noise)) + 2e-4


def name_faces(faces: list[Face], colour_conf: float, shapes: tuple[str, ...], size: float, noises: dict[str, float],
               sides: np.ndarray | None = None) -> Named:
    """Fit ``shapes`` to the trusted edges of ``faces`` (one object, one colour, one or more cameras)
    and to ``sides`` (M, 2): points of its side faces from depth, which lie on the outline too."""
    best_face = max(faces, key=lambda f: (f.measured, f.trusted_fraction >= COMPLETE and not f.split, int(f.trusted.sum())))
    noise = edge_noise(best_face, noises.get(best_face.camera, 0.0))
    pts, w = [], []
    if sides is not None and len(sides):
        pts.append(sides[:: max(1, len(sides) // MAX_EDGES)])
        w.append(np.full(len(pts[-1]), (noise / max(SIDE_NOISE, 2.0 * max(noises.values(), default=0.0))) ** 2))
    for f in faces:
        e = f.edges[f.trusted]
        e = e[:: max(1, len(e) // MAX_EDGES)]
        pts.append(e)
        w.append(np.full(len(e), (noise / edge_noise(f, noises.get(f.camera, 0.0))) ** 2))
    P, W = np.concatenate(pts), np.concatenate(w)
    complete = best_face.trusted_fraction >= COMPLETE and not best_face.split and best_face.measured
    centre0 = best_face.centroid
    if len(P) < MIN_EDGES:
        return Named(faces, best_face.colour, None, centre0, best_face.level, 0.0, 0.3 * colour_conf, [], complete)
    if complete:  # the centroid is the centre; the area rules out shapes of another size
        area = best_face.area
        cands = [s for s in shapes if abs(area / footprint(s, size).area - 1.0) < 0.3] or list(shapes)
        fits = [fit(footprint(s, size), P, centre0, weights=W, noise=noise, fix_centre=True) for s in cands]
    else:
        fits = [fit(footprint(s, size), P, centre0, weights=W, noise=noise) for s in shapes]
    scores = []
    for f in fits:
        sc = f.rms / noise
        if complete:
            sc += AREA_WEIGHT * abs(best_face.area / footprint(f.shape, size).area - 1.0)
        scores.append(sc)
    order = np.argsort(scores)
    fits = [fits[i] for i in order]
    scores = [scores[i] for i in order]
    best = fits[0]
    good = scores[0] < 3.5 + (AREA_WEIGHT * 0.25 if complete else 0.0) and abs(best.scale - 1.0) < 0.25
    margin = (scores[1] - scores[0]) if len(scores) > 1 else 5.0
    shape_conf = 1.0 - math.exp(-max(margin, 0.0))
    fit_conf = math.exp(-max(scores[0] - 1.5, 0.0) / 3.0)
    seen = 0.5 + 0.5 * min(1.0, best_face.trusted_fraction / COMPLETE)
    height = 1.0 if best_face.measured else ASSUMED_HEIGHT
    conf = float(np.clip(colour_conf * shape_conf * fit_conf * seen * height, 0.0, 1.0))
    centre = best_face.centroid if complete else best.centre
    if not good:
        return Named(faces, best_face.colour, None, centre, best_face.level, best.yaw, min(conf, 0.3), fits, complete)
    return Named(faces, best_face.colour, best.shape, centre, best_face.level, best.yaw, conf, fits, complete)


def needs_split(named: Named, size: float) -> bool:
    """A face too big for one object, or fitting no shape, may be several touching ones."""
    f = named.primary
    big = f.area > 1.4 * footprint("cube", size).area
    return bool(big or (named.shape is None and f.area > 1.5 * footprint("triangle", size).area))


def split_face(face: Face, k: int) -> list[Face]:
    """Cut ``face`` into ``k`` parts by k-means on its pixels' plane positions (deterministic)."""
    xy = face.xy  # (P, 2)
    centres = [xy[int(np.argmax(np.sum((xy - xy.mean(0)) ** 2, 1)))]]
    while len(centres) < k:
        d = np.min(np.stack([np.sum((xy - c) ** 2, 1) for c in centres]), 0)
        centres.append(xy[int(np.argmax(d))])
    C = np.stack(centres)  # (k, 2)
    for _ in range(12):
        lab = np.argmin(((xy[:, None, :] - C[None]) ** 2).sum(-1), 1)  # (P,)
        newC = np.stack([xy[lab == j].mean(0) if np.any(lab == j) else C[j] for j in range(k)])
        if np.allclose(newC, C, atol=1e-5):
            break
        C = newC
    # each crack point goes with the part of its nearest pixel
    near = np.argmin(((face.edges[:, None, :] - xy[None]) ** 2).sum(-1), 1)  # (M,)
    elab = lab[near]
    parts = []
    for j in range(k):
        pm, em = lab == j, elab == j
        if pm.sum() < 3:
            continue
        parts.append(Face(face.camera, face.colour, face.level, face.rows[pm], face.cols[pm], xy[pm], face.edges[em], face.trusted[em],
                          face.pixel_area, face.measured, face.hues[pm], face.capped, split=True))
    return parts


def name_or_split(face: Face, colour_conf: float, shapes: tuple[str, ...], size: float, noises: dict[str, float]) -> list[Named]:
    """Name one face; cut it into touching objects when that explains it better."""
    named = name_faces([face], colour_conf, shapes, size, noises)
    if not needs_split(named, size):
        return [named]
    tri = footprint("triangle", size).area
    for k in range(2, min(4, int(face.area / (0.7 * tri))) + 1):
        parts = [name_faces([p], colour_conf, shapes, size, noises) for p in split_face(face, k)]
        if len(parts) == k and all(p.shape is not None for p in parts):
            for p in parts:
                p.confidence *= 0.9
            return parts
    return [named]
