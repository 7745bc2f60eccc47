"""A picture of what perception saw: each thing's outline in the frame, its name, pose and
confidence, and the scene graph as text (for ``embodied perceive``)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from embodied.core.camera import Calibration, Frame
from embodied.core.scene import PerceivedObject, PerceivedScene
from embodied.perception.geometry import ViewGeometry
from embodied.perception.shapes import footprint, outline

MIN_WIDTH = 480  # smaller frames are enlarged (by a whole factor) so that the text stays legible
KIND_RGB = {"object": (60, 220, 60), "container": (230, 160, 40), "unknown": (240, 40, 40)}  # green, orange, red


def draw(frame: Frame, scene: PerceivedScene, calibration: Calibration) -> np.ndarray:
    """``frame``'s RGB with the scene drawn on it: (H', W', 3) uint8, H' = H * s, W' = W * s with
    s = ceil(480 / W) (1 for frames 480 pixels wide or more)."""
    calibration.check(frame)
    s = max(1, math.ceil(MIN_WIDTH / frame.rgb.shape[1]))
    img = np.ascontiguousarray(frame.rgb)
    if s > 1:
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
    else:
        img = img.copy()
    geom = ViewGeometry(calibration)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.38
    for o in scene.objects:
        colour = KIND_RGB.get(o.kind, (255, 255, 255))
        poly = _outline(o, frame.camera, geom)
        if poly is None or len(poly) < 2:
            continue
        pts = np.round((poly + 0.5) * s - 0.5).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], True, colour, 1 if s == 1 else 2, cv2.LINE_AA)
        x, y = int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())
        p = o.position
        lines = [o.name, f"{p[0] * 100:.1f},{p[1] * 100:.1f},{p[2] * 100:.1f}cm {math.degrees(o.yaw):.0f}deg {o.confidence:.2f}"]
        for i, text in enumerate(lines):
            _label(img, text, (x, max(10, y - 4 - 11 * (len(lines) - 1 - i))), font, scale, colour)
    graph = [f"{k}: {v}" for k, v in sorted(scene.relations.items())] or ["(no relations)"]
    graph.append(f"{len(scene.named())} named, {len(scene.objects) - len(scene.named())} unknown, {scene.ms:.1f} ms")
    h = img.shape[0]
    for i, text in enumerate(graph):
        _label(img, text, (4, h - 6 - 12 * (len(graph) - 1 - i)), font, scale, (255, 255, 255))
    return img


def _outline(o: PerceivedObject, camera: str, geom: ViewGeometry) -> np.ndarray | None:
    """The thing's outline in pixels (K, 2): its contour as perception found it in this camera,
    else its footprint (top outline) projected."""
    seen = o.views.get(camera) if isinstance(o.views, dict) else None
    if seen and len(seen.get("contour", [])) >= 3:
        return np.asarray(seen["contour"], float)
    if o.kind == "container":
        hx, hy = o.half_extents
        c, sn = math.cos(o.yaw), math.sin(o.yaw)
        corners = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
        xy = o.position[:2] + corners @ np.array([[c, sn], [-sn, c]])
        z = np.full((4, 1), float(o.position[2]))
    else:
        fp = footprint(o.shape if o.shape else "cylinder", o.size)
        xy = outline(fp, o.position[:2], o.yaw)
        z = np.full((len(xy), 1), float(o.position[2] + o.height / 2))
    pts = np.concatenate([xy, z], 1)
    cam = (pts - geom.origin) @ geom.R
    if np.any(cam[:, 2] <= 0):
        return None
    return geom.project(pts)


def _label(img: np.ndarray, text: str, org: tuple[int, int], font, scale: float, colour) -> None:
    cv2.putText(img, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, font, scale, colour, 1, cv2.LINE_AA)
