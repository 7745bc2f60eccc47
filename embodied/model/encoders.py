"""Encoders for the non-text inputs: camera frames (ViT-style) and the robot state (MLP)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from embodied.model.config import VisionConfig


def frames_to_tensor(frames: list[np.ndarray], size: int, device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> float (N, 3, size, size) in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).to(device)  # (N, H, W, 3) uint8
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # (N, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


class VisionEncoder(nn.Module):
    """Conv stem (two stride-2 convs) + patch embedding + transformer layers -> patch tokens."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1),
            nn.GELU(),
        )
        k = cfg.patch_size // 4
        self.patch = nn.Conv2d(c, cfg.width, k, stride=k)
        self.grid = cfg.image_size // cfg.patch_size
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, 4 * cfg.width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.out_dim = cfg.width

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch(self.stem(pixels))  # (N, W, g, g)
        x = x.flatten(2).transpose(1, 2) + self.pos  # (N, P, W)
        return self.norm(self.blocks(x))  # (N, P, W)


class PretrainedVisionEncoder(nn.Module):
    """A transformers vision model from a local directory; returns its last hidden states."""

    def __init__(self, model: nn.Module, image_size: int):
        super().__init__()
        self.model = model
        cfg = getattr(model.config, "vision_config", model.config)
        self.out_dim = cfg.hidden_size
        self.image_size = image_size
        with torch.no_grad():
            n = self.model(pixel_values=torch.zeros(1, 3, image_size, image_size)).last_hidden_state.shape[1]
        self._tokens = int(n)

    @property
    def tokens_per_frame(self) -> int:
        return self._tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).last_hidden_state  # (N, P, W)


class StateEncoder(nn.Module):
    """MLP from the state vector to ``tokens`` embeddings of width ``width``."""

    def __init__(self, state_size: int, tokens: int, hidden: int, width: int):
        super().__init__()
        self.tokens, self.width = tokens, width
        self.net = nn.Sequential(nn.Linear(state_size, hidden), nn.GELU(), nn.Linear(hidden, tokens * width))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state).view(state.shape[0], self.tokens, self.width)  # (N, k, W)
