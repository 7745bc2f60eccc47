"""Demonstration shards as a LeRobotDataset v3.0 (the layout of LeRobot's dataset writer, codebase v3.0).

    <out>/meta/info.json                                  codebase_version "v3.0", fps, features, path templates, totals
    <out>/meta/stats.json                                 per feature: min, max, mean, std, count, q01 q10 q50 q90 q99
    <out>/meta/tasks.parquet                              task (the instruction, pandas index) -> task_index
    <out>/meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks, where its frames and
                                                          video segments lie, its stats (stats/<feature>/<stat>)
    <out>/data/chunk-000/file-000.parquet                 one row per frame
    <out>/videos/observation.images.<camera>/chunk-000/file-000.mp4   H.264, every episode one after the other

A frame is one re-planning point of a demonstration (one shard row): ``observation.images.<camera>``
(video), ``observation.state`` (the 15-float state), ``action`` (the end-effector targets of the
step taken from that frame: grasp pose and release pose, ``ee_targets`` in the shards written by
``embodied datagen``), and the plan as language annotations (LeRobot's ``language_persistent``
column, broadcast over the episode's frames): at each frame a ``plan`` row (the oracle's remaining
plan) and a ``subtask`` row (the step taken), stamped with the frame's timestamp. The instruction is
the task. Frames are ``fps`` apart (1 by default: one plan step per second of dataset time).

Files roll over to the next ``file-XXX`` when they pass ``data_files_size_in_mb`` /
``video_files_size_in_mb``, and to the next ``chunk-XXX`` after ``chunks_size`` files, as LeRobot's
writer does. The video encoder is handed in (``open_video``), so this module needs only numpy,
pyarrow and the shards (layering: the data part imports the ground and itself).
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from embodied.core.errors import ConfigError
from embodied.data.dataset import DatasetError, decode_image, shard_paths

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)

# the shard column datagen writes for the action, and its names (see embodied.commands.datagen)
EE_TARGETS = "ee_targets"
EE_TARGET_NAMES: tuple[str, ...] = tuple(f"{p}.{a}" for p in ("grasp", "release") for a in ("x", "y", "z", "qx", "qy", "qz", "qw"))
STATE_NAMES: tuple[str, ...] = tuple(f"joint_{i}" for i in range(7)) + (
    "gripper_width", "ee.x", "ee.y", "ee.z", "ee.qx", "ee.qy", "ee.qz", "ee.qw")
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
LANGUAGE_FEATURES = {
    "language_persistent": {"dtype": "language", "shape": [1], "names": None},
    "language_events": {"dtype": "language", "shape": [1], "names": None},
}


@dataclass
class LeRobotOptions:
    fps: int = 1
    robot_type: str = "franka_panda"
    language: bool = True  # plan steps as language_persistent rows (LeRobot >= 0.6 reads them; false for older readers)
    chunks_size: int = 1000
    data_files_size_in_mb: int = 100
    video_files_size_in_mb: int = 200
    crf: int = 18  # H.264 quality of the videos (lower: better, larger)
    gop: int = 2  # a key frame every gop frames: exact seeks for LeRobot's PyAV and torchcodec readers


def _arrow():
    import pyarrow as pa

    return pa


def _json_type():
    pa = _arrow()
    return pa.json_() if hasattr(pa, "json_") else pa.string()


def language_row_types(json_type=None):
    """Arrow types of LeRobot's language_persistent and language_events columns (``tool_calls`` items
    are JSON: Arrow's json extension type where pyarrow has it; ``json_type`` overrides it)."""
    pa = _arrow()
    jt = json_type or _json_type()
    persistent = pa.struct([
        pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()), pa.field("style", pa.string()),
        pa.field("timestamp", pa.float32(), nullable=False), pa.field("camera", pa.string()),
        pa.field("tool_calls", pa.list_(jt)),
    ])
    event = pa.struct([
        pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string()), pa.field("style", pa.string()),
        pa.field("camera", pa.string()), pa.field("tool_calls", pa.list_(jt)),
    ])
    return pa.list_(persistent), pa.list_(event)


def data_schema(opts: LeRobotOptions, state_dim: int, action_dim: int):
    pa = _arrow()
    fields = [
        ("observation.state", pa.list_(pa.float32(), state_dim)),
        ("action", pa.list_(pa.float32(), action_dim)),
        ("timestamp", pa.float32()), ("frame_index", pa.int64()), ("episode_index", pa.int64()),
        ("index", pa.int64()), ("task_index", pa.int64()),
    ]
    if opts.language:
        persistent, events = language_row_types()
        fields += [("language_persistent", persistent), ("language_events", events)]
    return pa.schema(fields)


def feature_stats(values: np.ndarray, axis, keepdims: bool) -> dict[str, np.ndarray]:
    """min, max, mean, std, count and the quantiles, reduced over ``axis`` (LeRobot's stats keys)."""
    v = values.astype(np.float64)
    out = {"min": v.min(axis=axis, keepdims=keepdims), "max": v.max(axis=axis, keepdims=keepdims),
           "mean": v.mean(axis=axis, keepdims=keepdims), "std": v.std(axis=axis, keepdims=keepdims),
           "count": np.array([values.shape[0]])}
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(v, q, axis=axis, keepdims=keepdims)
    return out


def aggregate_stats(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from episode stats: count-weighted mean, pooled variance, min of min, max of max,
    count-weighted mean of each quantile (as LeRobot aggregates episode stats)."""
    means = np.stack([s["mean"] for s in items])
    var = np.stack([s["std"] ** 2 for s in items])
    counts = np.stack([s["count"] for s in items]).astype(np.float64)
    total = counts.sum(axis=0)
    w = counts
    while w.ndim < means.ndim:
        w = w[..., None]
    mean = (means * w).sum(axis=0) / total
    out = {"min": np.min(np.stack([s["min"] for s in items]), axis=0), "max": np.max(np.stack([s["max"] for s in items]), axis=0),
           "mean": mean, "std": np.sqrt(((var + (means - mean) ** 2) * w).sum(axis=0) / total), "count": total.astype(np.int64)}
    for k in items[0]:
        if k.startswith("q"):
            out[k] = (np.stack([s[k] for s in items]) * w).sum(axis=0) / total
    return out


def _episode_stats(frames: dict[str, np.ndarray], state: np.ndarray, action: np.ndarray, ts: np.ndarray,
                   frame_index: np.ndarray, ep: int, index: np.ndarray, task_index: np.ndarray) -> dict[str, dict]:
    stats: dict[str, dict] = {}
    for key, arr in frames.items():  # (T, H, W, 3) uint8 -> per channel (3, 1, 1) in [0, 1]
        chw = arr.transpose(0, 3, 1, 2)
        s = feature_stats(chw, axis=(0, 2, 3), keepdims=True)
        stats[key] = {k: (v if k == "count" else v[0] / 255.0) for k, v in s.items()}
    stats["observation.state"] = feature_stats(state, axis=0, keepdims=False)
    stats["action"] = feature_stats(action, axis=0, keepdims=False)
    for key, arr in (("timestamp", ts), ("frame_index", frame_index), ("episode_index", np.full(len(ts), ep)),
                     ("index", index), ("task_index", task_index)):
        stats[key] = feature_stats(arr.reshape(-1), axis=0, keepdims=True)
    return stats


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


class _Rolling:
    """chunk-XXX/file-XXX bookkeeping: the next file after ``limit_mb``, the next chunk after ``chunks_size`` files."""

    def __init__(self, chunks_size: int, limit_mb: float):
        self.chunk, self.file, self.chunks_size, self.limit = 0, 0, chunks_size, limit_mb * 1024 * 1024

    def full(self, path: Path) -> bool:
        return path.is_file() and path.stat().st_size >= self.limit

    def advance(self) -> None:
        self.file += 1
        if self.file >= self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0


class _VideoStream:
    def __init__(self, root: Path, key: str, open_video, size: tuple[int, int], opts: LeRobotOptions):
        self.root, self.key, self.open_video, self.size, self.opts = root, key, open_video, size, opts
        self.roll = _Rolling(opts.chunks_size, opts.video_files_size_in_mb)
        self.writer, self.frames = None, 0

    def path(self) -> Path:
        return self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.roll.chunk, file_index=self.roll.file)

    def episode(self, frames: np.ndarray) -> dict:
        if self.writer is not None and self.roll.full(self.path()):
            self.close()
            self.roll.advance()
        if self.writer is None:
            self.path().parent.mkdir(parents=True, exist_ok=True)
            h, w = self.size
            self.writer = self.open_video(self.path(), w, h, self.opts.fps, self.opts.crf, self.opts.gop)
            self.frames = 0
        start = self.frames
        for f in frames:
            self.writer.write(f)
        self.frames += len(frames)
        fps = float(self.opts.fps)
        return {f"videos/{self.key}/chunk_index": self.roll.chunk, f"videos/{self.key}/file_index": self.roll.file,
                f"videos/{self.key}/from_timestamp": start / fps, f"videos/{self.key}/to_timestamp": self.frames / fps}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _ParquetStream:
    def __init__(self, root: Path, template: str, schema, roll: _Rolling):
        self.root, self.template, self.schema, self.roll, self.writer = root, template, schema, roll, None

    def path(self) -> Path:
        return self.root / self.template.format(chunk_index=self.roll.chunk, file_index=self.roll.file)

    def ready(self) -> tuple[int, int]:
        """(chunk, file) the next write goes to: the next file once this one is full."""
        if self.writer is not None and self.roll.full(self.path()):
            self.close()
            self.roll.advance()
        return self.roll.chunk, self.roll.file

    def write(self, table) -> tuple[int, int]:
        import pyarrow.parquet as pq

        where = self.ready()
        if self.writer is None:
            self.path().parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path(), table.schema if self.schema is None else self.schema, compression="snappy")
        self.writer.write_table(table if self.schema is None else table.cast(self.schema))
        return where

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _episodes(data_dir: Path):
    """(episode id, rows sorted by step) of every shard, shard by shard (a shard's episodes in order)."""
    import pyarrow.parquet as pq

    for path in shard_paths(data_dir):
        table = pq.read_table(path)
        if EE_TARGETS not in table.column_names:
            raise DatasetError(f"shard {path} has no {EE_TARGETS} column (written before the LeRobot export existed): the action "
                               "cannot be exported. Regenerate it with `embodied datagen` (same settings, a new out=)")
        rows = table.to_pylist()
        groups: "OrderedDict[str, list[dict]]" = OrderedDict()
        for r in rows:
            groups.setdefault(r["episode"], []).append(r)
        for episode, items in groups.items():
            yield episode, sorted(items, key=lambda r: r["step"])


def _tasks_table(tasks: dict[str, int]):
    """meta/tasks.parquet as pandas writes a DataFrame indexed by ``task`` with a ``task_index`` column."""
    pa = _arrow()
    names = list(tasks)
    table = pa.table({"task_index": pa.array([tasks[t] for t in names], pa.int64()), "task": pa.array(names, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def export_lerobot(data_dir: str | Path, out_dir: str | Path, open_video: Callable, opts: Optional[LeRobotOptions] = None,
                   overwrite: bool = False, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Write the demonstrations in ``data_dir`` as a LeRobotDataset v3.0 in ``out_dir``; returns info.json.

    ``open_video(path, width, height, fps, crf, gop)`` returns a writer with ``write(rgb)`` and ``close()``
    (``embodied.commands.video.H264Writer``). ``progress(n)`` is called after each episode.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    opts = opts or LeRobotOptions()
    if opts.fps < 1 or opts.chunks_size < 1 or opts.data_files_size_in_mb <= 0 or opts.video_files_size_in_mb <= 0:
        raise ConfigError("fps, chunks_size and the file sizes must be positive")
    data_dir, root = Path(data_dir), Path(out_dir)
    paths = shard_paths(data_dir)  # named errors for a missing or empty data folder
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise ConfigError(f"{root} is not empty; choose a new out=<dir> or pass overwrite=true")
        shutil.rmtree(root)
    first = pq.read_table(paths[0], columns=["cameras", "frames", "state"]).slice(0, 1).to_pylist()[0]
    cameras = list(first["cameras"])
    h, w = decode_image(first["frames"][0]).shape[:2]
    if h % 2 or w % 2:
        raise ConfigError(f"H.264 (yuv420p) videos need an even frame size; the shards hold {w}x{h} frames")
    state_dim, action_dim = len(first["state"]), len(EE_TARGET_NAMES)
    video_keys = [f"observation.images.{c}" for c in cameras]
    schema = data_schema(opts, state_dim, action_dim)
    data = _ParquetStream(root, DATA_PATH, schema, _Rolling(opts.chunks_size, opts.data_files_size_in_mb))
    meta = _ParquetStream(root, EPISODES_PATH, None, _Rolling(opts.chunks_size, opts.data_files_size_in_mb))
    videos = {k: _VideoStream(root, k, open_video, (h, w), opts) for k in video_keys}
    tasks: dict[str, int] = {}
    all_stats: list[dict] = []
    index = episode = 0
    fps = float(opts.fps)
    try:
        for name, rows in _episodes(data_dir):
            n = len(rows)
            if [list(r["cameras"]) for r in rows] != [cameras] * n:
                raise DatasetError(f"episode {name}: its cameras differ from {cameras}; export shards of one camera setup at a time")
            instruction = rows[0]["instruction"]
            task_index = tasks.setdefault(instruction, len(tasks))
            frames = {k: np.stack([decode_image(r["frames"][i]) for r in rows]) for i, k in enumerate(video_keys)}
            for k, arr in frames.items():
                if arr.shape[1:3] != (h, w):
                    raise DatasetError(f"episode {name}: {k} frames are {arr.shape[2]}x{arr.shape[1]}, not {w}x{h}")
            state = np.asarray([r["state"] for r in rows], np.float32)
            action = np.asarray([r[EE_TARGETS] for r in rows], np.float32)
            ts = (np.arange(n) / fps).astype(np.float32)
            frame_index, idx = np.arange(n, dtype=np.int64), np.arange(index, index + n, dtype=np.int64)
            cols: dict[str, Any] = {
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), state_dim),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(action.reshape(-1)), action_dim),
                "timestamp": pa.array(ts), "frame_index": pa.array(frame_index), "episode_index": pa.array(np.full(n, episode, np.int64)),
                "index": pa.array(idx), "task_index": pa.array(np.full(n, task_index, np.int64)),
            }
            if opts.language:
                persistent = []
                for i, r in enumerate(rows):  # the plan as it stood at each re-planning point, and the step taken
                    step = r["target"].split(";")[0].strip()
                    persistent.append({"role": "assistant", "content": r["target"], "style": "plan", "timestamp": float(ts[i]),
                                       "camera": None, "tool_calls": None})
                    persistent.append({"role": "assistant", "content": step, "style": "subtask", "timestamp": float(ts[i]),
                                       "camera": None, "tool_calls": None})
                (p_type, e_type), (p_str, e_str) = language_row_types(), language_row_types(pa.string())
                # built with JSON as plain strings (all null here), then cast to the JSON extension type
                cols["language_persistent"] = pa.array([persistent] * n, p_str).cast(p_type)
                cols["language_events"] = pa.array([[] for _ in range(n)], e_str).cast(e_type)
            chunk, file = data.write(pa.table(cols, schema=schema))
            ep_meta: dict[str, Any] = {
                "episode_index": episode, "tasks": [instruction], "length": n,
                "data/chunk_index": chunk, "data/file_index": file,
                "dataset_from_index": index, "dataset_to_index": index + n,
            }
            for k in video_keys:
                ep_meta.update(videos[k].episode(frames[k]))
            stats = _episode_stats(frames, state, action, ts, frame_index, episode, idx, np.full(n, task_index))
            all_stats.append(stats)
            ep_meta["meta/episodes/chunk_index"], ep_meta["meta/episodes/file_index"] = meta.ready()
            for feat, s in stats.items():
                for stat, v in s.items():
                    ep_meta[f"stats/{feat}/{stat}"] = _plain(np.asarray(v))
            # ours, for finding the source: the shard's episode id, task family, level and seed
            ep_meta.update({"embodied/episode": name, "embodied/task": rows[0]["task"], "embodied/level": rows[0]["level"],
                            "embodied/seed": int(rows[0]["seed"])})
            meta.write(pa.Table.from_pylist([ep_meta]))
            index += n
            episode += 1
            if progress:
                progress(1)
    finally:
        data.close()
        meta.close()
        for v in videos.values():
            v.close()
    if episode == 0:
        raise DatasetError(f"no episodes in {data_dir}")
    features: dict[str, dict] = {}
    for k in video_keys:
        features[k] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                       "info": {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                                "video.is_depth_map": False, "video.fps": opts.fps, "video.channels": 3, "has_audio": False,
                                "is_depth_map": False}}
    features["observation.state"] = {"dtype": "float32", "shape": [state_dim], "names": list(STATE_NAMES[:state_dim])}
    features["action"] = {"dtype": "float32", "shape": [action_dim], "names": list(EE_TARGET_NAMES)}
    features.update(DEFAULT_FEATURES)
    if opts.language:
        features.update(LANGUAGE_FEATURES)
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": opts.robot_type, "total_episodes": episode, "total_frames": index,
        "total_tasks": len(tasks), "chunks_size": opts.chunks_size, "data_files_size_in_mb": opts.data_files_size_in_mb,
        "video_files_size_in_mb": opts.video_files_size_in_mb, "fps": opts.fps, "splits": {"train": f"0:{episode}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if video_keys else None, "features": features,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    stats = {k: aggregate_stats([s[k] for s in all_stats]) for k in all_stats[0]}
    (root / "meta" / "stats.json").write_text(json.dumps(_plain(stats), indent=4))
    pq.write_table(_tasks_table(tasks), root / "meta" / "tasks.parquet")
    return info
