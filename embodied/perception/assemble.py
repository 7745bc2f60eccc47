"""Putting one pass together: faces of all cameras -> named objects, fused across cameras; then
hidden objects, unknown supports and achromatic unknowns; then ``PerceivedObject``s and the
scene graph."""

from __future__ import annotations

import cv2
import numpy as np

from embodied.core.scene import PerceivedObject
from embodied.core.world import CONTAINER_FLOOR, TABLE_Z
from embodied.perception import unknowns
from embodied.perception.colour import ColourModel
from embodied.perception.containers import WALL_HEIGHT, FoundContainer
from embodied.perception.faces import Face, top_faces
from embodied.perception.hidden import hypotheses, leftover
from embodied.perception.naming import Named, name_faces, name_or_split
from embodied.perception.register import apply_fix, frame_fix, register
from embodied.perception.relations import scene_graph
from embodied.perception.shapes import footprint, inside
from embodied.perception.things import Solid, Thing
from embodied.perception.tilted import tilted_top
from embodied.perception.views import View

OVERHEAD = 0.8  # cameras whose axis is this close to straight down (cosine) name the tops they see
MERGE_XY = 0.025  # faces of one colour closer than this (m) in different cameras are one object
MERGE_Z = 0.012
UNSURE = 0.5  # objects named less surely from their tops are named again with their sides added


def objects(views: list[View], containers: list[FoundContainer], colours: ColourModel, cfg, gripper) -> list[Thing]:
    size, height = cfg.object_size, cfg.object_height
    noises = {v.name: v.noise for v in views}
    named: list[Named] = []
    corrections = []
    for i, v in enumerate(views):  # overhead-most first: its faces are named, the others' joined to them when they match
        if i > 0 and cfg.refine_extrinsics:
            v, fix = register(v, [(n.colour, _solid(n, height)) for n in named if n.shape and n.confidence > 0.4], size)
            views[i] = v
            if fix is not None:
                corrections.append(fix)
        pending = []
        for f in top_faces(v, (height,)):
            m = _match(f, named, size)
            if m is None:
                pending.append(f)
            else:
                m.faces.append(f)
                if not (m.complete and m.shape):
                    m.refit = True
        if i > 0 and v.geom.looks_down < OVERHEAD:
            continue  # an oblique camera sees tops at a slant, with a rim of side face: its pixels go to the side evidence
        for f in pending:
            named += name_or_split(f, colours.confidence(f.hues), cfg.shapes, size, noises)
    named = [_refit(n, colours, cfg.shapes, size, noises) if n.refit else n for n in named]
    named = [_with_sides(n, views, colours, cfg.shapes, size, height, noises) if n.shape is None or n.confidence < UNSURE else n for n in named]
    sure = [n for n in named if n.shape]  # faces no shape fits are left to the side evidence, or stay unknown
    things = [_from_named(n, colours, height, views) for n in sure]
    if not any(v.Z is not None for v in views):
        return things + [_from_named(n, colours, height, views) for n in named if not n.shape]
    solids = [t.solid(height) for t in things]
    evidence = []
    for v in views:
        used = np.zeros(v.shape, bool)
        for n in sure:
            for f in n.faces:
                if f.camera == v.name:
                    used[f.rows, f.cols] = True
        evidence += leftover(v, used, containers, solids, size)
    things, evidence = _leaning(views[0], evidence, things, colours, cfg)
    levels = [TABLE_Z] + ([TABLE_Z + CONTAINER_FLOOR] if containers else [])
    noise = max([v.noise for v in views if v.Z is not None], default=0.0)
    for h in hypotheses(evidence, solids, cfg.shapes, size, height, levels, noise, gripper):
        t = Thing(colours.name(h.colour), h.shape, h.centre, h.bottom, h.yaw, h.confidence, "held" if h.held else "side")
        for e in h.evidence:
            t.views.setdefault(e.camera, _pixels_view(e.rows, e.cols))
        things.append(t)
    for n in named:
        if not n.shape and not _explained(n, things, height, size):
            things.append(_from_named(n, colours, height, views))
    things += unknowns.supports(things, height, levels, gripper)
    things += unknowns.achromatic(views, containers, things, height, size, gripper)
    fix = frame_fix(corrections)
    if fix is not None:
        for t in things:
            t.centre, t.yaw = apply_fix(fix, t.centre, t.yaw)
        for c in containers:
            c.centre, c.yaw = apply_fix(fix, c.centre, c.yaw)
    return things


def _leaning(view: View, evidence: list, things: list[Thing], colours: ColourModel, cfg) -> tuple[list[Thing], list]:
    """Objects whose top leans (``tilted``), from the overhead camera's leftover evidence; the
    evidence near them (any camera, same colour) is theirs."""
    found = []
    for ev in evidence:
        if ev.camera != view.name:
            continue
        top = tilted_top(ev, view, cfg.shapes, cfg.object_size, cfg.object_height)
        if top is None:
            continue
        shape, centre, yaw, conf, rows, cols = top
        t = Thing(colours.name(ev.colour), shape, centre[:2].copy(), float(centre[2] - cfg.object_height / 2), yaw, conf, "tilted")
        t.views[view.name] = _pixels_view(rows, cols)
        found.append((t, ev.colour, centre))
    if not found:
        return things, evidence
    rest = [e for e in evidence if not any(e.colour == k and np.median(np.linalg.norm(e.points - c, axis=1)) < 0.035 for _, k, c in found)]
    return things + [t for t, _, _ in found], rest


def _explained(n: Named, things: list[Thing], height: float, size: float) -> bool:
    """Most of an unnamed face lies in something found since (from its sides)."""
    pts = np.concatenate([np.c_[f.xy, np.full(len(f.xy), f.level - 0.002)] for f in n.faces])  # (P, 3)
    return any(np.mean(t.solid(height).holds(pts, size, 0.006)) > 0.5 for t in things)


def _with_sides(n: Named, views: list[View], colours: ColourModel, shapes, size: float, height: float, noises) -> Named:
    """An object seen only in part from above, named again with the points of its side faces (any
    camera with depth) added to its outline: its colour, below its top, within reach of its centre."""
    pts = []
    for v in views:
        if v.Z is None:
            continue
        with np.errstate(invalid="ignore"):
            m = (v.labels.index == n.colour) & (v.Z > n.level - height + 0.003) & (v.Z < n.level - 0.003)
        rows, cols = np.nonzero(m)
        if len(rows) == 0:
            continue
        P = v.geom.points(v.frame.depth, rows, cols)
        pts.append(P[np.hypot(P[:, 0] - n.centre[0], P[:, 1] - n.centre[1]) < 0.035][:, :2])
    sides = np.concatenate(pts) if pts else np.zeros((0, 2))
    if len(sides) < 10:
        return n
    again = name_faces(n.faces, colours.confidence(np.concatenate([f.hues for f in n.faces])), shapes, size, noises, sides)
    return again if again.shape is not None and again.confidence > n.confidence else n


def _solid(n: Named, height: float) -> Solid:
    return Solid(n.shape, np.asarray(n.centre, float), n.yaw, n.level - height, n.level)


def _match(face: Face, named: list[Named], size: float) -> Named | None:
    """The named object of another camera that ``face`` is (part of) the top of: same colour and
    level, and most of the face inside its footprint."""
    for n in named:
        if n.colour != face.colour or face.camera in {f.camera for f in n.faces} or abs(n.level - face.level) >= MERGE_Z:
            continue
        if np.hypot(*(n.centre - face.centroid)) > 2 * size:
            continue
        fp = footprint(n.shape or "cylinder", size)
        if np.mean(inside(fp, n.centre, n.yaw, face.xy, margin=0.006 + (0 if n.shape else 0.01))) >= 0.5:
            return n
    return None


def _refit(n: Named, colours: ColourModel, shapes, size: float, noises: dict[str, float]) -> Named:
    """Name an object seen in part by several cameras from all their edges together."""
    joint = name_faces(n.faces, colours.confidence(np.concatenate([f.hues for f in n.faces])), shapes, size, noises)
    if n.shape is not None and (joint.shape is None or joint.confidence < n.confidence):
        return n  # an oblique camera's view of a top adds little: keep the better naming
    return joint


def _from_named(n: Named, colours: ColourModel, height: float, views: list[View]) -> Thing:
    shapes = {v.name: v.shape for v in views}
    t = Thing(colours.name(n.colour), n.shape, np.asarray(n.centre, float), n.level - height, n.yaw, n.confidence, "top")
    for f in n.faces:
        t.views[f.camera] = {"bbox": _bbox(f.rows, f.cols), "contour": f.contour(shapes[f.camera]).tolist()}
    return t


def _bbox(rows: np.ndarray, cols: np.ndarray) -> list[int]:
    return [int(cols.min()), int(rows.min()), int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)]


def _pixels_view(rows: np.ndarray, cols: np.ndarray) -> dict:
    hull = cv2.convexHull(np.stack([cols, rows], -1).astype(np.int32)).reshape(-1, 2)
    return {"bbox": _bbox(rows, cols), "contour": hull.tolist()}


def face_view(face: Face, shape: tuple[int, int]) -> dict:
    return {"bbox": _bbox(face.rows, face.cols), "contour": face.contour(shape).tolist()}


def to_perceived(things: list[Thing], containers: list[FoundContainer], cfg, views: list[View]) -> list[PerceivedObject]:
    """Final names: ``<colour> <shape>`` when both are known and confident (the most confident one
    keeps a name claimed twice), else ``unknown <n>``; containers as they were found."""
    height, size = cfg.object_height, cfg.object_size
    out: list[PerceivedObject] = []
    claimed: dict[str, Thing] = {}
    for t in sorted(things, key=lambda t: -t.confidence):
        if t.colour and t.shape and t.confidence >= cfg.min_confidence:
            claimed.setdefault(f"{t.colour} {t.shape}", t)
    names = {id(t): n for n, t in claimed.items()}
    unknown = sorted((t for t in things if id(t) not in names), key=lambda t: (round(float(t.centre[0]), 3), round(float(t.centre[1]), 3)))
    for i, t in enumerate(unknown):
        names[id(t)] = f"unknown {i + 1}"
    for t in things:
        name = names[id(t)]
        kind = "unknown" if name.startswith("unknown") else "object"
        pos = np.array([t.centre[0], t.centre[1], t.bottom + height / 2])
        out.append(PerceivedObject(name, kind, pos, float(t.yaw), float(t.confidence), t.colour, t.shape, size, height, (0.0, 0.0), dict(t.views)))
    shapes = {v.name: v.shape for v in views}
    for c in containers:
        views_c = {c.camera: _pixels_view(c.rows, c.cols)} if c.camera in shapes and len(c.rows) else {}
        out.append(PerceivedObject(c.name, "container", np.array([c.centre[0], c.centre[1], TABLE_Z + CONTAINER_FLOOR]), c.yaw, c.confidence,
                                   c.colour, "tray" if c.name == "tray" else "bin", 2 * c.half_extents[0], WALL_HEIGHT,
                                   (c.half_extents[0], c.half_extents[1]), views_c))
    out.sort(key=lambda o: ({"object": 0, "unknown": 1, "container": 2}[o.kind], o.name))
    return out


def relations(objects: list[PerceivedObject], gripper) -> dict[str, str]:
    return scene_graph(objects, gripper, {o.name: WALL_HEIGHT for o in objects if o.kind == "container"})

