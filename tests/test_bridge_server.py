"""The inference server and client over real loopback sockets, server in its own process."""

from __future__ import annotations

import itertools
import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridges.client import BridgeClient
from bridges.protocol import ERROR_CODES, PROTOCOL_VERSION, observation_message, pack
from bridges.remote import RemotePlanner
from embodied.core.errors import BridgeTimeoutError, RemoteError
from embodied.core.protocols import Planner
from tests.test_bridge_planners import ContentPlanner, observation, start_server, stop

P = "tests.test_bridge_planners:"


@pytest.fixture(scope="module")
def content_server():
    proc, address = start_server(P + "ContentPlanner")
    try:
        yield address
    finally:
        stop(proc)


@pytest.fixture
def client(content_server):
    with BridgeClient(content_server, "test-robot", timeout_s=5.0) as c:
        yield c


def test_hello_metadata_and_heartbeat_health(client):
    meta = client.hello()
    assert meta["planner"] == "content" and meta["protocol"] == PROTOCOL_VERSION and meta["state_size"] == 15
    health = client.heartbeat()
    assert {"uptime_s", "plans", "steps", "errors", "active", "queued", "robots", "gc"} <= set(health)
    # what was loaded before serving (planner, libraries) is frozen out of the cyclic collector
    assert health["gc"]["frozen"] > 10_000 and len(health["gc"]["collections"]) == 3


def test_round_trip_same_plans_in_process_and_over_the_bridge(content_server):
    remote = RemotePlanner(content_server, "eq-robot")
    local = ContentPlanner()
    assert isinstance(remote, Planner) and remote.name == "remote:content"
    assert not remote.forwards_privileged  # a learned-style planner never gets simulator ground truth
    try:
        for seed in range(6):
            obs = observation(seed, size=40, depth=seed % 2 == 0)
            assert [s.text for s in remote.plan(obs)] == [s.text for s in local.plan(obs)]
            assert remote.timings and {"decode_ms", "queue_ms", "infer_ms", "elapsed_ms"} <= set(remote.timings[0])
    finally:
        remote.close()


def test_jpeg_codec_round_trip(content_server):
    with BridgeClient(content_server, "jpeg-robot", codec="jpeg", timeout_s=5.0) as c:
        steps = [r.step.text for r in c.plan(observation(0, size=64))]
    assert steps[-1] == "done" and len(steps) == 4


def test_steps_stream_in_order_as_soon_as_they_are_yielded():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=3", "+planner_args.delay_s=0.25",
                                 "+planner_args.first_delay_s=0.0")
    try:
        with BridgeClient(address, "stream", timeout_s=5.0) as c:
            c.hello()
            times, indices = [], []
            for r in c.plan(observation(2)):
                times.append(time.perf_counter())
                indices.append(r.header["index"])
            assert indices == [0, 1, 2, 3]
            # the first step arrived while the planner was still computing steps 1 and 2 (0.25 s each)
            assert times[-1] - times[0] > 0.45
            assert all(b > a for a, b in zip(times, times[1:]))
    finally:
        stop(proc)


def _raw_dealer(address):
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(address)
    return s


def _one_reply(sock, timeout_ms=3000):
    assert sock.poll(timeout_ms), "the server did not answer"
    return msgpack.unpackb(sock.recv_multipart()[0], raw=False)


_junk_headers = st.one_of(
    st.binary(max_size=80),
    st.dictionaries(st.sampled_from(["v", "type", "robot", "seq", "t", "arrays", "obs", "deadline_ms"]),
                    st.none() | st.integers(-3, 3) | st.text(max_size=6) | st.sampled_from(["observation", "hello", 1])
                    | st.lists(st.integers(0, 3), max_size=3), max_size=8).map(lambda d: msgpack.packb(d)),
)


_examples = itertools.count()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(header=_junk_headers, blobs=st.lists(st.binary(max_size=40), max_size=3))
def test_malformed_messages_get_error_replies_and_the_server_keeps_serving(content_server, header, blobs):
    sock = _raw_dealer(content_server)
    try:
        sock.send_multipart([header, *blobs])
        reply = _one_reply(sock)
        if reply["type"] == "error":
            assert reply["code"] in ERROR_CODES and reply["message"]
        else:  # the junk happened to be a valid request
            assert reply["type"] in ("metadata", "heartbeat", "ack")
    finally:
        sock.close(0)
    # a robot id of its own per example: the previous example's id may still be held until the server
    # has read that connection's goodbye (connections are served round robin, not in arrival order)
    with BridgeClient(content_server, f"after-junk-{next(_examples)}", timeout_s=5.0) as c:
        assert c.hello()["planner"] == "content"


def test_oversized_message_gets_too_large_and_server_survives():
    proc, address = start_server(P + "ContentPlanner", "max_message_bytes=20000")
    try:
        with BridgeClient(address, "big", timeout_s=5.0) as c:
            with pytest.raises(RemoteError) as e:
                list(c.plan(observation(0, size=128)))  # 2 frames, ~74 kB
            assert e.value.code == "too_large"
            assert [r.step.text for r in c.plan(observation(0, size=32))][-1] == "done"
    finally:
        stop(proc)


def test_deadline_exceeded_is_reported_and_server_continues():
    proc, address = start_server(P + "FixedPlanner", "+planner_args.first_delay_s=0.3")
    try:
        with BridgeClient(address, "late", timeout_s=5.0) as c:
            with pytest.raises(RemoteError) as e:
                list(c.plan(observation(0), deadline_ms=100))
            assert e.value.code == "deadline_exceeded"
            assert [r.step.text for r in c.plan(observation(0), deadline_ms=5000)] == ["put red cube on blue cube", "done"]
    finally:
        stop(proc)


def test_planner_crash_gets_planner_error_and_server_continues():
    proc, address = start_server(P + "BrokenPlanner")
    try:
        with BridgeClient(address, "crash", timeout_s=5.0) as c:
            got = []
            with pytest.raises(RemoteError) as e:
                for r in c.plan(observation(0)):
                    got.append(r.step.text)
            assert got == ["move red cube to top left"] and e.value.code == "planner_error"
            assert "planner bug" in str(e.value)
            assert c.heartbeat()["errors"]["planner_error"] == 1
    finally:
        stop(proc)


def test_vanished_client_mid_plan_does_not_stop_the_server():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.delay_s=0.1", "+planner_args.length=5")
    try:
        for i in range(3):  # send, then vanish before the plan is streamed
            sock = _raw_dealer(address)
            sock.send_multipart(observation_message(observation(i), f"ghost{i}", 1))
            time.sleep(0.05)
            sock.close(0)
        with BridgeClient(address, "survivor", timeout_s=10.0) as c:
            assert [r.step.text for r in c.plan(observation(9))][-1] == "done"
    finally:
        stop(proc)


def test_many_robots_at_once(content_server):
    clients = [BridgeClient(content_server, f"robot{i}", timeout_s=10.0) for i in range(6)]
    try:
        seqs = [c.send_observation(observation(i)) for i, c in enumerate(clients)]  # all in flight together
        expected = [[s.text for s in ContentPlanner().plan(observation(i))] for i in range(6)]
        for c, seq, want in zip(clients, seqs, expected):
            got = []
            while not got or got[-1] != "done":
                got.append(c.wait(seq).step.text)
            assert got == want
    finally:
        for c in clients:
            c.close()


def test_estop_is_forwarded_to_the_target_robot(content_server):
    with BridgeClient(content_server, "arm-7", timeout_s=5.0) as robot, BridgeClient(content_server, "operator", timeout_s=5.0) as op:
        robot.hello()  # the server learns where arm-7 is
        op.estop("arm-7")
        reply = robot.receive(3.0)
        assert reply is not None and reply.type == "estop" and reply.header["by"] == "operator"
        with pytest.raises(RemoteError) as e:
            op.estop("nobody")
        assert e.value.code == "unknown_robot"


def test_wrong_curve_key_is_refused(tmp_path):
    from bridges.keys import client_keys, generate, server_keys

    good = generate(tmp_path / "good")
    other = generate(tmp_path / "other")  # a key pair the server has never seen
    proc, address = start_server(P + "FixedPlanner", f"curve.secret_key={good['server_secret']}",
                                 f"curve.authorized={good['authorized']}")
    try:
        assert server_keys(good["server_secret"], good["authorized"]).public
        ok = client_keys(good["client_secret"], good["server"])
        with BridgeClient(address, "trusted", keys=ok, timeout_s=5.0) as c:
            assert c.hello()["planner"] == "fixed"
            assert [r.step.text for r in c.plan(observation(0))][-1] == "done"
        bad = client_keys(other["client_secret"], good["server"])
        with BridgeClient(address, "intruder", keys=bad, timeout_s=3.0) as c:
            t0 = time.perf_counter()
            with pytest.raises(RemoteError) as e:
                c.hello()
            assert e.value.code == "auth_refused" and time.perf_counter() - t0 < 2.0  # told, not left to time out
        with BridgeClient(address, "plaintext", timeout_s=1.0) as c:
            with pytest.raises(BridgeTimeoutError):
                c.hello()
    finally:
        stop(proc)


def test_remote_planner_through_injected_loss_gives_the_same_plans(content_server):
    remote = RemotePlanner(content_server, "lossy", timeout_s=0.3, retries=30, latency_ms=1, jitter_ms=2, loss=0.2, seed=1)
    try:
        for seed in range(4):
            obs = observation(seed)
            assert [s.text for s in remote.plan(obs)] == [s.text for s in ContentPlanner().plan(obs)]
        assert remote.resends > 0  # the loss did happen and was recovered from
    finally:
        remote.close()


def test_unpack_rejects_server_reply_types_from_clients(content_server):
    sock = _raw_dealer(content_server)
    try:
        sock.send_multipart(pack({"type": "step", "robot": "r", "seq": 1, "text": "done", "index": 0}))
        reply = _one_reply(sock)
        assert reply["type"] == "error" and reply["code"] == "unknown_type"
    finally:
        sock.close(0)


def test_oracle_plans_are_the_same_in_process_and_over_the_bridge_for_the_same_seeds():
    pytest.importorskip("pybullet")
    from envs.tabletop_env import TabletopEnv
    from envs.tasks import oracle_plan
    from policies.oracle import OraclePlanner

    proc, address = start_server("oracle")
    remote = RemotePlanner(address, "oracle-eq")
    local = OraclePlanner(oracle_plan)
    try:
        assert remote.forwards_privileged  # the served oracle needs the simulator's ground truth
        for task in ("stack", "put_in_container", "sort_by_colour"):
            env = TabletopEnv(task, privileged=True)
            try:
                for seed in (0, 1):
                    env.reset(seed=seed)
                    closed_loop = task == "stack" and seed == 0  # plan, execute the first step, plan again
                    for _ in range(2 if closed_loop else 1):
                        obs = env.observation()
                        here = [s.text for s in local.plan(obs)]
                        there = [s.text for s in remote.plan(obs)]
                        assert there == here and here[-1] == "done", (task, seed)
                        if here[0] == "done":
                            break
                        env.step(here[0])
            finally:
                env.close()
    finally:
        remote.close()
        stop(proc)


def test_closing_a_remote_plan_early_cancels_it_on_the_server():
    proc, address = start_server(P + "ContentPlanner", "+planner_args.length=6", "+planner_args.delay_s=0.2")
    remote = RemotePlanner(address, "impatient")
    try:
        stream = remote.plan(observation(0))
        first = next(stream)
        stream.close()  # the closed loop takes only the first step
        assert first.text == next(ContentPlanner().plan(observation(0))).text
        time.sleep(0.5)  # the server finishes the step it is computing, then reads the cancel
        with BridgeClient(address, "monitor", timeout_s=5.0) as c:
            health = c.heartbeat()
        assert health["active"] == 0 and health["plans"] == 0 and health["steps"] <= 3  # not all 7 steps
    finally:
        remote.close()
        stop(proc)
