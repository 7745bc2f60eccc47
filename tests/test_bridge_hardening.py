"""The bridge against hostile or careless clients and servers: each probe defect of the hardening
issue, over real sockets with the server (and daemons) in their own processes.

1. one connection flooding many robot ids: bounded queue (``busy``), round robin, an id cap;
2. a robot id is bound to its connection (``robot_id_taken``; ``superseded`` on takeover);
3. a JPEG bomb is refused from its header, undecoded, and JPEGs decode off the socket loop;
4. the daemon survives malformed replies (``bad_reply``, backoff, watchdog still on duty);
5. with CurveZMQ an id is bound to a key; e-stops reach the real robot, not an impostor;
6. smaller: missing arrays, strict spec cache, exposed bind warning, versions, ordering.
"""

from __future__ import annotations

import collections
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from bridges.client import BridgeClient
from bridges.codec import SpecCache, jpeg_size
from bridges.protocol import ERROR_CODES, PROTOCOL_VERSION, decode_observation, observation_message, pack, unpack
from embodied.core.errors import BridgeTimeoutError, ProtocolError, RemoteError
from tests.test_bridge_planners import ROOT, _env, free_port, observation, start_daemon, start_server, stop
from tests.test_daemon import daemon_args, read_log, wait_for

P = "tests.test_bridge_planners:"


# ---------------------------------------------------------------- helpers


def status_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak (VmHWM), in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def raw_dealer(address: str, sndhwm: int = 1000) -> zmq.Socket:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, sndhwm)
    s.connect(address)
    return s


def replies(sock: zmq.Socket, seconds: float, until=None) -> list[dict]:
    """The headers of the replies that arrive on a raw socket within ``seconds`` (or until ``until(h)``)."""
    out, end = [], time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if not sock.poll(max(1, int(left * 1000))):
            break
        h = msgpack.unpackb(sock.recv_multipart()[0], raw=False)
        out.append(h)
        if until is not None and until(h):
            break
    return out


def hello_header(robot: str, seq: int = 1, **extra) -> list:
    return pack({"type": "hello", "robot": robot, "seq": seq, **extra})


# ---------------------------------------------------------------- 1. flood, fairness, bounded queue


def test_flood_of_robot_ids_from_one_connection_is_bounded_and_a_new_robot_is_served_at_once():
    # the probe: 4,000 224x224 observations under different robot ids on one connection, a planner at
    # 50 ms a step; before: 1,990 queued, 43 -> 359 MB, and a well-behaved robot got no reply in 10 s
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=6", "+planner_args.delay_s=0.05",
                                 "+planner_args.first_delay_s=0.05")
    flood = raw_dealer(address, sndhwm=64)
    try:
        with BridgeClient(address, "probe", timeout_s=10) as c:
            c.hello()
        base = status_mb(proc.pid)
        obs = observation(0, size=224)
        sent, end = 0, time.monotonic() + 3.0
        while time.monotonic() < end and sent < 4000:
            try:
                flood.send_multipart(observation_message(obs, f"flood{sent}", 1), zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                time.sleep(0.002)
        with BridgeClient(address, "good", timeout_s=10) as good:
            t0 = time.monotonic()
            stream = good.plan(observation(1))
            first = next(stream)
            waited = time.monotonic() - t0
            stream.close()
            health = good.heartbeat()
        assert first.step is not None and waited < 3.0, waited  # served after at most one of the flood's plans
        assert health["queued"] <= 64 and health["robots"] <= 16 + 2
        assert status_mb(proc.pid) - base < 120, (base, status_mb(proc.pid))
        codes = collections.Counter(h.get("code") for h in replies(flood, 1.0) if h["type"] == "error")
        assert codes["too_many_robots"] > 0, codes  # the flood was told why, by name
    finally:
        flood.close(0)
        stop(proc)


def test_round_robin_order_of_plans():
    """With one connection holding eight queued plans, another connection's plan runs second, not ninth."""
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=1", "+planner_args.first_delay_s=0.1")
    busy = raw_dealer(address)
    try:
        with BridgeClient(address, "b", timeout_s=10) as b:
            b.hello()
            for i in range(8):
                busy.send_multipart(observation_message(observation(i), f"a{i}", 1))
            time.sleep(0.03)
            b.send_observation(observation(9))
            order, end = [], time.monotonic() + 10
            poller = zmq.Poller()
            poller.register(busy, zmq.POLLIN)
            poller.register(b.sock, zmq.POLLIN)
            while len(order) < 9 and time.monotonic() < end:
                for sock, _ in poller.poll(200):
                    h = msgpack.unpackb(sock.recv_multipart()[0], raw=False)
                    if h["type"] == "step" and h.get("final"):
                        order.append(h["robot"])
        assert order.index("b") <= 1, order  # FIFO would make it ninth
    finally:
        busy.close(0)
        stop(proc)


def test_full_queue_answers_busy_and_makes_room_for_a_connection_with_less_queued():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=3", "+planner_args.delay_s=0.3", "max_queued=3")
    busy = raw_dealer(address)
    try:
        for i in range(6):  # one plan starts (for 0.9 s), three wait, two are refused
            busy.send_multipart(observation_message(observation(i), f"a{i}", 1))
        errors = []
        got = replies(busy, 3.0, until=lambda h: h["type"] == "error" and errors.append(h) is None and len(errors) == 2)
        assert [h["code"] for h in got if h["type"] == "error"] == ["busy", "busy"]
        assert "queue is full" in errors[0]["message"]
        with BridgeClient(address, "b", timeout_s=10) as b:
            steps = [r.step.text for r in b.plan(observation(9))]  # admitted: a4's newest request is displaced
        assert steps[-1] == "done"
        later = [h for h in replies(busy, 2.0) if h["type"] == "error"]
        assert [h["code"] for h in later][:1] == ["busy"] and "displaced" in later[0]["message"]
    finally:
        busy.close(0)
        stop(proc)


def test_requests_without_a_deadline_get_the_servers_default():
    from embodied.commands.serve import DEFAULTS

    assert DEFAULTS["default_deadline_ms"] is not None  # applied by default: nothing waits for ever
    proc, address = start_server(P + "FixedPlanner", "+planner_args.first_delay_s=0.5", "default_deadline_ms=300")
    try:
        with BridgeClient(address, "first", timeout_s=5) as a, BridgeClient(address, "second", timeout_s=5) as b:
            sa = a.send_observation(observation(0))  # computes for 0.5 s
            time.sleep(0.05)
            with pytest.raises(RemoteError) as e:  # queued behind it, no deadline of its own
                list(b.plan(observation(1)))
            assert e.value.code == "deadline_exceeded"
            with pytest.raises(RemoteError):
                a.wait(sa)  # the first step itself came after 300 ms
    finally:
        stop(proc)


# ---------------------------------------------------------------- 2. robot ids bound to connections


def test_a_second_connection_cannot_cancel_or_supersede_a_held_robot_id():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=6", "+planner_args.delay_s=0.1")
    try:
        with BridgeClient(address, "robot0", timeout_s=5) as victim, BridgeClient(address, "robot0", timeout_s=5) as impostor:
            victim.hello()
            stream = victim.plan(observation(0))
            got = [next(stream).step.text]
            for call in (lambda: impostor.hello(), lambda: impostor.wait(impostor.send("cancel")),
                         lambda: list(impostor.plan(observation(1))), lambda: impostor.reset()):
                with pytest.raises(RemoteError) as e:
                    call()
                assert e.value.code == "robot_id_taken"
            got += [r.step.text for r in stream]  # the victim's plan went on to its end
        from tests.test_bridge_planners import ContentPlanner

        assert got == [s.text for s in ContentPlanner(length=6).plan(observation(0))] and len(got) == 7
    finally:
        stop(proc)


def test_takeover_tells_the_old_holder_superseded_and_estops_follow_the_new_holder():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=6", "+planner_args.delay_s=0.1")
    try:
        with BridgeClient(address, "robot0", timeout_s=5) as old, BridgeClient(address, "robot0", timeout_s=5) as new, \
                BridgeClient(address, "operator", timeout_s=5) as op:
            old.hello()
            stream = old.plan(observation(0))
            next(stream)
            new.hello(takeover=True)
            with pytest.raises(RemoteError) as e:  # told, with the seq of the plan it lost: not left in silence
                list(stream)
            assert e.value.code == "superseded"
            assert op.estop("robot0")["delivered"] is True
            r = new.receive(3.0)
            while r is not None and r.type == "error" and r.header["code"] == "robot_id_claimed":
                r = new.receive(3.0)  # the old connection's cancel (as its plan closed) was refused: noted
            assert r is not None and r.type == "estop" and r.header["by"] == "operator"
            assert all(r.type != "estop" for r in iter(lambda: old.receive(0.3), None))
    finally:
        stop(proc)


def test_a_vanished_holder_frees_its_robot_id():
    proc, address = start_server(P + "FixedPlanner")
    try:
        first = BridgeClient(address, "arm", timeout_s=5)
        first.hello()
        first.close()  # the robot restarts: its old connection is gone
        with BridgeClient(address, "arm", timeout_s=5) as again:
            end = time.monotonic() + 3
            while True:
                try:
                    again.hello()
                    break
                except RemoteError as e:
                    assert e.code == "robot_id_taken" and time.monotonic() < end
                    time.sleep(0.05)
            assert [r.step.text for r in again.plan(observation(0))][-1] == "done"
    finally:
        stop(proc)


def test_one_connection_may_hold_a_bounded_number_of_robot_ids():
    proc, address = start_server(P + "FixedPlanner", "max_robots_per_connection=3")
    sock = raw_dealer(address)
    try:
        for i in range(5):
            sock.send_multipart(hello_header(f"r{i}", i + 1))
        got = replies(sock, 2.0, until=lambda h: h["seq"] == 5)
        assert [h["type"] if h["type"] != "error" else h["code"] for h in got] == ["metadata"] * 3 + ["too_many_robots"] * 2
    finally:
        sock.close(0)
        stop(proc)


def test_two_daemons_on_the_default_robot_id_the_second_is_refused_and_estops_reach_the_first(tmp_path):
    server, address = start_server(P + "FixedPlanner")
    a_log, b_log = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a = start_daemon(*daemon_args(address, a_log, "dry.step_s=0.2"))  # robot_id defaults to robot0
    b = None
    try:
        wait_for(a_log, "plan", 15)
        b = start_daemon(*daemon_args(address, b_log, "dry.step_s=0.2"))
        refused = wait_for(b_log, "server_error", 15)
        assert refused["code"] == "robot_id_taken"
        with BridgeClient(address, "operator", timeout_s=5) as op:
            op.estop("robot0")
        assert wait_for(a_log, "estop", 3)["source"] == "message from operator"
        time.sleep(0.5)
        b_events = [r["event"] for r in read_log(b_log)]
        assert "estop" not in b_events and "plan" not in b_events and "connected" not in b_events
        assert any(r["event"] == "server_notice" and r["code"] == "robot_id_claimed" for r in read_log(a_log))
        for d in (a, b):
            d.send_signal(signal.SIGTERM)
            assert d.wait(10) == 0
    finally:
        for d in (a, b):
            if d is not None:
                stop(d)
        stop(server)


def test_a_daemon_taken_over_holds_still_and_resumes_when_its_id_is_free(tmp_path):
    server, address = start_server(P + "FixedPlanner")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "dry.step_s=0.2", "robot_id=arm"))
    try:
        wait_for(log, "plan", 15)
        new = BridgeClient(address, "arm", timeout_s=5)
        new.hello(takeover=True)  # e.g. a second process for the same arm, started on purpose
        taken = wait_for(log, "superseded", 5)
        hold = wait_for(log, "safe_hold", 5, after=taken["t"])
        assert hold["why"] == "superseded"
        refused = wait_for(log, "server_error", 5, after=hold["t"])
        assert refused["code"] == "robot_id_taken"  # it does not take the id back
        time.sleep(0.5)
        assert not [r for r in read_log(log) if r["event"] == "plan" and r["t"] > taken["t"]]
        new.close()  # the id is free again
        resumed = wait_for(log, "resumed", 10, after=hold["t"])
        wait_for(log, "plan", 10, after=resumed["t"])
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        stop(daemon)
        stop(server)


# ---------------------------------------------------------------- 3. JPEG bomb


def jpeg_bomb(height: int = 20000, width: int = 20000) -> bytes:
    """A few hundred bytes whose frame header declares ``height x width`` (a small JPEG with its SOF patched)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8), [int(cv2.IMWRITE_JPEG_QUALITY), 50])
    b = bytearray(buf.tobytes())
    i = b.index(b"\xff\xc0")
    b[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(b)


def bomb_message(robot: str, seq: int = 1) -> list:
    frames = observation_message(observation(0, size=32), robot, seq, codec="jpeg")
    header = msgpack.unpackb(frames[0], raw=False)
    assert header["arrays"][0]["shape"] == [32, 32, 3] and header["arrays"][0]["codec"] == "jpeg"
    return [frames[0], jpeg_bomb(), *frames[2:]]


def test_the_bomb_is_what_the_probe_sent():
    import cv2

    bomb = jpeg_bomb()
    assert len(bomb) < 1000 and jpeg_size(bomb) == (20000, 20000, 3)
    small = cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)  # 1/8 scale: cheap
    assert small is not None and small.shape == (2500, 2500)  # it does decode, to 20000x20000 at full scale


def test_jpeg_bomb_is_refused_from_its_header_without_decoding():
    pytest.importorskip("cv2")
    proc, address = start_server(P + "ContentPlanner")
    socks = [raw_dealer(address) for _ in range(8)]
    try:
        with BridgeClient(address, "watch", timeout_s=5) as watch:
            watch.hello()
            peak = status_mb(proc.pid, "VmHWM")
            t0 = time.monotonic()
            for i, s in enumerate(socks):  # 8 bombs from 8 robot ids
                s.send_multipart(bomb_message(f"bomber{i}"))
            hb = watch.heartbeat(timeout_s=2)  # answered at once, not after 8 x 5 s of decoding
            for s in socks:
                (h,) = replies(s, 3.0, until=lambda h: True)
                assert h["type"] == "error" and h["code"] == "bad_shape" and "20000x20000" in h["message"]
            elapsed = time.monotonic() - t0
            assert hb["errors"].get("bad_shape", 0) >= 0 and elapsed < 2.0, elapsed
            assert status_mb(proc.pid, "VmHWM") - peak < 50  # before: 1.2 GB per bomb, 3.9 GB peak
            assert [r.step.text for r in watch.plan(observation(0))][-1] == "done"
    finally:
        for s in socks:
            s.close(0)
        stop(proc)


def test_jpeg_frames_decode_off_the_loop_that_answers_heartbeats():
    cv2 = pytest.importorskip("cv2")
    side = 6000  # a smooth 6000x6000 picture: small as a JPEG, 108 MB and a noticeable time to decode
    y, x = np.mgrid[0:side, 0:side]
    img = np.stack([(x * 255 // side), (y * 255 // side), ((x + y) * 127 // side)], -1).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    blob = buf.tobytes()
    t0 = time.perf_counter()
    cv2.imdecode(buf, cv2.IMREAD_COLOR)
    decode_s = time.perf_counter() - t0
    proc, address = start_server(P + "FixedPlanner", "max_message_bytes=67108864")
    try:
        with BridgeClient(address, "big", timeout_s=20) as big, BridgeClient(address, "hb", timeout_s=5) as hb:
            big.hello()
            hb.hello()
            obs = observation(0)
            obs.frames = {"front": np.zeros((side, side, 3), np.uint8)}
            frames = observation_message(obs, "big", 100)
            header = msgpack.unpackb(frames[0], raw=False)
            header["arrays"][0]["codec"] = "jpeg"
            big._send([msgpack.packb(header), blob, *frames[2:]])
            time.sleep(0.02)
            t = time.perf_counter()
            hb.heartbeat()  # sent while the server decodes
            rtt = time.perf_counter() - t
            steps = []
            while not steps or steps[-1] != "done":
                steps.append(big.wait(100).step.text)
            planned = time.perf_counter() - t
        assert planned > rtt and rtt < 0.5 * decode_s, (rtt, planned, decode_s)  # not held up by the decode
    finally:
        stop(proc)


def test_jpeg_header_reader_refuses_what_it_cannot_size():
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    for params in ([], [int(cv2.IMWRITE_JPEG_PROGRESSIVE), 1]):
        ok, buf = cv2.imencode(".jpg", img, params)
        assert jpeg_size(buf.tobytes()) == (24, 40, 3)
    good = cv2.imencode(".jpg", img)[1].tobytes()
    sof = good.index(b"\xff\xc0")
    for bad in (b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n" + good, good[:sof], good[:sof] + b"\xff\xc5" + good[sof + 2:],
                good[:sof + 5] + b"\x00\x00" + good[sof + 7:]):
        with pytest.raises(ProtocolError) as e:
            jpeg_size(bad)
        assert e.value.code == "bad_jpeg"


# ---------------------------------------------------------------- 4. the daemon and malformed replies


BAD_STEPS = [  # each a step reply that a careless server might send
    {"server": {"elapsed_ms": "soon"}},
    {"server": {"elapsed_ms": float("nan")}},
    {"server": ["not", "a", "map"]},
    {"index": "0"},
    {"text": 5},
    {"final": "yes"},
    {"text": "teleport red cube"},
    {"text": "x" * 10000},
]


def bad_server(port: int, mode: str) -> None:
    """A server that answers hello properly and every observation with a malformed step reply
    (``mode='steps'``), or also every other request with a malformed reply (``mode='all'``)."""
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"tcp://127.0.0.1:{port}")
    n = 0
    print("listening", flush=True)
    while True:
        ident, raw, *_ = sock.recv_multipart()
        h = msgpack.unpackb(raw, raw=False)
        base = {"v": 1, "robot": h["robot"], "seq": h["seq"], "t": time.time(), "server": {"recv": time.time(), "send": time.time()}}
        if h["type"] == "hello":
            reply = {**base, "type": "metadata", "metadata": {"planner": "bad", "cameras": None, "state_size": 15}}
        elif h["type"] == "heartbeat":
            reply = {**base, "type": "heartbeat", "health": {}} if mode == "steps" else {**base, "type": "heartbeat", "server": "x"}
        elif h["type"] == "observation":
            reply = {**base, "type": "step", "index": 0, "text": "put red cube on blue cube", "final": False,
                     **BAD_STEPS[n % len(BAD_STEPS)]}
            n += 1
        else:
            reply = {**base, "type": "ack", "ack": h["type"] if mode == "steps" else 7}
        sock.send_multipart([ident, msgpack.packb(reply)])


def start_bad_server(mode: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", f"from tests.test_bridge_hardening import bad_server; bad_server({port}, {mode!r})"],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "listening" in proc.stdout.readline()
    return proc, f"tcp://127.0.0.1:{port}"


def test_daemon_survives_malformed_replies_logs_bad_reply_and_backs_off(tmp_path):
    server, address = start_bad_server("steps")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "backoff_max_s=0.4"))
    try:
        wait_for(log, "connected", 10)
        time.sleep(3.0)
        bad = [r for r in read_log(log) if r["event"] == "bad_reply"]
        assert daemon.poll() is None, daemon.stderr.read()[-2000:]  # before: TypeError, exit 1, no shutdown
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        recs = read_log(log)
        assert recs[-1]["event"] == "shutdown" and recs[-1]["why"] == "SIGTERM"
        # every kind of bad step was met and logged; none was executed
        assert len(bad) >= len(BAD_STEPS) - 2 and not [r for r in recs if r["event"] in ("plan", "step_result")]
        assert {"ProtocolError", "PlanSyntaxError"} >= {r["error"] for r in bad}
        # asks again with a backoff (0.1, 0.2, 0.4, 0.4 s ...), not 14 times a second
        assert len(bad) <= 12 and [r["retry_in_s"] for r in bad[:4]] == [0.1, 0.2, 0.4, 0.4]
        assert not [r for r in recs if r["event"] == "safe_hold"]  # its heartbeats were fine
    finally:
        stop(daemon)
        stop(server)


def test_daemon_whose_server_only_sends_garbage_goes_to_safe_hold(tmp_path):
    server, address = start_bad_server("all")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log))
    try:
        connected = wait_for(log, "connected", 10)
        hold = wait_for(log, "safe_hold", 5)
        assert hold["why"] == "watchdog" and hold["t"] - connected["t"] < 1.0 + 1.0  # bad replies are no sign of life
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
    finally:
        stop(daemon)
        stop(server)


# ---------------------------------------------------------------- 5. CurveZMQ: ids bound to keys


def test_curve_binds_robot_ids_to_client_keys_and_estops_reach_the_real_robot(tmp_path):
    from bridges.keys import client_keys, generate

    keys = generate(tmp_path / "k", clients=("arm1", "arm2", "operator"))
    (Path(keys["authorized"]) / "arm2.robots").write_text("# ids arm2's key may use\narm2-left, arm2-right\n")
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=20", "+planner_args.delay_s=0.05",
                                 f"curve.secret_key={keys['server_secret']}", f"curve.authorized={keys['authorized']}")
    k1, k2, kop = (client_keys(keys[f"{n}_secret"], keys["server"]) for n in ("arm1", "arm2", "operator"))
    try:
        with BridgeClient(address, "robot0", keys=k1, timeout_s=5) as robot0, \
                BridgeClient(address, "robot0", keys=k2, timeout_s=5) as impostor, \
                BridgeClient(address, "operator", keys=kop, timeout_s=5) as op:
            robot0.hello()
            stream = robot0.plan(observation(0))
            got = [next(stream).step.text]
            for call in (lambda: impostor.hello(), lambda: impostor.wait(impostor.send("cancel")),
                         lambda: impostor.wait(impostor.send("hello", takeover=True))):
                with pytest.raises(RemoteError) as e:  # an authorised key, but not robot0's
                    call()
                assert e.value.code == "robot_id_taken"
            assert op.estop("robot0")["delivered"] is True
            with pytest.raises(RemoteError) as e:  # the e-stop reached robot0 itself, mid-plan
                got += [r.step.text for r in stream]
            assert e.value.code == "estop" and 1 <= len(got) < 21
            assert impostor.receive(0.3) is None  # and not the impostor
        # the binding outlives the connection: arm2's key still may not act as robot0
        with BridgeClient(address, "robot0", keys=k2, timeout_s=5) as again:
            with pytest.raises(RemoteError) as e:
                again.hello()
            assert e.value.code == "robot_id_taken"
        # an allow-list: arm2's key may use its two ids and no other; nobody else may use them
        with BridgeClient(address, "arm2-left", keys=k2, timeout_s=5) as c:
            assert c.hello()["planner"] == "content"
        for key, robot in ((k2, "robot7"), (k1, "arm2-right")):
            with BridgeClient(address, robot, keys=key, timeout_s=5) as c:
                with pytest.raises(RemoteError) as e:
                    c.hello()
                assert e.value.code == "robot_id_taken"
        with BridgeClient(address, "robot0", keys=k1, timeout_s=5) as back:  # robot0's own key, a new connection
            assert back.hello()["planner"] == "content"
    finally:
        stop(proc)


# ---------------------------------------------------------------- 6. smaller defects


def test_observation_without_arrays_is_bad_header_not_internal():
    h, _ = unpack(observation_message(observation(0), "r", 1))
    del h["arrays"]
    with pytest.raises(ProtocolError) as e:
        decode_observation(h, [])
    assert e.value.code == "bad_header"
    proc, address = start_server(P + "FixedPlanner")
    sock = raw_dealer(address)
    try:
        sock.send_multipart([msgpack.packb(h)])
        (reply,) = replies(sock, 3.0, until=lambda h: True)
        assert reply["code"] == "bad_header" and "arrays" in reply["message"]
    finally:
        sock.close(0)
        stop(proc)


@pytest.mark.parametrize("shape", [[32.0, 32, 3], [32, 32.0, 3], [True, 32, 3], [32, 32, 3.0]])
def test_spec_cache_refuses_what_a_fresh_check_refuses(shape):
    frames = observation_message(observation(0), "r", 1)
    h, blobs = unpack(frames)
    cache = SpecCache()
    bad = {**h, "arrays": [dict(h["arrays"][0], shape=shape), *h["arrays"][1:]]}
    with pytest.raises(ProtocolError) as before:  # refused with nothing cached...
        cache.check(bad["arrays"])
    cache.check(h["arrays"])  # ...and after the valid spec was seen
    with pytest.raises(ProtocolError) as after:
        cache.check(bad["arrays"])
    assert before.value.code == after.value.code == "bad_shape"
    decode_observation(h, blobs)  # the shared cache, too
    with pytest.raises(ProtocolError) as e:
        decode_observation(bad, blobs)
    assert e.value.code == "bad_shape"


def test_binding_to_all_interfaces_without_curve_warns(caplog):
    import logging

    from bridges import server
    from bridges.bench import TrivialPlanner

    with caplog.at_level(logging.WARNING, logger="embodied.server"):
        server.InferenceServer(TrivialPlanner(), "tcp://127.0.0.1:*").close()
        assert not caplog.records
        server.InferenceServer(TrivialPlanner(), "tcp://0.0.0.0:*").close()
    assert any("without CurveZMQ" in r.getMessage() for r in caplog.records)
    exposed = server._exposed
    assert exposed("tcp://*:5555") and exposed("tcp://0.0.0.0:1") and exposed("tcp://[::]:1") and exposed("tcp://10.0.0.5:1")
    assert not exposed("tcp://127.0.0.1:5555") and not exposed("tcp://localhost:1") and not exposed("ipc:///tmp/x")


def test_wrong_protocol_version_is_told_which_versions_are_spoken():
    proc, address = start_server(P + "FixedPlanner")
    sock = raw_dealer(address)
    try:
        sock.send_multipart([msgpack.packb({"v": 2, "type": "hello", "robot": "r", "seq": 4, "t": 0.0})])
        (reply,) = replies(sock, 3.0, until=lambda h: True)
        assert reply["code"] == "bad_version" and reply["seq"] == 4 and reply["versions"] == [PROTOCOL_VERSION]
        assert f"speaks version {PROTOCOL_VERSION}" in reply["message"]
    finally:
        sock.close(0)
        stop(proc)


def test_an_out_of_order_observation_is_refused_and_the_newer_plan_goes_on():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=3", "+planner_args.delay_s=0.1")
    sock = raw_dealer(address)
    try:
        sock.send_multipart(observation_message(observation(0), "r", 10))
        sock.send_multipart(observation_message(observation(1), "r", 5))  # older than the request it would supersede
        got = replies(sock, 5.0, until=lambda h: h.get("final"))
        assert [h["code"] for h in got if h["type"] == "error"] == ["out_of_order"]
        assert [h["seq"] for h in got if h["type"] == "step"] == [10] * 4
    finally:
        sock.close(0)
        stop(proc)


def test_headers_with_ext_types_or_pickle_are_refused():
    for frames in ([msgpack.packb({"v": 1, "type": "hello", "robot": "r", "seq": 1, "t": 0.0, "x": msgpack.ExtType(1, b"a")})],
                   [pickle.dumps({"v": 1, "type": "hello", "robot": "r", "seq": 1, "t": 0.0})]):
        with pytest.raises(ProtocolError) as e:
            unpack(frames)
        assert e.value.code == "bad_header"
    assert all(code in ERROR_CODES for code in ("busy", "superseded", "robot_id_taken", "too_many_robots", "out_of_order"))


# ---------------------------------------------------------------- what the probes found holding: kept so


def test_a_burst_of_huge_frames_leaves_memory_flat_and_the_server_serving():
    proc, address = start_server(P + "FixedPlanner")
    sock = raw_dealer(address)
    try:
        with BridgeClient(address, "watch", timeout_s=5) as c:
            c.hello()
            base = status_mb(proc.pid)
            rng = np.random.default_rng(0)
            header = pack({"type": "hello", "robot": "big", "seq": 1, "arrays": [{}]})[0]
            for mb in rng.integers(20, 41, 10):  # 20-40 MB each: above the 16 MiB limit, some above the socket cap
                sock.send_multipart([header, bytes(int(mb) << 20)])
            time.sleep(1.0)
            assert c.heartbeat()["uptime_s"] > 0
            assert status_mb(proc.pid) - base < 20, (base, status_mb(proc.pid))  # refused buffers go back to the OS
            assert [r.step.text for r in c.plan(observation(0))][-1] == "done"
    finally:
        sock.close(0)
        stop(proc)


def test_a_hundred_clients_vanishing_mid_request_leave_it_serving():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=3", "+planner_args.delay_s=0.01")
    try:
        for i in range(100):
            s = raw_dealer(address)
            s.send_multipart(observation_message(observation(i % 7), f"ghost{i}", 1))
            s.close(0)
        with BridgeClient(address, "survivor", timeout_s=10) as c:
            assert [r.step.text for r in c.plan(observation(9))][-1] == "done"
            assert c.heartbeat()["robots"] <= 16
    finally:
        stop(proc)


def test_a_client_whose_server_was_killed_times_out():
    proc, address = start_server(P + "FixedPlanner")
    with BridgeClient(address, "orphan", timeout_s=2.0) as c:
        c.hello()
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        with pytest.raises(BridgeTimeoutError):
            list(c.plan(observation(0)))
        assert 1.9 < time.monotonic() - t0 < 3.0
    stop(proc)


def test_the_hardening_defaults_are_the_documented_ones():
    from bridges import sockets
    from embodied.commands.serve import DEFAULTS

    assert DEFAULTS["max_queued"] == 64 and DEFAULTS["max_robots_per_connection"] == 16
    assert sockets.HEARTBEAT_IVL_MS < sockets.HEARTBEAT_TIMEOUT_MS < sockets.HEARTBEAT_TTL_MS
    s = sockets.tune(zmq.Context.instance().socket(zmq.DEALER), server=False)
    try:
        assert s.getsockopt(zmq.SNDHWM) == sockets.CLIENT_SNDHWM and s.getsockopt(zmq.HEARTBEAT_IVL) == sockets.HEARTBEAT_IVL_MS
    finally:
        s.close(0)
