"""Arrays on the wire: each array is one binary frame described by a small spec in the header.

A spec is ``{"role", "name", "dtype", "shape", "codec"}``. ``codec`` is ``"raw"`` (the
array's C-order bytes, decoded without a copy) or ``"jpeg"`` (camera frames only; needs
opencv on both ends, imported only when a JPEG frame is encoded or decoded).

A JPEG's own header says how large the decoded image is; ``jpeg_size`` reads it (without
decoding) so that a file whose size differs from its spec is refused before any pixel is
decoded: a few hundred bytes can encode a 20000x20000 image (1.2 GB, seconds to decode).
"""

from __future__ import annotations

import math

import numpy as np

from embodied.core.errors import ProtocolError

CODECS = ("raw", "jpeg")
# role -> (allowed dtypes, ndim, required last dim or None)
ROLES: dict[str, tuple[tuple[str, ...], int, int | None]] = {
    "frame": (("uint8",), 3, 3),  # (H, W, 3) RGB
    "depth": (("float32", "uint16"), 2, None),  # (H, W) metres (float32) or millimetres (uint16, as depth cameras give it)
    "state": (("float32", "float64"), 1, None),  # (S,)
}
MAX_SIDE = 8192  # largest image side / vector length accepted
MAX_JPEG_SEGMENTS = 256  # markers read before the frame header at most (a real file has about ten)
_DTYPES = {n: np.dtype(n) for n in ("uint8", "uint16", "float32", "float64")}
_NAMES = {d: n for n, d in _DTYPES.items()}  # dtype.name is slow on the hot path
# JPEG start-of-frame markers: baseline, extended, progressive, lossless (Huffman and arithmetic);
# 0xC5-0xC7 and 0xCD-0xCF are hierarchical (several frames in one file) and refused, as is DHP (0xDE).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB))
_SOF_HIERARCHICAL = frozenset((0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF, 0xDE))
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length field


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
        blob = encode_jpeg(array, name, jpeg_quality)
    else:
        codec = "raw"
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        blob = memoryview(array).cast("B") if array.size else b""
    dtype = _NAMES.get(array.dtype) or array.dtype.name
    spec = {"role": role, "name": name, "dtype": dtype, "shape": list(array.shape), "codec": codec}
    return spec, blob


def encode_jpeg(array: np.ndarray, name: str, jpeg_quality: int = 90) -> bytes:
    cv2 = _cv2()
    bgr = cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)])
    if not ok:
        raise ProtocolError(f"could not JPEG-encode frame {name!r}", code="bad_jpeg")
    return buf.tobytes()


def check_spec(spec) -> tuple[str, str, np.dtype, tuple[int, ...], str, int]:
    """Validate one array spec from a header; return its fields ``(role, name, dtype, shape, codec, decoded bytes)``."""
    if type(spec) is not dict:
        raise ProtocolError("each entry of header['arrays'] must be a map", code="bad_header")
    role, name, dtype, shape, codec = (spec.get(k) for k in ("role", "name", "dtype", "shape", "codec"))
    if type(role) is not str or role not in ROLES:
        raise ProtocolError(f"array role {role!r} unknown; roles are {', '.join(ROLES)}", code="bad_header")
    if type(name) is not str or len(name) > 128:
        raise ProtocolError("array name must be text of at most 128 characters", code="bad_header")
    dtypes, ndim, last = ROLES[role]
    if type(dtype) is not str or dtype not in dtypes:
        raise ProtocolError(f"{role} {name!r}: dtype {dtype!r} not allowed; use {' or '.join(dtypes)}", code="bad_dtype")
    ok = type(shape) is list and len(shape) == ndim
    if ok:
        for s in shape:
            if type(s) is not int or not 1 <= s <= MAX_SIDE:  # type(...) is int: no floats, no True
                ok = False
                break
        ok = ok and (last is None or shape[-1] == last)
    if not ok:
        want = f"{ndim} dimensions of 1..{MAX_SIDE}" + (f", last = {last}" if last else "")
        raise ProtocolError(f"{role} {name!r}: shape {shape!r} invalid; expected {want}", code="bad_shape")
    if type(codec) is not str or codec not in CODECS or (codec == "jpeg" and role != "frame"):
        raise ProtocolError(f"{role} {name!r}: codec {codec!r} not allowed; use raw (or jpeg for frames)", code="bad_codec")
    dt = _DTYPES[dtype]
    return role, name, dt, tuple(shape), codec, math.prod(shape) * dt.itemsize


def same_specs(a: list, b: list) -> bool:
    """``a == b`` for spec lists, except that numbers must also have the same type: Python's ``==``
    finds ``[32.0, 32, 3]`` and ``[True, 32, 3]`` equal to ``[32, 32, 3]``; a shape must be ints."""
    if a != b:
        return False
    for spec in b:  # only 'shape' holds numbers; every other field is a str, equal only to a str
        for s in spec["shape"]:
            if type(s) is not int:
                return False
    return True


class SpecCache:
    """Parsed spec lists by content. A robot sends the same specs every time, so a list seen
    before is not parsed again; the strict comparison keeps the cache from accepting what
    ``check_spec`` refuses. Each entry also holds the decoded size of its arrays."""

    def __init__(self, size: int = 16):
        self.size = size
        self.entries: list[tuple[list, list, int]] = []

    def check(self, specs) -> tuple[list, int]:
        """``(fields per spec, decoded bytes of all arrays)``; raises ``ProtocolError``."""
        if type(specs) is not list:
            raise ProtocolError("header 'arrays' must be a list of array specs", code="bad_header")
        for known, parsed, nbytes in self.entries:
            if same_specs(known, specs):
                return parsed, nbytes
        parsed = [check_spec(s) for s in specs]
        nbytes = sum(f[5] for f in parsed)
        self.entries.insert(0, ([dict(s, shape=list(s["shape"])) for s in specs], parsed, nbytes))
        del self.entries[self.size:]
        return parsed, nbytes


_cache = SpecCache()


def check_specs(specs: list) -> list[tuple]:
    """``check_spec`` for each spec of a header (remembered, see ``SpecCache``)."""
    return _cache.check(specs)[0]


def decode_array(spec, blob) -> tuple[str, str, np.ndarray]:
    """Return ``(role, name, array)``. Raw arrays are read-only views on the received bytes."""
    return decode_checked(check_spec(spec), blob)


def decode_checked(fields: tuple, blob) -> tuple[str, str, np.ndarray]:
    """``decode_array`` for a spec already checked by ``check_spec``/``check_specs``."""
    role, name, codec = fields[0], fields[1], fields[4]
    if codec == "raw":
        return role, name, decode_raw(fields, blob)
    return role, name, decode_jpeg(fields, blob)


def decode_raw(fields: tuple, blob) -> np.ndarray:
    """A view (no copy) of a raw blob as the array its checked spec describes."""
    n = blob.nbytes if type(blob) is memoryview else len(blob)  # bytes, zmq.Frame: len() is the byte count
    if n != fields[5]:
        role, name, dtype, shape = fields[:4]
        raise ProtocolError(f"{role} {name!r}: {n} bytes for shape {list(shape)} {dtype.name}; expected {fields[5]}", code="bad_shape")
    return np.frombuffer(blob, dtype=fields[2]).reshape(fields[3])


def jpeg_size(blob) -> tuple[int, int, int]:
    """``(height, width, components)`` from a JPEG's frame header, without decoding anything.

    Raises ``ProtocolError`` (``bad_jpeg``) for anything that is not a single-frame JPEG.
    """
    buf = memoryview(blob)
    n = buf.nbytes
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        raise ProtocolError("not a JPEG file (no start-of-image marker)", code="bad_jpeg")
    i = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        if i >= n or buf[i] != 0xFF:
            break
        while i < n and buf[i] == 0xFF:  # a marker, possibly after fill bytes
            i += 1
        if i >= n:
            break
        marker = buf[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI or start of scan before any frame header
            break
        if i + 2 > n:
            break
        length = buf[i] << 8 | buf[i + 1]
        if length < 2 or i + length > n:
            break
        if marker in _SOF_HIERARCHICAL:
            raise ProtocolError("hierarchical (multi-frame) JPEG files are not accepted", code="bad_jpeg")
        if marker in _SOF:
            if length < 8:
                break
            height, width, comps = buf[i + 3] << 8 | buf[i + 4], buf[i + 5] << 8 | buf[i + 6], buf[i + 7]
            if height == 0 or width == 0 or comps not in (1, 3, 4):
                raise ProtocolError(f"JPEG frame header declares {height}x{width} with {comps} components", code="bad_jpeg")
            return height, width, comps
        i += length
    raise ProtocolError("JPEG file has no readable frame header (SOF) before its image data", code="bad_jpeg")


def check_jpeg(fields: tuple, blob) -> None:
    """Refuse a JPEG whose own header declares another size than its spec (before decoding)."""
    name, shape = fields[1], fields[3]
    try:
        height, width, _ = jpeg_size(blob)
    except ProtocolError as e:
        raise ProtocolError(f"frame {name!r}: {e}", code=e.code) from None
    if (height, width) != shape[:2]:
        raise ProtocolError(f"frame {name!r}: the JPEG declares {height}x{width}, the header says {list(shape)}; "
                            "not decoded", code="bad_shape")


def decode_jpeg(fields: tuple, blob) -> np.ndarray:
    """Decode a JPEG frame of a checked spec: its size is read from its header first (``check_jpeg``)."""
    check_jpeg(fields, blob)
    name, shape = fields[1], fields[3]
    cv2 = _cv2()
    flags = cv2.IMREAD_COLOR | getattr(cv2, "IMREAD_IGNORE_ORIENTATION", 0)  # the pixels as stored, no EXIF turn
    bgr = cv2.imdecode(np.frombuffer(blob, dtype=np.uint8), flags)
    if bgr is None:
        raise ProtocolError(f"frame {name!r}: not a decodable JPEG image", code="bad_jpeg")
    if bgr.shape != shape:
        raise ProtocolError(f"frame {name!r}: JPEG is {list(bgr.shape)}, header says {list(shape)}", code="bad_shape")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
