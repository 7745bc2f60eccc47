"""Arrays on the wire: each array is one binary frame described by a small spec in the header.

A spec is ``{"role", "name", "dtype", "shape", "codec"}``. ``codec`` is ``"raw"`` (the
array's C-order bytes, decoded without a copy) or ``"jpeg"`` (camera frames only; needs
opencv on both ends, imported only when a JPEG frame is encoded or decoded).
"""

from __future__ import annotations

import math

import numpy as np

from embodied.core.errors import ProtocolError

CODECS = ("raw", "jpeg")
# role -> (allowed dtypes, ndim, required last dim or None)
ROLES: dict[str, tuple[tuple[str, ...], int, int | None]] = {
    "frame": (("uint8",), 3, 3),  # (H, W, 3) RGB
    "depth": (("float32",), 2, None),  # (H, W) metres
    "state": (("float32", "float64"), 1, None),  # (S,)
}
MAX_SIDE = 8192  # largest image side / vector length accepted
_DTYPES = {n: np.dtype(n) for n in ("uint8", "float32", "float64")}
_NAMES = {d: n for n, d in _DTYPES.items()}  # dtype.name is slow on the hot path


def _cv2():
    try:
        import cv2  # optional, only for JPEG
    except ImportError as e:  # pragma: no cover - exercised on the robot-side CI venv
        raise ProtocolError(
            "JPEG frames need opencv on this computer (pip install opencv-python-headless); or send codec=raw",
            code="codec_unavailable",
        ) from e
    return cv2


def encode_array(role: str, name: str, array: np.ndarray, codec: str = "raw", jpeg_quality: int = 90):
    """Return ``(spec, blob)`` for one array. JPEG applies to ``frame`` arrays only."""
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if role == "frame" and codec == "jpeg":
        cv2 = _cv2()
        bgr = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)])
        if not ok:
            raise ProtocolError(f"could not JPEG-encode frame {name!r}", code="bad_jpeg")
        blob = buf.tobytes()
    else:
        codec = "raw"
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        blob = memoryview(array).cast("B") if array.size else b""
    dtype = _NAMES.get(array.dtype) or array.dtype.name
    spec = {"role": role, "name": name, "dtype": dtype, "shape": list(array.shape), "codec": codec}
    return spec, blob


def check_spec(spec) -> tuple[str, str, np.dtype, tuple[int, ...], str]:
    """Validate one array spec from a header; return its fields."""
    if not isinstance(spec, dict):
        raise ProtocolError("each entry of header['arrays'] must be a map", code="bad_header")
    role, name, dtype, shape, codec = (spec.get(k) for k in ("role", "name", "dtype", "shape", "codec"))
    if not isinstance(role, str) or role not in ROLES:
        raise ProtocolError(f"array role {role!r} unknown; roles are {', '.join(ROLES)}", code="bad_header")
    if not isinstance(name, str) or len(name) > 128:
        raise ProtocolError("array name must be text of at most 128 characters", code="bad_header")
    dtypes, ndim, last = ROLES[role]
    if dtype not in dtypes:
        raise ProtocolError(f"{role} {name!r}: dtype {dtype!r} not allowed; use {' or '.join(dtypes)}", code="bad_dtype")
    ok = isinstance(shape, list) and len(shape) == ndim and (last is None or shape[-1] == last)
    if ok:
        for s in shape:
            if type(s) is not int or not 1 <= s <= MAX_SIDE:
                ok = False
                break
    if not ok:
        want = f"{ndim} dimensions of 1..{MAX_SIDE}" + (f", last = {last}" if last else "")
        raise ProtocolError(f"{role} {name!r}: shape {shape!r} invalid; expected {want}", code="bad_shape")
    if codec not in CODECS or (codec == "jpeg" and role != "frame"):
        raise ProtocolError(f"{role} {name!r}: codec {codec!r} not allowed; use raw (or jpeg for frames)", code="bad_codec")
    return role, name, _DTYPES[dtype], tuple(shape), codec


_checked: list[tuple[list, list]] = []  # recently validated spec lists and their parsed fields


def check_specs(specs: list) -> list[tuple[str, str, np.dtype, tuple[int, ...], str]]:
    """``check_spec`` for each spec of a header. A robot sends the same specs every time, so
    the last few validated lists are remembered and an equal list is not parsed again."""
    for known, parsed in _checked:
        if known == specs:
            return parsed
    parsed = [check_spec(s) for s in specs]
    _checked.insert(0, ([dict(s) for s in specs], parsed))
    del _checked[16:]
    return parsed


def decode_array(spec, blob) -> tuple[str, str, np.ndarray]:
    """Return ``(role, name, array)``. Raw arrays are read-only views on the received bytes."""
    return decode_checked(check_spec(spec), blob)


def decode_checked(fields: tuple, blob) -> tuple[str, str, np.ndarray]:
    """``decode_array`` for a spec already checked by ``check_spec``/``check_specs``."""
    role, name, dtype, shape, codec = fields
    buf = memoryview(blob)
    if codec == "raw":
        expected = math.prod(shape) * dtype.itemsize
        if buf.nbytes != expected:
            raise ProtocolError(
                f"{role} {name!r}: {buf.nbytes} bytes for shape {list(shape)} {dtype.name}; expected {expected}",
                code="bad_shape",
            )
        return role, name, np.frombuffer(buf, dtype=dtype).reshape(shape)
    cv2 = _cv2()
    bgr = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR) if buf.nbytes else None
    if bgr is None:
        raise ProtocolError(f"frame {name!r}: not a decodable JPEG image", code="bad_jpeg")
    if bgr.shape != shape:
        raise ProtocolError(f"frame {name!r}: JPEG is {list(bgr.shape)}, header says {list(shape)}", code="bad_shape")
    return role, name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
