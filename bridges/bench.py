"""Bridge latency and throughput on loopback (``embodied bench bridge`` runs ``run``).

One observation = a 224x224 RGB frame + a state vector, answered by a trivial planner
(one ``done`` step), server in its own process. Measured in the same run, interleaved in
rounds so that machine load hits all of them alike:

- ours, raw frames and JPEG frames: round trip from send to the ``end`` reply;
- baseline: websockets + msgpack (the transport other robot policy servers use), one
  request and one reply message, server in its own process;
- floor: a bare pyzmq DEALER/ROUTER echo of the same encoded message (no decoding, no
  planner, a 2-byte reply), server in its own process: what ZeroMQ over TCP costs before
  any protocol work, so the gap between it and ours is the protocol's share;
- throughput: 8 robots (8 sockets), each with one request in flight, for ``throughput_s``.

Writes ``<out>/bridge.json``.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing as mp
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np

from embodied.core.observation import STATE_SIZE, Observation
from embodied.core.plan import DONE

_log = logging.getLogger("embodied.bench")

DEFAULTS = {"out": "benchmarks/results/", "repeats": 2000, "warmup": 200, "rounds": 5, "robots": 8,
            "throughput_s": 3.0, "jpeg_quality": 90, "size": 224}


class TrivialPlanner:
    """Answers every observation with ``done``."""

    name = "trivial"

    def plan(self, observation):
        yield DONE

    def reset(self) -> None:
        pass


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """A tabletop-like picture (smooth background, a few flat-coloured blocks, mild noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([90 + 60 * x / size, 110 + 40 * y / size, 100 + 20 * (x + y) / size], -1)  # (H, W, 3)
    for _ in range(6):
        x0, y0 = rng.integers(0, size - 30, 2)
        w, h = rng.integers(10, 30, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- servers (child processes)


def _serve_ours(conn) -> None:
    from bridges.server import InferenceServer

    server = InferenceServer(TrivialPlanner(), "tcp://127.0.0.1:*", log=lambda m: None)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    conn.send(server.address)
    try:
        server.serve()
    finally:
        server.close()


def _serve_zmq_echo(conn) -> None:
    import zmq

    from bridges.sockets import recv_frames, send_frames

    sock = zmq.Context().socket(zmq.ROUTER)
    sock.setsockopt(zmq.SNDBUF, 4 << 20)  # the same socket settings as the inference server
    sock.setsockopt(zmq.RCVBUF, 4 << 20)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    conn.send(f"tcp://127.0.0.1:{port}")
    while True:  # killed by _stop
        frames = recv_frames(sock)
        send_frames(sock, [frames[0], b"ok"], flags=0)


def _serve_websockets(conn) -> None:
    import asyncio

    import msgpack
    import websockets

    planner = TrivialPlanner()

    async def handler(ws):
        async for message in ws:
            t0 = time.time()
            req = msgpack.unpackb(message, raw=False)
            frame = np.frombuffer(req["frame"], np.uint8).reshape(req["frame_shape"])
            state = np.frombuffer(req["state"], np.float32)
            obs = Observation({"front": frame}, state, req["instruction"])
            steps = [s.text for s in planner.plan(obs)]
            await ws.send(msgpack.packb({"steps": steps, "server_timing": {"recv": t0, "send": time.time()}}))

    async def run():
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with websockets.serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
            conn.send(srv.sockets[0].getsockname()[1])
            await stop

    asyncio.run(run())


def _start(target):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child,), daemon=True)
    proc.start()
    if not parent.poll(30):
        proc.kill()
        raise RuntimeError(f"benchmark server {target.__name__} did not start")
    return proc, parent.recv()


def _stop(proc) -> None:
    proc.terminate()
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()


# ---------------------------------------------------------------- measurements


def _stats(samples: list[float]) -> dict:
    a = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4), "n": int(a.size)}


def _time_ours(client, obs, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        steps = [r.step for r in client.plan(obs)]
        out.append(time.perf_counter() - t0)
        if steps != [DONE]:
            raise RuntimeError(f"bridge returned {steps}, expected [done]")
    return out


def _time_websockets(ws, obs, n: int) -> list[float]:
    import msgpack

    frame = obs.frames["front"]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ws.send(msgpack.packb({"frame": frame.tobytes(), "frame_shape": list(frame.shape),
                               "state": obs.state.tobytes(), "instruction": obs.instruction}))
        reply = msgpack.unpackb(ws.recv(), raw=False)
        out.append(time.perf_counter() - t0)
        if reply["steps"] != ["done"]:
            raise RuntimeError(f"websockets server returned {reply}")
    return out


def _time_echo(sock, frames: list, n: int) -> list[float]:
    from bridges.sockets import recv_frames, send_frames

    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        send_frames(sock, frames, flags=0)
        reply = recv_frames(sock, copy=True)
        out.append(time.perf_counter() - t0)
        if reply != [b"ok"]:
            raise RuntimeError(f"echo server returned {reply}")
    return out


def _throughput(address: str, obs, robots: int, seconds: float) -> float:
    import zmq

    from bridges.client import BridgeClient

    clients = [BridgeClient(address, f"bench{i}") for i in range(robots)]
    poller = zmq.Poller()
    for c in clients:
        c.hello()
        poller.register(c.sock, zmq.POLLIN)
    by_sock = {c.sock: c for c in clients}
    pending = {c.robot_id: c.send_observation(obs) for c in clients}
    done, t0 = 0, time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for sock, _ in poller.poll(100):
            c = by_sock[sock]
            reply = c.receive(0)
            finished = reply is not None and (reply.type == "end" or reply.header.get("final"))
            if finished and reply.seq == pending[c.robot_id]:
                done += 1
                pending[c.robot_id] = c.send_observation(obs)
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return done / elapsed


def run(out: str = DEFAULTS["out"], repeats: int = 2000, warmup: int = 200, rounds: int = 5, robots: int = 8,
        throughput_s: float = 3.0, jpeg_quality: int = 90, size: int = 224) -> dict:
    import zmq
    from websockets.sync.client import connect

    from bridges.client import BridgeClient
    from bridges.protocol import observation_message

    obs = Observation({"front": test_image(size)}, np.linspace(-1, 1, STATE_SIZE, dtype=np.float32),
                      "put red cube on blue cube")
    ours_proc, address = _start(_serve_ours)
    ws_proc, port = _start(_serve_websockets)
    echo_proc, echo_address = _start(_serve_zmq_echo)
    samples = {"raw": [], "jpeg": [], "ws": [], "floor": []}
    try:
        echo = zmq.Context.instance().socket(zmq.DEALER)
        echo.setsockopt(zmq.LINGER, 0)
        echo.setsockopt(zmq.SNDBUF, 4 << 20)  # the same socket settings as BridgeClient
        echo.setsockopt(zmq.RCVBUF, 4 << 20)
        echo.connect(echo_address)
        message = observation_message(obs, "bench-floor", 1)  # encoded once: the floor does no protocol work
        raw = BridgeClient(address, "bench-raw")
        jpeg = BridgeClient(address, "bench-jpeg", codec="jpeg", jpeg_quality=jpeg_quality)
        raw.hello()
        jpeg.hello()
        with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) as ws:
            _time_ours(raw, obs, warmup)
            _time_ours(jpeg, obs, warmup)
            _time_websockets(ws, obs, warmup)
            _time_echo(echo, message, warmup)
            per = max(1, repeats // rounds)
            for _ in range(rounds):
                gc.collect()
                gc.disable()
                try:
                    samples["raw"] += _time_ours(raw, obs, per)
                    samples["ws"] += _time_websockets(ws, obs, per)
                    samples["jpeg"] += _time_ours(jpeg, obs, per)
                    samples["floor"] += _time_echo(echo, message, per)
                finally:
                    gc.enable()
        raw.close()
        jpeg.close()
        echo.close(0)
        throughput = _throughput(address, obs, robots, throughput_s)
    finally:
        _stop(ours_proc)
        _stop(ws_proc)
        _stop(echo_proc)
    import cv2

    jpeg_bytes = len(cv2.imencode(".jpg", obs.frames["front"], [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality])[1])
    ours_raw, ours_jpeg, base = _stats(samples["raw"]), _stats(samples["jpeg"]), _stats(samples["ws"])
    floor = _stats(samples["floor"])
    result = {
        "frame": [size, size, 3],
        "state_size": STATE_SIZE,
        "repeats": len(samples["raw"]),
        "ours": {"raw": ours_raw, "jpeg": {**ours_jpeg, "frame_bytes": jpeg_bytes, "quality": jpeg_quality}},
        "baseline_websockets": base,
        "floor_zmq_echo": floor,
        "speedup_p50": round(base["p50_ms"] / ours_raw["p50_ms"], 3),
        "throughput_8_robots_per_s" if robots == 8 else f"throughput_{robots}_robots_per_s": round(throughput, 1),
        "targets": {"raw_p99_le_1ms": ours_raw["p99_ms"] <= 1.0, "speedup_p50_ge_2": base["p50_ms"] >= 2 * ours_raw["p50_ms"]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    path = Path(out) / "bridge.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    _log.info(f"bridge round trip, {size}x{size}x3 frame + state[{STATE_SIZE}], trivial planner, loopback, "
          f"{len(samples['raw'])} requests each:")
    _log.info(f"  ours raw          p50 {ours_raw['p50_ms']:.3f} ms  p99 {ours_raw['p99_ms']:.3f} ms")
    _log.info(f"  ours jpeg (q{jpeg_quality})    p50 {ours_jpeg['p50_ms']:.3f} ms  p99 {ours_jpeg['p99_ms']:.3f} ms  ({jpeg_bytes} B/frame)")
    _log.info(f"  websockets+msgpack p50 {base['p50_ms']:.3f} ms  p99 {base['p99_ms']:.3f} ms")
    _log.info(f"  bare zmq echo      p50 {floor['p50_ms']:.3f} ms  p99 {floor['p99_ms']:.3f} ms  (transport floor: no protocol, no planner)")
    _log.info(f"  speedup p50 (websockets / ours raw): {result['speedup_p50']:.2f}x")
    _log.info(f"  throughput, {robots} robots: {throughput:.0f} plans/s")
    _log.info(f"wrote {path}")
    return result
