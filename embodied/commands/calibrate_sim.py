"""``embodied calibrate source=sim``: the calibration procedures run in the simulator.

``SimRig`` is a TabletopSim with a textured ChArUco plate and one simulated camera; it renders
the views a person would take (the board held at many angles, laid on the table, carried by the
gripper or watched from a camera on the gripper) and knows the exact answer to check against.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from embodied.commands.config import one_of
from embodied.core.camera import Frame
from embodied.perception.board import ChArUcoBoard, transform
from embodied.perception.calibration import Intrinsics, calibrate_intrinsics, hand_eye

SIM_SIZE = (640, 480)  # source=sim renders at this size unless width/height say otherwise
SIM_PLATE_M = 0.003  # the simulated board's plate (a face level with the table would z-fight with it)
SIM_PX_PER_M = 4000.0  # texels per metre of the simulated board's texture


class SimRig:
    """A TabletopSim with a board plate and the camera ``cfg.camera`` (envs.cameras.SPECS)."""

    def __init__(self, cfg, board: ChArUcoBoard):
        from envs.cameras import SPECS, SimCamera, calibration
        from envs.charuco import BoardPlate
        from envs.sim import TabletopSim

        one_of(cfg.camera, tuple(SPECS), "camera")
        w = int(cfg.width) if cfg.width else SIM_SIZE[0]
        h = int(cfg.height) if cfg.height else (SIM_SIZE[1] if not cfg.width else int(round(w * 3 / 4)))
        self.spec = SPECS[cfg.camera].resized(w, h)
        self.truth = calibration(self.spec)
        self.board = replace(board, thickness_m=max(board.thickness_m, SIM_PLATE_M))
        self.sim = TabletopSim()
        self.plate = BoardPlate(self.sim, self.board.board_image(SIM_PX_PER_M, margin_m=0.01), SIM_PX_PER_M,
                                thickness=self.board.thickness_m)
        self.camera = SimCamera(self.sim, self.spec, depth=False)
        self.rng = np.random.default_rng(cfg.seed)

    def close(self) -> None:
        self.sim.close()

    def intrinsics_views(self, n: int, seed: int) -> list[Frame]:
        from envs.charuco import facing_poses

        frames = []
        for T in facing_poses(self.spec, n, seed=seed):
            self.plate.set_pose(T)
            frames.append(self.camera.read())
        return frames

    def table_views(self, poses: list[np.ndarray]) -> list[Frame]:
        frames = []
        for p in poses:
            self.plate.set_pose(self.board.face_on_table(*p))
            frames.append(self.camera.read())
        return frames

    def auto_placements(self, min_corners: int, n: int = 4) -> list[np.ndarray]:
        """Board placements on the table spread over the view (where a person would put them
        watching the camera's image): of a 3 x 3 grid of image points, those where the board is
        seen, the ``n`` farthest apart."""
        s = self.spec
        seen = []
        for k, (fu, fv) in enumerate((u, v) for v in (0.25, 0.5, 0.78) for u in (0.2, 0.5, 0.8)):
            x, y, _ = self.truth.plane_points(np.array([fu * s.width]), np.array([fv * s.height]), self.board.thickness_m)[0]
            if not (-0.05 < x < 0.95 and -0.7 < y < 0.7):
                continue
            pose = np.array([x, y, (0.3, -0.4, 0.5, -0.2, 0.1)[k % 5]])
            if self.board.detect(self.table_views([pose])[0], min_corners) is not None:
                seen.append((np.array([fu, fv]), pose))
        if not seen:
            return []
        # greedy farthest points in the image, starting from the one farthest from the centre
        chosen = [max(seen, key=lambda c: np.linalg.norm(c[0] - 0.5))]
        while len(chosen) < min(n, len(seen)):
            rest = [c for c in seen if not any(c is d for d in chosen)]
            chosen.append(max(rest, key=lambda c: min(np.linalg.norm(c[0] - d[0]) for d in chosen)))
        return [pose for _, pose in chosen]

    def intrinsics(self, cfg) -> Intrinsics:
        frames = self.intrinsics_views(cfg.views, cfg.seed)
        intr = calibrate_intrinsics(frames, self.board, cfg.distortion, min_corners=cfg.min_corners)
        t = self.truth.K
        print(f"simulator: focal length error {100 * (intr.K[0, 0] / t[0, 0] - 1):+.3f} % (fx) {100 * (intr.K[1, 1] / t[1, 1] - 1):+.3f} % (fy); "
              f"principal point ({intr.K[0, 2]:.2f}, {intr.K[1, 2]:.2f}) vs ({t[0, 2]:.2f}, {t[1, 2]:.2f})")
        return intr

    def hand_eye(self, cfg, K, dist):
        """Hand-eye in the simulator: arm poses as the robot would report them, the board (or the
        camera) riding on the gripper at a mount the solver does not know."""
        from envs.cameras import SimCamera
        from envs.charuco import camera_at, facing_poses

        rng = self.rng
        if cfg.mount == "eye_to_hand":
            T_gripper_face = transform(_rz(0.3), (0.02, -0.01, 0.06))  # the board 6 cm beyond the fingers, its face along the approach axis
            faces = facing_poses(self.spec, max(cfg.views, 8), seed=cfg.seed + 1, distance=(0.45, 0.65), tilt_deg=30.0)
            arm, frames = [], []
            for T_face in faces:
                arm.append(T_face @ np.linalg.inv(T_gripper_face))
                self.plate.set_pose(T_face)
                frames.append(self.camera.read())
            he = hand_eye(arm, frames, K, dist, "eye_to_hand", self.board, cfg.method)
            return he, arm, self.truth.T_base_camera, T_gripper_face @ self.board.T_face_board
        T_gripper_camera = transform(_rz(math.pi / 2) @ _rx(0.1), (0.05, 0.0, -0.03))
        pose = np.array([0.55, 0.05, 0.4])
        self.plate.set_pose(self.board.face_on_table(*pose))
        centre = self.board.face_on_table(*pose)[:3, 3]
        arm, frames = [], []
        for _ in range(max(cfg.views, 8)):
            R = _rz(rng.uniform(-1.0, 1.0)) @ _rx(math.pi) @ _rx(math.radians(rng.uniform(-25, 25))) @ _ry(math.radians(rng.uniform(-25, 25)))
            T_cam = transform(R, (0, 0, 0))
            T_cam[:3, 3] = centre + rng.uniform(-0.03, 0.03, 3) - R[:, 2] * rng.uniform(0.35, 0.55)
            arm.append(T_cam @ np.linalg.inv(T_gripper_camera))
            spec = camera_at(self.spec.name, T_cam, self.spec.fov_deg, self.spec.width, self.spec.height)
            frames.append(SimCamera(self.sim, spec, depth=False).read())
        he = hand_eye(arm, frames, K, dist, "eye_in_hand", self.board, cfg.method)
        return he, arm, T_gripper_camera, self.board.on_table(*pose)


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
