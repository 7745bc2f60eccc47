"""Recorded sessions: ``Recorder`` writes frames from any ``Camera`` to a folder, and
``ReplayCamera`` reads them back as a ``Camera`` (``make_camera("replay:/path/session")``).

The format, a folder::

    session.json      {"format": "embodied-session", "version": 1, "depth_unit_m": 0.001}
    frames.jsonl      one line per frame, in capture order:
                      {"camera": "front", "seq": 1, "timestamp": 1718000000.123456,
                       "width": 640, "height": 480, "rgb": "front/000001.png", "depth": "front/000001.depth.png"}
    front/000001.png          colour, 8-bit PNG
    front/000001.depth.png    depth, 16-bit PNG in millimetres (0 = no reading), or "depth": null

Timestamps are the capture times (``time.time()``) the camera stamped, kept to the
microsecond; depth is kept to the millimetre (0 to 65.534 m; farther, NaN or no reading -> 0).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from embodied.core.camera import Camera, Frame
from embodied.core.errors import CameraError, ConfigError
from embodied.perception.cameras.configs import ReplayCameraConfig
from embodied.perception.cameras.threaded import CameraBase

log = logging.getLogger(__name__)

SESSION_FORMAT = "embodied-session"
SESSION_VERSION = 1
DEPTH_UNIT_M = 0.001  # depth PNGs hold millimetres
FRAMES = "frames.jsonl"
SESSION = "session.json"


def depth_to_png(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16 millimetres; NaN, inf, <= 0 and > 65.534 m -> 0 (no reading)."""
    d = np.asarray(depth, dtype=np.float64)
    mm = np.round(np.where(np.isfinite(d), d, 0.0) / DEPTH_UNIT_M)
    return np.where((mm > 0) & (mm < 65535), mm, 0).astype(np.uint16)


def depth_from_png(mm: np.ndarray) -> np.ndarray:
    """(H, W) uint16 millimetres -> (H, W) float32 metres (0 = no reading)."""
    return (mm.astype(np.float32) * np.float32(DEPTH_UNIT_M)).astype(np.float32)


class Recorder:
    """Writes frames into a session folder: ``write(frame)`` for one, ``record(camera, n)`` to
    read and write ``n`` frames from a camera. Several cameras may share one session."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path)
        if (self.path / FRAMES).exists() and not overwrite:
            raise ConfigError(f"{self.path} already holds a recorded session; choose another folder or pass overwrite=True")
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / SESSION).write_text(json.dumps({"format": SESSION_FORMAT, "version": SESSION_VERSION, "depth_unit_m": DEPTH_UNIT_M}))
        self._lines = open(self.path / FRAMES, "w")
        self._count: dict[str, int] = {}
        self.frames = 0

    def write(self, frame: Frame) -> dict:
        """Append one frame; returns its ``frames.jsonl`` record."""
        if self._lines.closed:
            raise CameraError(f"recorder of {self.path} is closed")
        cam = str(frame.camera) or "camera"
        if "/" in cam or cam in (".", ".."):
            raise ConfigError(f"camera name {cam!r} cannot be a folder name")
        n = self._count.get(cam, 0) + 1
        self._count[cam] = n
        (self.path / cam).mkdir(exist_ok=True)
        rgb_name = f"{cam}/{n:06d}.png"
        if not cv2.imwrite(str(self.path / rgb_name), cv2.cvtColor(np.asarray(frame.rgb, np.uint8), cv2.COLOR_RGB2BGR)):
            raise CameraError(f"cannot write {self.path / rgb_name}")
        depth_name = None
        if frame.depth is not None:
            depth_name = f"{cam}/{n:06d}.depth.png"
            if not cv2.imwrite(str(self.path / depth_name), depth_to_png(frame.depth)):
                raise CameraError(f"cannot write {self.path / depth_name}")
        w, h = frame.size
        record = {"camera": cam, "seq": int(frame.seq), "timestamp": float(frame.timestamp), "width": w, "height": h,
                  "rgb": rgb_name, "depth": depth_name}
        self._lines.write(json.dumps(record) + "\n")
        self._lines.flush()
        self.frames += 1
        return record

    def record(self, camera: Camera, n: int, timeout_s: float = 1.0) -> int:
        """Read ``n`` frames from ``camera`` (connected) and write them; returns how many were written."""
        for _ in range(int(n)):
            self.write(camera.read(timeout_s))
        return int(n)

    def close(self) -> None:
        if not self._lines.closed:
            self._lines.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_session(path: str | Path) -> list[dict]:
    """The frame records of a session folder (``CameraError`` when it is not one)."""
    path = Path(path)
    meta = path / SESSION
    if meta.is_file():
        try:
            info = json.loads(meta.read_text())
        except ValueError as e:
            raise CameraError(f"{meta}: not JSON ({e})") from e
        if info.get("format") != SESSION_FORMAT or info.get("version") != SESSION_VERSION:
            raise CameraError(f"{path}: a session of format {info.get('format')!r} version {info.get('version')!r}; "
                              f"this code reads {SESSION_FORMAT} version {SESSION_VERSION}")
    lines = path / FRAMES
    if not lines.is_file():
        raise CameraError(f"no recorded session in {str(path)!r} (no {FRAMES}; record one with Recorder)")
    records = []
    text = lines.read_text().splitlines()
    for i, line in enumerate(text, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            r["timestamp"] = float(r["timestamp"])
            r["camera"], r["rgb"] = str(r["camera"]), str(r["rgb"])
        except (ValueError, KeyError, TypeError) as e:
            if i == len(text):  # a last line cut short by a crash: keep what came before
                log.warning("%s: last line %d is incomplete; ignored", lines, i)
                break
            raise CameraError(f"{lines}:{i}: not a frame record ({e})") from e
        records.append(r)
    return records


class ReplayCamera(CameraBase):
    """A recorded session as a ``Camera``: frames in recorded order, with their recorded
    timestamps (``retime=True``: stamped at replay), optionally paced by them (``realtime``).
    At the end: ``CameraError`` (``loop=True``: from the start again, timestamps kept increasing)."""

    def __init__(self, config: ReplayCameraConfig | str | Path, **settings):
        if not isinstance(config, ReplayCameraConfig):
            config = ReplayCameraConfig(path=str(config), **settings)
        self.config = config
        self.path = Path(config.path)
        self.name = config.name or config.camera or self.path.name or "replay"
        self._records: list[dict] | None = None
        self._i = 0
        self._loops = 0
        self._latest: Frame | None = None
        self._start = 0.0

    @staticmethod
    def cameras(path: str | Path) -> list[str]:
        """The camera names recorded in a session, in first-seen order."""
        return list(dict.fromkeys(r["camera"] for r in read_session(path)))

    @property
    def is_connected(self) -> bool:
        return self._records is not None

    def connect(self) -> None:
        records = read_session(self.path)
        names = list(dict.fromkeys(r["camera"] for r in records))
        cam = self.config.camera
        if cam is None:
            if len(names) > 1:
                raise CameraError(f"session {self.path} holds cameras {', '.join(names)}: pick one (replay:{self.path}#{names[0]})")
            cam = names[0] if names else None
        elif cam not in names:
            raise CameraError(f"session {self.path} has no camera {cam!r}; it has {', '.join(names) or 'none'}")
        self._records = [r for r in records if r["camera"] == cam]
        if not self._records:
            raise CameraError(f"session {self.path} holds no frames")
        if not self.config.name:
            self.name = cam
        self._i, self._loops, self._latest = 0, 0, None
        self._start = time.monotonic()

    def _image(self, name: str, flags: int) -> np.ndarray:
        img = cv2.imread(str(self.path / name), flags)
        if img is None:
            raise CameraError(f"session {self.path}: missing or unreadable {name}")
        return img

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self._records is None:
            raise CameraError(f"camera {self.name!r} is not connected: call connect() first")
        recs = self._records
        if self._i >= len(recs):
            if not self.config.loop:
                raise CameraError(f"camera {self.name!r}: end of the recording {self.path} after {len(recs)} frames")
            self._i, self._loops = 0, self._loops + 1
        r = recs[self._i]
        span = recs[-1]["timestamp"] - recs[0]["timestamp"]
        period = span / max(len(recs) - 1, 1)
        offset = self._loops * (span + period)  # a looped replay keeps its timestamps increasing
        if self.config.realtime:
            due = self._start + (r["timestamp"] - recs[0]["timestamp"]) + offset
            wait = due - time.monotonic()
            if wait > timeout_s:
                time.sleep(max(0.0, timeout_s))
                raise CameraError(f"camera {self.name!r}: no frame within {timeout_s:g} s (the recording pauses there)")
            if wait > 0:
                time.sleep(wait)
        rgb = cv2.cvtColor(self._image(r["rgb"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        depth = depth_from_png(self._image(r["depth"], cv2.IMREAD_UNCHANGED)) if r.get("depth") else None
        t = time.time() if self.config.retime else r["timestamp"] + offset
        self._i += 1
        seq = int(r.get("seq", self._i)) + self._loops * len(recs)
        self._latest = Frame(self.name, rgb, t, seq, depth)
        return self._latest

    def latest(self) -> Frame | None:
        return self._latest

    def disconnect(self) -> None:
        self._records = None
