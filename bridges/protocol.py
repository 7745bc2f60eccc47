"""Bridge messages: a msgpack header frame followed by raw binary frames. No pickle.

A ZeroMQ multipart message is ``[header, blob0, blob1, ...]`` (the server's ROUTER socket
sees the peer identity in front). The header is a msgpack map with at least
``v`` (protocol version), ``type``, ``robot``, ``seq`` and ``t`` (sender clock, seconds);
``header["arrays"]`` describes the blobs in order (see ``bridges.codec``). The full list
of types, fields and error codes is in docs/protocol.md.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import msgpack
import numpy as np
from zmq import Frame as zmq_Frame

from bridges.codec import check_specs, decode_checked, encode_array
from embodied.core.errors import ProtocolError
from embodied.core.observation import Observation

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # whole message (header + blobs); configurable per server
MAX_HEADER_BYTES = 1024 * 1024

# robot (or operator) -> server
REQUEST_TYPES = ("hello", "observation", "cancel", "heartbeat", "reset", "estop")
# server -> robot
REPLY_TYPES = ("metadata", "step", "end", "heartbeat", "ack", "estop", "error")
ERROR_CODES = (
    "too_large", "bad_header", "bad_version", "unknown_type", "bad_frames", "bad_shape", "bad_dtype",
    "bad_codec", "bad_jpeg", "codec_unavailable", "bad_observation", "deadline_exceeded", "planner_error",
    "unknown_robot", "internal",
)
_MAX_TEXT = 4096
_MAX_LIST = 512
# msgpack limits for headers: no ext types, no huge containers, string map keys only
_unpack_header = functools.partial(
    msgpack.unpackb, raw=False, strict_map_key=True, use_list=True, max_bin_len=MAX_HEADER_BYTES,
    max_str_len=MAX_HEADER_BYTES, max_array_len=65536, max_map_len=65536, max_ext_len=0,
)


def pack(header: dict, blobs=()) -> list:
    """Frames for ``header`` (``v`` and ``t`` filled in) and its blobs."""
    header.setdefault("v", PROTOCOL_VERSION)
    header.setdefault("t", time.time())
    return [msgpack.packb(header, use_bin_type=True), *blobs]


def unpack(frames, max_bytes: int = MAX_MESSAGE_BYTES, expect: tuple[str, ...] = REQUEST_TYPES) -> tuple[dict, list]:
    """Decode and check the common header fields; return ``(header, blobs)``.

    Raises ``ProtocolError`` with a code from ``ERROR_CODES``; never anything else.
    """
    bufs, total = [], 0
    try:
        for f in frames:  # zmq.Frame (zero-copy receive) or any bytes-like object
            b = f.buffer if type(f) is zmq_Frame else memoryview(f)
            bufs.append(b)
            total += b.nbytes
    except TypeError as e:
        raise ProtocolError(f"message frames are not bytes: {e}", code="bad_frames") from None
    if not bufs:
        raise ProtocolError("empty message; send [msgpack header, blobs...]", code="bad_frames")
    if bufs[0].nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {bufs[0].nbytes} bytes; the limit is {MAX_HEADER_BYTES}", code="too_large")
    try:
        header = _unpack_header(bufs[0])
    except Exception as e:  # msgpack raises several types on garbage
        raise ProtocolError(f"header is not valid msgpack ({type(e).__name__}: {e})", code="bad_header") from None
    if type(header) is not dict:
        raise ProtocolError(f"header must be a msgpack map, got {type(header).__name__}", code="bad_header")
    try:
        _check_header(header, len(bufs) - 1, total, max_bytes, expect)
    except ProtocolError as e:  # let the error reply echo the request's seq when it has one
        seq = header.get("seq")
        e.seq = seq if _is_int(seq) and 0 <= seq < 2**63 else 0
        raise
    return header, bufs[1:]


def _check_header(header: dict, n_blobs: int, total: int, max_bytes: int, expect: tuple[str, ...]) -> None:
    if total > max_bytes:
        raise ProtocolError(f"message is {total} bytes; the limit is {max_bytes} (send JPEG frames or smaller images)", code="too_large")
    v = header.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {v!r} not supported; this end speaks version {PROTOCOL_VERSION} (upgrade the older side)",
            code="bad_version",
        )
    kind = header.get("type")
    if kind not in expect:
        raise ProtocolError(f"message type {kind!r} unknown here; expected one of {', '.join(expect)}", code="unknown_type")
    seq, robot, t = header.get("seq"), header.get("robot"), header.get("t")
    if type(seq) is not int or not 0 <= seq < 2**63:
        raise ProtocolError("header 'seq' must be a non-negative integer", code="bad_header")
    if type(robot) is not str or not 0 < len(robot) <= 128:
        raise ProtocolError("header 'robot' must be a robot id of 1..128 characters", code="bad_header")
    if not _is_num(t):
        raise ProtocolError("header 't' must be the sender's clock in seconds", code="bad_header")
    arrays = header.get("arrays", [])
    if type(arrays) is not list or len(arrays) != n_blobs:
        n = len(arrays) if type(arrays) is list else "no"
        raise ProtocolError(f"header describes {n} arrays but {n_blobs} binary frames followed", code="bad_frames")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x) -> bool:
    t = type(x)
    return t is float and math.isfinite(x) or t is int


def _text_list(x, field: str) -> list[str]:
    if type(x) is list and not x:
        return x
    if not isinstance(x, list) or len(x) > _MAX_LIST or not all(isinstance(s, str) and len(s) <= _MAX_TEXT for s in x):
        raise ProtocolError(f"observation '{field}' must be a list of at most {_MAX_LIST} texts", code="bad_observation")
    return x


# ---------------------------------------------------------------- observations


def observation_message(
    obs: Observation, robot: str, seq: int, codec: str = "raw", jpeg_quality: int = 90,
    deadline_ms: float | None = None,
) -> list:
    """Frames of an ``observation`` request."""
    specs, blobs = [], []
    for name, img in obs.frames.items():
        spec, blob = encode_array("frame", name, img, codec, jpeg_quality)
        specs.append(spec)
        blobs.append(blob)
    for name, d in obs.depth.items():
        spec, blob = encode_array("depth", name, np.asarray(d, dtype=np.float32))
        specs.append(spec)
        blobs.append(blob)
    spec, blob = encode_array("state", "state", obs.state)
    specs.append(spec)
    blobs.append(blob)
    header = {
        "type": "observation", "robot": robot, "seq": seq, "arrays": specs,
        "obs": {
            "instruction": obs.instruction, "history": list(obs.history), "detections": list(obs.detections),
            "relations": dict(obs.relations), "timestamp": float(obs.timestamp), "seq": int(obs.seq), "privileged": obs.privileged,
        },
    }
    if deadline_ms is not None:
        header["deadline_ms"] = float(deadline_ms)
    return pack(header, blobs)


def decode_observation(header: dict, blobs: list) -> Observation:
    """Rebuild and validate the ``Observation`` of an ``observation`` request."""
    meta = header.get("obs")
    if type(meta) is not dict:
        raise ProtocolError("observation message needs an 'obs' map", code="bad_header")
    instruction = meta.get("instruction")
    if type(instruction) is not str or len(instruction) > _MAX_TEXT:
        raise ProtocolError(f"observation 'instruction' must be text of at most {_MAX_TEXT} characters", code="bad_observation")
    history = _text_list(meta.get("history", []), "history")
    detections = _text_list(meta.get("detections", []), "detections")
    relations = meta.get("relations", {})
    if (type(relations) is not dict or len(relations) > len(detections)
            or not all(type(k) is str and type(v) is str and k in detections and len(v) <= _MAX_TEXT for k, v in relations.items())):
        raise ProtocolError("observation 'relations' must map detected object names to text", code="bad_observation")
    timestamp, oseq = meta.get("timestamp"), meta.get("seq", 0)
    if not _is_num(timestamp) or type(oseq) is not int:
        raise ProtocolError("observation 'timestamp' must be seconds and 'seq' an integer", code="bad_observation")
    privileged = meta.get("privileged")
    if privileged is not None and type(privileged) is not dict:
        raise ProtocolError("observation 'privileged' must be a map or nil", code="bad_observation")
    frames, depth, state = {}, {}, None
    for fields, blob in zip(check_specs(header["arrays"]), blobs):
        role, name, arr = decode_checked(fields, blob)
        if role == "state":
            if state is not None:
                raise ProtocolError("more than one state vector", code="bad_observation")
            state = arr
            continue
        target = frames if role == "frame" else depth
        if name in target:
            raise ProtocolError(f"{role} {name!r} sent twice", code="bad_observation")
        target[name] = arr
    if state is None:
        raise ProtocolError("observation has no state vector", code="bad_observation")
    # check_specs/decode_checked already enforced what Observation.validate checks for frames, depth and the
    # state's rank and dtype; the rest is checked here without the generic (slower) path.
    if not frames:
        raise ProtocolError("observation has no camera frame", code="bad_observation")
    if not np.isfinite(state).all():
        raise ProtocolError("observation.state contains NaN or inf", code="bad_observation")
    return Observation(frames, state, instruction, history, depth, detections, float(timestamp), oseq, privileged, relations)


# ---------------------------------------------------------------- replies


def error_message(code: str, message: str, robot: str = "server", seq: int = 0, **extra: Any) -> list:
    return pack({"type": "error", "robot": robot, "seq": seq, "code": code, "message": message, **extra})


def check_reply(header: dict) -> dict:
    """Field checks for server replies (the client side of ``unpack``)."""
    kind = header["type"]
    if kind == "step" and (not isinstance(header.get("text"), str) or not _is_int(header.get("index"))):
        raise ProtocolError("a 'step' reply needs 'text' and 'index'", code="bad_header")
    if kind == "error" and not (isinstance(header.get("code"), str) and isinstance(header.get("message"), str)):
        raise ProtocolError("an 'error' reply needs 'code' and 'message'", code="bad_header")
    timing = header.get("server", {})
    if not isinstance(timing, dict):
        raise ProtocolError("reply 'server' timing must be a map", code="bad_header")
    return header
