"""``perception=ground_truth|camera`` for the commands that run the simulator.

``ground_truth`` (the reference, and the oracle's privileged mode) takes detections, the
scene graph and object poses from the simulator; ``camera`` builds the perception module
(``embodied.perception``) and hands it to the env, which then knows the table from its
cameras only.
"""

from __future__ import annotations

from embodied.commands.config import one_of

PERCEPTION = ("ground_truth", "camera")


def check_perception(kind: str) -> str:
    return one_of(kind, PERCEPTION, "perception")


def make_perception(kind: str):
    """The ``Perception`` object for ``kind`` (None for ground truth)."""
    check_perception(kind)
    if kind == "ground_truth":
        return None
    from embodied.perception.tabletop import TabletopPerception

    return TabletopPerception()
