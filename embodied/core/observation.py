"""The observation a planner sees: camera frames, robot state, instruction, history.

State vector layout (float32, ``STATE_SIZE`` = 15)::

    [0:7]   arm joint positions (rad)
    [7]     gripper opening (m, 0 = closed, 0.08 = open)
    [8:11]  end-effector position (m, robot base frame)
    [11:15] end-effector orientation quaternion (x, y, z, w)

``detections`` is what the robot's perception reports as present (object and container
names, from the camera's segmentation in simulation). Planners may use it to narrow their
choices; ``ablate=frames`` clears it together with the frames. ``relations`` is the scene
graph of a richer perception: for detected objects, where each one is (``"on table"``,
``"on blue cube"``, ``"in red bin"``, ``"in gripper"``); simulation computes it from the
object poses, a real robot from its detector and depth. Empty when perception gives none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from embodied.core.errors import ObservationError

STATE_SIZE = 15


@dataclass
class Observation:
    frames: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8
    state: np.ndarray  # (STATE_SIZE,) float32
    instruction: str
    history: list[str] = field(default_factory=list)  # step texts already executed
    depth: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W) float32, metres
    detections: list[str] = field(default_factory=list)
    timestamp: float = field(default_factory=time.time)
    seq: int = 0
    # Simulator-only ground truth (task goal, object poses) for the scripted oracle; JSON-able.
    # Learned planners must never read it.
    privileged: dict | None = None
    # Perception scene graph: detected object -> "on table" | "on <object>" | "in <container>" | "in gripper".
    relations: dict[str, str] = field(default_factory=dict)

    def validate(self) -> "Observation":
        """Raise ``ObservationError`` naming the first field that is wrong."""
        if not isinstance(self.frames, dict) or not self.frames:
            raise ObservationError("observation.frames must be a non-empty dict of camera name -> HxWx3 uint8 image")
        for name, img in self.frames.items():
            if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                shape = getattr(img, "shape", None)
                dtype = getattr(img, "dtype", type(img).__name__)
                raise ObservationError(
                    f"frame {name!r} must be an HxWx3 uint8 array, got shape {shape} dtype {dtype}"
                )
        for name, d in self.depth.items():
            if not isinstance(d, np.ndarray) or d.ndim != 2:
                raise ObservationError(f"depth {name!r} must be an HxW array, got shape {getattr(d, 'shape', None)}")
        state = np.asarray(self.state)
        if state.shape != (STATE_SIZE,) or not np.issubdtype(state.dtype, np.floating):
            raise ObservationError(f"observation.state must be a float vector of size {STATE_SIZE}, got shape {state.shape} dtype {state.dtype}")
        if not np.all(np.isfinite(state)):
            raise ObservationError("observation.state contains NaN or inf")
        if not isinstance(self.instruction, str):
            raise ObservationError("observation.instruction must be text")
        if not all(isinstance(h, str) for h in self.history):
            raise ObservationError("observation.history must be a list of step texts")
        if not isinstance(self.relations, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.relations.items()):
            raise ObservationError("observation.relations must map detected object names to text such as 'on table'")
        stray = [k for k in self.relations if k not in self.detections]
        if stray:
            raise ObservationError(f"observation.relations names {stray[0]!r}, which is not in observation.detections")
        return self

    def ablated(self, what: str) -> "Observation":
        """A copy with ``frames`` blanked (and detections cleared), ``objects`` (detections) cleared,
        ``relations`` (the scene graph only) cleared, or ``state`` zeroed."""
        if what == "frames":
            return replace(
                self,
                frames={k: np.zeros_like(v) for k, v in self.frames.items()},
                depth={k: np.zeros_like(v) for k, v in self.depth.items()},
                detections=[],
                relations={},
                privileged=None,
            )
        if what == "objects":
            return replace(self, detections=[], relations={}, privileged=None)
        if what == "relations":
            return replace(self, relations={})
        if what == "state":
            return replace(self, state=np.zeros_like(self.state), privileged=None)
        if what in ("", "none", None):
            return self
        raise ObservationError(f"unknown ablation {what!r}; use 'frames', 'objects', 'relations', 'state' or 'none'")
