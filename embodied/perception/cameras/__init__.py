"""Camera sources behind one interface (``embodied.core.camera.Camera``): OpenCV (index, file,
stream URL, GStreamer), Intel RealSense (optional ``pyrealsense2``) and recorded sessions.

    from embodied.perception.cameras import make_camera, find_cameras
    cam = make_camera("opencv:0@1280x720@30"); cam.connect(); frame = cam.read(timeout_s=1.0)

numpy and opencv only at import; ``pyrealsense2`` is imported by the RealSense module alone.
"""

from embodied.perception.cameras.base import find_cameras, make_camera, parse_spec
from embodied.perception.cameras.configs import (
    CameraConfig,
    CameraInfo,
    OpenCVCameraConfig,
    RealSenseCameraConfig,
    ReplayCameraConfig,
)
from embodied.perception.cameras.replay import Recorder, ReplayCamera
from embodied.perception.cameras.threaded import CameraBase, ThreadedCamera

__all__ = ["CameraBase", "CameraConfig", "CameraInfo", "OpenCVCameraConfig", "RealSenseCameraConfig", "ReplayCameraConfig",
           "ThreadedCamera", "find_cameras", "make_camera", "parse_spec", "Recorder", "ReplayCamera"]
