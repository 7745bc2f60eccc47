"""The inference server: a ROUTER socket that serves plans to many robots at once.

``InferenceServer(planner, address).serve()`` answers ``hello`` with metadata, streams each
plan step the moment the planner yields it, enforces per-request deadlines, puts server
timing in every reply, and keeps serving after malformed input or a vanished client.
The planner object is handed in; this module never imports torch.

Scheduling: requests wait in a FIFO queue; up to ``concurrent_plans`` plans (default 1,
because a planner object may hold per-plan state) advance one step at a time in turn,
and the socket is read between steps, so heartbeats, cancels and emergency stops are
answered while a plan is being computed. A newer observation from a robot supersedes its
older request.
"""

from __future__ import annotations

import collections
import gc
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterator

import msgpack
import zmq

from bridges.protocol import (
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    decode_observation,
    error_message,
    pack,
    unpack,
)
from bridges.sockets import EVENTS, NOBLOCK, POLLIN, readable, recv_frames, send_frames
from embodied.core.errors import ConfigError, EmbodiedError, ProtocolError
from embodied.core.observation import STATE_SIZE
from embodied.core.protocols import PRIVILEGED_PLANNERS, Planner

_log = logging.getLogger("embodied.server")
_IDLE_WAIT_MS = 50  # how long an idle server waits in recv before it checks stop() and max_seconds


@dataclass
class _Request:
    identity: bytes
    robot: str
    seq: int
    obs: object
    t_recv: float  # perf_counter
    wall_recv: float
    decode_ms: float
    deadline: float | None  # perf_counter
    gen: Iterator | None = None
    t_start: float = 0.0
    infer_s: float = 0.0
    n: int = 0


@dataclass
class _Stats:
    started: float = field(default_factory=time.time)
    plans: int = 0
    steps: int = 0
    errors: dict = field(default_factory=lambda: collections.Counter())


class InferenceServer:
    """Serve ``planner`` on ``address`` (``tcp://127.0.0.1:*`` picks a free port)."""

    def __init__(
        self,
        planner: Planner,
        address: str = "tcp://127.0.0.1:5555",
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        default_deadline_ms: float | None = None,
        concurrent_plans: int = 1,
        keys=None,  # bridges.keys.ServerKeys for CurveZMQ
        log=None,
    ):
        self.planner = planner
        self.max_message_bytes = int(max_message_bytes)
        self.default_deadline_ms = default_deadline_ms
        self.concurrent_plans = max(1, int(concurrent_plans))
        self.log = log or _log.info
        self.stats = _Stats()
        self.pending: collections.deque[_Request] = collections.deque()
        self.active: list[_Request] = []
        self.robots: dict[str, bytes] = {}  # robot id -> ZMQ identity, for forwarding e-stops
        self._stop = False
        self.ctx = zmq.Context()
        self._auth = None
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDBUF, 4 << 20)
        self.sock.setsockopt(zmq.RCVBUF, 4 << 20)  # whole camera frames fit the kernel buffers
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a vanished robot raises, not blocks
        self.sock.setsockopt(zmq.SNDHWM, 10000)
        self.sock.setsockopt(zmq.RCVTIMEO, _IDLE_WAIT_MS)  # an idle serve() blocks in recv this long at most
        # Hard per-frame cap (the peer is disconnected above it); below it, unpack() replies 'too_large'.
        self.sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes + MAX_HEADER_BYTES)
        if keys is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=keys.authorized_dir)
            self.sock.curve_secretkey = keys.secret
            self.sock.curve_publickey = keys.public
            self.sock.curve_server = True
        try:
            self.sock.bind(address)
        except zmq.ZMQError as e:
            self.sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
            raise ConfigError(f"cannot bind to {address!r}: {e.strerror}; use tcp://<interface>:<port>, "
                              "e.g. tcp://127.0.0.1:5555, tcp://*:5555 or tcp://127.0.0.1:* (a free port)") from e
        self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.metadata = self._metadata()

    # ------------------------------------------------------------ public

    def serve(self, max_seconds: float | None = None) -> None:
        """Run until ``stop()`` (or a signal handler calling it) or ``max_seconds``."""
        end = None if max_seconds is None else time.perf_counter() + max_seconds
        # The planner is loaded by now (the default model: ~350k Python objects). Freeze them out of
        # the cyclic collector, whose full collections would otherwise walk them all in the middle
        # of a plan (294-341 ms measured on a 2-core VM; 0.00 ms frozen). close() unfreezes.
        gc.collect()
        gc.freeze()
        self.log(f"serving planner {self.metadata['planner']!r} on {self.address}")
        sock = self.sock
        while not self._stop and (end is None or time.perf_counter() < end):
            if self.active or self.pending:
                waiting = readable(sock, 0)
            else:  # idle: block in recv itself (up to RCVTIMEO, so stop() is seen), one wake-up less than poll + recv
                try:
                    self._handle(recv_frames(sock, 0))
                except zmq.Again:
                    continue
                waiting = sock.get(EVENTS) & POLLIN
            if waiting:
                for _ in range(256):  # drain what is waiting, then get back to the plans
                    self._handle(recv_frames(sock, NOBLOCK))
                    if not sock.get(EVENTS) & POLLIN:
                        break
            self._schedule()
            for req in list(self.active):
                self._advance(req)

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        for req in list(self.active):
            self._finish(req)
        self.sock.close(0)
        gc.unfreeze()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()

    def health(self) -> dict:
        s = self.stats
        return {
            "uptime_s": round(time.time() - s.started, 3), "plans": s.plans, "steps": s.steps,
            "errors": dict(s.errors), "active": len(self.active), "queued": len(self.pending),
            "robots": len(self.robots),
            # objects kept out of the cyclic GC since serve() began; collections per generation
            "gc": {"frozen": gc.get_freeze_count(), "collections": [g["collections"] for g in gc.get_stats()]},
        }

    # ------------------------------------------------------------ internals

    def _metadata(self) -> dict:
        cams = getattr(self.planner, "cameras", None)
        name = str(getattr(self.planner, "name", type(self.planner).__name__))
        return {
            "planner": name,
            # whether the planner reads Observation.privileged (simulator ground truth): clients forward it only then
            "privileged": bool(getattr(self.planner, "privileged", name in PRIVILEGED_PLANNERS)),
            "protocol": PROTOCOL_VERSION,
            "cameras": {k: [int(v[0]), int(v[1])] for k, v in cams.items()} if cams else None,
            "state_size": int(getattr(self.planner, "state_size", STATE_SIZE)),
            "codecs": ["raw", "jpeg"],
            "max_message_bytes": self.max_message_bytes,
            "concurrent_plans": self.concurrent_plans,
        }

    def _send(self, identity: bytes, frames: list) -> bool:
        try:
            send_frames(self.sock, [identity, *frames])
            return True
        except zmq.ZMQError as e:  # EHOSTUNREACH: the robot vanished; EAGAIN: it stopped reading
            self.stats.errors["unreachable"] += 1
            self.log(f"reply to a vanished or stalled client dropped ({e.strerror})")
            for req in [r for r in self.active if r.identity == identity]:
                self._finish(req)
            self.pending = collections.deque(r for r in self.pending if r.identity != identity)
            return False

    def _error(self, identity: bytes, code: str, message: str, robot: str = "server", seq: int = 0, **extra) -> None:
        self.stats.errors[code] += 1
        self._send(identity, error_message(code, message, robot, seq, server={"send": time.time()}, **extra))

    def _handle(self, frames: list) -> None:
        t_recv, wall = time.perf_counter(), time.time()
        if len(frames) < 2:
            return  # a ROUTER always prepends the identity; nothing to answer
        identity = frames[0].bytes
        seq, robot = 0, "server"
        try:
            header, blobs = unpack(frames[1:], self.max_message_bytes)
            seq, robot, kind = header["seq"], header["robot"], header["type"]
            self.robots.pop(robot, None)  # re-insert: the dict stays ordered by last contact
            self.robots[robot] = identity
            if len(self.robots) > 4096:  # bounded: forget the robot heard from longest ago
                self.robots.pop(next(iter(self.robots)))
            timing = {"recv": wall}
            if kind == "observation":
                obs = decode_observation(header, blobs)
                self._check_expected(obs)
                budget = header.get("deadline_ms", self.default_deadline_ms)
                if budget is not None and (type(budget) not in (int, float) or not 0 < budget < 1e9):
                    raise ProtocolError("'deadline_ms' must be a positive number of milliseconds", code="bad_header")
                self._cancel(robot)  # a newer observation supersedes the older request
                decode_ms = (time.perf_counter() - t_recv) * 1e3
                deadline = None if budget is None else t_recv + budget / 1e3
                self.pending.append(_Request(identity, robot, seq, obs, t_recv, wall, decode_ms, deadline))
            elif kind == "hello":
                self._send(identity, self._reply("metadata", robot, seq, timing, metadata=self.metadata))
            elif kind == "heartbeat":
                self._send(identity, self._reply("heartbeat", robot, seq, timing, health=self.health()))
            elif kind == "cancel":
                target = header.get("cancel")
                self._cancel(robot, target if isinstance(target, int) else None)
                self._send(identity, self._reply("ack", robot, seq, timing, ack="cancel"))
            elif kind == "reset":
                self._cancel(robot)
                self.planner.reset()
                self._send(identity, self._reply("ack", robot, seq, timing, ack="reset"))
            elif kind == "estop":
                self._estop(identity, robot, seq, header, timing)
        except ProtocolError as e:
            self._error(identity, e.code, str(e), robot, seq or getattr(e, "seq", 0))
        except Exception as e:  # the server must keep serving
            self.log(f"internal error on a request: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            self._error(identity, "internal", f"{type(e).__name__}: {e}", robot, seq)

    def _check_expected(self, obs) -> None:
        meta = self.metadata
        if obs.state.shape[0] != meta["state_size"]:
            raise ProtocolError(f"state has {obs.state.shape[0]} values; this planner expects {meta['state_size']}", code="bad_shape")
        for cam, (h, w) in (meta["cameras"] or {}).items():
            img = obs.frames.get(cam)
            if img is None:
                raise ProtocolError(f"camera {cam!r} missing; this planner expects {sorted(meta['cameras'])}", code="bad_observation")
            if img.shape[:2] != (h, w):
                raise ProtocolError(f"camera {cam!r} is {list(img.shape[:2])}; this planner expects [{h}, {w}]", code="bad_shape")

    def _estop(self, identity, robot, seq, header, timing) -> None:
        target = header.get("target", robot)
        if not isinstance(target, str):
            raise ProtocolError("estop 'target' must be a robot id", code="bad_header")
        self._cancel(target)
        if target != robot:
            dest = self.robots.get(target)
            if dest is None:
                raise ProtocolError(f"no robot {target!r} has connected; known: {sorted(self.robots)[:20]}", code="unknown_robot")
            self._send(dest, pack({"type": "estop", "robot": target, "seq": 0, "by": robot, "server": {"send": time.time()}}))
        self.log(f"emergency stop for {target!r} from {robot!r}")
        self._send(identity, self._reply("ack", robot, seq, timing, ack="estop", target=target))

    def _reply(self, kind: str, robot: str, seq: int, timing: dict, **fields) -> list:
        timing["send"] = time.time()
        return [msgpack.packb({"v": PROTOCOL_VERSION, "type": kind, "robot": robot, "seq": seq, "t": timing["send"],
                               "server": timing, **fields}, use_bin_type=True)]

    def _cancel(self, robot: str, seq: int | None = None) -> None:
        if not any(r.robot == robot for r in self.active) and not any(r.robot == robot for r in self.pending):
            return
        for req in [r for r in self.active if r.robot == robot and (seq is None or r.seq == seq)]:
            self._finish(req)
        self.pending = collections.deque(r for r in self.pending if not (r.robot == robot and (seq is None or r.seq == seq)))

    def _finish(self, req: _Request) -> None:
        if req in self.active:
            self.active.remove(req)
        if req.gen is not None:
            try:
                req.gen.close()
            except Exception as e:
                self.log(f"planner raised on close: {e}")

    def _schedule(self) -> None:
        now = time.perf_counter()
        while self.pending and len(self.active) < self.concurrent_plans:
            req = self.pending.popleft()
            if req.deadline is not None and now > req.deadline:
                self._error(req.identity, "deadline_exceeded",
                            f"request waited {(now - req.t_recv) * 1e3:.1f} ms in the queue, past its deadline; "
                            "raise deadline_ms or add servers", req.robot, req.seq)
                continue
            req.t_start = now
            try:
                req.gen = iter(self.planner.plan(req.obs))
            except Exception as e:
                self._planner_error(req, e)
                continue
            self.active.append(req)

    def _timing(self, req: _Request) -> dict:
        now = time.perf_counter()
        return {
            "recv": req.wall_recv, "decode_ms": req.decode_ms, "queue_ms": (req.t_start - req.t_recv) * 1e3,
            "infer_ms": req.infer_s * 1e3, "elapsed_ms": (now - req.t_recv) * 1e3, "send": time.time(),
        }

    def _planner_error(self, req: _Request, e: Exception) -> None:
        if not isinstance(e, EmbodiedError):
            self.log(f"planner crashed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        self._finish(req)
        self._error(req.identity, "planner_error", f"{type(e).__name__}: {e}", req.robot, req.seq)

    def _advance(self, req: _Request) -> None:
        t0 = time.perf_counter()
        try:
            step = next(req.gen)
        except StopIteration:
            req.infer_s += time.perf_counter() - t0
            self._finish(req)
            self.stats.plans += 1
            self._send(req.identity, pack({"type": "end", "robot": req.robot, "seq": req.seq, "n_steps": req.n,
                                           "server": self._timing(req)}))
            return
        except Exception as e:  # a planner bug must not stop the server
            self._planner_error(req, e)
            return
        req.infer_s += time.perf_counter() - t0
        if req.deadline is not None and time.perf_counter() > req.deadline:
            self._finish(req)
            self._error(req.identity, "deadline_exceeded",
                        f"plan step {req.n} was ready {(time.perf_counter() - req.t_recv) * 1e3:.1f} ms after the "
                        "request arrived, past its deadline", req.robot, req.seq)
            return
        text = str(getattr(step, "text", step))
        self.stats.steps += 1
        req.n += 1
        final = text.strip().lower() == "done"  # the grammar ends every plan with done: no separate 'end' message
        if final:
            self._finish(req)
            self.stats.plans += 1
        self._send(req.identity, pack({"type": "step", "robot": req.robot, "seq": req.seq, "index": req.n - 1,
                                       "text": text, "final": final, "server": self._timing(req)}))
