"""``embodied rollout``: one episode of a planner in the simulator, optionally recorded as an mp4."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from embodied.commands.config import validated
from embodied.commands.episodes import make_env, run_episode, unique_path
from embodied.commands.options import PlannerOptions, check_options
from embodied.commands.planners import make_planner
from embodied.commands.viz import check_viz, make_viz


@dataclass
class RolloutConfig(PlannerOptions):
    task: str = "put_in_container"
    level: str = "L1"
    split: str = "test"
    seed: int = 0
    video: bool = False
    out: str = "runs/rollout"
    viz: str = "none"  # none | rerun: the episode in the Rerun viewer (embodied.commands.viz)
    viz_save: Optional[str] = None  # viz=rerun: save an .rrd file here instead of a live viewer
    viz_connect: Optional[str] = None  # viz=rerun: the gRPC URL of a running viewer


TASK_FAILED = 3  # exit status of `embodied rollout` when the episode ran but the task was not achieved


def main(cfg) -> int:
    """``embodied rollout``: one episode. Exit status 0 success, 3 task not achieved, 2 bad config."""
    c: RolloutConfig = validated(cfg, RolloutConfig)
    check_options(c, c.level, c.split)
    check_viz(c.viz, c.viz_save, c.viz_connect)
    planner = make_planner(c.planner, asdict(c))
    env = make_env(c.task, c.level, c.split, c.image_size, c.perception, c.phrasing, c.sim.randomize)
    video = unique_path(Path(c.out) / f"{c.task}_{c.level}_seed{c.seed}.mp4") if c.video else None
    viz = make_viz(c.viz, f"{c.task}_{c.level}_seed{c.seed}", c.viz_save, c.viz_connect)
    result = run_episode(env, planner, c.seed, c.ablate, video, viz)
    if video:
        result["video"] = str(video)
    print(json.dumps(result, indent=2))
    return 0 if result["success"] else TASK_FAILED
