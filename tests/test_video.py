"""Browser-playable videos: H.264 (yuv420p) mp4 through PyAV, checked by decoding the written file."""

import numpy as np
import pytest

av = pytest.importorskip("av")

from embodied.commands.episodes import make_env, run_episode  # noqa: E402
from embodied.commands.planners import make_planner  # noqa: E402
from embodied.commands.video import VideoRecorder, write_mp4  # noqa: E402


def _probe(path):
    """(codec name, pixel format, width, height, decoded frames) of the first video stream."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        name, fmt, w, h = s.codec_context.name, s.codec_context.pix_fmt, s.width, s.height
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    return name, fmt, w, h, frames


def test_write_mp4_is_h264_yuv420p_with_every_frame(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((64, 96, 3), v, np.uint8) for v in range(0, 250, 10)]  # 25 flat frames of rising grey
    frames[3] = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    n = write_mp4(frames, tmp_path / "a.mp4", fps=10)
    name, fmt, w, h, decoded = _probe(tmp_path / "a.mp4")
    assert (name, fmt, w, h) == ("h264", "yuv420p", 96, 64)
    assert n == len(decoded) == 25
    # lossy, but a flat grey frame comes back within a few levels
    assert abs(float(decoded[12].mean()) - 120.0) < 4.0


def test_odd_frame_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4([np.zeros((63, 64, 3), np.uint8)], tmp_path / "odd.mp4")


def test_recorded_episode_plays_as_h264(tmp_path):
    """A real oracle episode recorded by the rollout/eval path: codec, size and frame count."""
    env = make_env("stack", "L1", "test", 128)
    path = tmp_path / "ep.mp4"
    try:
        rec = run_episode(env, make_planner("oracle"), seed=3, video_path=path)
    finally:
        env.close()
    name, fmt, w, h, decoded = _probe(path)
    assert (name, fmt) == ("h264", "yuv420p")
    assert (w, h) == (VideoRecorder.SIZE, VideoRecorder.SIZE + VideoRecorder.BANNER)
    # one held observation before each step, one final frame with the result banner
    assert len(decoded) == VideoRecorder.HOLD * (rec["steps"] + 1)
    assert path.read_bytes()[4:8] == b"ftyp"  # an ISO-BMFF (mp4) container
