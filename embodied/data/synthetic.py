"""Synthetic demonstration shards (no simulator): for tests and for sizing training runs.

Each example's frame is a plain background with one coloured square per object on the
table; the target is the plan "put <each red object> in tray; done", so the image
decides the target and a model that learns must read the frame.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from embodied.core.observation import STATE_SIZE
from embodied.core.vocab import COLOUR_RGBA, TRAIN_COLOURS, TRAIN_SHAPES
from embodied.data.dataset import encode_png, write_shard


def synthetic_rows(n: int, image_size: int = 32, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        objs = rng.sample([(c, s) for c in TRAIN_COLOURS[:3] for s in TRAIN_SHAPES], rng.randint(2, 4))
        img = np.full((image_size, image_size, 3), 200, dtype=np.uint8)
        cell = image_size // 4
        for j, (c, _) in enumerate(objs):
            rgb = (np.array(COLOUR_RGBA[c][:3]) * 255).astype(np.uint8)
            y, x = divmod(j, 4)
            img[y * cell : (y + 1) * cell - 1, x * cell : (x + 1) * cell - 1] = rgb
        reds = [f"{c} {s}" for c, s in objs if c == "red"]
        target = "; ".join([f"put {o} in tray" for o in reds] + ["done"])
        rows.append({
            "task": "synthetic", "level": "L1", "seed": k, "episode": f"synthetic-{k}", "step": 0,
            "instruction": "put all the red things in the tray", "history": [], "target": target,
            "cameras": ["front"], "frames": [encode_png(img)],
            "state": [float(v) for v in np.random.default_rng(k).normal(size=STATE_SIZE).astype(np.float32)],
            "detections": [f"{c} {s}" for c, s in objs], "perturbation": "",
            "relations": ["on table" for _ in objs],
        })
    return rows


def write_synthetic(out: str | Path, n: int, image_size: int = 32, seed: int = 0, shards: int = 2) -> Path:
    rows = synthetic_rows(n, image_size, seed)
    out = Path(out)
    for i in range(shards):
        write_shard(rows[i::shards], out / f"synthetic-{i:05d}.parquet")
    return out
