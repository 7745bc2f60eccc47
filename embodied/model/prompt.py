"""A multimodal prompt: an ordered list of text, image and state segments (numpy only).

Any number of segments of each kind, in any order. ``prefix_segments`` says how many
leading segments depend only on the instruction: their tokens form a prefix that stays the
same across control steps, so an inference engine may reuse its KV cache for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np


@dataclass(frozen=True)
class TextSegment:
    text: str


@dataclass(frozen=True)
class ImageSegment:
    pixels: np.ndarray  # (H, W, 3) uint8
    camera: str = ""


@dataclass(frozen=True)
class StateSegment:
    values: np.ndarray  # (S,) float32


Segment = Union[TextSegment, ImageSegment, StateSegment]


@dataclass
class MultimodalPrompt:
    segments: list[Segment] = field(default_factory=list)
    prefix_segments: int = 0  # leading segments that depend only on the instruction

    @property
    def images(self) -> list[np.ndarray]:
        return [s.pixels for s in self.segments if isinstance(s, ImageSegment)]

    @property
    def states(self) -> list[np.ndarray]:
        return [s.values for s in self.segments if isinstance(s, StateSegment)]
