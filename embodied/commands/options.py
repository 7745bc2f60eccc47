"""Settings shared by the commands that run a planner in the simulator (rollout, eval)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from embodied.commands.config import flag, one_of
from embodied.commands.perception import check_perception
from embodied.commands.planners import check_model_dir, check_planner
from envs.levels import LEVELS, SPLITS
from envs.tasks.phrasing import check_wording

ABLATIONS = ("none", "frames", "objects", "relations", "state")


@dataclass
class SimOptions:
    """The simulated world itself (``sim.<key>=...``)."""

    randomize: bool = False  # randomised rendering per episode: light, tint, colour jitter, camera pose, noise (seeded, recorded)


@dataclass
class PlannerOptions:
    planner: str = "oracle"
    model_dir: str = "checkpoints/default"
    device: str = "cpu"
    use_engine: bool = True
    cpu_compile: bool = False  # planner=model on CPU: compile the engine (20-60 s once, then plans about 2x faster than eager)
    keep_patches: Optional[int] = None
    object_aliases: bool = True  # planner=model: plan for objects it never saw under known names of their colour
    server: str = "tcp://127.0.0.1:5555"
    server_key: Optional[str] = None  # CurveZMQ: the server's public key file
    client_key: Optional[str] = None  # CurveZMQ: this robot's secret key file
    latency_ms: Optional[float] = None
    jitter_ms: Optional[float] = None
    loss: Optional[float] = None
    timeout_s: Optional[float] = None
    ablate: str = "none"
    image_size: int = 128
    perception: str = "ground_truth"  # ground_truth | camera: what the robot knows of the table comes from its cameras only
    phrasing: str = "templates"  # templates | train | dev: the instruction's wording (envs.tasks.phrasing); same scenes
    sim: SimOptions = field(default_factory=SimOptions)


def check_options(opts: PlannerOptions, level: str, split: str = "test") -> None:
    """Every setting checked at once, before anything is built or written (named errors)."""
    check_planner(opts.planner)
    one_of(level, LEVELS, "level")
    one_of(split, SPLITS, "split")
    one_of(opts.ablate, ABLATIONS, "ablate")
    check_perception(opts.perception)
    check_wording(opts.phrasing)
    for key in ("use_engine", "cpu_compile", "object_aliases"):
        flag(getattr(opts, key), key)
    flag(opts.sim.randomize, "sim.randomize")
    if opts.planner == "model":
        check_model_dir(opts.model_dir)
