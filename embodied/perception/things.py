"""What perception has found before it is named: ``Thing`` (an object) and its ``Solid`` (volume)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied.perception.shapes import footprint, inside


@dataclass
class Solid:
    """An object's volume, for explaining points: footprint at (x, y, yaw), z from bottom to top."""

    shape: str | None
    centre: np.ndarray  # (2,)
    yaw: float
    bottom: float
    top: float

    def holds(self, pts: np.ndarray, size: float, margin: float) -> np.ndarray:
        fp = footprint(self.shape or "cube", size)
        grow = margin + (0.0 if self.shape else 0.3 * size)
        zin = (pts[:, 2] > self.bottom - margin) & (pts[:, 2] < self.top + margin)
        return zin & inside(fp, self.centre, self.yaw, pts[:, :2], grow)


@dataclass
class Thing:
    colour: str | None
    shape: str | None
    centre: np.ndarray  # (2,) x, y
    bottom: float  # z of its underside
    yaw: float
    confidence: float
    source: str  # "top" (a top face), "side" (side faces only), "support" (something must hold it up), "achromatic"
    views: dict = field(default_factory=dict)  # camera -> {"bbox": [x, y, w, h], "contour": [[u, v], ...]}

    def solid(self, height: float) -> Solid:
        return Solid(self.shape, self.centre, self.yaw, self.bottom, self.bottom + height)
