"""The world's vocabulary: colours, shapes, containers, board locations, relations.

Objects are named the way a person would name them: ``<colour> <shape>`` ("red cube").
Containers are ``tray`` and ``<colour> bin``. Board locations are named as the front camera
shows them: it looks down on the table from above the robot, so the image top is far from
the robot (+x) and the image left is the robot's left (+y); see ``LOCATIONS``.
The split into training and held-out attributes drives the generalisation levels
(``envs/levels.py``).
"""

from __future__ import annotations

import re
from functools import lru_cache

# RGBA used by the simulator and the camera.
COLOUR_RGBA: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.13, 0.70, 0.20, 1.0),
    "blue": (0.12, 0.30, 0.90, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "purple": (0.55, 0.20, 0.75, 1.0),
    "orange": (1.00, 0.50, 0.05, 1.0),
    # held out (L3): never in training data
    "pink": (1.00, 0.45, 0.70, 1.0),
    "cyan": (0.10, 0.85, 0.90, 1.0),
}
TRAIN_COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
UNSEEN_COLOURS: tuple[str, ...] = ("pink", "cyan")
COLOURS: tuple[str, ...] = TRAIN_COLOURS + UNSEEN_COLOURS

# Every shape is an upright prism (or cylinder) so it can be grasped from above and stacked.
# Value: number of sides of the footprint polygon (0 = circle).
SHAPE_SIDES: dict[str, int] = {"cube": 4, "cylinder": 0, "triangle": 3, "hexagon": 6, "pentagon": 5}
TRAIN_SHAPES: tuple[str, ...] = ("cube", "cylinder", "triangle")
UNSEEN_SHAPES: tuple[str, ...] = ("hexagon", "pentagon")
SHAPES: tuple[str, ...] = TRAIN_SHAPES + UNSEEN_SHAPES

CONTAINER_KINDS: tuple[str, ...] = ("tray", "bin")  # "tray" (one, grey), "<colour> bin"

# Named board locations: (x, y) centres on the table in the robot base frame (metres).
# "top" is far from the robot (+x), "left" is the robot's left (+y).
LOCATIONS: dict[str, tuple[float, float]] = {
    "top left": (0.66, 0.22),
    "top right": (0.66, -0.22),
    "bottom left": (0.40, 0.22),
    "bottom right": (0.40, -0.22),
    "center": (0.53, 0.0),
    "top center": (0.66, 0.0),
    "bottom center": (0.40, 0.0),
}

# Spatial relations for "put X <relation> Y"; value is the (dx, dy) unit direction.
RELATIONS: dict[str, tuple[float, float]] = {
    "left of": (0.0, 1.0),
    "right of": (0.0, -1.0),
    "in front of": (-1.0, 0.0),  # closer to the robot
    "behind": (1.0, 0.0),
}


def object_name(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def bin_name(colour: str) -> str:
    return f"{colour} bin"


@lru_cache(maxsize=1)
def object_name_pattern() -> re.Pattern:
    """Matches a whole object name, ``<colour> <shape>``, inside text (containers do not match)."""
    return re.compile(r"\b(?:%s) (?:%s)\b" % ("|".join(COLOURS), "|".join(SHAPES)))


def is_object_name(name: str) -> bool:
    """``'<colour> <shape>'`` of this vocabulary (containers are not objects)."""
    return object_name_pattern().fullmatch(name) is not None
