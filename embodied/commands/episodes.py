"""One closed-loop episode of a planner in the simulated tabletop, and the seeds of episodes.

``run_episode`` observes, takes the first streamed step, executes it, observes again, until
the task succeeds, the planner says ``done``, an object leaves the table or the step limit.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Optional

from embodied.commands.video import VideoRecorder
from embodied.core.errors import EmbodiedError
from embodied.core.protocols import PRIVILEGED_PLANNERS


def episode_seed(seed: int, task: str, index: int) -> int:
    """Seed of episode ``index`` of ``task`` in an evaluation seeded with ``seed``."""
    digest = hashlib.sha256(f"{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def make_env(task: str, level: str, split: str, image_size: int, perception: str = "ground_truth",
             phrasing: str = "templates", randomize: bool = False):
    """The simulated env of one task family; ``perception="camera"`` hands it the perception module;
    ``phrasing``: the instruction's wording (``envs.tasks.phrasing``); ``randomize``: randomised rendering."""
    from embodied.commands.perception import make_perception
    from envs.tabletop_env import TabletopEnv

    return TabletopEnv(task=task, level=level, split=split, image_size=image_size, privileged=True,
                       perception=make_perception(perception), phrasing=phrasing, randomize=bool(randomize))


def run_episode(env, planner, seed: int, ablate: str = "none", video_path: Optional[Path] = None, viz=None) -> dict[str, Any]:
    """Closed loop: observe, take the first streamed step, execute it, observe again.

    ``viz`` (``embodied.commands.viz.RerunViz``, optional) is shown every observation, each streamed
    step with its latency, each step's result and the outcome."""
    t0 = time.perf_counter()
    env.reset(seed=seed)
    planner.reset()
    base = env.unwrapped
    episode = base.episode
    keep_privileged = getattr(planner, "name", "") in PRIVILEGED_PLANNERS or getattr(planner, "forwards_privileged", False)
    executed: list[str] = []
    success, failure, info = False, None, {}
    recorder = VideoRecorder(video_path, episode.instruction) if video_path else None
    if viz:
        viz.episode(episode.family, seed, episode.instruction)
    steps = 0
    while True:
        obs = base.observation()
        if viz:
            viz.observation(obs, executed)
        if recorder:
            recorder.add(_video_frame(base, obs), executed, executed[-1] if executed else "")
        if ablate != "none":
            obs = obs.ablated(ablate)
        if not keep_privileged:
            obs.privileged = None
        try:
            asked = time.perf_counter()
            stream = planner.plan(obs)
            step = next(stream, None)
            if viz and step is not None:
                viz.plan_step(step.text, time.perf_counter() - asked)
            if hasattr(stream, "close"):
                stream.close()
        except EmbodiedError as e:
            failure = f"planner error: {e}"
            break
        if step is None:
            failure = "planner returned no step"
            break
        _, _, terminated, truncated, info = env.step(step.text)
        if viz:
            viz.result(info)
        steps += 1
        executed.append(step.text)
        success = bool(info.get("success", False))
        if terminated or truncated:
            if not success:
                failure = info.get("failure") or info.get("error") or ("step limit" if truncated else "declared done before success" if step.is_done else "terminated")
            break
    if recorder:
        recorder.add(_video_frame(base, base.observation()), executed, "", "SUCCESS" if success else f"FAILED: {failure}")
        recorder.close()
    if viz:
        viz.close(success, failure)
    return {
        "task": episode.family,
        "level": episode.level,
        "seed": seed,
        "success": success,
        "steps": steps,
        "failure": None if success else failure,
        "plan": "; ".join(executed),
        "instruction": episode.instruction,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _video_frame(env, obs):
    """The front camera as the planner saw it; with camera perception, the perception camera's
    frame with what perception found drawn over it (outlines, names, poses, the scene graph)."""
    table = getattr(env, "perceived", None)
    if table is None or "front" not in table.cameras or table.cameras["front"].latest() is None:
        return obs.frames["front"]
    from embodied.perception.draw import draw

    return draw(table.cameras["front"].latest(), table.scene(), table.calibrations["front"])


def unique_path(path: Path) -> Path:
    """``path`` itself if free, else ``stem-1.ext``, ``stem-2.ext``...: videos are never overwritten."""
    if not path.exists():
        return path
    k = 1
    while (candidate := path.with_name(f"{path.stem}-{k}{path.suffix}")).exists():
        k += 1
    return candidate
