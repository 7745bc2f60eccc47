"""Camera calibration with a ChArUco board: intrinsics over several views, extrinsics from the
board lying at known poses on the table, and hand-eye calibration (``cv2.calibrateHandEye``).

The board (``ChArUcoBoard``, in ``embodied.perception.board``) is OpenCV's ChArUco pattern
(``cv2.aruco.CharucoBoard``, the >= 4.6 layout; ``legacy=True`` for boards made by older OpenCV
or calib.io). Its frame is OpenCV's: origin at the top-left corner of the printed pattern, x to the right, y down, z into
the board. A board *lying face up on the table* is placed by ``(x, y, yaw)``: its centre at
(x, y) in the robot base frame, its printed face ``thickness_m`` above the table, and at
``yaw = 0`` it reads upright to someone standing at the robot base looking along +x (its top
edge away from the robot, its left edge towards +y); ``yaw`` turns it counter-clockwise seen
from above.

- ``calibrate_intrinsics(frames)`` -> ``Intrinsics(K, dist, rms, views_used, ...)``: the board
  held at many angles and distances (>= 6 views; 15-40 covering the image is better).
- ``board_extrinsics(frames, K, dist, board_poses)`` -> ``Extrinsics(T_base_camera, rms, ...)``:
  one frame per known placement, all corners solved together. One placement seen straight
  from above is ill-conditioned (tilt trades against position); four near the corners of the
  view give sub-millimetre results in the simulator. ``position_std_mm`` says how well the
  placements pinned the pose down.
- ``hand_eye(arm_poses, frames, K, dist, mount=...)`` -> ``HandEye``: ``mount="eye_to_hand"``
  (a fixed camera, the board held by the gripper: gives ``T_base_camera``) or ``"eye_in_hand"``
  (the camera on the gripper, the board fixed: gives ``T_gripper_camera``).

Named errors: ``BoardNotFoundError`` (a ``CalibrationError``) when the board is not found in
enough views; ``CalibrationError`` for inconsistent inputs (mixed image sizes, too few arm
rotations).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from embodied.core.camera import Calibration, Frame
from embodied.core.errors import CalibrationError, ConfigError
from embodied.perception.board import (
    BoardNotFoundError,
    BoardView,
    ChArUcoBoard,
    image_size,
    mean_pose,
    pose_matrix,
    rotation_angle_deg,
    transform,
)

log = logging.getLogger(__name__)

DISTORTION_MODELS = {
    "none": cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3,
    "radial": cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K3,  # k1, k2
    "full": 0,  # k1, k2, p1, p2, k3
    "rational": cv2.CALIB_RATIONAL_MODEL,  # k1..k6, p1, p2 (wide-angle lenses; needs many views)
}
HAND_EYE_METHODS = {"tsai": cv2.CALIB_HAND_EYE_TSAI, "park": cv2.CALIB_HAND_EYE_PARK, "horaud": cv2.CALIB_HAND_EYE_HORAUD,
                    "andreff": cv2.CALIB_HAND_EYE_ANDREFF, "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS}
MOUNTS = ("eye_to_hand", "eye_in_hand")


# --- PnP ---------------------------------------------------------------------------------------
def _solve_pnp(obj: np.ndarray, img: np.ndarray, K: np.ndarray, dist: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
    """T_cam_obj (4x4) from 3-D points and their pixels; planar boards start from IPPE."""
    obj = np.ascontiguousarray(obj, np.float64).reshape(-1, 3)
    img = np.ascontiguousarray(img, np.float64).reshape(-1, 2)
    if guess is None:
        flag = cv2.SOLVEPNP_IPPE if np.ptp(obj[:, 2]) < 1e-9 else cv2.SOLVEPNP_ITERATIVE
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=flag)
        if not ok:
            raise CalibrationError("solvePnP failed on the board's corners")
    else:
        rvec, tvec = cv2.Rodrigues(guess[:3, :3])[0], guess[:3, 3].reshape(3, 1).copy()
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, dist, rvec, tvec)
    return transform(cv2.Rodrigues(rvec)[0], tvec)


def _reprojection(obj: np.ndarray, img: np.ndarray, T_cam_obj: np.ndarray, K, dist) -> np.ndarray:
    """(N,) pixel distances between ``img`` and ``obj`` projected through T_cam_obj."""
    rvec = cv2.Rodrigues(T_cam_obj[:3, :3])[0]
    proj, _ = cv2.projectPoints(np.asarray(obj, np.float64).reshape(-1, 3), rvec, T_cam_obj[:3, 3], K, dist)
    return np.linalg.norm(proj.reshape(-1, 2) - np.asarray(img, np.float64).reshape(-1, 2), axis=1)


def _rms(d: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(d)))) if len(d) else float("nan")


# --- intrinsics ----------------------------------------------------------------------------------
class Intrinsics(NamedTuple):
    K: np.ndarray  # (3, 3)
    dist: np.ndarray  # OpenCV distortion coefficients
    rms: float  # reprojection error over all views (pixels)
    views_used: list[int]  # indices of the frames the board was found in (and kept)
    size: tuple[int, int]  # (width, height)
    view_rms: list[float]  # per used view
    distortion: str = "radial"


def calibrate_intrinsics(frames: Sequence, board: ChArUcoBoard | None = None, distortion: str = "radial",
                         min_views: int = 6, min_corners: int = 8) -> Intrinsics:
    """K and distortion from several views of the board (``cv2.calibrateCamera``).

    ``frames``: Frames or images (RGB or grey), all the same size. Views where the board shows
    fewer than ``min_corners`` corners are skipped; a view whose error is far above the others'
    (blur, a misdetection) is dropped once. ``BoardNotFoundError`` below ``min_views`` views."""
    board = board or ChArUcoBoard()
    if distortion not in DISTORTION_MODELS:
        raise ConfigError(f"unknown distortion model {distortion!r}; use {', '.join(DISTORTION_MODELS)}")
    frames = list(frames)
    if not frames:
        raise BoardNotFoundError("no views to calibrate from")
    sizes = {image_size(f) for f in frames}
    if len(sizes) > 1:
        raise CalibrationError(f"views of different sizes {sorted(sizes)}: calibrate one camera mode at a time")
    size = sizes.pop()
    used, obj, img = [], [], []
    for i, f in enumerate(frames):
        view = board.detect(f, min_corners)
        if view is not None:
            used.append(i)
            obj.append(view.object_points.reshape(-1, 1, 3))
            img.append(view.corners.reshape(-1, 1, 2))
    if len(used) < min_views:
        raise BoardNotFoundError(f"the board ({board.squares_x}x{board.squares_y} {board.dictionary}) was found in {len(used)} of "
                                 f"{len(frames)} views with >= {min_corners} corners; intrinsics need {min_views}. Check the "
                                 "board settings (squares, dictionary, legacy), the lighting and focus, and fill the image with it")

    def run(o, p):
        flags = DISTORTION_MODELS[distortion]
        rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(o, p, size, None, None, flags=flags)
        per = [_rms(_reprojection(oo, pp, transform(cv2.Rodrigues(r)[0], t), K, dist)) for oo, pp, r, t in zip(o, p, rvecs, tvecs)]
        return float(rms), K, dist.ravel(), per

    rms, K, dist, per = run(obj, img)
    limit = max(1.0, 3.0 * float(np.median(per)))
    keep = [k for k, e in enumerate(per) if e <= limit]
    if len(keep) < len(per) and len(keep) >= min_views:
        log.info("intrinsics: dropping %d view(s) with reprojection error above %.2f px", len(per) - len(keep), limit)
        used = [used[k] for k in keep]
        rms, K, dist, per = run([obj[k] for k in keep], [img[k] for k in keep])
    log.info("intrinsics from %d views: fx %.1f fy %.1f cx %.1f cy %.1f, reprojection error %.3f px", len(used),
             K[0, 0], K[1, 1], K[0, 2], K[1, 2], rms)
    return Intrinsics(K, dist, rms, used, size, per, distortion)


# --- extrinsics: the board at known poses on the table ---------------------------------------------------
class Extrinsics(NamedTuple):
    T_base_camera: np.ndarray  # (4, 4) camera -> robot base
    rms: float  # reprojection error (pixels) over all corners of all placements
    views_used: list[int]
    corners: int
    position_std_mm: float  # 1-sigma uncertainty of the camera position predicted from the residuals
    rotation_std_deg: float


def _numeric_jacobian(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    y0 = np.asarray(f(x))
    J = np.zeros((y0.size, x.size))
    for i in range(x.size):
        d = np.zeros_like(x)
        d[i] = eps
        J[:, i] = (np.asarray(f(x + d)) - np.asarray(f(x - d))).ravel() / (2 * eps)
    return J


def _pose_std(obj: np.ndarray, T_cam_obj: np.ndarray, K, dist, residual_rms: float) -> tuple[float, float]:
    """1-sigma (mm, degrees) of the camera pose in the object frame, from the PnP Jacobian."""
    rvec = cv2.Rodrigues(T_cam_obj[:3, :3])[0].ravel()
    tvec = T_cam_obj[:3, 3].copy()
    _, J = cv2.projectPoints(np.asarray(obj, np.float64).reshape(-1, 3), rvec, tvec, K, dist)
    J = J[:, :6]
    n = J.shape[0]
    sigma2 = residual_rms ** 2 * n / max(n - 6, 1)
    try:
        cov = sigma2 * np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return float("inf"), float("inf")
    x0 = np.concatenate([rvec, tvec])
    R0 = T_cam_obj[:3, :3]

    def centre(x):
        R = cv2.Rodrigues(x[:3])[0]
        return -R.T @ x[3:]

    def turn(x):  # the small rotation from R0 (first order: the skew part of R R0^T)
        D = cv2.Rodrigues(x[:3])[0] @ R0.T
        return 0.5 * np.array([D[2, 1] - D[1, 2], D[0, 2] - D[2, 0], D[1, 0] - D[0, 1]])

    Jc, Jr = _numeric_jacobian(centre, x0), _numeric_jacobian(turn, x0)
    pos = math.sqrt(max(float(np.trace(Jc @ cov @ Jc.T)), 0.0)) * 1000
    rot = math.degrees(math.sqrt(max(float(np.trace(Jr @ cov @ Jr.T)), 0.0)))
    return pos, rot


def board_extrinsics(frames, K, dist, board_poses, board: ChArUcoBoard | None = None, min_corners: int = 6) -> Extrinsics:
    """T_base_camera from the board seen at known poses: one frame per pose.

    ``frames``: a Frame / image or a list of them; ``board_poses``: for each, ``[x, y, yaw]`` of
    the board lying face up on the table (see the module docstring) or a 4x4 T_base_board. All
    corners of all placements are solved together (IPPE on the best view, then Levenberg-
    Marquardt over all). Placements spread over the image (e.g. near its four corners) make the
    pose well determined; ``position_std_mm`` / ``rotation_std_deg`` say how well."""
    board = board or ChArUcoBoard()
    K = np.asarray(K, np.float64).reshape(3, 3)
    dist = np.asarray(dist if dist is not None else np.zeros(5), np.float64).ravel()
    if isinstance(frames, (Frame, np.ndarray)):
        frames, board_poses = [frames], [board_poses]
    frames, board_poses = list(frames), list(board_poses)
    if len(frames) != len(board_poses):
        raise CalibrationError(f"{len(frames)} frames but {len(board_poses)} board poses: give one pose per frame")
    used, P, px, best = [], [], [], None
    for i, (f, pose) in enumerate(zip(frames, board_poses)):
        T_base_board = board.placed(pose)
        view = board.detect(f, min_corners)
        if view is None:
            log.warning("extrinsics: the board was not found in view %d (pose %s)", i, np.asarray(pose).tolist())
            continue
        used.append(i)
        P.append(view.object_points.astype(np.float64) @ T_base_board[:3, :3].T + T_base_board[:3, 3])
        px.append(view.corners.astype(np.float64))
        if best is None or len(view.ids) > best[0]:
            best = (len(view.ids), view, T_base_board)
    if not used:
        raise BoardNotFoundError(f"the board was not found in any of the {len(frames)} extrinsics views (>= {min_corners} corners): "
                                 "check that it lies where the camera sees it, and the board settings")
    _, view, T_base_board = best
    T_cam_board = _solve_pnp(view.object_points, view.corners, K, dist)
    P, px = np.concatenate(P), np.concatenate(px)
    T_cam_base = _solve_pnp(P, px, K, dist, guess=T_cam_board @ np.linalg.inv(T_base_board))
    cam_pts = P @ T_cam_base[:3, :3].T + T_cam_base[:3, 3]
    if np.any(cam_pts[:, 2] <= 0):
        raise CalibrationError("the extrinsics solution puts board corners behind the camera: are the board poses right?")
    rms = _rms(_reprojection(P, px, T_cam_base, K, dist))
    pos_std, rot_std = _pose_std(P, T_cam_base, K, dist, rms)
    if pos_std > 2.0 or rot_std > 0.2:
        log.warning("extrinsics are poorly determined (+-%.1f mm, +-%.2f deg): add board placements spread over the image "
                    "(near its corners)", pos_std, rot_std)
    return Extrinsics(np.linalg.inv(T_cam_base), rms, used, len(P), pos_std, rot_std)


# --- hand-eye ----------------------------------------------------------------------------------
class HandEye(NamedTuple):
    T: np.ndarray  # eye_to_hand: T_base_camera; eye_in_hand: T_gripper_camera
    mount: str
    T_target: np.ndarray  # eye_to_hand: T_gripper_board; eye_in_hand: T_base_board (the mean over views)
    rms: float  # reprojection error (pixels) of all corners through the solved chain
    spread_mm: float  # how much the target pose implied by each view scatters (rms, mm)
    spread_deg: float
    views_used: list[int]
    method: str


def _refine_hand_eye(A: list[np.ndarray], views: list[BoardView], X: np.ndarray, T_target: np.ndarray, K, dist,
                     iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """X and the target pose that minimise the reprojection error of every corner through the
    chain inv(A_i X) T_target (Levenberg-Marquardt; increments about the current rotations)."""

    def apply(d: np.ndarray, X0: np.ndarray, T0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X1 = transform(cv2.Rodrigues(d[:3])[0] @ X0[:3, :3], X0[:3, 3] + d[3:6])
        T1 = transform(cv2.Rodrigues(d[6:9])[0] @ T0[:3, :3], T0[:3, 3] + d[9:12])
        return X1, T1

    def residuals(X1: np.ndarray, T1: np.ndarray) -> np.ndarray:
        out = []
        for a, v in zip(A, views):
            T_cam_board = np.linalg.inv(a @ X1) @ T1
            proj, _ = cv2.projectPoints(v.object_points.astype(np.float64), cv2.Rodrigues(T_cam_board[:3, :3])[0],
                                        T_cam_board[:3, 3], K, dist)
            out.append((proj.reshape(-1, 2) - v.corners).ravel())
        return np.concatenate(out)

    r = residuals(X, T_target)
    cost, lam = float(r @ r), 1e-3
    for _ in range(iterations):
        J = _numeric_jacobian(lambda d, X0=X, T0=T_target: residuals(*apply(d, X0, T0)), np.zeros(12), eps=1e-7)
        H, g = J.T @ J, J.T @ r
        step = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), -g)
        X1, T1 = apply(step, X, T_target)
        r1 = residuals(X1, T1)
        if float(r1 @ r1) < cost:
            X, T_target, r, lam = X1, T1, r1, lam / 3
            done = cost - float(r1 @ r1) < 1e-10 * cost
            cost = float(r1 @ r1)
            if done:
                break
        else:
            lam *= 4
            if lam > 1e8:
                break
    return X, T_target


def hand_eye(arm_poses: Sequence, frames: Sequence, K, dist, mount: str = "eye_to_hand", board: ChArUcoBoard | None = None,
             method: str = "park", min_views: int = 5, min_corners: int = 6, refine: bool = True) -> HandEye:
    """Hand-eye calibration with ``cv2.calibrateHandEye``: one frame per arm pose.

    ``arm_poses``: T_base_gripper for each frame (4x4, or x, y, z, qx, qy, qz, qw) as the robot
    reports it. ``mount="eye_to_hand"``: the camera is fixed and the board rides on the gripper
    -> ``T`` is T_base_camera. ``mount="eye_in_hand"``: the camera rides on the gripper and the
    board is fixed -> ``T`` is T_gripper_camera. The arm poses need rotations about at least two
    different axes (tens of degrees each). ``refine``: after ``cv2.calibrateHandEye``, minimise
    the reprojection error of every corner over the mount and the target pose together."""
    board = board or ChArUcoBoard()
    if mount not in MOUNTS:
        raise ConfigError(f"unknown mount {mount!r}; use {' or '.join(MOUNTS)}")
    if method not in HAND_EYE_METHODS:
        raise ConfigError(f"unknown hand-eye method {method!r}; use {', '.join(HAND_EYE_METHODS)}")
    K = np.asarray(K, np.float64).reshape(3, 3)
    dist = np.asarray(dist if dist is not None else np.zeros(5), np.float64).ravel()
    arm_poses, frames = [pose_matrix(p) for p in arm_poses], list(frames)
    if len(arm_poses) != len(frames):
        raise CalibrationError(f"{len(frames)} frames but {len(arm_poses)} arm poses: give one arm pose per frame")
    used, views, T_cb = [], [], []
    for i, f in enumerate(frames):
        view = board.detect(f, min_corners)
        if view is None:
            continue
        used.append(i)
        views.append(view)
        T_cb.append(_solve_pnp(view.object_points, view.corners, K, dist))
    if len(used) < min_views:
        raise BoardNotFoundError(f"hand-eye: the board was found in {len(used)} of {len(frames)} views; need {min_views}")
    A = [arm_poses[i] if mount == "eye_in_hand" else np.linalg.inv(arm_poses[i]) for i in used]
    angles = [rotation_angle_deg(A[0][:3, :3].T @ a[:3, :3]) for a in A[1:]]
    if max(angles, default=0.0) < 5.0:
        raise CalibrationError("hand-eye: the arm poses barely rotate (< 5 degrees apart); turn the gripper about "
                               "at least two different axes between views")
    R_X, t_X = cv2.calibrateHandEye([a[:3, :3] for a in A], [a[:3, 3].reshape(3, 1) for a in A],
                                    [T[:3, :3] for T in T_cb], [T[:3, 3].reshape(3, 1) for T in T_cb],
                                    method=HAND_EYE_METHODS[method])
    X = transform(R_X, t_X)
    targets = [a @ X @ T for a, T in zip(A, T_cb)]  # the target in the base (eye-in-hand) or gripper (eye-to-hand) frame
    T_target = mean_pose(targets)
    if refine:
        X, T_target = _refine_hand_eye(A, views, X, T_target, K, dist)
        targets = [a @ X @ T for a, T in zip(A, T_cb)]
    spread_mm = float(np.sqrt(np.mean([np.sum((T[:3, 3] - T_target[:3, 3]) ** 2) for T in targets]))) * 1000
    spread_deg = float(np.sqrt(np.mean([rotation_angle_deg(T[:3, :3].T @ T_target[:3, :3]) ** 2 for T in targets])))
    errs = np.concatenate([_reprojection(v.object_points, v.corners, np.linalg.inv(a @ X) @ T_target, K, dist)
                           for a, v in zip(A, views)])
    rms = _rms(errs)
    log.info("hand-eye (%s, %s) from %d views: target spread %.1f mm %.2f deg, reprojection %.2f px", mount, method, len(used),
             spread_mm, spread_deg, rms)
    return HandEye(X, mount, T_target, rms, spread_mm, spread_deg, used, method)


# --- the calibration file ------------------------------------------------------------------------
def make_calibration(camera: str, intrinsics: Intrinsics, extrinsics: Extrinsics | HandEye | None = None,
                     board: ChArUcoBoard | None = None, arm_pose: np.ndarray | None = None, **info) -> Calibration:
    """A ``Calibration`` (what ``embodied calibrate`` writes) with ``info`` saying how it was made.

    For an eye-in-hand ``HandEye``, ``T_base_camera`` is the camera's pose at ``arm_pose`` (the
    first calibration pose unless given) and ``info["T_gripper_camera"]`` holds the mount."""
    w, h = intrinsics.size
    method = ["charuco intrinsics"]
    meta: dict = {"intrinsics": {"views": len(intrinsics.views_used), "reprojection_error_px": round(intrinsics.rms, 4),
                                 "distortion": intrinsics.distortion}}
    T = np.eye(4)
    reproj = intrinsics.rms
    if isinstance(extrinsics, Extrinsics):
        T = extrinsics.T_base_camera
        method.append("board on the table")
        reproj = extrinsics.rms
        meta["extrinsics"] = {"method": "board at known poses on the table", "placements": len(extrinsics.views_used),
                              "corners": extrinsics.corners, "reprojection_error_px": round(extrinsics.rms, 4),
                              "position_std_mm": round(extrinsics.position_std_mm, 3), "rotation_std_deg": round(extrinsics.rotation_std_deg, 4)}
    elif isinstance(extrinsics, HandEye):
        method.append(f"hand-eye {extrinsics.mount}")
        reproj = extrinsics.rms
        meta["extrinsics"] = {"method": f"hand-eye ({extrinsics.mount}, {extrinsics.method})", "views": len(extrinsics.views_used),
                              "reprojection_error_px": round(extrinsics.rms, 4), "target_spread_mm": round(extrinsics.spread_mm, 3),
                              "target_spread_deg": round(extrinsics.spread_deg, 4)}
        if extrinsics.mount == "eye_to_hand":
            T = extrinsics.T
            meta["extrinsics"]["T_gripper_board"] = extrinsics.T_target.tolist()
        else:
            if arm_pose is None:
                raise CalibrationError("an eye-in-hand calibration needs the arm pose its T_base_camera refers to")
            T = pose_matrix(arm_pose) @ extrinsics.T
            meta["mount"] = "eye_in_hand"
            meta["T_gripper_camera"] = extrinsics.T.tolist()
            meta["note"] = ("the camera rides on the gripper: its pose is T_base_gripper(now) @ T_gripper_camera; "
                            "T_base_camera is its pose at the arm pose given at calibration")
    else:
        meta["extrinsics"] = "not measured (T_base_camera is identity)"
    if board is not None:
        meta["board"] = asdict(board)
    out = {"method": " + ".join(method), "views": len(intrinsics.views_used), "reprojection_error_px": round(float(reproj), 4),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **meta, **info}
    return Calibration(camera, int(w), int(h), intrinsics.K, intrinsics.dist, T, out)


def intrinsics_of(calibration: Calibration) -> Intrinsics:
    """The intrinsics part of a calibration file, to reuse for extrinsics or hand-eye."""
    info = calibration.info.get("intrinsics", {}) if isinstance(calibration.info.get("intrinsics"), dict) else {}
    return Intrinsics(calibration.K, calibration.dist, float(info.get("reprojection_error_px", float("nan"))),
                      list(range(int(info.get("views", 0)))), (calibration.width, calibration.height), [],
                      str(info.get("distortion", "given")))
