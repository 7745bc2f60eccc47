"""``cv2.VideoCapture`` as a ``Camera``: an index, a device, a video file, a stream URL or a
GStreamer pipeline, captured on a background thread (``ThreadedCamera``).

A dead stream never hangs the caller: ``read(timeout_s)`` raises ``CameraError`` when no frame
comes in time, ``connect`` gives up after ``open_timeout_s``, and the FFmpeg backend is told to
give up too (``CAP_PROP_OPEN_TIMEOUT_MSEC``, ``CAP_PROP_READ_TIMEOUT_MSEC``) so that the capture
thread ends. The end of a file, an unplugged camera or a stopped stream is a ``CameraError``.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import sys
import time

import cv2
import numpy as np

from embodied.core.errors import CameraError, ConfigError
from embodied.perception.cameras.configs import STREAM_SCHEMES, CameraInfo, OpenCVCameraConfig
from embodied.perception.cameras.threaded import ThreadedCamera

log = logging.getLogger(__name__)

BACKENDS = {"any": cv2.CAP_ANY, "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER, "v4l2": cv2.CAP_V4L2,
            "msmf": cv2.CAP_MSMF, "dshow": cv2.CAP_DSHOW, "avfoundation": cv2.CAP_AVFOUNDATION}


def has_gstreamer() -> bool:
    """Whether this OpenCV was built with GStreamer (the opencv-python wheels are not)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class OpenCVCamera(ThreadedCamera):
    """``make_camera("opencv:0")``, ``opencv:/path/video.mp4``, ``opencv:rtsp://...``, ``gst:<pipeline>``."""

    def __init__(self, config: OpenCVCameraConfig):
        if config.backend not in BACKENDS:
            raise ConfigError(f"camera {config.name!r}: unknown OpenCV backend {config.backend!r}; use {', '.join(BACKENDS)}")
        if config.fourcc is not None and len(config.fourcc) != 4:
            raise ConfigError(f"camera {config.name!r}: fourcc must be 4 characters (e.g. MJPG), got {config.fourcc!r}")
        self.config = config
        src = config.source
        self.is_file = isinstance(src, str) and config.backend != "gstreamer" and not src.lower().startswith(STREAM_SCHEMES) \
            and not src.startswith("/dev/")
        self.is_stream = isinstance(src, str) and src.lower().startswith(STREAM_SCHEMES)
        live = (not self.is_file) if config.live is None else bool(config.live)
        super().__init__(config.name or "opencv", live, config.open_timeout_s)
        self._cap: cv2.VideoCapture | None = None
        self._file_frames = 0  # frames a file's header announces
        self._reported_fps = 0.0
        self._t0 = 0.0

    # --- capture thread hooks -------------------------------------------------------------
    def _open(self) -> None:
        c = self.config
        src = c.source
        if c.backend == "gstreamer" and not has_gstreamer():
            raise CameraError(f"camera {self.name!r}: this OpenCV ({cv2.__version__}) was built without GStreamer "
                              "(as the opencv-python wheels are); build OpenCV with -DWITH_GSTREAMER=ON, or give the stream "
                              "to the FFmpeg backend as opencv:<rtsp/http URL>")
        if self.is_file and not os.path.isfile(src):
            raise CameraError(f"camera {self.name!r}: no video file {src!r}")
        api = BACKENDS[c.backend]
        if self.is_file or self.is_stream:
            api = cv2.CAP_FFMPEG if c.backend == "any" else api
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(c.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(c.read_timeout_s * 1000)]
            cap = cv2.VideoCapture(src, api, params)
        else:
            cap = cv2.VideoCapture(src, api)
        self._cap = cap
        if not cap.isOpened():
            what = "video file" if self.is_file else "stream" if self.is_stream else "camera"
            hint = (" (not a video OpenCV's FFmpeg can decode, or truncated: an mp4 cut short has no index)" if self.is_file
                    else " (is the URL right and the stream running?)" if self.is_stream
                    else " (is it plugged in, and not used by another program? find_cameras() lists cameras)")
            raise CameraError(f"camera {self.name!r}: cannot open {what} {src!r}{hint}")
        if not self.is_file:
            if c.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*c.fourcc))
            if c.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
            if c.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
            if c.fps:
                cap.set(cv2.CAP_PROP_FPS, c.fps)
        self._file_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.is_file else 0
        self._reported_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._t0 = time.monotonic()

    def _check_first(self, frame) -> None:
        c = self.config
        w, h = frame.size
        if (c.width and c.width != w) or (c.height and c.height != h):
            raise CameraError(f"camera {self.name!r}: asked for {c.width or w}x{c.height or h} but it gives {w}x{h}"
                              + (" (a file's size cannot be changed)" if self.is_file else " (v4l2-ctl --list-formats-ext lists its modes)"))
        if c.fps:
            got = self._reported_fps
            if got and not math.isclose(got, c.fps, rel_tol=0.02, abs_tol=0.5):
                raise CameraError(f"camera {self.name!r}: asked for {c.fps:g} fps but it reports {got:g} fps")
            if not got:
                log.warning("camera %r: asked for %g fps; the backend does not report its frame rate", self.name, c.fps)

    def _grab(self):
        cap = self._cap
        if self.is_file and self.config.realtime and self._reported_fps > 0:
            due = self._t0 + self.frames_captured / self._reported_fps
            while not self._stop.is_set() and time.monotonic() < due:
                time.sleep(min(0.01, due - time.monotonic()))
        if not cap.grab():
            return None
        t = time.time()  # the frame is captured; decoding follows
        ok, img = cap.retrieve()
        if not ok or img is None:
            return None
        if img.ndim == 2:
            rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        elif img.shape[2] == 4:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(rgb), None, t

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _end_message(self) -> str:
        n = self.frames_captured
        if self.is_file:
            short = f"; its header announces {self._file_frames}: truncated or damaged?" if self._file_frames > n + 1 else ""
            return f"camera {self.name!r}: end of file {self.config.source!r} after {n} frames{short}"
        if self.is_stream:
            return f"camera {self.name!r}: stream {self.config.source!r} stopped after {n} frames"
        return f"camera {self.name!r}: camera {self.config.source!r} stopped giving frames after {n} (unplugged?)"


def find_opencv_cameras(max_index: int = 8) -> list[CameraInfo]:
    """Cameras OpenCV can open: ``/dev/video*`` on Linux, indices 0..max_index-1 elsewhere."""
    if sys.platform.startswith("linux"):
        candidates: list[int | str] = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
        api = cv2.CAP_V4L2
    else:
        candidates, api = list(range(max_index)), cv2.CAP_ANY
    found = []
    for src in candidates:
        cap = cv2.VideoCapture(src, api)
        try:
            if not cap.isOpened():
                continue
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or None
            found.append(CameraInfo("opencv", f"opencv:{src}", str(src), name=cap.getBackendName(), width=w or None,
                                    height=h or None, fps=fps))
        finally:
            cap.release()
    log.debug("OpenCV cameras found: %d", len(found))
    return found
