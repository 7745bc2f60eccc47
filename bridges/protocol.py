"""Bridge messages: a msgpack header frame followed by raw binary frames. No pickle.

A ZeroMQ multipart message is ``[header, blob0, blob1, ...]`` (the server's ROUTER socket
sees the peer identity in front). The header is a msgpack map with at least
``v`` (protocol version), ``type``, ``robot``, ``seq`` and ``t`` (sender clock, seconds);
``header["arrays"]`` describes the blobs in order (see ``bridges.codec``). The full list
of types, fields and error codes is in docs/protocol.md.

Hot path: ``ObservationEncoder`` packs the parts of an observation header that do not
change between observations of one robot (version, type, robot id, array specs) once and
joins them with the parts that do (seq, clocks, texts): one small ``packb`` per message.
``read_observation`` checks an observation against a ``SpecCache`` (array specs parsed
once per camera layout, strictly compared) and builds zero-copy numpy views on the
received frames; JPEG frames are size-checked from their own header there and decoded
later (``finish_jpegs``), so that the server can decode them off its socket loop.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

import msgpack
import numpy as np
from zmq import Frame as zmq_Frame

from bridges.codec import SpecCache, check_jpeg, decode_jpeg, decode_raw, encode_jpeg
from embodied.core.errors import ProtocolError
from embodied.core.observation import Observation

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
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
    # admission and robot ids (see docs/protocol.md, "Robot ids and connections", "Queueing")
    "busy", "out_of_order", "robot_id_taken", "too_many_robots", "superseded", "robot_id_claimed",
)
TIMING_FIELDS = ("recv", "send", "decode_ms", "queue_ms", "infer_ms", "elapsed_ms")
_MAX_TEXT = 4096
_MAX_LIST = 512
# msgpack limits for headers: no ext types, no huge containers, string map keys only
_unpack_header = functools.partial(
    msgpack.unpackb, raw=False, strict_map_key=True, use_list=True, max_bin_len=MAX_HEADER_BYTES,
    max_str_len=MAX_HEADER_BYTES, max_array_len=65536, max_map_len=65536, max_ext_len=0,
)
_packb = msgpack.Packer(use_bin_type=True).pack  # one Packer: no per-call option parsing


def pack(header: dict, blobs=()) -> list:
    """Frames for ``header`` (``v`` and ``t`` filled in) and its blobs."""
    header.setdefault("v", PROTOCOL_VERSION)
    header.setdefault("t", time.time())
    return [_packb(header), *blobs]


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
    return parse_header(bufs[0], len(bufs) - 1, total, max_bytes, expect), bufs[1:]


def parse_header(buf, n_blobs: int, total: int, max_bytes: int = MAX_MESSAGE_BYTES, expect: tuple[str, ...] = REQUEST_TYPES) -> dict:
    """The checked header of a message whose header frame is ``buf`` (bytes-like) and whose
    ``n_blobs`` binary frames and header add up to ``total`` bytes."""
    if len(buf) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(buf)} bytes; the limit is {MAX_HEADER_BYTES}", code="too_large")
    try:
        header = _unpack_header(buf)
    except Exception as e:  # msgpack raises several types on garbage
        raise ProtocolError(f"header is not valid msgpack ({type(e).__name__}: {e})", code="bad_header") from None
    if type(header) is not dict:
        raise ProtocolError(f"header must be a msgpack map, got {type(header).__name__}", code="bad_header")
    try:
        _check_header(header, n_blobs, total, max_bytes, expect)
    except ProtocolError as e:  # let the error reply echo the request's seq when it has one
        seq = header.get("seq")
        e.seq = seq if _is_int(seq) and 0 <= seq < 2**63 else 0
        raise
    return header


def _check_header(header: dict, n_blobs: int, total: int, max_bytes: int, expect: tuple[str, ...]) -> None:
    if total > max_bytes:
        raise ProtocolError(f"message is {total} bytes; the limit is {max_bytes} (send JPEG frames or smaller images)", code="too_large")
    v = header.get("v")
    if type(v) is not int or v not in SUPPORTED_VERSIONS:
        spoken = ", ".join(map(str, SUPPORTED_VERSIONS))
        e = ProtocolError(f"protocol version {v!r} not supported; this end speaks version {spoken} "
                          "(upgrade the older side)", code="bad_version")
        e.extra = {"versions": list(SUPPORTED_VERSIONS)}
        raise e
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
    arrays = header.get("arrays")
    if arrays is None:
        if n_blobs:
            raise ProtocolError(f"header describes no arrays but {n_blobs} binary frames followed", code="bad_frames")
    elif type(arrays) is not list or len(arrays) != n_blobs:
        n = len(arrays) if type(arrays) is list else "no"
        raise ProtocolError(f"header describes {n} arrays but {n_blobs} binary frames followed", code="bad_frames")


def _is_int(x) -> bool:
    return type(x) is int


def _is_num(x) -> bool:
    t = type(x)
    return t is float and math.isfinite(x) or t is int


def _text_list(x, field: str) -> list[str]:
    if type(x) is not list or len(x) > _MAX_LIST:
        raise ProtocolError(f"observation '{field}' must be a list of at most {_MAX_LIST} texts", code="bad_observation")
    for s in x:
        if type(s) is not str or len(s) > _MAX_TEXT:
            raise ProtocolError(f"observation '{field}' must be a list of at most {_MAX_LIST} texts", code="bad_observation")
    return x


# ---------------------------------------------------------------- observations


def _pairs(*kv) -> bytes:
    """msgpack bytes of ``k1, v1, k2, v2, ...`` without a container header (to splice into a map)."""
    packed = _packb(list(kv))
    n = len(kv)
    return packed[1 if n < 16 else 3:]  # fixarray (1 byte) or array16 (3 bytes) header


def _map_header(n: int) -> bytes:
    return bytes((0x80 | n,)) if n < 16 else b"\xde" + n.to_bytes(2, "big")


class ObservationEncoder:
    """Frames of ``observation`` requests for one robot id and codec.

    The array specs of a camera layout (names, shapes, dtypes) are packed once, with the
    fields that never change; each message then packs only seq, clocks and texts. Raw
    blobs are views on the observation's arrays (the socket copies them when sending).
    """

    def __init__(self, robot: str, codec: str = "raw", jpeg_quality: int = 90):
        if codec not in ("raw", "jpeg"):
            raise ProtocolError(f"codec {codec!r} unknown; use raw or jpeg", code="bad_codec")
        self.robot, self.codec, self.jpeg_quality = robot, codec, int(jpeg_quality)
        self._layout: tuple | None = None
        self._prefix = b""

    def _spec_prefix(self, layout: tuple) -> bytes:
        specs = [{"role": role, "name": name, "dtype": dtype.name, "shape": list(shape), "codec": codec}
                 for role, name, shape, dtype, codec in layout]
        return _pairs("v", PROTOCOL_VERSION, "type", "observation", "robot", self.robot, "arrays", specs)

    def encode(self, obs: Observation, seq: int, deadline_ms: float | None = None) -> list:
        jpeg = self.codec == "jpeg"
        layout, blobs = [], []
        for name, img in obs.frames.items():
            if type(img) is not np.ndarray:
                img = np.asarray(img)
            if jpeg:
                blobs.append(encode_jpeg(img, name, self.jpeg_quality))
            else:
                if not img.flags.c_contiguous:
                    img = np.ascontiguousarray(img)
                blobs.append(img.data.cast("B") if img.size else b"")
            layout.append(("frame", name, img.shape, img.dtype, self.codec))
        for name, d in obs.depth.items():
            if type(d) is not np.ndarray or d.dtype not in (np.float32, np.uint16):
                d = np.asarray(d, dtype=np.float32)
            if not d.flags.c_contiguous:
                d = np.ascontiguousarray(d)
            blobs.append(d.data.cast("B") if d.size else b"")
            layout.append(("depth", name, d.shape, d.dtype, "raw"))
        state = obs.state
        if type(state) is not np.ndarray or not state.flags.c_contiguous:
            state = np.ascontiguousarray(state)
        blobs.append(state.data.cast("B") if state.size else b"")
        layout.append(("state", "state", state.shape, state.dtype, "raw"))
        layout = tuple(layout)
        if layout != self._layout:
            self._prefix, self._layout = self._spec_prefix(layout), layout
        meta = {"instruction": obs.instruction, "timestamp": float(obs.timestamp), "seq": int(obs.seq)}
        if obs.history:
            meta["history"] = list(obs.history)
        if obs.detections:
            meta["detections"] = list(obs.detections)
        if obs.relations:
            meta["relations"] = dict(obs.relations)
        if obs.privileged is not None:
            meta["privileged"] = obs.privileged
        if deadline_ms is None:
            tail = _pairs("seq", seq, "t", time.time(), "obs", meta)
            return [b"".join((b"\x87", self._prefix, tail)), *blobs]
        tail = _pairs("seq", seq, "t", time.time(), "obs", meta, "deadline_ms", float(deadline_ms))
        return [b"".join((b"\x88", self._prefix, tail)), *blobs]


_encoders: dict[tuple, ObservationEncoder] = {}


def observation_message(
    obs: Observation, robot: str, seq: int, codec: str = "raw", jpeg_quality: int = 90,
    deadline_ms: float | None = None,
) -> list:
    """Frames of an ``observation`` request."""
    key = (robot, codec, jpeg_quality)
    enc = _encoders.get(key)
    if enc is None:
        if len(_encoders) > 64:
            _encoders.clear()
        enc = _encoders[key] = ObservationEncoder(robot, codec, jpeg_quality)
    return enc.encode(obs, seq, deadline_ms)


_default_specs = SpecCache()


def read_observation(header: dict, blobs: list, specs: SpecCache | None = None,
                     max_decoded_bytes: int | None = None) -> tuple[Observation, list, int]:
    """The ``Observation`` of an ``observation`` request, except its JPEG frames.

    Returns ``(observation, jpegs, decoded bytes)``: raw arrays are read-only views on ``blobs``; each JPEG
    frame has been size-checked from its own header and stands as ``None`` in
    ``observation.frames`` until ``finish_jpegs(observation, jpegs)`` decodes it.
    ``max_decoded_bytes`` bounds the decoded size of all arrays together.
    """
    meta = header.get("obs")
    if type(meta) is not dict:
        raise ProtocolError("observation message needs an 'obs' map", code="bad_header")
    arrays = header.get("arrays")
    if arrays is None:
        raise ProtocolError("observation message needs 'arrays' (frames and the state vector)", code="bad_header")
    instruction = meta.get("instruction")
    if type(instruction) is not str or len(instruction) > _MAX_TEXT:
        raise ProtocolError(f"observation 'instruction' must be text of at most {_MAX_TEXT} characters", code="bad_observation")
    history = meta.get("history")
    history = [] if history is None else _text_list(history, "history")
    detections = meta.get("detections")
    detections = [] if detections is None else _text_list(detections, "detections")
    relations = meta.get("relations")
    if relations is None:
        relations = {}
    elif (type(relations) is not dict or len(relations) > len(detections)
            or not all(type(k) is str and type(v) is str and k in detections and len(v) <= _MAX_TEXT for k, v in relations.items())):
        raise ProtocolError("observation 'relations' must map detected object names to text", code="bad_observation")
    timestamp, oseq = meta.get("timestamp"), meta.get("seq", 0)
    if not _is_num(timestamp) or type(oseq) is not int:
        raise ProtocolError("observation 'timestamp' must be seconds and 'seq' an integer", code="bad_observation")
    privileged = meta.get("privileged")
    if privileged is not None and type(privileged) is not dict:
        raise ProtocolError("observation 'privileged' must be a map or nil", code="bad_observation")
    fields, nbytes = (specs or _default_specs).check(arrays)
    if max_decoded_bytes is not None and nbytes > max_decoded_bytes:
        raise ProtocolError(f"the arrays of this observation decode to {nbytes} bytes; the limit is {max_decoded_bytes}",
                            code="too_large")
    frames, depth, state, jpegs = {}, {}, None, []
    for f, blob in zip(fields, blobs):
        role, name = f[0], f[1]
        if role == "frame":
            if name in frames:
                raise ProtocolError(f"frame {name!r} sent twice", code="bad_observation")
            if f[4] == "raw":
                frames[name] = decode_raw(f, blob)
            else:
                check_jpeg(f, blob)  # reads the JPEG's own size: a bomb is refused here, undecoded
                frames[name] = None
                jpegs.append((f, blob))
        elif role == "state":
            if state is not None:
                raise ProtocolError("more than one state vector", code="bad_observation")
            state = decode_raw(f, blob)
        else:
            if name in depth:
                raise ProtocolError(f"depth {name!r} sent twice", code="bad_observation")
            depth[name] = decode_raw(f, blob)
    if state is None:
        raise ProtocolError("observation has no state vector", code="bad_observation")
    # check_specs/decode_raw already enforced what Observation.validate checks for frames, depth and the
    # state's rank and dtype; the rest is checked here without the generic (slower) path.
    if not frames:
        raise ProtocolError("observation has no camera frame", code="bad_observation")
    if not math.isfinite(sum(state.tolist())) and not np.isfinite(state).all():  # a NaN or inf makes the sum non-finite
        raise ProtocolError("observation.state contains NaN or inf", code="bad_observation")
    obs = Observation(frames, state, instruction, history, depth, detections, float(timestamp), oseq, privileged, relations)
    return obs, jpegs, nbytes


def finish_jpegs(obs: Observation, jpegs: list) -> Observation:
    """Decode the JPEG frames ``read_observation`` left out (on any thread; opencv releases the GIL)."""
    for fields, blob in jpegs:
        obs.frames[fields[1]] = decode_jpeg(fields, blob)
    return obs


def decode_observation(header: dict, blobs: list) -> Observation:
    """Rebuild and validate the ``Observation`` of an ``observation`` request."""
    obs, jpegs, _ = read_observation(header, blobs)
    return finish_jpegs(obs, jpegs)


# ---------------------------------------------------------------- replies


def error_message(code: str, message: str, robot: str = "server", seq: int = 0, **extra: Any) -> list:
    return pack({"type": "error", "robot": robot, "seq": seq, "code": code, "message": message, **extra})


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, code="bad_reply")


def check_reply(header: dict) -> dict:
    """Field checks for server replies (the client side of ``unpack``): every field the robot
    side reads has the type it expects, so a malformed reply is a ``ProtocolError`` here and
    not a ``TypeError`` later in a control loop."""
    kind = header["type"]
    timing = header.get("server")
    if timing is not None:
        if type(timing) is not dict:
            raise _bad("reply 'server' timing must be a map")
        for k in TIMING_FIELDS:
            v = timing.get(k)
            if v is not None and not (type(v) is float and v - v == 0.0 or type(v) is int):  # v - v: 0.0 only if finite
                raise _bad(f"reply 'server.{k}' must be a finite number, got {v!r}"[:200])
    if kind == "step":
        index, text, final = header.get("index"), header.get("text"), header.get("final", False)
        if type(text) is not str or len(text) > _MAX_TEXT or type(index) is not int or index < 0 or type(final) is not bool:
            raise _bad("a 'step' reply needs 'text' (str), 'index' (int >= 0) and 'final' (bool)")
    elif kind == "error":
        if type(header.get("code")) is not str or type(header.get("message")) is not str:
            raise _bad("an 'error' reply needs 'code' and 'message' (text)")
    elif kind == "end":
        n = header.get("n_steps")
        if type(n) is not int or n < 0:
            raise _bad("an 'end' reply needs 'n_steps' (int >= 0)")
    elif kind == "metadata":
        meta = header.get("metadata")
        if type(meta) is not dict or type(meta.get("planner")) is not str:
            raise _bad("a 'metadata' reply needs a 'metadata' map with the planner's name")
        cams, size = meta.get("cameras"), meta.get("state_size")
        if cams is not None and (type(cams) is not dict or not all(
                type(k) is str and type(v) is list and len(v) == 2 and all(type(x) is int for x in v) for k, v in cams.items())):
            raise _bad("metadata 'cameras' must map camera names to [H, W] or be nil")
        if size is not None and type(size) is not int:
            raise _bad("metadata 'state_size' must be an integer")
        if type(meta.get("privileged", False)) is not bool:
            raise _bad("metadata 'privileged' must be a bool")
    elif kind == "heartbeat":
        if type(header.get("health", {})) is not dict:
            raise _bad("a 'heartbeat' reply's 'health' must be a map")
    elif kind == "ack":
        if type(header.get("ack")) is not str:
            raise _bad("an 'ack' reply needs 'ack' (text)")
    elif kind == "estop":
        if type(header.get("by", "")) is not str:
            raise _bad("an 'estop' message's 'by' must be a robot id")
    return header
