"""The wire format: observations survive a round trip; malformed messages get named errors."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges.protocol import (
    ERROR_CODES,
    PROTOCOL_VERSION,
    decode_observation,
    observation_message,
    pack,
    unpack,
)
from embodied.core.errors import ProtocolError
from tests.test_bridge_planners import observation


def _bytes(frames):
    return [bytes(f) for f in frames]


def test_observation_round_trip_is_exact():
    obs = observation(3, size=48, depth=True, privileged={"goal": {"a": [1, 2.5]}, "family": "stack"})
    obs.detections = ["red cube", "blue cube", "red bin"]
    obs.relations = {"red cube": "on blue cube", "blue cube": "on table"}
    header, blobs = unpack(_bytes(observation_message(obs, "r1", 7, deadline_ms=250)))
    assert header["v"] == PROTOCOL_VERSION and header["type"] == "observation"
    assert header["robot"] == "r1" and header["seq"] == 7 and header["deadline_ms"] == 250
    got = decode_observation(header, blobs)
    for name in obs.frames:
        np.testing.assert_array_equal(got.frames[name], obs.frames[name])
        assert got.frames[name].dtype == np.uint8
    np.testing.assert_array_equal(got.depth["front"], obs.depth["front"])
    np.testing.assert_array_equal(got.state, obs.state)
    assert (got.instruction, got.history, got.detections) == (obs.instruction, obs.history, obs.detections)
    assert (got.timestamp, got.seq, got.privileged) == (obs.timestamp, obs.seq, obs.privileged)
    assert got.relations == obs.relations


def test_jpeg_frames_round_trip_close_and_smaller():
    obs = observation(1, size=64)
    y, x = np.mgrid[0:64, 0:64]
    obs.frames = {"front": np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)}  # smooth image
    raw = _bytes(observation_message(obs, "r", 1))
    jpeg = _bytes(observation_message(obs, "r", 1, codec="jpeg", jpeg_quality=95))
    assert sum(map(len, jpeg)) < sum(map(len, raw)) / 2
    got = decode_observation(*unpack(jpeg))
    assert got.frames["front"].shape == (64, 64, 3)
    assert np.abs(got.frames["front"].astype(int) - obs.frames["front"]).mean() < 3.0


def _obs_message(**change):
    header, blobs = unpack(_bytes(observation_message(observation(0), "r", 1)))
    header.update(change)
    return [msgpack.packb(header), *blobs]


@pytest.mark.parametrize(
    "frames, code",
    [
        ([b"\xc1garbage"], "bad_header"),
        ([msgpack.packb([1, 2, 3])], "bad_header"),
        ([msgpack.packb({"v": 99, "type": "hello", "robot": "r", "seq": 1, "t": 0.0})], "bad_version"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "type": "launch", "robot": "r", "seq": 1, "t": 0.0})], "unknown_type"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "type": "hello", "robot": "", "seq": 1, "t": 0.0})], "bad_header"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "type": "hello", "robot": "r", "seq": -1, "t": 0.0})], "bad_header"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "type": "hello", "robot": "r", "seq": 1, "t": 0.0}), b"extra"], "bad_frames"),
        ([msgpack.packb({"v": PROTOCOL_VERSION, "type": "hello", "robot": "r", "seq": 1, "t": 0.0}), b"x" * 2000], "too_large"),
    ],
)
def test_malformed_headers_get_named_errors(frames, code):
    with pytest.raises(ProtocolError) as e:
        unpack(frames, max_bytes=1000)
    assert e.value.code == code and code in ERROR_CODES


def _spec_change(i, **kw):
    header, blobs = unpack(_bytes(observation_message(observation(0), "r", 1)))
    header["arrays"][i].update(kw)
    return header, blobs


@pytest.mark.parametrize(
    "change, code",
    [
        (dict(dtype="float64"), "bad_dtype"),
        (dict(shape=[32, 32, 4]), "bad_shape"),
        (dict(shape=[16, 32, 3]), "bad_shape"),  # bytes do not match the shape
        (dict(shape=[0, 32, 3]), "bad_shape"),
        (dict(role="audio"), "bad_header"),
        (dict(codec="png"), "bad_codec"),
        (dict(codec="jpeg"), "bad_jpeg"),  # raw bytes are not a JPEG
    ],
)
def test_bad_arrays_get_named_errors(change, code):
    header, blobs = _spec_change(0, **change)
    with pytest.raises(ProtocolError) as e:
        decode_observation(header, blobs)
    assert e.value.code == code


def test_remembered_specs_do_not_let_a_changed_spec_through():
    header, blobs = unpack(_bytes(observation_message(observation(0), "r", 1)))
    decode_observation(header, blobs)
    decode_observation(header, blobs)  # validated specs are remembered
    for bad, code in (([16, 32, 3], "bad_shape"), ([True, 32, 3], "bad_shape")):
        header["arrays"][0]["shape"] = bad  # the same list object, changed in place
        with pytest.raises(ProtocolError) as e:
            decode_observation(header, blobs)
        assert e.value.code == code


def test_bad_observation_fields_get_named_errors():
    header, blobs = unpack(_bytes(observation_message(observation(0), "r", 1)))
    for field, value in [("instruction", 5), ("history", "not a list"), ("timestamp", "now"), ("privileged", [1]),
                         ("relations", ["on table"]), ("relations", {"ghost cube": "on table"}), ("relations", {"red cube": 1})]:
        h = {**header, "obs": {**header["obs"], field: value}}
        with pytest.raises(ProtocolError) as e:
            decode_observation(h, blobs)
        assert e.value.code == "bad_observation", field
    state = np.full(15, np.nan, np.float32)
    h = {**header}
    blobs2 = list(blobs[:-1]) + [state.tobytes()]
    with pytest.raises(ProtocolError) as e:
        decode_observation(h, blobs2)
    assert e.value.code == "bad_observation" and "NaN" in str(e.value)


# Any bytes, any msgpack value as header, any number of blobs: only ProtocolError comes out.
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20) | st.binary(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.binary(max_size=64), min_size=1, max_size=4))
def test_random_bytes_only_raise_protocol_errors(frames):
    try:
        header, blobs = unpack(frames)
        if header["type"] == "observation":
            decode_observation(header, blobs)
    except ProtocolError as e:
        assert e.code in ERROR_CODES


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    obs_fields=st.dictionaries(st.sampled_from(["instruction", "history", "detections", "timestamp", "seq", "privileged"]), _values),
    spec=st.dictionaries(st.sampled_from(["role", "name", "dtype", "shape", "codec"]), _values | st.lists(st.integers(-2, 70), max_size=4)),
    blob=st.binary(max_size=64),
)
def test_mutated_observations_only_raise_protocol_errors(obs_fields, spec, blob):
    header, blobs = unpack(_bytes(observation_message(observation(0, size=4), "r", 1)))
    header["obs"].update(obs_fields)
    header["arrays"][0].update(spec)
    frames = [msgpack.packb(header, use_bin_type=True), blob, *blobs[1:]]
    try:
        h, b = unpack(frames)
        decode_observation(h, b)
    except ProtocolError as e:
        assert e.code in ERROR_CODES


def test_pack_fills_version_and_clock():
    h, blobs = unpack(pack({"type": "heartbeat", "robot": "r", "seq": 3}))
    assert h["v"] == PROTOCOL_VERSION and isinstance(h["t"], float) and blobs == []
