"""Bridge latency and throughput on loopback (``embodied bench bridge`` runs ``run``).

For each payload (camera frames + a 15-float state vector + an instruction) and each number
of concurrent robots, four transports answer the same observation with one ``done`` step
from a trivial planner, each server in its own process:

- ``ours``: ``bridges.server.InferenceServer`` and ``bridges.client.BridgeClient``, raw frames;
- ``zmq_floor``: a bare pyzmq DEALER/ROUTER echo of the same encoded bytes (the same socket
  settings and send/receive calls, no decoding, no planner, a 2-byte reply): what ZeroMQ over
  TCP costs before any protocol work; ours divided by it is the protocol's share;
- ``websockets``: websockets + msgpack with numpy arrays as openpi's ``msgpack_numpy`` packs
  them (``{"__ndarray__", "data", "dtype", "shape"}``), one message each way, asyncio server;
- ``grpc``: grpcio, one unary call with bytes in and bytes out (the same msgpack body; a generic
  handler with identity serializers), a thread-pool server of 4 workers as LeRobot's async
  inference policy server has.

One robot: ``repeats`` round trips per transport, interleaved in ``rounds`` so that machine load
hits all of them alike (p50 / p99). N robots: N connections, each with one request in flight
(a new one as soon as its reply arrives), all driven from this process, ``concurrent_s``
seconds per transport per round: plans per second and the latency of each request.

Writes ``<out>/bridge.json``: ``rows``, one per (payload, robots), with ``ours_p50_ms``,
``ours_p99_ms``, ``zmq_floor_p50_ms``, ``websockets_p50_ms``, ``grpc_p50_ms`` (and p99s), for
robots > 1 ``*_plans_per_s``, the ratios, and the targets; plus the machine it ran on.

Why one ~560-line module: each transport is a server function and a client class of a few
lines, and they are kept side by side so that a reader can check they do the same work.
"""

from __future__ import annotations

import asyncio
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

PAYLOADS = {  # name -> (frames {camera: (H, W)}, depth {camera: (H, W)} as uint16 millimetres)
    "1x224": ({"front": (224, 224)}, {}),
    "3x224": ({"front": (224, 224), "wrist": (224, 224), "side": (224, 224)}, {}),
    "vga_rgbd": ({"front": (480, 640)}, {"front": (480, 640)}),
    "3xvga": ({"front": (480, 640), "wrist": (480, 640), "side": (480, 640)}, {}),
}
TRANSPORTS = ("ours", "zmq_floor", "websockets", "grpc")
DEFAULTS = {"out": "benchmarks/results/", "payloads": list(PAYLOADS), "robots": [1, 8, 32], "repeats": 1000, "warmup": 100,
            "rounds": 3, "concurrent_s": 1.0, "jpeg": True, "jpeg_quality": 90}
_GRPC_METHOD = "/embodied.bench.Planner/Plan"
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]


class TrivialPlanner:
    """Answers every observation with ``done``."""

    name = "trivial"

    def plan(self, observation):
        yield DONE

    def reset(self) -> None:
        pass


def test_image(height: int, width: int | None = None, seed: int = 0) -> np.ndarray:
    """A tabletop-like picture (smooth background, a few flat-coloured blocks, mild noise)."""
    width = width or height
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([90 + 60 * x / width, 110 + 40 * y / height, 100 + 10 * (x / width + y / height)], -1)
    for _ in range(6):
        x0, y0 = rng.integers(0, width - 30), rng.integers(0, height - 30)
        w, h = rng.integers(10, 30, 2)
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def payload_observation(name: str) -> Observation:
    frames, depth = PAYLOADS[name]
    return Observation(
        {cam: test_image(h, w, seed=i) for i, (cam, (h, w)) in enumerate(frames.items())},
        np.linspace(-1, 1, STATE_SIZE, dtype=np.float32),
        "put red cube on blue cube",
        depth={cam: (np.random.default_rng(7).integers(300, 2000, (h, w))).astype(np.uint16) for cam, (h, w) in depth.items()},
    )


def payload_bytes(obs: Observation) -> int:
    return sum(a.nbytes for a in (*obs.frames.values(), *obs.depth.values(), obs.state))


# ---------------------------------------------------------------- msgpack with numpy, as openpi's msgpack_numpy


def _np_default(obj):
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": True, "data": obj.tobytes(), "dtype": obj.dtype.str, "shape": obj.shape}
    raise TypeError(f"cannot pack {type(obj)}")


def _np_hook(obj):
    if "__ndarray__" in obj:
        return np.ndarray(buffer=obj["data"], dtype=np.dtype(obj["dtype"]), shape=obj["shape"])
    return obj


def pack_np(obs: Observation) -> bytes:
    import msgpack

    return msgpack.packb({"images": obs.frames, "depth": obs.depth, "state": obs.state, "prompt": obs.instruction},
                         default=_np_default, use_bin_type=True)


def _plan_np(planner, body: bytes) -> bytes:
    import msgpack

    req = msgpack.unpackb(body, object_hook=_np_hook, raw=False)
    obs = Observation(req["images"], req["state"], req["prompt"], depth=req["depth"])
    t = time.time()
    return msgpack.packb({"steps": [s.text for s in planner.plan(obs)], "server_timing": {"recv": t, "send": time.time()}})


def _check_np_reply(body: bytes) -> None:
    import msgpack

    reply = msgpack.unpackb(body, raw=False)
    if reply["steps"] != ["done"]:
        raise RuntimeError(f"baseline server returned {reply}")


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


def _serve_zmq_floor(conn) -> None:
    import zmq

    from bridges.sockets import recv_frames, send_frames, tune

    sock = tune(zmq.Context().socket(zmq.ROUTER), server=True)  # the same socket settings as the inference server
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    conn.send(f"tcp://127.0.0.1:{port}")
    while True:  # killed by _stop
        frames = recv_frames(sock)  # every part without a copy, as the inference server reads them
        send_frames(sock, [frames[0], b"ok"], flags=0)


def _serve_websockets(conn) -> None:
    import websockets

    planner = TrivialPlanner()

    async def handler(ws):
        async for message in ws:
            await ws.send(_plan_np(planner, message))

    async def run():
        stop = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with websockets.serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as srv:
            conn.send(srv.sockets[0].getsockname()[1])
            await stop

    asyncio.run(run())


def _serve_grpc(conn) -> None:
    from concurrent import futures

    import grpc

    planner = TrivialPlanner()
    handler = grpc.method_handlers_generic_handler("embodied.bench.Planner", {
        "Plan": grpc.unary_unary_rpc_method_handler(lambda body, ctx: _plan_np(planner, body),
                                                    request_deserializer=None, response_serializer=None),
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler], options=_GRPC_OPTIONS)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    conn.send(port)
    server.wait_for_termination()


_SERVERS = {"ours": _serve_ours, "zmq_floor": _serve_zmq_floor, "websockets": _serve_websockets, "grpc": _serve_grpc}


def _start(target):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child,), daemon=True)
    proc.start()
    if not parent.poll(60):
        proc.kill()
        raise RuntimeError(f"benchmark server {target.__name__} did not start")
    return proc, parent.recv()


def _stop(proc) -> None:
    proc.terminate()
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()


# ---------------------------------------------------------------- clients: one robot


class _Ours:
    def __init__(self, address, obs, codec="raw", jpeg_quality=90, robot="bench"):
        from bridges.client import BridgeClient

        self.client = BridgeClient(address, robot, codec=codec, jpeg_quality=jpeg_quality, timeout_s=30)
        self.client.hello()
        self.obs = obs

    def once(self) -> None:
        steps = [r.step for r in self.client.plan(self.obs)]
        if steps != [DONE]:
            raise RuntimeError(f"bridge returned {steps}, expected [done]")

    def close(self):
        self.client.close()


class _Floor:
    def __init__(self, address, obs, robot="bench-floor"):
        import zmq

        from bridges.protocol import observation_message
        from bridges.sockets import tune

        self.sock = tune(zmq.Context.instance().socket(zmq.DEALER), server=False)  # the same settings as BridgeClient
        self.sock.connect(address)
        self.message = observation_message(obs, robot, 1)  # encoded once: the floor does no protocol work

    def once(self) -> None:
        from bridges.sockets import recv_frames, send_frames

        send_frames(self.sock, self.message, flags=0)
        if recv_frames(self.sock, copy=True) != [b"ok"]:
            raise RuntimeError("echo server answered something else")

    def close(self):
        self.sock.close(0)


class _Websockets:
    def __init__(self, port, obs):
        from websockets.sync.client import connect

        self._cm = connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None)
        self.ws = self._cm.__enter__()  # websockets >= 17.1 wants connect() used as a context manager
        self.obs = obs

    def once(self) -> None:
        self.ws.send(pack_np(self.obs))
        _check_np_reply(self.ws.recv())

    def close(self):
        self._cm.__exit__(None, None, None)


class _Grpc:
    def __init__(self, port, obs):
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=_GRPC_OPTIONS)
        self.call = self.channel.unary_unary(_GRPC_METHOD, request_serializer=None, response_deserializer=None)
        self.obs = obs

    def once(self) -> None:
        _check_np_reply(self.call(pack_np(self.obs), timeout=30))

    def close(self):
        self.channel.close()


_CLIENTS = {"ours": _Ours, "zmq_floor": _Floor, "websockets": _Websockets, "grpc": _Grpc}


def _time(client, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.once()
        out.append(time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------- clients: N robots, one request in flight each


def _many_zmq(kind: str, address: str, obs: Observation, robots: int, seconds: float, tag: str) -> tuple[list, int, float]:
    import zmq
    from zmq.backend import zmq_poll

    from bridges.client import BridgeClient
    from bridges.protocol import observation_message
    from bridges.sockets import recv_frames, send_frames, tune

    lat, done = [], 0
    if kind == "ours":
        clients = [BridgeClient(address, f"bench-{tag}-{i}", timeout_s=30) for i in range(robots)]
        for c in clients:
            c.hello()
        socks = [c.sock for c in clients]

        def send(i):
            return clients[i].send_observation(obs)

        def finished(i, seq):
            reply = clients[i].receive(0)
            while reply is not None:
                if reply.seq == seq and (reply.type == "end" or reply.header.get("final")):
                    return True
                reply = clients[i].receive(0)
            return False
    else:
        socks = [tune(zmq.Context.instance().socket(zmq.DEALER), server=False) for _ in range(robots)]
        for s in socks:
            s.connect(address)
        message = observation_message(obs, "bench-floor", 1)

        def send(i):
            send_frames(socks[i], message, flags=0)
            return 0

        def finished(i, seq):
            recv_frames(socks[i], copy=True)
            return True
    items = [(s, 1) for s in socks]  # zmq.POLLIN
    index = {s: i for i, s in enumerate(socks)}
    sent = [0.0] * robots
    seqs = [0] * robots
    t0 = time.perf_counter()
    for i in range(robots):
        sent[i] = time.perf_counter()
        seqs[i] = send(i)
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for sock, _ in zmq_poll(items, 100):
            i = index[sock]
            if finished(i, seqs[i]):
                now = time.perf_counter()
                lat.append(now - sent[i])
                done += 1
                sent[i] = now
                seqs[i] = send(i)
    elapsed = time.perf_counter() - t0
    if kind == "ours":
        for c in clients:
            c.close()
    else:
        for s in socks:
            s.close(0)
    return lat, done, elapsed


async def _many_async(kind: str, port: int, obs: Observation, robots: int, seconds: float) -> tuple[list, int, float]:
    lat = []
    body = None
    if kind == "websockets":
        import websockets

        conns = [await websockets.connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None) for _ in range(robots)]

        async def call(c):
            await c.send(pack_np(obs))
            return await c.recv()
    else:
        import grpc

        conns = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=_GRPC_OPTIONS) for _ in range(robots)]
        calls = {id(c): c.unary_unary(_GRPC_METHOD, request_serializer=None, response_deserializer=None) for c in conns}

        async def call(c):
            return await calls[id(c)](pack_np(obs), timeout=30)
    for c in conns:  # connect (and warm) each before the clock starts
        _check_np_reply(await call(c))
    t0 = time.perf_counter()
    end = t0 + seconds

    async def robot(c):
        nonlocal body
        n = 0
        while time.perf_counter() < end:
            s = time.perf_counter()
            body = await call(c)
            lat.append(time.perf_counter() - s)
            n += 1
        return n

    done = sum(await asyncio.gather(*(robot(c) for c in conns)))
    elapsed = time.perf_counter() - t0
    _check_np_reply(body)
    for c in conns:
        await c.close()
    return lat, done, elapsed


def _many(kind: str, address, obs: Observation, robots: int, seconds: float, tag: str) -> tuple[list, int, float]:
    if kind in ("ours", "zmq_floor"):
        return _many_zmq(kind, address, obs, robots, seconds, tag)
    return asyncio.run(_many_async(kind, address, obs, robots, seconds))


# ---------------------------------------------------------------- the run


def _ms(samples: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(samples) * 1e3, q)), 4) if samples else None


def _machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), "platform": platform.platform()}


def _targets(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        p = r["payload"]
        if r["robots"] == 1:
            out[f"{p}: ours p50 <= 1.2x floor"] = r["ours_over_floor_p50"] <= 1.2
            out[f"{p}: ours p50 < websockets and grpc"] = r["ours_p50_ms"] < min(r["websockets_p50_ms"], r["grpc_p50_ms"])
            if p == "3xvga":
                out[f"{p}: ours >= 1.5x faster than websockets and grpc"] = min(r["websockets_over_ours_p50"], r["grpc_over_ours_p50"]) >= 1.5
        if r["robots"] == 32:
            out[f"{p}, 32 robots: ours plans/s > websockets and grpc"] = r["ours_plans_per_s"] > max(r["websockets_plans_per_s"], r["grpc_plans_per_s"])
    return out


def run(out: str = DEFAULTS["out"], payloads=None, robots=None, repeats: int = 1000, warmup: int = 100, rounds: int = 3,
        concurrent_s: float = 1.0, jpeg: bool = True, jpeg_quality: int = 90) -> dict:
    payloads = list(payloads or PAYLOADS)
    robots = [int(n) for n in (robots or DEFAULTS["robots"])]
    unknown = [p for p in payloads if p not in PAYLOADS]
    if unknown:
        raise ValueError(f"unknown payloads {unknown}; known: {', '.join(PAYLOADS)}")
    load_start = os.getloadavg()
    procs, where = {}, {}
    try:
        for kind in TRANSPORTS:
            procs[kind], where[kind] = _start(_SERVERS[kind])
        rows = []
        for name in payloads:
            obs = payload_observation(name)
            for n in robots:
                rows.append(_measure(name, obs, n, where, repeats, warmup, rounds, concurrent_s, jpeg and n == 1, jpeg_quality))
                _log.info(_row_text(rows[-1]))
    finally:
        for proc in procs.values():
            _stop(proc)
    result = {
        "rows": rows,
        "targets": _targets(rows),
        "settings": {"repeats": repeats, "warmup": warmup, "rounds": rounds, "concurrent_s": concurrent_s, "state_size": STATE_SIZE,
                     "planner": "trivial (one done step)", "loopback": True},
        "machine": {**_machine(), "load_avg_start": [round(x, 2) for x in load_start],
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()]},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    result["targets_met"] = sum(result["targets"].values())
    result["targets_total"] = len(result["targets"])
    path = Path(out) / "bridge.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result["targets"].items():
        _log.info(f"  {'met    ' if v else 'NOT met'}  {k}")
    _log.info(f"wrote {path}")
    return result


def _measure(name, obs, n, where, repeats, warmup, rounds, concurrent_s, with_jpeg, jpeg_quality) -> dict:
    row = {"payload": name, "robots": n, "bytes": payload_bytes(obs)}
    samples = {k: [] for k in TRANSPORTS}
    if n == 1:
        clients = {k: _CLIENTS[k](where[k], obs) for k in TRANSPORTS}
        if with_jpeg:
            clients["ours_jpeg"] = _Ours(where["ours"], obs, codec="jpeg", jpeg_quality=jpeg_quality, robot="bench-jpeg")
            samples["ours_jpeg"] = []
        try:
            for c in clients.values():
                _time(c, warmup)
            per = max(1, repeats // rounds)
            for _ in range(rounds):
                for k, c in clients.items():
                    gc.collect()
                    gc.disable()
                    try:
                        samples[k] += _time(c, per)
                    finally:
                        gc.enable()
        finally:
            for c in clients.values():
                c.close()
    else:
        done = {k: 0 for k in TRANSPORTS}
        elapsed = {k: 0.0 for k in TRANSPORTS}
        for r in range(rounds):
            for k in TRANSPORTS:
                lat, d, e = _many(k, where[k], obs, n, concurrent_s, f"{name}-{n}-{r}")
                samples[k] += lat
                done[k] += d
                elapsed[k] += e
        for k in TRANSPORTS:
            row[f"{k}_plans_per_s"] = round(done[k] / elapsed[k], 1)
    for k, s in samples.items():
        row[f"{k}_p50_ms"] = _ms(s, 50)
        row[f"{k}_p99_ms"] = _ms(s, 99)
        row[f"{k}_n"] = len(s)
    row["ours_over_floor_p50"] = round(row["ours_p50_ms"] / row["zmq_floor_p50_ms"], 3)
    row["websockets_over_ours_p50"] = round(row["websockets_p50_ms"] / row["ours_p50_ms"], 3)
    row["grpc_over_ours_p50"] = round(row["grpc_p50_ms"] / row["ours_p50_ms"], 3)
    return row


def _row_text(r: dict) -> str:
    text = (f"{r['payload']:>8} x{r['robots']:<2} p50 ms: ours {r['ours_p50_ms']:.3f} (p99 {r['ours_p99_ms']:.3f}), "
            f"floor {r['zmq_floor_p50_ms']:.3f}, websockets {r['websockets_p50_ms']:.3f}, grpc {r['grpc_p50_ms']:.3f}; "
            f"ours/floor {r['ours_over_floor_p50']:.2f}, ws/ours {r['websockets_over_ours_p50']:.2f}, grpc/ours {r['grpc_over_ours_p50']:.2f}")
    if r["robots"] > 1:
        text += (f"; plans/s ours {r['ours_plans_per_s']:.0f}, floor {r['zmq_floor_plans_per_s']:.0f}, "
                 f"websockets {r['websockets_plans_per_s']:.0f}, grpc {r['grpc_plans_per_s']:.0f}")
    if r.get("ours_jpeg_p50_ms") is not None:
        text += f"; ours jpeg p50 {r['ours_jpeg_p50_ms']:.3f}"
    return text
