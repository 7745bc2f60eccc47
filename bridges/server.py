"""The inference server: a ROUTER socket that serves plans to many robots at once.

``InferenceServer(planner, address).serve()`` answers ``hello`` with metadata, streams each
plan step the moment the planner yields it, enforces per-request deadlines, puts server
timing in every reply, and keeps serving after malformed input or a vanished client.
The planner object is handed in; this module never imports torch.

Connections and robot ids: a robot id belongs to the connection that used it first, for
as long as that connection lives. Another connection that claims it gets
``robot_id_taken`` (the holder is sent a ``robot_id_claimed`` notice, which also tells the
server whether the holder is still there: a vanished holder's ids are freed at once), unless
its ``hello`` asks for ``takeover``: then the holder is told ``superseded`` (with the seq of
each request it loses). With CurveZMQ an id is also bound to the client key that used it
first, or to the ids an ``authorized/<name>.robots`` file lists for that key: one
authorised key cannot act as another robot. A connection may hold at most
``max_robots_per_connection`` ids.

Scheduling: each connection has its own queue of requests; connections are served round
robin (not one FIFO, so one connection cannot starve the others). At most ``max_queued``
requests and ``max_queued_bytes`` of decoded arrays wait in all; when full, a new request
displaces the newest request of the connection with the most queued (which gets ``busy``),
or gets ``busy`` itself. Every request has a deadline (``default_deadline_ms`` when it
sends none). Up to ``concurrent_plans`` plans (default 1, because a planner object may hold
per-plan state) advance one step at a time in turn, and the socket is read between steps,
so heartbeats, cancels and emergency stops are answered while a plan is being computed.
JPEG frames are size-checked from their own header on the loop and decoded on a worker
thread, off the loop that answers heartbeats.

Why one ~780-line module: it is one object run by one loop (one socket; JPEG decoding aside) whose methods
all read and write the same state (connections, robot ids, queues, plans in flight); the
hardening guarantees (ids, displacement, deadlines) are invariants across those methods, and
split files would hide that. The wire format is ``bridges.protocol``, the codecs ``bridges.codec``.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import ipaddress
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import msgpack
import zmq

from bridges.codec import SpecCache
from bridges.protocol import (
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    SUPPORTED_VERSIONS,
    finish_jpegs,
    parse_header,
    read_observation,
)
from bridges.sockets import NOBLOCK, POLLIN, SNDMORE, _recv, _send, tune, zmq_poll
from embodied.core.errors import ConfigError, EmbodiedError, ProtocolError
from embodied.core.observation import STATE_SIZE
from embodied.core.protocols import PRIVILEGED_PLANNERS, Planner

_log = logging.getLogger("embodied.server")
_IDLE_WAIT_MS = 50  # how long an idle server waits in recv before it checks stop() and max_seconds
MAX_ROBOTS = 4096  # robot ids held at once, over all connections
MAX_CONNECTIONS = 4096  # connections remembered; beyond it the longest-idle one without work is forgotten
IDLE_FORGET_S = 60.0  # a connection silent this long, with nothing queued or running, is forgotten (its ids freed)
_DRAIN = 256  # messages read in one go before the plans get their turn again
_perf = time.perf_counter
_wall = time.time
_packb = msgpack.Packer(use_bin_type=True).pack
_MORE_NOBLOCK = SNDMORE | NOBLOCK


class _Conn:
    """One client connection (a ZeroMQ routing id)."""

    __slots__ = ("identity", "key", "robots", "queue", "last", "specs")

    def __init__(self, identity: bytes, key: str | None):
        self.identity = identity
        self.key = key  # CurveZMQ client public key (z85), or None
        self.robots: dict[str, int] = {}  # robot ids held -> seq of the last observation
        self.queue: collections.deque[_Request] = collections.deque()
        self.last = _perf()
        self.specs = SpecCache(4)  # array specs of this connection's robots, checked once


class _Request:
    __slots__ = ("conn", "robot", "seq", "obs", "t_recv", "wall_recv", "decode_ms", "deadline", "gen", "t_start",
                 "infer_s", "n", "nbytes", "state")

    def __init__(self, conn, robot, seq, obs, t_recv, wall_recv, deadline, nbytes):
        self.conn, self.robot, self.seq, self.obs = conn, robot, seq, obs
        self.t_recv, self.wall_recv, self.deadline, self.nbytes = t_recv, wall_recv, deadline, nbytes
        self.decode_ms = 0.0
        self.gen: Iterator | None = None
        self.t_start = 0.0
        self.infer_s = 0.0
        self.n = 0
        self.state = "new"  # decoding | queued | active | done


class _Stats:
    def __init__(self):
        self.started = _wall()
        self.plans = 0
        self.steps = 0
        self.errors = collections.Counter()


def _exposed(address: str) -> bool:
    """Whether a bind address is reachable from other computers (all interfaces or a non-loopback one)."""
    if not address.startswith("tcp://"):
        return False
    host = address[6:].rsplit(":", 1)[0].strip("[]")
    if host in ("*", "", "0.0.0.0", "::"):
        return True
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # an interface name or a host name: not loopback as far as we can tell


def _allow_lists(authorized_dir: str) -> dict[str, frozenset]:
    """``authorized/<name>.robots`` files: the robot ids each client key may use (z85 key -> ids)."""
    import zmq.auth

    out = {}
    for robots in sorted(Path(authorized_dir).glob("*.robots")):
        key_file = robots.with_suffix(".key")
        if not key_file.is_file():
            raise ConfigError(f"{robots} has no {key_file.name} beside it")
        public, _ = zmq.auth.load_certificate(str(key_file))
        ids = frozenset(w for line in robots.read_text().splitlines() for w in line.replace(",", " ").split() if not w.startswith("#"))
        out[public.decode("ascii")] = ids
    return out


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 4 << 20


def _return_big_buffers_to_the_os() -> bool:
    """Make glibc give every buffer over 4 MiB back to the OS when it is freed.

    By default glibc raises its mmap threshold to the size of each large block it frees (up to
    32 MiB) and then keeps up to twice that on its heaps: after a burst of oversized messages
    (received whole by ZeroMQ, then refused) the server's RSS stayed 46-74 MB higher for good.
    A fixed threshold turns that adjustment off. Camera frames (VGA: 0.9 MB) stay below it.
    Returns False where the C library has no ``mallopt`` (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


class InferenceServer:
    """Serve ``planner`` on ``address`` (``tcp://127.0.0.1:*`` picks a free port)."""

    def __init__(
        self,
        planner: Planner,
        address: str = "tcp://127.0.0.1:5555",
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        default_deadline_ms: float | None = 30000.0,
        concurrent_plans: int = 1,
        max_queued: int = 64,
        max_queued_bytes: int | None = None,
        max_robots_per_connection: int = 16,
        keys=None,  # bridges.keys.ServerKeys for CurveZMQ
        log=None,
    ):
        self.planner = planner
        self.max_message_bytes = int(max_message_bytes)
        _return_big_buffers_to_the_os()
        # a JPEG frame decodes to more than it weighs: bound what the arrays of one message decode to
        self.max_decoded_bytes = 4 * self.max_message_bytes
        self.default_deadline_ms = None if default_deadline_ms is None else float(default_deadline_ms)
        self.concurrent_plans = max(1, int(concurrent_plans))
        self.max_queued = max(1, int(max_queued))
        self.max_queued_bytes = int(max_queued_bytes) if max_queued_bytes else 8 * self.max_message_bytes
        self.max_robots_per_connection = max(1, int(max_robots_per_connection))
        self.log = log or _log.info
        self.stats = _Stats()
        self.conns: dict[bytes, _Conn] = {}
        self.holders: dict[str, _Conn] = {}  # robot id -> the connection that holds it
        self.owners: dict[str, str] = {}  # CurveZMQ: robot id -> the client key that used it first
        self.allowed: dict[str, frozenset] = {}  # CurveZMQ: client key -> the robot ids its .robots file lists
        self.reserved: dict[str, str] = {}  # robot id -> the key whose .robots file lists it
        self.active: list[_Request] = []
        self._rr: dict[_Conn, None] = {}  # connections with queued requests, in round-robin order
        self._last_served: _Conn | None = None
        self._next_prune = 0.0
        self.n_queued = 0
        self.queued_bytes = 0
        self.decoding: dict[_Request, None] = {}  # JPEG decodes in flight
        self._decoded: collections.deque = collections.deque()  # (request, error) from the decode thread
        self._pool = None
        self._wake = None
        self._stop = False
        self.ctx = zmq.Context()
        self._auth = None
        self._curve = keys is not None
        self.sock = tune(self.ctx.socket(zmq.ROUTER), server=True)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a vanished robot raises, not blocks
        self.sock.setsockopt(zmq.RCVTIMEO, _IDLE_WAIT_MS)  # an idle serve() blocks in recv this long at most
        # Hard per-frame cap (the peer is disconnected above it); below it, the server replies 'too_large'.
        self.sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes + MAX_HEADER_BYTES)
        if keys is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.allowed = _allow_lists(keys.authorized_dir)
            for key, ids in self.allowed.items():
                for robot in ids:
                    self.reserved.setdefault(robot, key)
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
        if keys is None and _exposed(address):
            _log.warning(f"WARNING: serving on {address} (reachable from other computers) without CurveZMQ: traffic is "
                         "not encrypted and any client can connect and claim robot ids; create keys with `embodied keygen` "
                         "and pass curve.secret_key= and curve.authorized=, or bind to tcp://127.0.0.1")
        self.metadata = self._metadata()
        self._state_size, self._cameras = self.metadata["state_size"], self.metadata["cameras"]

    # ------------------------------------------------------------ public

    def serve(self, max_seconds: float | None = None) -> None:
        """Run until ``stop()`` (or a signal handler calling it) or ``max_seconds``."""
        end = None if max_seconds is None else _perf() + max_seconds
        # The planner is loaded by now (the default model: ~350k Python objects). Freeze them out of
        # the cyclic collector, whose full collections would otherwise walk them all in the middle
        # of a plan (294-341 ms measured on a 2-core VM; 0.00 ms frozen). close() unfreezes.
        gc.collect()
        gc.freeze()
        self.log(f"serving planner {self.metadata['planner']!r} on {self.address}")
        sock = self.sock
        while not self._stop and (end is None or _perf() < end):
            if self.active or self._rr:
                self._drain()
            elif self.decoding:  # nothing to plan: wait for a message or a finished JPEG decode
                zmq_poll([(sock, POLLIN), (self._wake[0], POLLIN)], _IDLE_WAIT_MS)
                self._drain()
            else:  # idle: block in recv itself (up to RCVTIMEO, so stop() is seen): one wake-up less than poll + recv
                try:
                    self._receive(0)  # what else is waiting is read in the next turns, after this request's plan step
                except zmq.Again:
                    if _perf() > self._next_prune:
                        self._prune()
                    continue
            if self.decoding:
                self._collect_decoded()
            if self._rr:
                self._schedule()
            if self.active:
                for req in self.active[:]:
                    self._advance(req)

    def stop(self) -> None:
        self._stop = True

    def close(self) -> None:
        for req in list(self.active):
            self._finish(req)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._wake is not None:
            for s in self._wake:
                s.close(0)
        self.sock.close(0)
        gc.unfreeze()
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()

    def health(self) -> dict:
        s = self.stats
        return {
            "uptime_s": round(_wall() - s.started, 3), "plans": s.plans, "steps": s.steps,
            "errors": dict(s.errors), "active": len(self.active), "queued": self.n_queued,
            "queued_bytes": self.queued_bytes, "decoding": len(self.decoding),
            "robots": len(self.holders), "connections": len(self.conns),
            # objects kept out of the cyclic GC since serve() began; collections per generation
            "gc": {"frozen": gc.get_freeze_count(), "collections": [g["collections"] for g in gc.get_stats()]},
        }

    # ------------------------------------------------------------ receiving

    def _metadata(self) -> dict:
        cams = getattr(self.planner, "cameras", None)
        name = str(getattr(self.planner, "name", type(self.planner).__name__))
        return {
            "planner": name,
            # whether the planner reads Observation.privileged (simulator ground truth): clients forward it only then
            "privileged": bool(getattr(self.planner, "privileged", name in PRIVILEGED_PLANNERS)),
            "protocol": PROTOCOL_VERSION,
            "versions": list(SUPPORTED_VERSIONS),
            "cameras": {k: [int(v[0]), int(v[1])] for k, v in cams.items()} if cams else None,
            "state_size": int(getattr(self.planner, "state_size", STATE_SIZE)),
            "codecs": ["raw", "jpeg"],
            "max_message_bytes": self.max_message_bytes,
            "concurrent_plans": self.concurrent_plans,
            "max_robots_per_connection": self.max_robots_per_connection,
            "default_deadline_ms": self.default_deadline_ms,
        }

    def _drain(self) -> None:
        for _ in range(_DRAIN):  # what is waiting, then back to the plans
            try:
                self._receive(NOBLOCK)
            except zmq.Again:
                return

    def _receive(self, flags: int) -> None:
        """Read one whole message (the routing id as bytes, every other part without a copy) and handle it."""
        sock = self.sock
        identity = _recv(sock, flags)  # a ROUTER always prepends the peer's routing id, never alone
        t_recv, wall = _perf(), _wall()
        f = _recv(sock, NOBLOCK, False)  # the rest of a multipart message is there once its first part is
        parts = [f]
        while f.more:
            f = _recv(sock, NOBLOCK, False)
            parts.append(f)
        conn = self.conns.get(identity)
        if conn is None:
            conn = self._connection(identity, parts[0])
        conn.last = t_recv
        self._handle(conn, parts, t_recv, wall)

    def _prune(self) -> None:
        """Forget connections silent for ``IDLE_FORGET_S`` with nothing queued or running: a client that
        went away between requests (nothing was sent to it, so nothing failed) does not hold ids for ever."""
        now = _perf()
        self._next_prune = now + 10.0
        busy = {r.conn for r in self.active} | {r.conn for r in self.decoding}
        for conn in [c for c in self.conns.values() if now - c.last > IDLE_FORGET_S and not c.queue and c not in busy]:
            self._drop_conn(conn, "idle")

    def _connection(self, identity: bytes, frame) -> _Conn:
        if len(self.conns) >= MAX_CONNECTIONS:
            self._prune()
        if len(self.conns) >= MAX_CONNECTIONS:
            idle = [c for c in self.conns.values() if not c.queue and not any(r.conn is c for r in self.active)]
            if idle:
                self._drop_conn(min(idle, key=lambda c: c.last), "forgotten (too many connections)")
        key = None
        if self._curve:
            try:
                key = frame.get("User-Id")  # set by the ZAP handler: the client's z85 public key
            except zmq.ZMQError:
                key = None
        conn = self.conns[identity] = _Conn(identity, key)
        return conn

    def _handle(self, conn: _Conn, parts: list, t_recv: float, wall: float) -> None:
        seq, robot = 0, "server"
        try:
            total = 0
            for p in parts:
                total += len(p)
            header = parse_header(parts[0], len(parts) - 1, total, self.max_message_bytes, REQUEST_TYPES)
            seq, robot, kind = header["seq"], header["robot"], header["type"]
            if kind == "observation":
                self._observation(conn, header, parts[1:], t_recv, wall)
                return
            if kind == "estop":  # no claim needed: anyone may stop any robot
                self._estop(conn, robot, seq, header, wall)
                return
            self._claim(conn, robot, takeover=kind == "hello" and header.get("takeover") is True)
            if kind == "heartbeat":
                self._send(conn, self._reply("heartbeat", robot, seq, wall, health=self.health()))
            elif kind == "hello":
                self._send(conn, self._reply("metadata", robot, seq, wall, metadata=self.metadata))
            elif kind == "cancel":
                target = header.get("cancel")
                self._cancel(robot, target if type(target) is int else None)
                self._send(conn, self._reply("ack", robot, seq, wall, ack="cancel"))
            elif kind == "reset":
                self._cancel(robot)
                self.planner.reset()
                self._send(conn, self._reply("ack", robot, seq, wall, ack="reset"))
        except ProtocolError as e:
            self._error(conn, e.code, str(e), robot, seq or getattr(e, "seq", 0), **getattr(e, "extra", {}))
        except Exception as e:  # the server must keep serving
            self.log(f"internal error on a request: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            self._error(conn, "internal", f"{type(e).__name__}: {e}", robot, seq)

    def _observation(self, conn: _Conn, header: dict, blobs: list, t_recv: float, wall: float) -> None:
        robot, seq = header["robot"], header["seq"]
        budget = header.get("deadline_ms")
        if budget is None:
            budget = self.default_deadline_ms
        elif type(budget) not in (int, float) or not 0 < budget < 1e9:
            raise ProtocolError("'deadline_ms' must be a positive number of milliseconds", code="bad_header")
        last = conn.robots.get(robot)
        if last is None:
            self._claim(conn, robot, takeover=False)
            last = -1
        if seq <= last:
            raise ProtocolError(f"observation seq {seq} arrived after seq {last} from robot {robot!r}; "
                                "the newer request stands", code="out_of_order")
        obs, jpegs, nbytes = read_observation(header, blobs, conn.specs, self.max_decoded_bytes)
        if obs.state.shape[0] != self._state_size or self._cameras:
            self._check_expected(obs, jpegs)
        conn.robots[robot] = seq
        if self.active or conn.queue or self.decoding:
            self._cancel(robot)  # a newer observation supersedes the older request
        req = _Request(conn, robot, seq, obs, t_recv, wall, None if budget is None else t_recv + budget / 1e3, nbytes)
        if jpegs:
            if self._admit(req):
                self._decode_later(req, jpegs)
            return
        now = _perf()
        req.decode_ms = (now - t_recv) * 1e3
        if not self._rr and len(self.active) < self.concurrent_plans:  # nothing waits: start it now
            self._last_served = conn
            req.t_start = now
            req.state = "active"
            try:
                req.gen = iter(self.planner.plan(obs))
            except Exception as e:
                self._planner_error(req, e)
                return
            self.active.append(req)
        elif self._admit(req):
            self._enqueue(req)

    def _check_expected(self, obs, jpegs) -> None:
        meta = self.metadata
        if obs.state.shape[0] != meta["state_size"]:
            raise ProtocolError(f"state has {obs.state.shape[0]} values; this planner expects {meta['state_size']}", code="bad_shape")
        cams = meta["cameras"]
        if not cams:
            return
        shapes = {name: img.shape for name, img in obs.frames.items() if img is not None}
        shapes.update({f[1]: f[3] for f, _ in jpegs})
        for cam, (h, w) in cams.items():
            shape = shapes.get(cam)
            if shape is None:
                raise ProtocolError(f"camera {cam!r} missing; this planner expects {sorted(cams)}", code="bad_observation")
            if shape[:2] != (h, w):
                raise ProtocolError(f"camera {cam!r} is {list(shape[:2])}; this planner expects [{h}, {w}]", code="bad_shape")

    # ------------------------------------------------------------ robot ids

    def _claim(self, conn: _Conn, robot: str, takeover: bool) -> None:
        """Make sure ``conn`` holds ``robot`` (see the module doc); raise ``ProtocolError`` if it may not."""
        if robot in conn.robots:
            return
        if self._curve:
            allowed = self.allowed.get(conn.key)
            if allowed is not None and robot not in allowed:
                raise ProtocolError(f"this client key may use the robot ids {sorted(allowed)[:20]} only, not {robot!r}",
                                    code="robot_id_taken")
            owner = self.reserved.get(robot) or self.owners.get(robot)
            if owner is not None and owner != conn.key:
                raise ProtocolError(f"robot id {robot!r} is bound to another client key; choose another robot_id",
                                    code="robot_id_taken")
        holder = self.holders.get(robot)
        if holder is not None and holder is not conn:
            if takeover:
                self._supersede(holder, robot)
            elif self._reachable(holder, robot):
                raise ProtocolError(f"robot id {robot!r} is held by another live connection; give each robot its own "
                                    "robot_id (a restarted robot's hello may ask for takeover)", code="robot_id_taken")
        if len(conn.robots) >= self.max_robots_per_connection:
            raise ProtocolError(f"this connection already holds {len(conn.robots)} robot ids, the most one connection "
                                f"may use (max_robots_per_connection); open a connection per robot", code="too_many_robots")
        if len(self.holders) >= MAX_ROBOTS:
            self._prune()
        if len(self.holders) >= MAX_ROBOTS:
            raise ProtocolError(f"the server holds {len(self.holders)} robot ids, its limit", code="too_many_robots")
        conn.robots[robot] = -1
        self.holders[robot] = conn
        if self._curve and conn.key is not None and robot not in self.owners and len(self.owners) < 8 * MAX_ROBOTS:
            self.owners[robot] = conn.key

    def _reachable(self, holder: _Conn, robot: str) -> bool:
        """Tell the holder of ``robot`` that another connection claimed it; a holder that has gone
        (ROUTER_MANDATORY: EHOSTUNREACH) is forgotten and its ids freed."""
        msg = _packb({"v": PROTOCOL_VERSION, "type": "error", "robot": robot, "seq": 0, "t": _wall(), "code": "robot_id_claimed",
                      "message": f"another connection tried to use robot id {robot!r}; it was refused (you hold it)"})
        try:
            self.sock.send(holder.identity, _MORE_NOBLOCK)
            self.sock.send(msg, NOBLOCK)
            return True
        except zmq.Again:
            return True  # connected but not reading: still there
        except zmq.ZMQError:
            self._drop_conn(holder, "gone")
            return False

    def _supersede(self, holder: _Conn, robot: str) -> None:
        lost = [r for r in self.active if r.robot == robot] + [r for r in holder.queue if r.robot == robot]
        lost += [r for r in self.decoding if r.robot == robot]
        self._cancel(robot)
        self._release(holder, robot)
        why = f"another connection took over robot id {robot!r} (its hello asked for takeover)"
        for req in lost or [None]:
            self._error(holder, "superseded", why, robot, req.seq if req is not None else 0)
        self.log(f"robot id {robot!r} taken over by a new connection; the old one was told 'superseded'")

    def _release(self, conn: _Conn, robot: str) -> None:
        conn.robots.pop(robot, None)
        if self.holders.get(robot) is conn:
            del self.holders[robot]

    def _drop_conn(self, conn: _Conn, why: str) -> None:
        """Forget a connection: its requests (nobody to answer) and its robot ids."""
        for robot in list(conn.robots):
            self._cancel(robot)
            self._release(conn, robot)
        for req in list(conn.queue):
            self._unqueue(req)
        for req in [r for r in self.active if r.conn is conn]:
            self._finish(req)
        for req in [r for r in self.decoding if r.conn is conn]:
            req.state = "done"
        if self.conns.get(conn.identity) is conn:
            del self.conns[conn.identity]
        if self._last_served is conn:
            self._last_served = None

    # ------------------------------------------------------------ queueing

    def _admit(self, req: _Request) -> bool:
        """Bound the queue: make room for ``req`` or answer it ``busy``."""
        if self.n_queued < self.max_queued and self.queued_bytes + req.nbytes <= self.max_queued_bytes:
            return True
        if req.nbytes > self.max_queued_bytes:
            self._error(req.conn, "busy", f"this request decodes to {req.nbytes} bytes, more than the whole queue "
                        f"may hold ({self.max_queued_bytes})", req.robot, req.seq)
            return False
        mine = len(req.conn.queue) + 1
        while self.n_queued >= self.max_queued or self.queued_bytes + req.nbytes > self.max_queued_bytes:
            heavy = max(self._rr, key=lambda c: len(c.queue), default=None)
            if heavy is None or len(heavy.queue) <= mine:
                self._error(req.conn, "busy", f"the server's queue is full ({self.n_queued} requests, "
                            f"{self.queued_bytes} bytes); try again later", req.robot, req.seq)
                return False
            victim = heavy.queue[-1]  # the newest request of the connection with the most queued
            self._unqueue(victim)
            self._error(victim.conn, "busy", "displaced from the full queue by a connection with fewer requests",
                        victim.robot, victim.seq)
        return True

    def _enqueue(self, req: _Request) -> None:
        req.state = "queued"
        conn = req.conn
        conn.queue.append(req)
        self.n_queued += 1
        self.queued_bytes += req.nbytes
        if conn not in self._rr:
            self._rr[conn] = None

    def _unqueue(self, req: _Request) -> None:
        if req.state == "decoding":
            req.state = "done"  # counted out when the decode thread hands it back
            return
        if req.state != "queued":
            return
        conn = req.conn
        conn.queue.remove(req)
        if not conn.queue:
            self._rr.pop(conn, None)
        req.state = "done"
        self.n_queued -= 1
        self.queued_bytes -= req.nbytes
        req.obs = None

    def _decode_later(self, req: _Request, jpegs: list) -> None:
        """Decode the JPEG frames of ``req`` on the worker thread; the loop goes on."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg-decode")
            pull = self.ctx.socket(zmq.PAIR)
            pull.bind(f"inproc://wake-{id(self)}")
            push = self.ctx.socket(zmq.PAIR)
            push.connect(f"inproc://wake-{id(self)}")
            self._wake = (pull, push)
        push, done = self._wake[1], self._decoded

        def job(obs=req.obs, jpegs=jpegs):
            err = None
            try:
                finish_jpegs(obs, jpegs)
            except Exception as e:
                err = e
            done.append((req, err))  # before the wake-up, so the loop finds it when it wakes
            push.send(b"", NOBLOCK)  # only this worker thread sends on it

        req.state = "decoding"
        self.n_queued += 1
        self.queued_bytes += req.nbytes
        self.decoding[req] = None
        self._pool.submit(job)

    def _collect_decoded(self) -> None:
        pull, done = self._wake[0], self._decoded
        try:
            while True:
                _recv(pull, NOBLOCK)
        except zmq.Again:
            pass
        while done:
            req, err = done.popleft()
            del self.decoding[req]
            self.n_queued -= 1
            self.queued_bytes -= req.nbytes
            if req.state != "decoding":
                continue  # cancelled or superseded meanwhile
            if err is None:
                req.decode_ms = (_perf() - req.t_recv) * 1e3
                self._enqueue(req)
            elif isinstance(err, ProtocolError):
                req.state = "done"
                self._error(req.conn, err.code, str(err), req.robot, req.seq)
            else:
                req.state = "done"
                self.log(f"internal error decoding a JPEG frame: {type(err).__name__}: {err}")
                self._error(req.conn, "internal", f"{type(err).__name__}: {err}", req.robot, req.seq)

    def _schedule(self) -> None:
        now = _perf()
        rr = self._rr
        while rr and len(self.active) < self.concurrent_plans:
            conn = next(iter(rr))  # round robin: the connection whose turn it is
            if conn is self._last_served and len(rr) > 1:  # it just had a turn (its plan started at once): the others first
                del rr[conn]
                rr[conn] = None
                conn = next(iter(rr))
            self._last_served = conn
            req = conn.queue.popleft()
            del rr[conn]
            if conn.queue:
                rr[conn] = None  # back of the line
            self.n_queued -= 1
            self.queued_bytes -= req.nbytes
            if req.deadline is not None and now > req.deadline:
                req.state = "done"
                self._error(conn, "deadline_exceeded",
                            f"request waited {(now - req.t_recv) * 1e3:.1f} ms in the queue, past its deadline; "
                            "raise deadline_ms or add servers", req.robot, req.seq)
                continue
            req.t_start = now
            req.state = "active"
            try:
                req.gen = iter(self.planner.plan(req.obs))
            except Exception as e:
                self._planner_error(req, e)
                continue
            self.active.append(req)

    # ------------------------------------------------------------ replies

    def _send(self, conn: _Conn, payload: bytes) -> bool:
        sock = self.sock
        try:
            _send(sock, conn.identity, _MORE_NOBLOCK)
            _send(sock, payload, NOBLOCK)
            return True
        except zmq.ZMQError as e:  # EHOSTUNREACH: the robot vanished; EAGAIN: it stopped reading
            self.stats.errors["unreachable"] += 1
            self.log(f"reply to a vanished or stalled client dropped ({e.strerror}); its requests and robot ids are freed")
            self._drop_conn(conn, "unreachable")
            return False

    def _error(self, conn: _Conn, code: str, message: str, robot: str = "server", seq: int = 0, **extra) -> None:
        self.stats.errors[code] += 1
        now = _wall()
        self._send(conn, _packb({"v": PROTOCOL_VERSION, "type": "error", "robot": robot, "seq": seq, "t": now, "code": code,
                                 "message": message, "server": {"send": now}, **extra}))

    def _reply(self, kind: str, robot: str, seq: int, wall_recv: float, **fields) -> bytes:
        now = _wall()
        return _packb({"v": PROTOCOL_VERSION, "type": kind, "robot": robot, "seq": seq, "t": now,
                       "server": {"recv": wall_recv, "send": now}, **fields})

    def _estop(self, conn: _Conn, robot: str, seq: int, header: dict, wall: float) -> None:
        target = header.get("target", robot)
        if type(target) is not str or not 0 < len(target) <= 128:
            raise ProtocolError("estop 'target' must be a robot id", code="bad_header")
        dest = self.holders.get(target)
        if dest is None:
            raise ProtocolError(f"no robot {target!r} is connected; known: {sorted(self.holders)[:20]}", code="unknown_robot")
        self._cancel(target)
        delivered = True
        if dest is not conn:  # the connection that holds the target id gets it, whoever asked
            delivered = self._send(dest, _packb({"v": PROTOCOL_VERSION, "type": "estop", "robot": target, "seq": 0, "t": _wall(),
                                                 "by": robot, "server": {"send": _wall()}}))
        self.log(f"emergency stop for {target!r} from {robot!r}" + ("" if delivered else " (not delivered: the robot has gone)"))
        self._send(conn, self._reply("ack", robot, seq, wall, ack="estop", target=target, delivered=delivered))

    def _cancel(self, robot: str, seq: int | None = None) -> None:
        conn = self.holders.get(robot)
        for req in [r for r in self.active if r.robot == robot and (seq is None or r.seq == seq)]:
            self._finish(req)
        if conn is not None and conn.queue:
            for req in [r for r in conn.queue if r.robot == robot and (seq is None or r.seq == seq)]:
                self._unqueue(req)
        if self.decoding:
            for req in [r for r in self.decoding if r.robot == robot and (seq is None or r.seq == seq)]:
                req.state = "done"  # the worker finishes it; _collect_decoded drops it

    def _finish(self, req: _Request) -> None:
        if req in self.active:
            self.active.remove(req)
        req.state = "done"
        if req.gen is not None:
            try:
                req.gen.close()
            except Exception as e:
                self.log(f"planner raised on close: {e}")
            req.gen = None
        req.obs = None  # the frames go as soon as the plan does

    def _planner_error(self, req: _Request, e: Exception) -> None:
        if not isinstance(e, EmbodiedError):
            self.log(f"planner crashed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        self._finish(req)
        self._error(req.conn, "planner_error", f"{type(e).__name__}: {e}", req.robot, req.seq)

    def _advance(self, req: _Request) -> None:
        t0 = _perf()
        try:
            step = next(req.gen)
        except StopIteration:
            now = _perf()
            req.infer_s += now - t0
            self._send(req.conn, self._timed("end", req, now, n_steps=req.n))
            self._finish(req)
            self.stats.plans += 1
            return
        except Exception as e:  # a planner bug must not stop the server
            self._planner_error(req, e)
            return
        now = _perf()
        req.infer_s += now - t0
        if req.deadline is not None and now > req.deadline:
            self._finish(req)
            self._error(req.conn, "deadline_exceeded",
                        f"plan step {req.n} was ready {(now - req.t_recv) * 1e3:.1f} ms after the "
                        "request arrived, past its deadline", req.robot, req.seq)
            return
        text = step.text if hasattr(step, "text") else str(step)
        self.stats.steps += 1
        req.n += 1
        final = text == "done" or text.strip().lower() == "done"  # the grammar ends every plan with done: no 'end' message
        self._send(req.conn, self._timed("step", req, now, index=req.n - 1, text=text, final=final))
        if final:  # after the reply: freeing the frames (an munmap for a large one) is not on the robot's clock
            self._finish(req)
            self.stats.plans += 1

    def _timed(self, kind: str, req: _Request, now: float, **fields) -> bytes:
        t_recv = req.t_recv
        wall = _wall()
        return _packb({"v": PROTOCOL_VERSION, "type": kind, "robot": req.robot, "seq": req.seq, "t": wall, **fields,
                       "server": {"recv": req.wall_recv, "decode_ms": req.decode_ms, "queue_ms": (req.t_start - t_recv) * 1e3,
                                  "infer_ms": req.infer_s * 1e3, "elapsed_ms": (now - t_recv) * 1e3, "send": wall}})
