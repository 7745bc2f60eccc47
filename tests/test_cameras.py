"""Camera sources (embodied.perception.cameras): a real video file decoded by OpenCV, a real
HTTP MJPEG stream that stalls, sources that never open, recorded sessions replayed, spec
parsing, find_cameras without hardware, and the RealSense import guard."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from embodied.core.camera import Camera
from embodied.core.errors import CameraError, ConfigError
from embodied.perception.cameras import (
    CameraInfo,
    OpenCVCameraConfig,
    RealSenseCameraConfig,
    Recorder,
    ReplayCamera,
    ReplayCameraConfig,
    find_cameras,
    make_camera,
    parse_spec,
)
from embodied.perception.cameras.replay import depth_from_png, depth_to_png

pytest.importorskip("pybullet")

from embodied.core.world import ObjectSpec, Placement, SceneSpec  # noqa: E402
from envs.cameras import FRONT, SIDE, SimCamera, jittered  # noqa: E402
from envs.sim import TabletopSim  # noqa: E402

N_FRAMES = 24
W, H = 320, 240


@pytest.fixture(scope="module")
def sim():
    s = TabletopSim()
    objs = [ObjectSpec("red", "cube"), ObjectSpec("blue", "cylinder"), ObjectSpec("yellow", "cube")]
    s.load(SceneSpec(objs, {o.name: Placement(x, y, 0.4) for o, (x, y) in zip(objs, [(0.45, 0.1), (0.55, -0.1), (0.62, 0.15)])}))
    yield s
    s.close()


@pytest.fixture(scope="module")
def source_frames(sim):
    """N_FRAMES distinct simulator frames (the camera wanders a little between them)."""
    rng = np.random.default_rng(0)
    return [SimCamera(sim, jittered(FRONT.resized(W, H), rng, 0.03, 3.0), depth=False).read().rgb for _ in range(N_FRAMES)]


@pytest.fixture(scope="module")
def video(tmp_path_factory, source_frames):
    """An mp4 encoded from the simulator frames with cv2.VideoWriter."""
    path = tmp_path_factory.mktemp("video") / "sim.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    assert writer.isOpened()
    for rgb in source_frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_all(cam, timeout_s=1.0):
    frames, error, took = [], None, 0.0
    while True:
        t = time.monotonic()
        try:
            frames.append(cam.read(timeout_s))
        except CameraError as e:
            error, took = e, time.monotonic() - t
            return frames, error, took


# --- a video file through cv2.VideoCapture ------------------------------------------------------------
def test_a_video_file_is_decoded_frame_by_frame_and_ends_with_a_camera_error(video, source_frames):
    cam = make_camera(f"opencv:{video}", name="front")
    assert isinstance(cam, Camera)
    assert cam.latest() is None
    cam.connect()
    try:
        frames, error, took = read_all(cam, timeout_s=1.0)
    finally:
        cam.disconnect()
    assert len(frames) == N_FRAMES  # every frame, in order, none dropped
    assert all(f.size == (W, H) and f.rgb.dtype == np.uint8 and f.camera == "front" and f.depth is None for f in frames)
    assert [f.seq for f in frames] == list(range(1, N_FRAMES + 1))
    ts = np.array([f.timestamp for f in frames])
    assert np.all(np.diff(ts) > 0) and abs(ts[-1] - time.time()) < 60  # capture times: increasing, wall clock
    # colours survive the codec, and frame i is the source's frame i (not a neighbour)
    err = np.array([[np.abs(f.rgb.astype(float) - s.astype(float)).mean() for s in source_frames] for f in frames])
    print(f"mean |decoded - source| per frame: {np.diag(err).mean():.2f} (max {np.diag(err).max():.2f}) grey levels")
    assert np.diag(err).max() < 6.0, np.diag(err)
    assert np.all(np.argmin(err, axis=1) == np.arange(N_FRAMES))
    # the end of the file: a named error, within the timeout, saying what happened
    assert isinstance(error, CameraError) and "end of file" in str(error) and f"after {N_FRAMES} frames" in str(error)
    assert took < 1.5
    assert cam.latest() is frames[-1]


def test_a_file_can_be_paced_like_a_live_camera(video):
    cam = make_camera(f"opencv:{video}", realtime=True)  # the file is 10 fps
    cam.connect()
    try:
        t = time.monotonic()
        frames = [cam.read(1.0) for _ in range(4)]
        elapsed = time.monotonic() - t
    finally:
        cam.disconnect()
    assert elapsed > 0.2  # frames 2..4 are due 0.1, 0.2, 0.3 s after the first
    assert frames[-1].timestamp - frames[0].timestamp > 0.2


def test_requested_resolution_and_fps_are_checked(video):
    with pytest.raises(CameraError, match=r"asked for 640x480 but it gives 320x240"):
        make_camera(f"opencv:{video}@640x480").connect()
    with pytest.raises(CameraError, match=r"asked for 30 fps but it reports 10 fps"):
        make_camera(f"opencv:{video}", fps=30).connect()
    cam = make_camera(f"opencv:{video}@320x240@10")  # what it is: fine
    cam.connect()
    assert cam.read(1.0).size == (W, H)
    cam.disconnect()


def test_a_truncated_file_is_a_camera_error_not_a_hang(tmp_path, video, source_frames):
    # an mp4 cut short has no index (moov atom): it does not open
    cut = tmp_path / "cut.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    t = time.monotonic()
    with pytest.raises(CameraError, match="cannot open video file"):
        make_camera(f"opencv:{cut}", open_timeout_s=3.0).connect()
    assert time.monotonic() - t < 3.5
    # an MJPG AVI cut short opens, gives the frames that are there, then a named error
    avi = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for rgb in source_frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    data = avi.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    cam = make_camera(f"opencv:{tmp_path / 'cut.avi'}")
    cam.connect()
    frames, error, took = read_all(cam, timeout_s=1.0)
    cam.disconnect()
    assert 0 < len(frames) < N_FRAMES
    assert isinstance(error, CameraError) and "truncated" in str(error) and took < 1.5


def test_sources_that_never_open_are_camera_errors_within_the_timeout(tmp_path):
    with pytest.raises(CameraError, match="no video file"):
        make_camera(f"opencv:{tmp_path / 'missing.mp4'}").connect()
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CameraError, match="cannot open"):
        make_camera(f"opencv:{tmp_path / 'noise.mp4'}").connect()
    with pytest.raises(CameraError):
        make_camera("opencv:57").connect()  # no such device here
    # a server that accepts the connection and never answers: connect gives up on time
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        port = srv.getsockname()[1]
        t = time.monotonic()
        with pytest.raises(CameraError):
            make_camera(f"opencv:http://127.0.0.1:{port}/stream.mjpg", open_timeout_s=1.5).connect()
        assert time.monotonic() - t < 4.0
    finally:
        srv.close()
    with pytest.raises(CameraError, match="not connected"):
        make_camera("opencv:0").read(0.1)


class MJPEGServer:
    """A real HTTP multipart MJPEG stream on localhost: ``frames`` JPEGs, then it stalls
    (the connection stays open, nothing more is sent) until ``close``."""

    def __init__(self, frames: list[np.ndarray], period_s: float = 0.03):
        self.frames, self.period_s = frames, period_s
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/stream.mjpg"
        self.sent = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        try:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            for rgb in self.frames:
                jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                self.sent += 1
                time.sleep(self.period_s)
            self.done.wait()  # stall
        finally:
            conn.close()

    def close(self):
        self.done.set()
        self.sock.close()


def test_a_live_stream_that_stalls_raises_within_the_timeout_and_disconnects(source_frames):
    server = MJPEGServer(source_frames[:8])
    cam = make_camera(f"opencv:{server.url}", name="net", read_timeout_s=1.0, open_timeout_s=5.0)
    try:
        cam.connect()
        first = cam.read(2.0)
        assert first.size == (W, H) and first.camera == "net"
        got = [first]
        with pytest.raises(CameraError, match="no frame within 0.5 s"):
            while True:
                t = time.monotonic()
                got.append(cam.read(0.5))  # live: a newer frame each time, until the stream stalls
                assert time.monotonic() - t < 1.0
        assert cam.latest() is not None and cam.latest().seq >= got[-1].seq
        assert all(b.seq > a.seq for a, b in zip(got, got[1:]))
    finally:
        t = time.monotonic()
        cam.disconnect()
        assert time.monotonic() - t < 3.0
        server.close()


# --- recorded sessions ------------------------------------------------------------------------------
def test_recorded_sim_frames_replay_with_their_depth_and_timestamps(tmp_path, sim):
    front = SimCamera(sim, FRONT.resized(W, H))
    side = SimCamera(sim, SIDE)
    written = []
    with Recorder(tmp_path / "s1") as rec:
        for _ in range(4):
            for cam in (front, side):
                f = cam.read()
                rec.write(f)
                written.append(f)
    assert ReplayCamera.cameras(tmp_path / "s1") == ["front", "side"]
    with pytest.raises(CameraError, match="holds cameras front, side"):
        make_camera(f"replay:{tmp_path / 's1'}").connect()
    for name in ("front", "side"):
        cam = make_camera(f"replay:{tmp_path / 's1'}#{name}")
        cam.connect()
        frames, error, _ = read_all(cam)
        src = [f for f in written if f.camera == name]
        assert len(frames) == len(src) == 4
        for a, b in zip(frames, src):
            assert a.camera == name and a.seq == b.seq
            assert a.timestamp == b.timestamp  # kept to the microsecond (exactly, here)
            assert np.array_equal(a.rgb, b.rgb)  # PNG is lossless
            assert a.depth.dtype == np.float32 and a.depth.shape == b.depth.shape
            assert np.abs(a.depth - b.depth).max() <= 0.0005 + 1e-6  # millimetre PNG
        assert isinstance(error, CameraError) and "end of the recording" in str(error)


def test_replay_paced_by_the_recorded_timestamps_and_looping(tmp_path, sim):
    cam = SimCamera(sim, FRONT.resized(64, 48), depth=False)
    with Recorder(tmp_path / "s2") as rec:
        for _ in range(4):
            rec.write(cam.read())
            time.sleep(0.1)
    recorded = ReplayCamera(tmp_path / "s2")
    recorded.connect()
    stamps = [recorded.read().timestamp for _ in range(4)]
    span = stamps[-1] - stamps[0]
    paced = make_camera(f"replay:{tmp_path / 's2'}", realtime=True)
    paced.connect()
    t = time.monotonic()
    for _ in range(4):
        paced.read(1.0)
    assert time.monotonic() - t > 0.8 * span
    looped = make_camera(f"replay:{tmp_path / 's2'}", loop=True)
    looped.connect()
    ts = [looped.read().timestamp for _ in range(10)]
    assert np.all(np.diff(ts) > 0)  # looping keeps time moving forward


def test_recorder_takes_any_camera_and_the_depth_encoding_is_millimetres(tmp_path, video):
    cam = make_camera(f"opencv:{video}")
    cam.connect()
    with Recorder(tmp_path / "s3") as rec:
        assert rec.record(cam, 3) == 3
    cam.disconnect()
    replay = make_camera(f"replay:{tmp_path / 's3'}")
    replay.connect()
    assert [replay.read().size for _ in range(3)] == [(W, H)] * 3
    with pytest.raises(ConfigError, match="already holds a recorded session"):
        Recorder(tmp_path / "s3")
    d = np.array([[0.0, 0.0004, 0.0006, 1.2344], [np.nan, np.inf, -1.0, 70.0]], np.float32)
    mm = depth_to_png(d)
    assert mm.dtype == np.uint16 and mm.tolist() == [[0, 0, 1, 1234], [0, 0, 0, 0]]
    assert depth_from_png(mm)[0, 3] == pytest.approx(1.234)
    with pytest.raises(CameraError, match="no recorded session"):
        make_camera(f"replay:{tmp_path / 'nothing'}").connect()


# --- specs ------------------------------------------------------------------------------------------
def test_make_camera_parses_specs():
    c = parse_spec("opencv:0")
    assert isinstance(c, OpenCVCameraConfig) and c.source == 0 and c.width is None
    c = parse_spec("opencv:2@1280x720@30")
    assert (c.source, c.width, c.height, c.fps) == (2, 1280, 720, 30.0)
    c = parse_spec("opencv:/data/run 1/video.mp4")
    assert c.source == "/data/run 1/video.mp4" and c.name == "video"
    c = parse_spec("opencv:rtsp://user:pw@10.0.0.5:554/stream1")  # '@' in a URL is not a mode
    assert c.source == "rtsp://user:pw@10.0.0.5:554/stream1" and c.width is None
    c = parse_spec("gst:v4l2src ! videoconvert ! appsink")
    assert c.backend == "gstreamer" and c.source == "v4l2src ! videoconvert ! appsink"
    c = parse_spec("realsense:012345678901@848x480")
    assert isinstance(c, RealSenseCameraConfig) and c.serial == "012345678901" and (c.width, c.height) == (848, 480)
    assert parse_spec("realsense:").serial == ""
    c = parse_spec("replay:/data/session#wrist")
    assert isinstance(c, ReplayCameraConfig) and c.path == "/data/session" and c.camera == "wrist"
    cam = make_camera("opencv:0", name="front", width=640, height=480)
    assert cam.name == "front" and (cam.config.width, cam.config.height) == (640, 480) and not cam.is_connected


@pytest.mark.parametrize("spec, message", [
    ("", "expected <kind>:<source>"),
    ("webcam", "expected <kind>:<source>"),
    ("webcam:0", "unknown kind 'webcam'"),
    ("opencv:", "needs an index"),
    ("opencv:ftp://host/x", "unknown URL scheme"),
    ("replay:", "needs a session folder"),
    ("gst:", "needs a GStreamer pipeline"),
    ("realsense:not a serial", "letters and digits"),
    ("sim:front", "built by the commands"),
])
def test_make_camera_rejects_bad_specs_with_a_named_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_camera(spec)


def test_make_camera_rejects_bad_settings():
    with pytest.raises(ConfigError, match="must be a positive integer"):
        make_camera("opencv:0", width=-640)
    with pytest.raises(ConfigError, match="has no setting"):
        make_camera("opencv:0", resolution="hd")
    with pytest.raises(ConfigError, match="unknown OpenCV backend"):
        make_camera(OpenCVCameraConfig(source=0, backend="directx"))


def test_gstreamer_without_gstreamer_support_says_so():
    from embodied.perception.cameras.opencv import has_gstreamer

    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(CameraError, match="without GStreamer"):
        make_camera("gst:videotestsrc ! appsink").connect()


def test_find_cameras_runs_without_hardware():
    found = find_cameras()
    assert isinstance(found, list) and all(isinstance(c, CameraInfo) for c in found)
    for c in found:  # whatever is plugged in parses back
        assert parse_spec(c.spec)


@pytest.mark.skipif(importlib.util.find_spec("pyrealsense2") is not None, reason="pyrealsense2 is installed")
def test_realsense_without_pyrealsense2_names_the_install_line():
    with pytest.raises(CameraError, match=r"pip install 'embodied\[realsense\]'"):
        make_camera("realsense:012345678901")
    from embodied.perception.cameras.realsense import find_realsense_cameras

    assert find_realsense_cameras() == []
