"""Camera sources behind one interface: configs, the capture thread, ``make_camera``, ``find_cameras``.

Every source implements ``embodied.core.camera.Camera`` (``connect``, ``read(timeout_s)``,
``latest``, ``disconnect``) and hands out ``Frame``s stamped with ``time.time()`` at capture.
Live sources (a USB camera, a network stream, a RealSense) capture on a background thread
that keeps only the newest frame: ``read`` waits for a frame newer than the last one it
returned, ``latest`` is the newest, and a source that dies raises ``CameraError`` within the
timeout instead of hanging. Files and recorded sessions are read in order, every frame once
(``sequential``), and raise ``CameraError`` at their end.

Camera specs (``make_camera``)::

    opencv:0                    a camera by index (cv2.VideoCapture(0))
    opencv:/dev/video2          a V4L2 device
    opencv:/path/video.mp4      a video file, every frame in order
    opencv:rtsp://host/stream   a network stream (rtsp, http, https, udp, tcp)
    gst:<pipeline>              a GStreamer pipeline (needs an OpenCV built with GStreamer)
    realsense:<serial>          an Intel RealSense, colour + depth aligned to colour (``realsense:`` = the first one)
    replay:/path/session        a recorded session (embodied.perception.cameras.replay); ``#<camera>`` picks one camera

``opencv:`` and ``realsense:`` specs may end in ``@<width>x<height>`` or ``@<width>x<height>@<fps>``
(``opencv:0@1280x720@30``): the camera is asked for that mode and ``connect`` fails with a
``CameraError`` if it does not deliver it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

from embodied.core.camera import Camera
from embodied.core.errors import ConfigError
from embodied.perception.cameras.configs import (
    STREAM_SCHEMES,
    CameraConfig,
    CameraInfo,
    OpenCVCameraConfig,
    RealSenseCameraConfig,
    ReplayCameraConfig,
)

log = logging.getLogger(__name__)

__all__ = ["CameraConfig", "CameraInfo", "OpenCVCameraConfig", "RealSenseCameraConfig", "ReplayCameraConfig",
           "parse_spec", "make_camera", "find_cameras", "KINDS"]

KINDS = ("opencv", "gst", "realsense", "replay")
_MODE = re.compile(r"@(?P<w>\d+)x(?P<h>\d+)(?:@(?P<fps>\d+(?:\.\d+)?))?$")


# --- specs ---------------------------------------------------------------------------------
def _mode(rest: str) -> tuple[str, dict]:
    m = _MODE.search(rest)
    if not m:
        return rest, {}
    mode = {"width": int(m["w"]), "height": int(m["h"])}
    if m["fps"]:
        mode["fps"] = float(m["fps"])
    return rest[: m.start()], mode


def parse_spec(spec: str) -> CameraConfig:
    """The config a camera spec string describes (see the module docstring); ``ConfigError`` if malformed."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"camera spec {spec!r}: expected <kind>:<source> with kind one of {', '.join(KINDS)} "
                          "(e.g. opencv:0, opencv:/path/video.mp4, realsense:<serial>, replay:/path/session)")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "sim":
        raise ConfigError(f"camera spec {spec!r}: simulated cameras are built by the commands (they need the simulator), "
                          "not by make_camera")
    if kind not in KINDS:
        raise ConfigError(f"camera spec {spec!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "gst":
        if not rest.strip():
            raise ConfigError(f"camera spec {spec!r}: gst: needs a GStreamer pipeline ending in appsink")
        return OpenCVCameraConfig(name="gst", source=rest, backend="gstreamer")
    if kind == "replay":
        path, _, cam = rest.partition("#")
        if not path.strip():
            raise ConfigError(f"camera spec {spec!r}: replay: needs a session folder")
        return ReplayCameraConfig(name=cam or "", path=path, camera=cam or None)
    rest, mode = _mode(rest.strip())
    if kind == "realsense":
        if rest and not rest.isalnum():
            raise ConfigError(f"camera spec {spec!r}: a RealSense serial number is letters and digits (rs-enumerate-devices lists them)")
        return RealSenseCameraConfig(name=f"realsense-{rest}" if rest else "realsense", serial=rest, **mode)
    if not rest:
        raise ConfigError(f"camera spec {spec!r}: opencv: needs an index, a device, a file or a URL")
    if rest.isdigit():
        return OpenCVCameraConfig(name=f"opencv{rest}", source=int(rest), **mode)
    if rest.lower().startswith(STREAM_SCHEMES):
        return OpenCVCameraConfig(name="stream", source=rest, **mode)
    if "://" in rest:
        raise ConfigError(f"camera spec {spec!r}: unknown URL scheme; use one of {', '.join(s[:-3] for s in STREAM_SCHEMES)}")
    return OpenCVCameraConfig(name=Path(rest).stem or "opencv", source=rest, **mode)


def make_camera(spec: str | CameraConfig, name: str | None = None, **settings) -> Camera:
    """A camera (not yet connected) from a spec string or a config; ``settings`` override config
    fields (``width=1280, height=720, fps=30, realtime=True``...). Bad specs -> ``ConfigError``."""
    cfg = parse_spec(spec) if isinstance(spec, str) else spec
    if not isinstance(cfg, CameraConfig):
        raise ConfigError(f"make_camera takes a spec string or a CameraConfig, got {type(spec).__name__}")
    unknown = [k for k in settings if k not in cfg.__dataclass_fields__]
    if unknown:
        raise ConfigError(f"{type(cfg).__name__} has no setting {', '.join(unknown)}; it has {', '.join(cfg.__dataclass_fields__)}")
    cfg = replace(cfg, **{k: v for k, v in settings.items() if v is not None})
    if name:
        cfg = replace(cfg, name=name)
    for key in ("width", "height"):
        v = getattr(cfg, key)
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"camera {cfg.name!r}: {key}={v!r} must be a positive integer")
    if cfg.fps is not None and not (isinstance(cfg.fps, (int, float)) and cfg.fps > 0):
        raise ConfigError(f"camera {cfg.name!r}: fps={cfg.fps!r} must be a positive number")
    if isinstance(cfg, OpenCVCameraConfig):
        from embodied.perception.cameras.opencv import OpenCVCamera

        return OpenCVCamera(cfg)
    if isinstance(cfg, RealSenseCameraConfig):
        from embodied.perception.cameras.realsense import RealSenseCamera

        return RealSenseCamera(cfg)
    if isinstance(cfg, ReplayCameraConfig):
        from embodied.perception.cameras.replay import ReplayCamera

        return ReplayCamera(cfg)
    raise ConfigError(f"no camera for {type(cfg).__name__}")


def find_cameras(opencv: bool = True, realsense: bool = True, max_index: int = 8) -> list[CameraInfo]:
    """Connected cameras: OpenCV devices (``/dev/video*`` on Linux, indices 0..max_index-1
    elsewhere) and RealSense devices (when pyrealsense2 is installed). Never raises for want
    of hardware: an empty list means none was found."""
    found: list[CameraInfo] = []
    if opencv:
        from embodied.perception.cameras.opencv import find_opencv_cameras

        found += find_opencv_cameras(max_index)
    if realsense:
        from embodied.perception.cameras.realsense import find_realsense_cameras

        found += find_realsense_cameras()
    return found
