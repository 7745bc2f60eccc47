"""``viz=rerun``: a live view of episodes in the Rerun viewer, or a saved ``.rrd`` recording.

    embodied rollout planner=model task=stack viz=rerun                        # spawns (or joins) a local viewer
    embodied rollout planner=model task=stack viz=rerun viz_save=runs/r.rrd    # save instead; open with `rerun runs/r.rrd`
    embodied eval planner=model episodes=5 viz=rerun viz_save=runs/ev/rerun    # eval: one .rrd per episode in that folder
    embodied rollout viz=rerun viz_connect=rerun+http://127.0.0.1:9876/proxy   # a viewer already running elsewhere

Logged on the ``step`` timeline (one tick per observation): every camera frame (``camera/<name>``,
depth as a depth image), what perception reports (``perception/detections``: each detected object
and its relation), the robot state (``robot/joints/j0..j6``, ``robot/gripper``, the end-effector
position ``robot/ee``), the plan steps as the planner streams them (``plan/stream``, with the time
since the observation was handed over) and the executed plan so far (``plan/executed``), each
step's result (``episode/result``) and the outcome. Off by default; Rerun is an optional extra:
``pip install -e .[rerun]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from embodied.core.errors import ConfigError

VIZ_MODES = ("none", "rerun")


def check_viz(viz: str, save: Optional[str] = None, connect: Optional[str] = None) -> None:
    if viz not in VIZ_MODES:
        raise ConfigError(f"unknown viz {viz!r}; choose one of {', '.join(VIZ_MODES)}")
    if viz == "none":
        return
    if save and connect:
        raise ConfigError("viz_save and viz_connect are exclusive: save an .rrd, or stream to a viewer")
    try:
        import rerun  # noqa: F401
    except ImportError as e:
        raise ConfigError("viz=rerun needs the Rerun SDK: pip install -e .[rerun]") from e


class RerunViz:
    """One episode's recording: saved to ``save`` (.rrd), streamed to ``connect`` (a viewer's gRPC URL),
    or, with neither, to a viewer this spawns (or joins, when one already listens on the default port)."""

    def __init__(self, recording_id: str, save: Optional[Path | str] = None, connect: Optional[str] = None,
                 application_id: str = "embodied"):
        import rerun as rr

        self.rr = rr
        self.rec = rr.RecordingStream(application_id, recording_id=recording_id)
        if save:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(str(save))
        elif connect:
            self.rec.connect_grpc(connect)
        else:
            self.rec.spawn()
        self.tick = 0

    def _time(self) -> None:
        self.rec.set_time("step", sequence=self.tick)

    def episode(self, task: str, seed: int, instruction: str) -> None:
        self.rec.log("episode/instruction", self.rr.TextDocument(f"{task}, seed {seed}\n\n{instruction}"), static=True)

    def observation(self, obs, executed: list[str]) -> None:
        rr = self.rr
        self._time()
        for name, img in obs.frames.items():
            arr = np.asarray(img)
            if arr.ndim == 2 or name.endswith("depth"):
                rr_img = rr.DepthImage(arr if arr.ndim == 2 else arr[..., 0], meter=1.0)
            else:
                rr_img = rr.Image(np.ascontiguousarray(arr[..., :3]))
            self.rec.log(f"camera/{name}", rr_img)
        rows = [f"{d}: {obs.relations.get(d, '')}".rstrip(": ") for d in obs.detections]
        self.rec.log("perception/detections", rr.TextDocument("\n".join(rows) or "(nothing detected)"))
        state = np.asarray(obs.state, dtype=np.float64)
        for i in range(min(7, len(state))):
            self.rec.log(f"robot/joints/j{i}", rr.Scalars(state[i]))
        if len(state) >= 11:
            self.rec.log("robot/gripper", rr.Scalars(state[7]))
            self.rec.log("robot/ee", rr.Points3D([state[8:11]], radii=0.01))
        self.rec.log("plan/executed", rr.TextDocument("\n".join(f"{i + 1}. {s}" for i, s in enumerate(executed)) or "(no step yet)"))

    def plan_step(self, text: str, seconds: float) -> None:
        """A step as the planner yields it, ``seconds`` after the observation was handed to it."""
        self._time()
        self.rec.log("plan/stream", self.rr.TextLog(f"{text}  ({1000 * seconds:.0f} ms)"))

    def result(self, info: dict) -> None:
        self._time()
        ok = info.get("skill_success", info.get("success"))
        reason = info.get("error") or info.get("failure") or info.get("skill_reason") or ""
        self.rec.log("episode/result", self.rr.TextLog(f"{'ok' if ok else 'failed'} {reason}".strip(),
                                                         level="INFO" if ok else "WARN"))
        self.tick += 1

    def close(self, success: bool, failure: Optional[str]) -> None:
        self._time()
        self.rec.log("episode/outcome", self.rr.TextLog("SUCCESS" if success else f"FAILED: {failure}",
                                                          level="INFO" if success else "ERROR"))
        self.rec.flush()
        self.rec.disconnect()


def make_viz(viz: str, recording_id: str, save: Optional[str] = None, connect: Optional[str] = None) -> Optional[RerunViz]:
    """The episode's live view, or None for ``viz=none``."""
    if viz == "none":
        return None
    return RerunViz(recording_id, save, connect)
