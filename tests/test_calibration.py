"""Calibration with a ChArUco board, measured in the simulator: a textured board plate
(envs.charuco) rendered by TinyRenderer, compared with the simulated cameras' exact
calibration (envs.cameras.calibration). Also the named errors and ``embodied calibrate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import CalibrationError, ConfigError
from embodied.perception.board import (
    BoardNotFoundError,
    ChArUcoBoard,
    pose_error,
    transform,
)
from embodied.perception.calibration import (
    board_extrinsics,
    calibrate_intrinsics,
    hand_eye,
    make_calibration,
)

pytest.importorskip("pybullet")

from envs.cameras import FRONT, SIDE, SimCamera, calibration  # noqa: E402
from envs.charuco import BoardPlate, camera_at, facing_poses, quaternion  # noqa: E402
from envs.sim import TabletopSim  # noqa: E402

PX_PER_M = 4000.0
BOARD = ChArUcoBoard(thickness_m=0.003)  # the sim's plate is 3 mm thick
SPEC = FRONT.resized(640, 480)


def rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


@pytest.fixture(scope="module")
def rig():
    sim = TabletopSim()
    plate = BoardPlate(sim, BOARD.board_image(PX_PER_M), PX_PER_M, thickness=BOARD.thickness_m)
    yield sim, plate, SimCamera(sim, SPEC, depth=False)
    sim.close()


@pytest.fixture(scope="module")
def intrinsics(rig):
    sim, plate, cam = rig
    frames = []
    for T in facing_poses(SPEC, 30, seed=0):
        plate.set_pose(T)
        frames.append(cam.read())
    return calibrate_intrinsics(frames, BOARD)


def table_frames(rig, poses, spec=SPEC):
    sim, plate, _ = rig
    cam = SimCamera(sim, spec, depth=False)
    out = []
    for p in poses:
        plate.set_pose(BOARD.face_on_table(*p))
        out.append(cam.read())
    return out


def corner_placements(spec):
    """Board placements on the table near the four corners of the view (as a person would put them)."""
    truth = calibration(spec)
    u = np.array([0.25, 0.75, 0.25, 0.75]) * spec.width
    v = np.array([0.28, 0.28, 0.72, 0.72]) * spec.height
    return [np.array([x, y, yaw]) for (x, y, _), yaw in zip(truth.plane_points(u, v, BOARD.thickness_m), (0.3, -0.4, 0.5, -0.2))]


# --- the board ----------------------------------------------------------------------------------
def test_board_geometry_and_its_pose_on_the_table():
    b = ChArUcoBoard()
    assert b.size_m == pytest.approx((0.28, 0.20))
    img = b.board_image(4000, margin_m=0.01)
    assert img.shape == (880, 1200) and img.dtype == np.uint8
    assert b.detect(img) is not None and len(b.detect(img).ids) == 24  # the printed pattern shows every inner corner
    # yaw = 0: the pattern reads upright from the robot base looking along +x: top edge away (+x), left edge at +y
    T = b.on_table(0.5, 0.0, 0.0)
    top_left, top_right, bottom_left = [(T @ np.array([x, y, 0, 1.0]))[:3] for x, y in [(0, 0), (0.28, 0), (0, 0.2)]]
    assert top_left == pytest.approx([0.6, 0.14, 0.0])
    assert top_right == pytest.approx([0.6, -0.14, 0.0]) and bottom_left == pytest.approx([0.4, 0.14, 0.0])
    assert (T[:3, :3] @ [0, 0, 1]) == pytest.approx([0, 0, -1])  # z into the board: down, face up
    # yaw turns it counter-clockwise seen from above
    T90 = b.on_table(0.5, 0.0, math.pi / 2)
    assert (T90 @ np.array([0, 0, 0, 1.0]))[:3] == pytest.approx([0.5 - 0.14, 0.1, 0.0])


@pytest.mark.parametrize("squares, marker, dictionary, message", [
    ((1, 5), 0.03, "DICT_4X4_50", "at least 3 x 2"),
    ((7, 5), 0.05, "DICT_4X4_50", "smaller than square_m"),
    ((7, 5), 0.03, "DICT_4X4_5O", "unknown ArUco dictionary"),
    ((15, 11), 0.03, "DICT_4X4_50", "needs 82 markers"),
])
def test_bad_board_settings_are_refused(squares, marker, dictionary, message):
    with pytest.raises(ConfigError, match=message):
        ChArUcoBoard(*squares, 0.04, marker, dictionary)


def test_plate_quaternions_are_exact_for_half_turns():
    from envs.bullet import pybullet

    rng = np.random.default_rng(0)
    rotations = [BOARD.face_on_table(0, 0, yaw)[:3, :3] for yaw in (0.0, -0.3, 2.0, math.pi)]  # 180-degree turns
    rotations += [np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(20)]
    for R in rotations:
        R = R * np.sign(np.linalg.det(R))
        back = np.asarray(pybullet.getMatrixFromQuaternion(quaternion(R))).reshape(3, 3)
        assert back == pytest.approx(R, abs=1e-9)


# --- accuracy in the simulator -------------------------------------------------------------------------
def test_intrinsics_recover_the_simulated_focal_length_within_one_percent(intrinsics):
    truth = calibration(SPEC)
    fx_err = 100 * (intrinsics.K[0, 0] / truth.K[0, 0] - 1)
    fy_err = 100 * (intrinsics.K[1, 1] / truth.K[1, 1] - 1)
    print(f"intrinsics: {len(intrinsics.views_used)} views, rms {intrinsics.rms:.3f} px, focal error {fx_err:+.3f} % / {fy_err:+.3f} %, "
          f"principal point ({intrinsics.K[0, 2]:.2f}, {intrinsics.K[1, 2]:.2f}) vs ({truth.K[0, 2]:.2f}, {truth.K[1, 2]:.2f})")
    assert len(intrinsics.views_used) >= 25 and intrinsics.size == (640, 480)
    assert abs(fx_err) < 1.0 and abs(fy_err) < 1.0
    assert intrinsics.rms < 0.5
    assert np.abs(intrinsics.K[:2, 2] - truth.K[:2, 2]).max() < 3.0
    assert np.abs(intrinsics.dist).max() < 0.1  # the simulated lens has no distortion


def test_extrinsics_from_board_placements_within_5mm_and_half_a_degree(rig, intrinsics):
    poses = corner_placements(SPEC)
    frames = table_frames(rig, poses)
    truth = calibration(SPEC)
    for name, K, dist in (("calibrated K", intrinsics.K, intrinsics.dist), ("exact K", truth.K, truth.dist)):
        ex = board_extrinsics(frames, K, dist, poses, BOARD)
        mm, deg = pose_error(ex.T_base_camera, truth.T_base_camera)
        print(f"extrinsics ({name}): {mm:.2f} mm, {deg:.3f} deg; rms {ex.rms:.3f} px; predicted +-{ex.position_std_mm:.2f} mm")
        assert ex.views_used == [0, 1, 2, 3] and ex.corners >= 80
        assert mm < 5.0 and deg < 0.5
        assert ex.rms < 0.6 and ex.position_std_mm < 3.0


def test_an_oblique_camera_too(rig):
    spec = SIDE.resized(640, 480)
    truth = calibration(spec)
    poses = [np.array([0.35, 0.2, 0.2]), np.array([0.3, -0.15, 1.0]), np.array([0.55, 0.25, 0.0])]  # where it sees the board
    ex = board_extrinsics(table_frames(rig, poses, spec), truth.K, truth.dist, poses, BOARD)
    mm, deg = pose_error(ex.T_base_camera, truth.T_base_camera)
    print(f"side camera extrinsics: {mm:.2f} mm, {deg:.3f} deg")
    assert ex.views_used == [0, 1, 2]
    assert mm < 5.0 and deg < 0.5


def test_one_placement_straight_below_the_camera_is_flagged_as_poorly_determined(rig, intrinsics):
    truth = calibration(SPEC)
    x, y, _ = truth.plane_points(np.array([320.0]), np.array([240.0]), BOARD.thickness_m)[0]
    ex = board_extrinsics(table_frames(rig, [(x, y, 0.0)])[0], intrinsics.K, intrinsics.dist, (x, y, 0.0), BOARD)
    print(f"one central placement: predicted +-{ex.position_std_mm:.1f} mm")
    assert ex.position_std_mm > 5.0  # the tilt/position ambiguity shows in the predicted uncertainty


def test_hand_eye_eye_to_hand(rig):
    """A fixed camera, the board on the gripper: T_base_camera from the arm poses and the views."""
    sim, plate, cam = rig
    truth = calibration(SPEC)
    T_gripper_face = transform(rz(0.3), (0.02, -0.01, 0.06))  # unknown to the solver
    arm, frames = [], []
    for T_face in facing_poses(SPEC, 10, seed=3, distance=(0.45, 0.65), tilt_deg=30):
        arm.append(T_face @ np.linalg.inv(T_gripper_face))  # the arm pose the robot would report
        plate.set_pose(T_face)
        frames.append(cam.read())
    he = hand_eye(arm, frames, truth.K, truth.dist, "eye_to_hand", BOARD)
    mm, deg = pose_error(he.T, truth.T_base_camera)
    print(f"hand-eye eye_to_hand: {mm:.2f} mm, {deg:.3f} deg, rms {he.rms:.3f} px, spread {he.spread_mm:.2f} mm")
    assert mm < 5.0 and deg < 0.5
    assert pose_error(he.T_target, T_gripper_face @ BOARD.T_face_board)[0] < 5.0
    assert he.rms < 1.0 and len(he.views_used) == 10


def test_hand_eye_eye_in_hand(rig):
    """A camera on the gripper, the board fixed on the table: T_gripper_camera."""
    sim, plate, _ = rig
    T_gripper_camera = transform(rz(math.pi / 2) @ rx(0.1), (0.05, 0.0, -0.03))
    plate.set_pose(BOARD.face_on_table(0.55, 0.05, 0.4))
    centre = BOARD.face_on_table(0.55, 0.05, 0.4)[:3, 3]
    rng = np.random.default_rng(1)
    arm, frames = [], []
    for _ in range(10):
        R = rz(rng.uniform(-1, 1)) @ rx(math.pi) @ rx(math.radians(rng.uniform(-25, 25))) @ ry(math.radians(rng.uniform(-25, 25)))
        T_cam = transform(R, centre + rng.uniform(-0.03, 0.03, 3) - R[:, 2] * rng.uniform(0.35, 0.55))
        arm.append(T_cam @ np.linalg.inv(T_gripper_camera))
        frames.append(SimCamera(sim, camera_at("wrist", T_cam, SPEC.fov_deg, 640, 480), depth=False).read())
    truth = calibration(SPEC)  # same lens as the wrist camera
    he = hand_eye(arm, frames, truth.K, truth.dist, "eye_in_hand", BOARD)
    mm, deg = pose_error(he.T, T_gripper_camera)
    print(f"hand-eye eye_in_hand: {mm:.2f} mm, {deg:.3f} deg, rms {he.rms:.3f} px")
    assert mm < 5.0 and deg < 0.5
    assert pose_error(he.T_target, BOARD.on_table(0.55, 0.05, 0.4))[0] < 5.0
    with pytest.raises(CalibrationError, match="barely rotate"):
        hand_eye([arm[0]] * 10, frames, truth.K, truth.dist, "eye_in_hand", BOARD)


# --- named errors ----------------------------------------------------------------------------------
def test_no_board_in_view_is_a_named_error(rig, intrinsics):
    sim, plate, cam = rig
    plate.set_pose(transform(np.eye(3), (5.0, 5.0, -3.0)))  # out of sight
    empty = [cam.read() for _ in range(3)]
    with pytest.raises(BoardNotFoundError, match="found in 0 of 3 views"):
        calibrate_intrinsics(empty, BOARD)
    with pytest.raises(BoardNotFoundError):
        board_extrinsics(empty[0], intrinsics.K, intrinsics.dist, (0.5, 0.0, 0.0), BOARD)
    # the board is there, but the settings describe another board
    frames = table_frames(rig, corner_placements(SPEC))
    with pytest.raises(BoardNotFoundError):
        calibrate_intrinsics(frames, ChArUcoBoard(dictionary="DICT_5X5_100"), min_views=4)
    with pytest.raises(CalibrationError, match="different sizes"):
        calibrate_intrinsics([frames[0], Frame("x", np.zeros((240, 320, 3), np.uint8), 0.0)], BOARD)
    with pytest.raises(CalibrationError, match="one pose per frame"):
        board_extrinsics(frames, intrinsics.K, intrinsics.dist, [(0.5, 0, 0)], BOARD)


def test_a_resolution_mismatch_is_a_named_error(intrinsics, tmp_path):
    cal = make_calibration("front", intrinsics, None, BOARD)
    cal.check(Frame("front", np.zeros((480, 640, 3), np.uint8), 0.0))
    with pytest.raises(CalibrationError, match="gives 320x240 frames but its calibration is for 640x480"):
        cal.check(Frame("front", np.zeros((240, 320, 3), np.uint8), 0.0))
    # the file round trip keeps everything, with how it was made
    back = Calibration.load(cal.save(tmp_path / "c.json"))
    assert np.allclose(back.K, cal.K) and np.allclose(back.dist, cal.dist) and (back.width, back.height) == (640, 480)
    assert back.info["method"] == "charuco intrinsics" and back.info["views"] == len(intrinsics.views_used)
    assert back.info["reprojection_error_px"] == pytest.approx(intrinsics.rms, abs=1e-3)
    assert back.info["board"]["dictionary"] == "DICT_4X4_50"


# --- the command ---------------------------------------------------------------------------------------
def test_calibrate_command_in_the_simulator_writes_a_loadable_file(tmp_path, capsys):
    from embodied.commands.cli import main

    out = tmp_path / "calibration" / "front.json"
    assert main(["calibrate", "mode=extrinsics", "source=sim", "camera=front", "views=15", f"out={out}"]) == 0
    text = capsys.readouterr().out
    assert "reprojection error:" in text and f"wrote {out}" in text
    cal = Calibration.load(out)
    truth = calibration(SPEC)
    mm, deg = pose_error(cal.T_base_camera, truth.T_base_camera)
    f_err = 100 * abs(cal.K[0, 0] / truth.K[0, 0] - 1)
    print(f"embodied calibrate source=sim: focal error {f_err:.3f} %, pose error {mm:.2f} mm {deg:.3f} deg")
    assert (cal.width, cal.height) == (640, 480) and f_err < 1.0 and mm < 5.0 and deg < 0.5
    info = json.loads(out.read_text())["info"]
    assert info["extrinsics"]["placements"] == 4 and info["intrinsics"]["views"] >= 12
    assert info["reprojection_error_px"] < 1.0
    # mode=check: the same camera passes; the board where the file expects it lands within a pixel
    assert main(["calibrate", "mode=check", "source=sim", f"out={out}", "board_pose=[0.5,0.1,0.3]"]) == 0
    assert "matches the camera's frames" in capsys.readouterr().out
    # ... another resolution, or a camera that moved, is a named error and exit 1
    assert main(["calibrate", "mode=check", "source=sim", f"out={out}", "width=320", "height=240"]) == 1
    assert "CalibrationError: camera 'front' gives 320x240 frames" in capsys.readouterr().err
    moved = Calibration.load(out)
    moved.T_base_camera[0, 3] += 0.02
    moved.save(tmp_path / "moved.json")
    assert main(["calibrate", "mode=check", "source=sim", f"out={tmp_path / 'moved.json'}", "board_pose=[0.5,0.1,0.3]"]) == 1
    assert "CalibrationError" in capsys.readouterr().err
    assert main(["calibrate", "mode=check", "source=sim", f"out={tmp_path / 'none.json'}"]) == 1
    assert "no calibration file" in capsys.readouterr().err


def test_calibrate_command_refuses_bad_settings_before_running(tmp_path, capsys):
    from embodied.commands.cli import main

    assert main(["calibrate", "mode=intrinsic"]) == 2
    assert "did you mean 'intrinsics'" in capsys.readouterr().err
    assert main(["calibrate", "mode=extrinsics", "board_pose=[0.5,0]"]) == 2
    assert "board_pose" in capsys.readouterr().err
    assert main(["calibrate", "mode=extrinsics", "source=opencv:0", f"out={tmp_path / 'x.json'}"]) == 1  # no camera here
    assert "CameraError" in capsys.readouterr().err
    assert main(["calibrate", "mode=board", f"out={tmp_path / 'board.png'}", "dpi=100"]) == 0
    assert (tmp_path / "board.png").is_file() and "280 x 200 mm" in capsys.readouterr().out
