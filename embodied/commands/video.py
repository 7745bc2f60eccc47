"""Episode videos: the camera view, upscaled, with the instruction and the plan overlaid.

Written as **H.264 (yuv420p) in mp4** through PyAV (the ``av`` wheel bundles FFmpeg with
libx264), which browsers, notebooks and LeRobot's decoders play. PyAV is a default
dependency; only where it is missing (an install with ``--no-deps``) the recorder falls back
to OpenCV's ``mp4v`` (MPEG-4 Part 2, which browsers do not play) and warns once.

``write_mp4(frames, path, fps)`` is the plain encoder (RGB frames in, H.264 out), also used
by ``embodied export format=lerobot`` for the per-camera videos.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

_log = logging.getLogger("embodied.video")
_warned: set[str] = set()

CODEC = "libx264"  # the encoder in PyAV's manylinux wheels; "h264" names the same encoder there
PIX_FMT = "yuv420p"  # the pixel format every browser decodes (needs even width and height)


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        _log.warning(message)


def _h264_codec() -> str:
    import av

    for name in (CODEC, "h264", "libopenh264"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - unknown encoder in this FFmpeg build
            continue
    raise RuntimeError("this PyAV build has no H.264 encoder (libx264, h264 or libopenh264)")


class H264Writer:
    """Appends RGB frames (H, W, 3) uint8 to an H.264/yuv420p mp4 through PyAV."""

    def __init__(self, path: Path | str, width: int, height: int, fps: int = 8, crf: int = 23, gop: Optional[int] = None):
        import av

        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(_h264_codec(), rate=int(fps))
        self.stream.width, self.stream.height = int(width), int(height)
        self.stream.pix_fmt = PIX_FMT
        options = {"crf": str(crf)}
        if gop:
            options["g"] = str(gop)  # a key frame every gop frames: random access for dataset readers
        self.stream.options = options
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():  # flush the encoder's delayed frames
            self.container.mux(packet)
        self.container.close()
        self.container = None


def write_mp4(frames: Iterable[np.ndarray], path: Path | str, fps: int = 8, crf: int = 23, gop: Optional[int] = None) -> int:
    """Encode RGB frames (all the same even size) as H.264/yuv420p mp4; returns the frame count."""
    writer = None
    try:
        for f in frames:
            if writer is None:
                writer = H264Writer(path, f.shape[1], f.shape[0], fps, crf, gop)
            writer.write(f)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"no frames to write to {path}")
    return writer.frames


class _OpenCVWriter:
    """The fallback without PyAV: OpenCV's MPEG-4 Part 2 (``mp4v``), not playable in browsers."""

    def __init__(self, path: Path, width: int, height: int, fps: int):
        import cv2

        self.cv2 = cv2
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(self.cv2.cvtColor(np.ascontiguousarray(rgb), self.cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


class VideoRecorder:
    """Writes the camera view, upscaled, with the instruction and plan overlaid (H.264 mp4)."""

    SIZE = 384
    BANNER = 90
    HOLD = 8  # frames per observation at 8 fps: one second each
    FPS = 8

    def __init__(self, path: Path, instruction: str):
        import cv2

        self.cv2 = cv2
        self.path = Path(path)
        self.instruction = instruction
        self.path.parent.mkdir(parents=True, exist_ok=True)
        width, height = self.SIZE, self.SIZE + self.BANNER
        if have_pyav():
            self.writer = H264Writer(self.path, width, height, self.FPS)
        else:
            _warn_once("pyav", "PyAV (pip install av) is not installed: videos fall back to OpenCV's mp4v, which browsers do not play")
            self.writer = _OpenCVWriter(self.path, width, height, self.FPS)

    @property
    def frames(self) -> int:
        return self.writer.frames

    def compose(self, frame, executed: list[str], current: str, banner: str = "") -> np.ndarray:
        """The frame as shown: upscaled camera view under a banner with the instruction and the last steps (RGB)."""
        cv2 = self.cv2
        img = cv2.resize(np.ascontiguousarray(frame[:, :, :3]), (self.SIZE, self.SIZE), interpolation=cv2.INTER_NEAREST)
        canvas = np.zeros((self.SIZE + self.BANNER, self.SIZE, 3), np.uint8)
        canvas[self.BANNER:] = img
        lines = [self.instruction[:60]] + [f"{i + 1}. {s}" for i, s in enumerate(executed[-3:], start=max(0, len(executed) - 3))]
        if banner:
            lines = [banner] + lines[:3]
        for k, text in enumerate(lines[:4]):
            colour = (255, 255, 0) if text == current or (current and text.endswith(current)) else (255, 255, 255)
            cv2.putText(canvas, text, (6, 18 + 21 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        return canvas

    def add(self, frame, executed: list[str], current: str, banner: str = "") -> None:
        canvas = self.compose(frame, executed, current, banner)
        for _ in range(self.HOLD):
            self.writer.write(canvas)

    def close(self) -> None:
        self.writer.close()
