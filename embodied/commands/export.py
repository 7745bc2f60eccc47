"""``embodied export``: demonstration shards in a format other robotics tools read.

    embodied export data=data/l1 format=lerobot out=exports/l1

``format=lerobot`` writes a LeRobotDataset v3.0 (``embodied.data.lerobot``): Parquet data chunks,
one H.264 mp4 per camera (all episodes one after the other, rolled over by size), ``meta/info.json``,
``meta/tasks.parquet`` (the instructions), ``meta/episodes/...parquet`` and ``meta/stats.json``;
the instruction is the task, the plan steps are language annotations, the end-effector targets
(grasp and release poses) are the action. Load it with LeRobot::

    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    ds = LeRobotDataset("local/l1", root="exports/l1")
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from embodied.commands.config import one_of, validated

FORMATS = ("lerobot",)


@dataclass
class ExportConfig:
    data: str = "data/l1"
    format: str = "lerobot"
    out: str = "exports/l1"
    overwrite: bool = False
    fps: int = 1
    robot_type: str = "franka_panda"
    language: bool = True
    chunks_size: int = 1000
    data_files_size_in_mb: int = 100
    video_files_size_in_mb: int = 200
    crf: int = 18
    gop: int = 2
    progress: bool = True


def export(cfg: ExportConfig) -> dict:
    """Run the export; returns the written ``meta/info.json``."""
    from tqdm import tqdm

    from embodied.commands.video import H264Writer
    from embodied.data.lerobot import LeRobotOptions, export_lerobot

    one_of(cfg.format, FORMATS, "format")
    opts = LeRobotOptions(fps=cfg.fps, robot_type=cfg.robot_type, language=cfg.language, chunks_size=cfg.chunks_size,
                          data_files_size_in_mb=cfg.data_files_size_in_mb, video_files_size_in_mb=cfg.video_files_size_in_mb,
                          crf=cfg.crf, gop=cfg.gop)
    with tqdm(desc="export episodes", unit="ep", disable=not cfg.progress, file=sys.stderr) as bar:
        return export_lerobot(cfg.data, cfg.out, H264Writer, opts, overwrite=cfg.overwrite, progress=bar.update)


def main(cfg) -> int:
    info = export(validated(cfg, ExportConfig))
    print(json.dumps({k: info[k] for k in ("codebase_version", "total_episodes", "total_frames", "total_tasks", "fps")}))
    print(f"wrote {cfg.out}")
    return 0
