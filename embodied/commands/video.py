"""Episode videos: the camera view, upscaled, with the instruction and the plan overlaid (mp4, opencv)."""

from __future__ import annotations

from pathlib import Path


class VideoRecorder:
    """Writes the camera view, upscaled, with the instruction and plan overlaid (mp4, opencv)."""

    SIZE = 384
    HOLD = 8  # frames per observation at 8 fps: one second each

    def __init__(self, path: Path, instruction: str):
        import cv2

        self.cv2 = cv2
        self.path = path
        self.instruction = instruction
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (self.SIZE, self.SIZE + 90))

    def add(self, frame, executed: list[str], current: str, banner: str = "") -> None:
        import numpy as np

        cv2 = self.cv2
        img = cv2.resize(np.ascontiguousarray(frame[:, :, :3]), (self.SIZE, self.SIZE), interpolation=cv2.INTER_NEAREST)
        canvas = np.zeros((self.SIZE + 90, self.SIZE, 3), np.uint8)
        canvas[90:] = img
        lines = [self.instruction[:60]] + [f"{i + 1}. {s}" for i, s in enumerate(executed[-3:], start=max(0, len(executed) - 3))]
        if banner:
            lines = [banner] + lines[:3]
        for k, text in enumerate(lines[:4]):
            colour = (255, 255, 0) if text == current or (current and text.endswith(current)) else (255, 255, 255)
            cv2.putText(canvas, text, (6, 18 + 21 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        for _ in range(self.HOLD):
            self.writer.write(bgr)

    def close(self) -> None:
        self.writer.release()
