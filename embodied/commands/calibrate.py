"""``embodied calibrate mode=intrinsics|extrinsics|handeye|check|board source=<camera spec>|sim``: camera calibration with a ChArUco board.

- ``mode=intrinsics source=opencv:0 views=20``: capture views where the board is seen (move it
  between them: tilted, near, far, in every part of the image) or read them (``images=<folder>``);
  writes K and distortion.
- ``mode=extrinsics source=... board_pose=[x,y,yaw] intrinsics=<file>``: the board lying face up
  on the table at a known pose (or several: ``board_pose=[[x,y,yaw],...]``, asked for one by
  one); writes T_base_camera too.
- ``mode=handeye images=<folder> arm_poses=<poses.json> mount=eye_to_hand|eye_in_hand intrinsics=<file>``.
- ``mode=check source=... out=<file>``: a frame from the camera against the file (resolution;
  with ``board_pose``, where the board's corners land): a mismatch is a named error, exit 1.
- ``mode=board out=board.png dpi=300``: the board to print.
- ``source=sim``: the whole procedure in the simulator (a textured board plate, the simulated
  camera ``camera=front|side``), checked against the simulator's exact calibration.

Writes ``out`` (the JSON that ``embodied.core.camera.Calibration.load`` reads) and prints the
reprojection error. Camera and calibration failures print ``<ErrorName>: message`` and exit 1.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.commands.calibrate_sim import SimRig
from embodied.commands.config import one_of, validated
from embodied.core.camera import Calibration, Frame
from embodied.core.errors import CalibrationError, CameraError, ConfigError
from embodied.perception.board import (
    BoardNotFoundError,
    ChArUcoBoard,
    pose_error,
    pose_matrix,
)
from embodied.perception.calibration import (
    HAND_EYE_METHODS,
    MOUNTS,
    Intrinsics,
    board_extrinsics,
    calibrate_intrinsics,
    hand_eye,
    intrinsics_of,
    make_calibration,
)

MODES = ("intrinsics", "extrinsics", "handeye", "check", "board")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class BoardConfig:
    squares_x: int = 7
    squares_y: int = 5
    square_m: float = 0.04
    marker_m: float = 0.03
    dictionary: str = "DICT_4X4_50"
    legacy: bool = False
    thickness_m: float = 0.0


@dataclass
class CalibrateConfig:
    mode: str = "intrinsics"
    source: str = "sim"
    camera: str = "front"
    width: Any = None
    height: Any = None
    fps: Any = None
    out: str = "calibration/front.json"
    intrinsics: Any = None
    images: Any = None
    views: int = 20
    interval_s: float = 1.0
    timeout_s: float = 120.0
    board_pose: Any = None
    mount: str = "eye_to_hand"
    arm_poses: Any = None
    method: str = "park"
    distortion: str = "radial"
    min_corners: int = 8
    max_error_px: float = 2.0
    dpi: float = 300.0
    seed: int = 0
    board: BoardConfig = field(default_factory=BoardConfig)


# --- small helpers ----------------------------------------------------------------------------------
def _board(cfg: CalibrateConfig) -> ChArUcoBoard:
    b = cfg.board
    return ChArUcoBoard(int(b.squares_x), int(b.squares_y), float(b.square_m), float(b.marker_m), str(b.dictionary),
                        bool(b.legacy), float(b.thickness_m))


def _poses(value) -> list[np.ndarray]:
    """board_pose as a list of [x, y, yaw] (one pose or a list of them)."""
    if value is None:
        return []
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"board_pose={value!r}: expected [x, y, yaw] or a list of them") from e
    if arr.shape == (3,):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        raise ConfigError(f"board_pose={value!r}: expected [x, y, yaw] (metres, metres, radians) or a list of them")
    return list(arr)


def _images(folder: str) -> list[np.ndarray]:
    import cv2

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"images={folder!r}: no such folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"images={folder!r}: no {', '.join(IMAGE_SUFFIXES)} files in it")
    out = []
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise CalibrationError(f"cannot read image {p}")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return out


def _arm_poses(file: str) -> list[np.ndarray]:
    try:
        data = json.loads(Path(file).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"arm_poses={file!r}: cannot read it as JSON ({e})") from e
    data = data.get("poses", data) if isinstance(data, dict) else data
    return [pose_matrix(p) for p in data]


def _load_intrinsics(file: str, size: tuple[int, int] | None) -> Intrinsics:
    cal = Calibration.load(file)
    if size is not None and (cal.width, cal.height) != tuple(size):
        raise CalibrationError(f"{file} is for {cal.width}x{cal.height} frames but the camera gives {size[0]}x{size[1]}: "
                               "set the camera to that resolution or calibrate its intrinsics again")
    return intrinsics_of(cal)


def _report(cal: Calibration, out: str) -> None:
    info = cal.info
    print(f"wrote {out}: {cal.camera} {cal.width}x{cal.height}, fx {cal.K[0, 0]:.2f} fy {cal.K[1, 1]:.2f} "
          f"cx {cal.K[0, 2]:.2f} cy {cal.K[1, 2]:.2f}")
    print(f"reprojection error: {info['reprojection_error_px']:.3f} px ({info['method']}; intrinsics "
          f"{info['intrinsics']['reprojection_error_px']:.3f} px over {info['intrinsics']['views']} views)")
    ex = info.get("extrinsics")
    if isinstance(ex, dict) and "position_std_mm" in ex:
        print(f"camera position in the base frame: {np.round(cal.position, 4).tolist()} m "
              f"(+-{ex['position_std_mm']:.2f} mm, +-{ex['rotation_std_deg']:.3f} deg predicted from the residuals)")
    elif isinstance(ex, dict):
        print(f"hand-eye: target spread {ex['target_spread_mm']:.2f} mm / {ex['target_spread_deg']:.3f} deg over {ex['views']} views")


# --- live capture ----------------------------------------------------------------------------------
def _open_camera(cfg: CalibrateConfig):
    from embodied.perception.cameras import make_camera

    cam = make_camera(cfg.source, name=cfg.camera, width=cfg.width, height=cfg.height, fps=cfg.fps)
    cam.connect()
    return cam


def _capture_views(cam, board: ChArUcoBoard, cfg: CalibrateConfig) -> list[Frame]:
    """Frames where the board is seen, at least ``interval_s`` apart and not where the last one was."""
    kept: list[Frame] = []
    last_view = None
    last_t = 0.0
    deadline = time.monotonic() + cfg.timeout_s
    print(f"capturing {cfg.views} views: move the board (tilted, near, far, all over the image) ...")
    while len(kept) < cfg.views:
        if time.monotonic() > deadline:
            raise BoardNotFoundError(f"only {len(kept)} of {cfg.views} views with the board in {cfg.timeout_s:g} s "
                                     "(is it in view, lit, in focus? are the board settings right?)")
        frame = cam.read(timeout_s=2.0)
        if frame.timestamp - last_t < cfg.interval_s:
            continue
        view = board.detect(frame, cfg.min_corners)
        if view is None:
            continue
        if last_view is not None:
            common = np.intersect1d(view.ids, last_view.ids)
            moved = (np.mean(np.linalg.norm(view.corners[np.isin(view.ids, common)] - last_view.corners[np.isin(last_view.ids, common)], axis=1))
                     if len(common) else np.inf)
            if moved < 0.02 * math.hypot(*frame.size):
                continue
        kept.append(frame)
        last_view, last_t = view, frame.timestamp
        print(f"  view {len(kept)}/{cfg.views}: {len(view.ids)} corners")
    return kept


def _capture_board(cam, board: ChArUcoBoard, cfg: CalibrateConfig) -> Frame:
    deadline = time.monotonic() + cfg.timeout_s
    while time.monotonic() < deadline:
        frame = cam.read(timeout_s=2.0)
        if board.detect(frame, cfg.min_corners) is not None:
            return frame
    raise BoardNotFoundError(f"the board was not seen within {cfg.timeout_s:g} s")


def run_sim(cfg: CalibrateConfig, board: ChArUcoBoard) -> Calibration | None:
    rig = SimRig(cfg, board)
    try:
        name, size = cfg.camera, (rig.spec.width, rig.spec.height)
        if cfg.mode == "check":
            return _check(cfg, rig.camera.read(), rig.board, rig)
        intr = (_load_intrinsics(cfg.intrinsics, size) if cfg.intrinsics and cfg.mode != "intrinsics" else rig.intrinsics(cfg))
        if cfg.mode == "intrinsics":
            return make_calibration(name, intr, None, rig.board, source="sim")
        if cfg.mode == "extrinsics":
            poses = _poses(cfg.board_pose) or rig.auto_placements(cfg.min_corners)
            ex = board_extrinsics(rig.table_views(poses), intr.K, intr.dist, poses, rig.board, cfg.min_corners)
            mm, deg = pose_error(ex.T_base_camera, rig.truth.T_base_camera)
            print(f"simulator: camera pose error {mm:.2f} mm, {deg:.3f} deg ({len(ex.views_used)} board placements)")
            return make_calibration(name, intr, ex, rig.board, source="sim", board_poses=[np.round(p, 4).tolist() for p in poses])
        he, arm, T_true, _ = rig.hand_eye(cfg, intr.K, intr.dist)
        mm, deg = pose_error(he.T, T_true)
        what = "T_base_camera" if cfg.mount == "eye_to_hand" else "T_gripper_camera"
        print(f"simulator: hand-eye ({cfg.mount}) {what} error {mm:.2f} mm, {deg:.3f} deg")
        return make_calibration(name, intr, he, rig.board, arm_pose=arm[0], source="sim")
    finally:
        rig.close()


# --- check ----------------------------------------------------------------------------------------------
def _check(cfg: CalibrateConfig, frame: Frame, board: ChArUcoBoard, rig: SimRig | None = None) -> None:
    cal = Calibration.load(cfg.out)
    cal.check(frame)
    print(f"{cfg.out}: {cal.width}x{cal.height} matches the camera's frames")
    poses = _poses(cfg.board_pose)
    if not poses:
        return None
    if rig is not None:
        frame = rig.table_views(poses[:1])[0]
    view = board.detect(frame, cfg.min_corners)
    if view is None:
        raise BoardNotFoundError("check: the board is not in view at board_pose")
    T = board.placed(poses[0])
    import cv2

    pts = view.object_points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    T_cam = np.linalg.inv(cal.T_base_camera)
    proj, _ = cv2.projectPoints(pts, cv2.Rodrigues(T_cam[:3, :3])[0], T_cam[:3, 3], cal.K, cal.dist)
    err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - view.corners) ** 2, axis=1))))
    print(f"board corners land {err:.2f} px (rms) from where {cfg.out} puts them")
    if err > cfg.max_error_px:
        raise CalibrationError(f"the board's corners are {err:.2f} px from where {cfg.out} puts them (more than {cfg.max_error_px:g}): "
                               "the camera moved, or the board is not at board_pose; calibrate the extrinsics again")
    return None


# --- real cameras -------------------------------------------------------------------------------------
def run_camera(cfg: CalibrateConfig, board: ChArUcoBoard) -> Calibration | None:
    name = cfg.camera
    if cfg.mode == "handeye":
        if not (cfg.images and cfg.arm_poses and cfg.intrinsics):
            raise ConfigError("mode=handeye with a real camera reads recorded views: images=<folder> (one image per arm pose), "
                              "arm_poses=<poses.json> (T_base_gripper per image, as the robot reports it) and intrinsics=<file>")
        frames = _images(cfg.images)
        arm = _arm_poses(cfg.arm_poses)
        intr = _load_intrinsics(cfg.intrinsics, (frames[0].shape[1], frames[0].shape[0]))
        he = hand_eye(arm, frames, intr.K, intr.dist, cfg.mount, board, cfg.method, min_corners=cfg.min_corners)
        return make_calibration(name, intr, he, board, arm_pose=arm[he.views_used[0]], source=cfg.images)
    if cfg.images and cfg.mode in ("intrinsics", "extrinsics"):
        frames = _images(cfg.images)
        size = (frames[0].shape[1], frames[0].shape[0])
        if cfg.mode == "intrinsics":
            intr = calibrate_intrinsics(frames, board, cfg.distortion, min_corners=cfg.min_corners)
            return make_calibration(name, intr, None, board, source=cfg.images)
        poses = _poses(cfg.board_pose)
        if not cfg.intrinsics or not poses:
            raise ConfigError("mode=extrinsics needs intrinsics=<file> and board_pose=[x,y,yaw] (one per image)")
        intr = _load_intrinsics(cfg.intrinsics, size)
        ex = board_extrinsics(frames, intr.K, intr.dist, poses, board, cfg.min_corners)
        return make_calibration(name, intr, ex, board, source=cfg.images, board_poses=[p.tolist() for p in poses])
    cam = _open_camera(cfg)
    try:
        if cfg.mode == "check":
            return _check(cfg, cam.read(timeout_s=5.0), board)
        if cfg.mode == "intrinsics":
            frames = _capture_views(cam, board, cfg)
            intr = calibrate_intrinsics(frames, board, cfg.distortion, min_corners=cfg.min_corners)
            return make_calibration(name, intr, None, board, source=cfg.source)
        poses = _poses(cfg.board_pose)
        if not poses:
            raise ConfigError("mode=extrinsics needs board_pose=[x, y, yaw] (the board's centre on the table), or a list of them")
        first = cam.read(timeout_s=5.0)
        if cfg.intrinsics:
            intr = _load_intrinsics(cfg.intrinsics, first.size)
        elif hasattr(cam, "factory_calibration"):
            intr = intrinsics_of(cam.factory_calibration())
        else:
            raise ConfigError("mode=extrinsics needs intrinsics=<file> (embodied calibrate mode=intrinsics first)")
        if len(poses) > 1 and not sys.stdin.isatty():
            raise ConfigError("several board placements with a live camera need a terminal (press Enter at each); "
                              "or record one image per placement and pass images=<folder>")
        frames = []
        for i, p in enumerate(poses):
            if len(poses) > 1:
                input(f"placement {i + 1}/{len(poses)}: lay the board at x={p[0]:.3f} y={p[1]:.3f} yaw={p[2]:.3f}, then press Enter ")
            frames.append(_capture_board(cam, board, cfg))
        ex = board_extrinsics(frames, intr.K, intr.dist, poses, board, cfg.min_corners)
        return make_calibration(name, intr, ex, board, source=cfg.source, board_poses=[p.tolist() for p in poses])
    finally:
        cam.disconnect()


def _write_board(cfg: CalibrateConfig, board: ChArUcoBoard) -> None:
    import cv2

    px_per_m = cfg.dpi / 0.0254
    img = board.board_image(px_per_m, margin_m=0.01)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img):
        raise ConfigError(f"cannot write {out}")
    w, h = board.size_m
    print(f"wrote {out}: {img.shape[1]}x{img.shape[0]} px at {cfg.dpi:g} dpi; print at 100 % scale: the pattern is "
          f"{w * 1000:.0f} x {h * 1000:.0f} mm, squares {board.square_m * 1000:.1f} mm, markers {board.marker_m * 1000:.1f} mm "
          "(measure them and set board.square_m / board.marker_m to what you measure)")


def main(cfg) -> int:
    """Run ``embodied calibrate``: 0 on success, 1 on a camera or calibration error (printed)."""
    c = validated(cfg, CalibrateConfig)
    one_of(c.mode, MODES, "mode")
    one_of(c.mount, MOUNTS, "mount")
    one_of(c.method, tuple(HAND_EYE_METHODS), "method")
    if c.views < 1 or c.min_corners < 4 or c.timeout_s <= 0:
        raise ConfigError("views must be >= 1, min_corners >= 4 and timeout_s > 0")
    board = _board(c)
    _poses(c.board_pose)  # a malformed pose is refused before anything runs
    if c.mode == "board":
        _write_board(c, board)
        return 0
    if c.mode in ("extrinsics", "handeye") and c.intrinsics and not Path(c.intrinsics).is_file():
        raise ConfigError(f"intrinsics={c.intrinsics!r}: no such file (embodied calibrate mode=intrinsics writes one)")
    try:
        cal = run_sim(c, board) if c.source == "sim" else run_camera(c, board)
        if cal is not None:
            cal.save(c.out)
            _report(cal, c.out)
    except (CameraError, CalibrationError) as e:
        print(f"embodied calibrate: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
