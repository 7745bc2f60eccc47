"""Top faces: the flat, level, single-coloured tops of the prisms, found in one view.

With depth, a coloured region above the container walls is split by height: every object's
top is a plateau of constant z (its side faces spread over a range), so plateaus of the
height histogram are the top faces, one connected region each. Without depth, the region's
brightest part is its top (the light comes from above) and it is assumed to stand on the
table: the plane z = object height is where its pixels are taken to be.

Each face keeps its outline as *crack points*: the midpoints between a face pixel and an
outside neighbour, put on the face's plane. A crack is *trusted* (a real edge of the object)
unless the neighbour is off the image, has no depth reading, or is higher than the face (an
occluder: the gripper, an object above).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from embodied.core.world import OBJECT_HEIGHT
from embodied.perception.views import View, blobs

OBJECT_MIN_Z = 0.028  # coloured pixels above this (m) belong to objects: container walls end at 0.02
LEVEL_TOL = 0.003  # half width (m) of a top face's height band (grown with the depth noise)
MIN_FACE_AREA = 1.3e-4  # m^2: a quarter of the smallest top face (the triangle's, 5.2 cm^2)
MAX_FACE_AREA = 1.6e-3  # m^2: the largest top face (the cube's)
_DIRS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (drow, dcol)
_DR, _DC = np.array([d[0] for d in _DIRS]), np.array([d[1] for d in _DIRS])


@dataclass
class Face:
    camera: str
    colour: int  # colour index (ColourModel.names[colour - 1])
    level: float  # z of the top face (m)
    rows: np.ndarray  # (P,) pixel rows of the (hole-filled) face
    cols: np.ndarray  # (P,) pixel columns
    xy: np.ndarray  # (P, 2) the pixels on the plane z = level
    edges: np.ndarray  # (M, 2) crack points on the plane
    trusted: np.ndarray  # (M,) bool: real edges of the object
    pixel_area: float  # m^2 of one pixel on the face's plane
    measured: bool  # level from depth (False: assumed plane)
    hues: np.ndarray  # (P,) OpenCV hues of the face pixels
    capped: float = 0.0  # fraction of the outline bordered by the same colour, higher (a side face band, not a top)
    split: bool = False  # one of several touching faces cut apart

    @property
    def area(self) -> float:
        return len(self.rows) * self.pixel_area

    @property
    def centroid(self) -> np.ndarray:
        return self.xy.mean(0)

    @property
    def trusted_fraction(self) -> float:
        return float(self.trusted.mean()) if len(self.trusted) else 0.0

    @property
    def pixel_size(self) -> float:
        return float(np.sqrt(self.pixel_area))

    def contour(self, shape: tuple[int, int]) -> np.ndarray:
        """Outline (K, 2) of the face in pixels (u, v), for drawing."""
        m = np.zeros(shape, np.uint8)
        m[self.rows, self.cols] = 1
        cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        return max(cs, key=len).reshape(-1, 2) if cs else np.zeros((0, 2), int)


def top_faces(view: View, floor_levels: tuple[float, ...] = ()) -> list[Face]:
    """Every top face visible in ``view``. ``floor_levels``: heights assumed without depth
    (the first is the default plane)."""
    lab = view.labels
    if view.Z is not None:
        with np.errstate(invalid="ignore"):
            obj = lab.chroma & (view.Z > OBJECT_MIN_Z)
    else:
        obj = lab.chroma
    faces: list[Face] = []
    for y, x, region in blobs(obj, 4):
        h, w = region.shape
        idx = lab.index[y:y + h, x:x + w]
        ir = idx[region]
        lo, hi = ir.min(), ir.max()
        ks = (lo,) if lo == hi else np.unique(ir)
        for k in ks:
            rk = region if len(ks) == 1 else region & (idx == k)
            if view.Z is not None:
                faces += _depth_faces(view, int(k), rk, (y, x))
            else:
                face = _plane_face(view, int(k), rk, (y, x), floor_levels[0] if floor_levels else OBJECT_HEIGHT)
                if face is not None:
                    faces.append(face)
    if view.Z is not None:
        faces += _hole_faces(view, faces, floor_levels[0] if floor_levels else OBJECT_HEIGHT)
    return merge_fragments(faces, max(LEVEL_TOL, 2.5 * view.noise))


def _hole_faces(view: View, faces: list[Face], level: float) -> list[Face]:
    """Coloured regions with no depth reading at all (a hole in the depth image over a whole
    object): seen from colour alone, on the plane of an object standing on the table. A hole
    that only bites into an object with depth elsewhere is part of that object's face."""
    lab = view.labels
    with np.errstate(invalid="ignore"):
        hole = lab.chroma & ~(view.Z == view.Z)  # NaN: no reading
    if not hole.any():
        return []
    near = np.zeros(view.shape, np.uint8)
    for f in faces:
        near[f.rows, f.cols] = 1
    near = cv2.dilate(near, np.ones((5, 5), np.uint8)) > 0
    out = []
    for y, x, region in blobs(hole, 4):
        h, w = region.shape
        if (region & near[y:y + h, x:x + w]).any() or region.sum() * view.geom.pixel_area(x + w / 2, y + h / 2, level) > 3 * MAX_FACE_AREA:
            continue
        idx = lab.index[y:y + h, x:x + w]
        k = int(np.bincount(idx[region]).argmax())
        face = _plane_face(view, k, region & (idx == k), (y, x), level)
        if face is not None:
            out.append(face)
    return out


def merge_fragments(faces: list[Face], tol: float, reach: float = 0.06) -> list[Face]:
    """Join the pieces of one top face that an object on it cuts apart (a cylinder under a
    triangle shows three, a cube under a cylinder four corners): same colour and level, each
    cut by an occluder, and all of them within ``reach`` (m, a footprint's largest extent)."""
    out: list[Face] = []
    for f in sorted(faces, key=lambda f: -len(f.rows)):
        cut = f.trusted_fraction < 0.97
        for i, g in enumerate(out):
            if not (cut and g.trusted_fraction < 0.97 and g.colour == f.colour and abs(g.level - f.level) < tol):
                continue
            both = np.concatenate([g.xy, f.xy])
            if np.hypot(*(both.max(0) - both.min(0))) > reach:
                continue
            out[i] = Face(g.camera, g.colour, g.level, np.concatenate([g.rows, f.rows]), np.concatenate([g.cols, f.cols]), both,
                          np.concatenate([g.edges, f.edges]), np.concatenate([g.trusted, f.trusted]), g.pixel_area, g.measured,
                          np.concatenate([g.hues, f.hues]), max(g.capped, f.capped))
            break
        else:
            out.append(f)
    return out


def _levels(z: np.ndarray, tol: float, min_px: int) -> list[float]:
    """Heights of the plateaus of ``z`` (N,) with at least ``min_px`` pixels, highest count first."""
    lo = float(np.min(z))
    b = max(tol, 0.002)
    q = ((z - lo) / b).astype(np.int64)
    counts = np.bincount(q).astype(float)
    smooth = counts.copy()
    smooth[1:] += counts[:-1]
    smooth[:-1] += counts[1:]
    out: list[float] = []
    for _ in range(6):
        j = int(np.argmax(smooth))
        if smooth[j] < min_px:
            break
        centre = lo + (j + 0.5) * b
        near = z[np.abs(z - centre) <= 1.5 * b]
        out.append(float(np.median(near)) if near.size else centre)
        smooth[max(0, j - 3): j + 4] = 0
    return out


def _depth_faces(view: View, k: int, region: np.ndarray, origin: tuple[int, int]) -> list[Face]:
    y0, x0 = origin
    h, w = region.shape
    Zr = view.Z[y0:y0 + h, x0:x0 + w]
    z = Zr[region]
    tol = max(LEVEL_TOL, 2.5 * view.noise)
    rr, cc = np.nonzero(region)
    px_area = view.geom.pixel_area(x0 + cc.mean(), y0 + rr.mean(), float(z.max()))  # (region pixels all have depth)
    min_px = max(3, int(MIN_FACE_AREA / max(px_area, 1e-12)))
    out = []
    for level in _levels(z, tol, min_px):
        with np.errstate(invalid="ignore"):
            band = (region & (np.abs(Zr - level) <= tol)).astype(np.uint8)
        n, cc_lab = cv2.connectedComponents(band, connectivity=8)
        sizes = np.bincount(cc_lab.ravel(), minlength=n)
        for i in range(1, n):
            if sizes[i] < min_px:
                continue
            face = _make_face(view, k, cc_lab == i, origin, level, True, px_area)
            if face is not None and face.capped < 0.3:
                out.append(face)
    return out


def _plane_face(view: View, k: int, region: np.ndarray, origin: tuple[int, int], level: float) -> Face | None:
    """Without depth: the largest part of a coloured region, taken to stand on the table with its
    top at z = ``level`` (its outline's edges are put on the top's or the table's plane, see ``_make_face``)."""
    n, cc_lab = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    if n < 2:
        return None
    sizes = np.bincount(cc_lab.ravel(), minlength=n)
    i = 1 + int(np.argmax(sizes[1:]))
    rr, cc = np.nonzero(cc_lab == i)
    px_area = view.geom.pixel_area(origin[1] + cc.mean(), origin[0] + rr.mean(), level)
    if sizes[i] * px_area < MIN_FACE_AREA:
        return None
    return _make_face(view, k, cc_lab == i, origin, level, False, px_area)


def _fill(mask: np.ndarray) -> np.ndarray:
    """``mask`` (h, w) bool with its holes filled."""
    m = mask.astype(np.uint8)
    cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(m, cs, -1, 1, thickness=cv2.FILLED)
    return m.astype(bool)


def _make_face(view: View, k: int, mask: np.ndarray, origin: tuple[int, int], level: float, measured: bool,
               px_area: float | None = None) -> Face | None:
    y0, x0 = origin
    H, W = view.shape
    m = _fill(mask)
    rr, cc = np.nonzero(m)
    if rr.size == 0:
        return None
    rows, cols = rr + y0, cc + x0
    geom = view.geom
    xy = geom.on_plane(None, None, level, dirs=geom.dirs_at(rows, cols))[:, :2]  # (P, 2)
    if px_area is None:
        px_area = geom.pixel_area(float(cols.mean()), float(rows.mean()), level)
    pad = np.pad(m, 1)  # (h+2, w+2)
    h, w = m.shape
    outside = np.stack([~pad[1:h + 1, 2:], ~pad[1:h + 1, :w], ~pad[2:, 1:w + 1], ~pad[:h, 1:w + 1]]) & m  # (4, h, w), order of _DIRS
    d, er, ec = np.nonzero(outside)
    dr, dc = _DR[d], _DC[d]
    nr, nc = er + y0 + dr, ec + x0 + dc  # the outside neighbour of each crack
    inimg = (nr >= 0) & (nr < H) & (nc >= 0) & (nc < W)
    trust = inimg
    capped = 0
    if view.Z is not None and measured:  # (a face seen without depth trusts its whole outline inside the image)
        nr_, nc_ = np.clip(nr, 0, H - 1), np.clip(nc, 0, W - 1)
        zn = view.Z[nr_, nc_]
        with np.errstate(invalid="ignore"):
            above = inimg & (zn > level + max(LEVEL_TOL, 2.5 * view.noise))
            trust = inimg & (zn == zn) & ~above  # zn == zn: a depth reading
        capped = int((above & (view.labels.index[nr_, nc_] == k)).sum())
    u, v = ec + x0 + dc / 2.0, er + y0 + dr / 2.0
    edges = geom.on_plane(u, v, level)[:, :2] if len(u) else np.zeros((0, 2))
    if not measured and len(u):
        # Seen from above, a prism shows its top and, on the side facing the camera's foot, the
        # side faces down to the table: an outline edge that faces the camera's foot is where a
        # side face meets the table (z = level - height), the others are edges of the top.
        base = level - OBJECT_HEIGHT
        foot = geom.project(np.array([[geom.origin[0], geom.origin[1], base]]))[0]
        tu, tv = foot[0] - u, foot[1] - v
        cos = (dc * tu + dr * tv) / np.maximum(np.hypot(tu, tv), 1e-9)
        low = cos > 0
        if low.any():
            edges[low] = geom.on_plane(u[low], v[low], base)[:, :2]
        trust = trust & (np.abs(cos) > 0.35)  # along the line of sight the outline is a vertical edge: neither plane
    hues = view.labels.hsv[rows, cols, 0]
    return Face(view.name, k, float(level), rows, cols, xy, edges, trust, px_area, measured, hues, capped / max(len(u), 1))
