"""Intel RealSense (D4xx) as a ``Camera``: colour (RGB) and depth aligned to colour, in metres.

Needs the optional ``pyrealsense2`` (``pip install 'embodied[realsense]'``); it is imported
here only, when a RealSense is used or listed, so that the rest of perception runs without it.
Depth frames are aligned to the colour stream with ``rs.align(rs.stream.color)`` and scaled by
the device's depth scale, so ``Frame.depth[v, u]`` is the z distance (metres) of colour pixel
(u, v); 0 means no reading.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from embodied.core.camera import Calibration
from embodied.core.errors import CameraError
from embodied.perception.cameras.configs import CameraInfo, RealSenseCameraConfig
from embodied.perception.cameras.threaded import ThreadedCamera

log = logging.getLogger(__name__)

INSTALL = "pip install 'embodied[realsense]'   (or: pip install pyrealsense2)"


def _rs():
    """The pyrealsense2 module, or a CameraError that says how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as e:
        raise CameraError(f"RealSense cameras need the pyrealsense2 package, which is not installed: {INSTALL}") from e
    return rs


def find_realsense_cameras() -> list[CameraInfo]:
    """Connected RealSense devices; an empty list when there are none or pyrealsense2 is missing."""
    try:
        rs = _rs()
    except CameraError:
        log.debug("pyrealsense2 is not installed: no RealSense cameras listed (%s)", INSTALL)
        return []
    found = []
    for dev in rs.context().query_devices():
        serial = dev.get_info(rs.camera_info.serial_number)
        found.append(CameraInfo("realsense", f"realsense:{serial}", serial, name=dev.get_info(rs.camera_info.name)))
    return found


class RealSenseCamera(ThreadedCamera):
    """``make_camera("realsense:<serial>")``: live colour + aligned depth on a background thread."""

    def __init__(self, config: RealSenseCameraConfig):
        self.rs = _rs()  # fail here, with the install line, rather than at connect
        self.config = config
        super().__init__(config.name or "realsense", live=True, open_timeout_s=config.open_timeout_s)
        self._pipeline = None
        self._align = None
        self._depth_scale = 0.0
        self._profile = None

    def _open(self) -> None:
        rs, c = self.rs, self.config
        width, height, fps = int(c.width or 640), int(c.height or 480), int(c.fps or 30)
        cfg = rs.config()
        if c.serial:
            cfg.enable_device(c.serial)
        cfg.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
        if c.depth:
            cfg.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
        pipeline = rs.pipeline()
        try:
            self._profile = pipeline.start(cfg)
        except RuntimeError as e:
            which = f"serial {c.serial}" if c.serial else "any"
            raise CameraError(f"camera {self.name!r}: cannot start the RealSense ({which}) at {width}x{height} {fps} fps: {e} "
                              "(rs-enumerate-devices lists devices and modes)") from e
        self._pipeline = pipeline
        if c.depth:
            self._depth_scale = float(self._profile.get_device().first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color)

    def _grab(self):
        try:
            frames = self._pipeline.wait_for_frames(int(max(self.open_timeout_s, 1.0) * 1000))
        except RuntimeError:
            return None
        t = time.time()
        if self._align is not None:
            frames = self._align.process(frames)
        colour = frames.get_color_frame()
        if not colour:
            return None
        rgb = np.asanyarray(colour.get_data()).copy()  # (H, W, 3) RGB
        depth = None
        if self._align is not None:
            d = frames.get_depth_frame()
            if d:
                depth = np.asanyarray(d.get_data()).astype(np.float32) * self._depth_scale  # (H, W) metres
        return rgb, depth, t

    def _close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            finally:
                self._pipeline = None

    def _end_message(self) -> str:
        return f"camera {self.name!r}: the RealSense gave no frames after {self.frames_captured} (unplugged? USB 2 port?)"

    def factory_calibration(self) -> Calibration:
        """The colour stream's factory intrinsics (connected camera); ``T_base_camera`` is identity
        until ``embodied calibrate mode=extrinsics`` measures it."""
        if self._profile is None:
            raise CameraError(f"camera {self.name!r} is not connected")
        intr = self._profile.get_stream(self.rs.stream.color).as_video_stream_profile().get_intrinsics()
        K = np.array([[intr.fx, 0.0, intr.ppx], [0.0, intr.fy, intr.ppy], [0.0, 0.0, 1.0]])
        return Calibration(self.name, int(intr.width), int(intr.height), K, np.asarray(list(intr.coeffs)[:5], float),
                           info={"method": "RealSense factory intrinsics", "model": str(intr.model), "extrinsics": "not measured"})
