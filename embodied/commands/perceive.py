"""``embodied perceive``: see what the robot sees. Each capture goes through perception and is
drawn with every object's outline, name, pose and confidence and the scene graph, live in a
window or saved as PNG images and an H.264 mp4 per camera, plus ``scenes.jsonl``.

    embodied perceive source=sim task=tower level=L1 seed=0 steps=3 out=runs/perceive
    embodied perceive source=camera cameras.front=opencv:0 calibration.front=calib/front.json frames=200 video=true

``source=sim`` renders the simulator's cameras (``envs.cameras``) with their exact calibration
and, with ``steps=k``, lets the oracle execute k plan steps, perceiving after each (stacks and
bins appear); ``source=camera`` reads the configured cameras (any spec of
``embodied.perception.cameras.make_camera``) with the given calibration files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.commands.config import one_of, validated
from embodied.core.errors import ConfigError

SOURCES = ("sim", "camera")


@dataclass
class PerceiveConfig:
    source: str = "sim"
    task: str = "put_in_container"
    level: str = "L1"
    split: str = "test"
    seed: int = 0
    steps: int = 0
    randomize: bool = False
    cameras: Any = field(default_factory=dict)
    calibration: Any = field(default_factory=dict)
    frames: int = 1
    timeout_s: float = 2.0
    out: str = "runs/perceive"
    images: bool = True
    video: bool = False
    fps: int = 8
    window: bool = False


def _check(c: PerceiveConfig) -> None:
    one_of(c.source, SOURCES, "source")
    if c.frames < 1 or c.steps < 0:
        raise ConfigError("frames must be >= 1 and steps >= 0")
    if c.source == "camera":
        if not c.cameras:
            raise ConfigError("source=camera needs cameras, e.g. cameras.front=opencv:0")
        missing = sorted(set(c.cameras) - set(c.calibration))
        if missing:
            raise ConfigError(f"source=camera needs a calibration file for every camera; missing: {missing} "
                              "(calibration.front=calib/front.json, written by embodied calibrate)")


class _Output:
    """PNG images, one H.264 mp4 per camera, the perceived scenes as JSON lines, an optional window."""

    def __init__(self, c: PerceiveConfig):
        self.c, self.out = c, Path(c.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.scenes = open(self.out / "scenes.jsonl", "w")  # closed in close()
        self.writers: dict = {}
        self.count = 0
        if c.window:
            import cv2

            try:
                cv2.namedWindow("embodied perceive")
            except cv2.error as e:
                raise ConfigError(f"window=true, but this OpenCV has no GUI ({e}); use images=true or video=true") from e

    def add(self, frames: dict, calibrations: dict, scene, label: str) -> None:
        import cv2

        from embodied.perception.draw import draw

        self.scenes.write(json.dumps({"capture": self.count, "label": label, **scene.to_dict()}) + "\n")
        tiles = []
        for name, frame in frames.items():
            if name not in calibrations:
                continue
            img = draw(frame, scene, calibrations[name])
            tiles.append(img)
            if self.c.images:
                cv2.imwrite(str(self.out / f"{name}_{self.count:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            if self.c.video:
                self._writer(name, img).write(img)
        if self.c.window and tiles:
            h = max(t.shape[0] for t in tiles)
            row = np.concatenate([np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles], axis=1)
            cv2.imshow("embodied perceive", cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
            cv2.waitKey(1)
        self.count += 1

    def _writer(self, name: str, img: np.ndarray):
        if name not in self.writers:
            from embodied.commands.video import H264Writer

            h, w = img.shape[:2]
            self.writers[name] = H264Writer(self.out / f"{name}.mp4", w - w % 2, h - h % 2, fps=self.c.fps)
        w = self.writers[name]
        return _Cropped(w, w.stream.width, w.stream.height)

    def close(self) -> None:
        self.scenes.close()
        for w in self.writers.values():
            w.close()


class _Cropped:
    def __init__(self, writer, width: int, height: int):
        self.writer, self.width, self.height = writer, width, height

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img[: self.height, : self.width])


def _from_sim(c: PerceiveConfig, out: _Output) -> dict:
    from embodied.perception.tabletop import TabletopPerception
    from envs.tabletop_env import TabletopEnv
    from envs.tasks import make_privileged, oracle_plan

    env = TabletopEnv(c.task, level=c.level, split=c.split, privileged=True, perception=TabletopPerception(),
                      **({"randomize": True} if c.randomize else {}))
    try:
        env.reset(seed=c.seed)
        table = env.perceived
        summary = {"instruction": env.episode.instruction, "captures": []}
        for k in range(c.steps + 1):
            for _ in range(c.frames):
                table.forget()
                scene = table.scene()
                frames = {n: cam.latest() for n, cam in table.cameras.items()}
                out.add(frames, table.calibrations, scene, f"after {k} steps")
                summary["captures"].append({"detections": scene.detections, "ms": round(scene.ms, 2)})
            if k == c.steps:
                break
            step = oracle_plan(make_privileged(env.episode, env.sim.world_state()))[0]
            if step.is_done:
                break
            env.step(step.text)
        return summary
    finally:
        env.close()


def _from_cameras(c: PerceiveConfig, out: _Output) -> dict:
    from embodied.core.camera import Calibration
    from embodied.perception.cameras import make_camera
    from embodied.perception.tabletop import TabletopPerception

    calibrations = {n: Calibration.load(p) for n, p in c.calibration.items()}
    cameras = {n: make_camera(spec, name=n) for n, spec in c.cameras.items()}
    perception = TabletopPerception()
    summary = {"captures": []}
    try:
        for cam in cameras.values():
            cam.connect()
        for _ in range(c.frames):
            frames = {n: cam.read(c.timeout_s) for n, cam in cameras.items()}  # CameraError when a camera stops
            scene = perception.perceive({n: frames[n] for n in calibrations}, calibrations)
            out.add(frames, calibrations, scene, time.strftime("%H:%M:%S"))
            summary["captures"].append({"detections": scene.detections, "ms": round(scene.ms, 2)})
    finally:
        for cam in cameras.values():
            cam.disconnect()
    return summary


def main(cfg) -> int:
    c: PerceiveConfig = validated(cfg, PerceiveConfig)
    c.cameras, c.calibration = dict(c.cameras or {}), dict(c.calibration or {})
    _check(c)
    out = _Output(c)
    try:
        summary = _from_sim(c, out) if c.source == "sim" else _from_cameras(c, out)
    finally:
        out.close()
    last = summary["captures"][-1] if summary["captures"] else {}
    print(json.dumps({"out": str(out.out), "captures": out.count, "last": last}))
    return 0

