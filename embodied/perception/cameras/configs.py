"""The settings of each camera source (one dataclass per source) and what ``find_cameras`` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass
class CameraConfig:
    """What every source takes: a name for its frames and, optionally, the mode to ask for."""

    name: str = ""
    width: int | None = None  # ask for this resolution; connect fails if the source does not give it
    height: int | None = None
    fps: float | None = None  # ask for this frame rate (live sources); checked like the resolution
    open_timeout_s: float = 10.0  # connect: give up when no first frame comes within this time


@dataclass
class OpenCVCameraConfig(CameraConfig):
    """``cv2.VideoCapture``: an index, a device path, a video file, a stream URL or a GStreamer pipeline."""

    source: int | str = 0
    backend: str = "any"  # any | ffmpeg | gstreamer | v4l2 | msmf | dshow | avfoundation
    fourcc: str | None = None  # ask a USB camera for a pixel format, e.g. MJPG for 1080p at 30 fps
    live: bool | None = None  # None: files are read in order (every frame), other sources live (newest frame)
    realtime: bool = False  # a file: pace the frames at the file's frame rate (as a camera would)
    read_timeout_s: float = 5.0  # how long the FFmpeg backend waits on a stalled stream before giving up


@dataclass
class RealSenseCameraConfig(CameraConfig):
    """An Intel RealSense (D4xx): colour, plus depth aligned to colour in metres."""

    serial: str = ""  # "" = the first device found
    depth: bool = True
    width: int | None = 640
    height: int | None = 480
    fps: float | None = 30


@dataclass
class ReplayCameraConfig(CameraConfig):
    """A recorded session folder (``frames.jsonl`` + PNGs), read back in order."""

    path: str = ""
    camera: str | None = None  # which recorded camera; None = the only one in the session
    realtime: bool = False  # pace the frames by their recorded timestamps
    loop: bool = False  # start again at the end instead of raising CameraError
    retime: bool = False  # stamp frames with time.time() at replay instead of the recorded timestamps


@dataclass
class CameraInfo:
    """A connected camera ``find_cameras`` saw: ``spec`` is what ``make_camera`` takes."""

    kind: str  # opencv | realsense
    spec: str
    id: str
    name: str = ""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    extra: dict = field(default_factory=dict)
