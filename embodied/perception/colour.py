"""Colour names from pixels: hue decides, saturation and value only say "coloured or not".

Hue does not change when the light gets brighter or dimmer or the surface turns away from
it (a darker side face of a red cube is still red), so each vocabulary colour is a hue
(``vocab.COLOUR_RGBA``) and a pixel takes the nearest one. One 256-entry table maps
OpenCV's 8-bit hue (0..179) to a colour index, so labelling a frame is ``cv2.LUT``.
Pixels with little saturation or light are achromatic: the table, the grey tray, the robot.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from embodied.core.vocab import COLOUR_RGBA


def hue_of(rgb: tuple[float, float, float]) -> float:
    """OpenCV hue (0..180) of an RGB colour with components in 0..1."""
    return colorsys.rgb_to_hsv(*[float(c) for c in rgb[:3]])[0] * 180.0


def _circular(a: np.ndarray, b: float, period: float = 180.0) -> np.ndarray:
    d = np.abs(np.asarray(a, float) - b) % period
    return np.minimum(d, period - d)


@dataclass
class Labels:
    """Per-pixel colour labels of one frame."""

    hsv: np.ndarray  # (H, W, 3) uint8, OpenCV HSV (H 0..179)
    index: np.ndarray  # (H, W) uint8: 0 = achromatic, k = names[k - 1]
    chroma: np.ndarray  # (H, W) bool: saturated and lit enough to have a colour name


class ColourModel:
    """Nearest-hue colour naming; ``s_min`` / ``v_min`` (0..255) bound what counts as coloured."""

    def __init__(self, colours: dict[str, tuple] | None = None, s_min: int = 80, v_min: int = 40, max_hue_distance: float = 14.0):
        colours = dict(colours or COLOUR_RGBA)
        self.names: list[str] = list(colours)
        self.hues = np.array([hue_of(c) for c in colours.values()])  # (C,) OpenCV hue
        self.s_min, self.v_min = int(s_min), int(v_min)
        h = np.arange(180, dtype=np.float64)
        dist = np.stack([_circular(h, c) for c in self.hues], -1)  # (180, C)
        order = np.sort(dist, -1)
        nearest = np.argmin(dist, -1)  # (180,)
        lut = np.where(order[:, 0] <= max_hue_distance, nearest + 1, 0).astype(np.uint8)
        self.lut = np.zeros(256, np.uint8)
        self.lut[:180] = lut
        # how sure a hue is of its name: 1 at the colour's own hue, 0 half way to the next colour
        second = order[:, 1]
        self.hue_confidence = np.clip(1.0 - order[:, 0] / np.maximum((order[:, 0] + second) / 2, 1e-6), 0.0, 1.0)  # (180,)

    def label(self, rgb: np.ndarray) -> Labels:
        """Colour labels of an (H, W, 3) uint8 RGB frame."""
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # (H, W, 3)
        chroma = cv2.inRange(hsv, (0, self.s_min, self.v_min), (255, 255, 255)) > 0  # (H, W)
        index = cv2.LUT(np.ascontiguousarray(hsv[:, :, 0]), self.lut)  # (H, W)
        index[~chroma] = 0
        return Labels(hsv, index, chroma & (index > 0))

    def name(self, k: int) -> str:
        return self.names[k - 1]

    def confidence(self, hues: np.ndarray) -> float:
        """How clearly a set of OpenCV hues (N,) names one colour (0..1)."""
        if len(hues) == 0:
            return 0.0
        return float(np.mean(self.hue_confidence.take(np.minimum(np.asarray(hues, np.intp), 179))))
