"""Read demonstration shards (Parquet) for training, with a held-out validation split.

One row = one re-planning point of an oracle episode. Columns (``COLUMNS``):
``task, level, seed, episode, step, instruction, history (list<str>), target (plan text),
cameras (list<str>), frames (list<binary> PNG, one per camera), state (list<float32>),
detections (list<str>), perturbation (str, "" when nominal)``, and optionally
``relations`` (list<str> aligned with ``detections``: "on table", "in red bin", ..., "" for
none; shards written before it existed read as no relations) and ``ee_targets`` (list<float32>, 14:
the end-effector grasp and release poses of the step taken from the row, the action of
``embodied export format=lerobot``; training does not read it).

The validation split holds out whole episodes (a hash of task and seed), so no frame of a
validation episode is seen in training.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodied.core.errors import ConfigError, EmbodiedError
from embodied.core.observation import Observation

COLUMNS: tuple[str, ...] = (
    "task", "level", "seed", "episode", "step", "instruction", "history", "target",
    "cameras", "frames", "state", "detections", "perturbation",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("relations", "ee_targets")


class DatasetError(EmbodiedError, ValueError):
    """A data directory has no shards or shards with missing columns."""


@dataclass
class Example:
    observation: Observation
    target: str  # remaining plan text, "...; done"
    task: str = ""


def encode_png(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise DatasetError("PNG encoding failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError("a frame in the shard is not a readable PNG/JPEG image")
    return np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB, (H, W, 3) uint8


def shard_paths(directory: str | Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"data directory {d} does not exist; generate it with `embodied datagen out={d}`")
    paths = sorted(d.glob("*.parquet"))
    if not paths:
        raise DatasetError(f"no *.parquet shards in {d}; generate them with `embodied datagen out={d}`")
    return paths


def is_validation(task: str, seed: int, val_fraction: float) -> bool:
    return (zlib.crc32(f"{task}:{seed}".encode()) % 10_000) < val_fraction * 10_000


class PlanDataset:
    """Rows of all shards in ``directory`` for ``split`` ("train", "val" or "all")."""

    def __init__(self, directory: str | Path, split: str = "train", val_fraction: float = 0.05):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if split not in ("train", "val", "all"):
            raise ConfigError(f"split must be 'train', 'val' or 'all', got {split!r}")
        tables = []
        for p in shard_paths(directory):
            t = pq.read_table(p)
            missing = [c for c in COLUMNS if c not in t.column_names]
            if missing:
                raise DatasetError(f"shard {p} lacks columns {missing}; regenerate it with `embodied datagen`")
            for c in OPTIONAL_COLUMNS:
                if c not in t.column_names:
                    t = t.append_column(c, pa.array([[] for _ in range(t.num_rows)], shard_schema().field(c).type))
            tables.append(t.select(list(COLUMNS + OPTIONAL_COLUMNS)))
        table = pa.concat_tables(tables)
        cols = {c: table.column(c).to_pylist() for c in COLUMNS + OPTIONAL_COLUMNS if c not in ("frames", "ee_targets")}
        self._frames = table.column("frames")
        keep = [
            i for i in range(table.num_rows)
            if split == "all" or is_validation(cols["task"][i], cols["seed"][i], val_fraction) == (split == "val")
        ]
        self._rows = keep
        self._cols = cols

    def __len__(self) -> int:
        return len(self._rows)

    def texts(self) -> list[str]:
        """Instructions, targets and history steps (for training a tokenizer)."""
        c = self._cols
        out = set()
        for i in self._rows:
            out.add(c["instruction"][i])
            out.add(c["target"][i])
            out.update(c["history"][i])
        return sorted(out)

    def object_names(self) -> list[str]:
        """Every object name (``<colour> <shape>``) these rows perceive or mention, sorted."""
        from embodied.core.vocab import is_object_name, object_name_pattern

        c = self._cols
        names: set[str] = set()
        for i in self._rows:
            names.update(d for d in c["detections"][i] if is_object_name(d))
            for text in [c["instruction"][i], c["target"][i], *c["history"][i]]:
                names.update(object_name_pattern().findall(text))
        return sorted(names)

    def __getitem__(self, k: int) -> Example:
        i = self._rows[k]
        c = self._cols
        frames = {cam: decode_image(b) for cam, b in zip(c["cameras"][i], self._frames[i].as_py())}
        obs = Observation(
            frames=frames,
            state=np.asarray(c["state"][i], dtype=np.float32),
            instruction=c["instruction"][i],
            history=list(c["history"][i]),
            detections=list(c["detections"][i]),
            relations={d: r for d, r in zip(c["detections"][i], c["relations"][i] or []) if r},
            seq=int(c["step"][i]),
        )
        return Example(observation=obs, target=c["target"][i], task=c["task"][i])

    def tasks(self) -> list[str]:
        return [self._cols["task"][i] for i in self._rows]


def shard_schema():
    import pyarrow as pa

    return pa.schema([
        ("task", pa.string()), ("level", pa.string()), ("seed", pa.int64()), ("episode", pa.string()),
        ("step", pa.int32()), ("instruction", pa.string()), ("history", pa.list_(pa.string())),
        ("target", pa.string()), ("cameras", pa.list_(pa.string())), ("frames", pa.list_(pa.binary())),
        ("state", pa.list_(pa.float32())), ("detections", pa.list_(pa.string())), ("perturbation", pa.string()),
        ("relations", pa.list_(pa.string())), ("ee_targets", pa.list_(pa.float32())),
    ])


def write_shard(rows: list[dict], path: str | Path) -> Path:
    """Write rows (dicts with ``COLUMNS``; ``frames`` as encoded bytes) atomically to ``path``."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=shard_schema())
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)
    return path
