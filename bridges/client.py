"""The robot-side client: a DEALER socket that sends observations and receives streamed steps.

``BridgeClient(address, robot_id)`` offers blocking calls (``hello``, ``heartbeat``,
``reset``, ``estop``, ``plan``) and non-blocking ones for a control loop
(``send_observation``, ``send_heartbeat``, ``receive``). Replies are matched by sequence
number; replies to older requests are dropped. Optional ``Faults`` inject latency, jitter
and message loss on this end, to evaluate a planner through a bad network in simulation.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Iterator

import zmq

from bridges.protocol import MAX_MESSAGE_BYTES, REPLY_TYPES, ObservationEncoder, check_reply, pack, parse_header
from bridges.sockets import NOBLOCK, SNDMORE, _recv, _send, tune
from embodied.core.errors import BridgeTimeoutError, ProtocolError, RemoteError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep, parse_step

_log = logging.getLogger("embodied.client")
_steps: dict[str, PlanStep] = {}  # parsed step texts (PlanStep is immutable; a robot sees few distinct texts)


def _parse(text: str) -> PlanStep:
    step = _steps.get(text)
    if step is None:
        step = parse_step(text)  # raises PlanSyntaxError: nothing is remembered
        if len(_steps) >= 4096:
            _steps.clear()
        _steps[text] = step
    return step


@dataclass
class Faults:
    """Injected network faults, applied by the client to what it sends and receives."""

    latency_ms: float = 0.0  # one-way delay added to each message in each direction
    jitter_ms: float = 0.0  # uniform extra delay in [0, jitter_ms]
    loss: float = 0.0  # probability that a message (either direction) is dropped
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self):
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        self.rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or self.loss)

    def delay(self) -> None:
        ms = self.latency_ms + (self.rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0)
        if ms > 0:
            time.sleep(ms / 1e3)

    def drop(self) -> bool:
        return self.loss > 0 and self.rng.random() < self.loss


@dataclass
class Reply:
    """One decoded server reply. ``step`` is set for ``step`` replies (parsed from ``text``)."""

    type: str
    seq: int
    header: dict
    received: float  # client wall clock (time.time())
    decode_ms: float
    step: PlanStep | None = None

    @property
    def server(self) -> dict:
        return self.header.get("server", {})


class BridgeClient:
    """One robot's connection to an inference server."""

    def __init__(
        self,
        address: str,
        robot_id: str = "robot",
        *,
        timeout_s: float = 2.0,
        codec: str = "raw",
        jpeg_quality: int = 90,
        keys=None,  # bridges.keys.ClientKeys for CurveZMQ
        faults: Faults | None = None,
    ):
        self.address, self.robot_id = address, robot_id
        self.timeout_s, self.codec, self.jpeg_quality = timeout_s, codec, jpeg_quality
        self.keys, self.faults = keys, faults if faults is not None and faults.active else None
        self.encoder = ObservationEncoder(robot_id, codec, jpeg_quality)
        self.ctx = zmq.Context.instance()
        self.sock = None
        self._monitor = None
        self._seq = 0
        self.last_encode_ms = 0.0
        self.dropped = 0  # requests not sent because the send queue was full (server unreachable for long)
        self.connect()

    # ------------------------------------------------------------ connection

    def connect(self) -> None:
        """(Re)create the socket. Pending requests and unread replies are discarded."""
        self.close()
        s = tune(self.ctx.socket(zmq.DEALER), server=False)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.keys is not None:
            s.curve_secretkey = self.keys.secret
            s.curve_publickey = self.keys.public
            s.curve_serverkey = self.keys.server_public
            # the server's refusal of our key arrives as a handshake event, not as a message
            self._monitor = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        s.connect(self.address)
        self.sock = s
        self._rcvtimeo = -1  # the socket's RCVTIMEO (ms), set by receive()

    def close(self) -> None:
        if self._monitor is not None:
            self.sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def _check_refused(self) -> None:
        if self._monitor is not None and self._monitor.poll(0):
            from zmq.utils.monitor import recv_monitor_message

            event = recv_monitor_message(self._monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise RemoteError(
                    f"{self.address} refused this robot's CurveZMQ key (status {int(event['value'])}); copy its public "
                    "key (client.key) into the server's authorized folder and restart the server",
                    code="auth_refused",
                )

    def __enter__(self) -> "BridgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ sending

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _send(self, frames: list) -> None:
        if self.faults is not None:
            self.faults.delay()
            if self.faults.drop():
                return
        sock, last = self.sock, len(frames) - 1
        try:
            for i, f in enumerate(frames):  # copied: the caller may reuse its image buffer at once
                _send(sock, f, NOBLOCK | SNDMORE if i < last else NOBLOCK)
        except zmq.Again:
            # send queue full (bounded: the server has been unreachable for a while); the watchdog or
            # the request timeout notices. A multipart message is all or nothing: nothing half-sent.
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                _log.warning(f"{self.robot_id}: send queue to {self.address} full; {self.dropped} requests dropped so far")

    def send(self, kind: str, **fields) -> int:
        """Send a control request (``hello``, ``heartbeat``, ``reset``, ``cancel``, ``estop``); return its seq."""
        seq = self._next_seq()
        self._send(pack({"type": kind, "robot": self.robot_id, "seq": seq, **fields}))
        return seq

    def send_observation(self, obs: Observation, deadline_ms: float | None = None) -> int:
        """Encode and send an observation; return its seq. ``last_encode_ms`` holds the encode time."""
        t0 = time.perf_counter()
        self._seq += 1
        frames = self.encoder.encode(obs, self._seq, deadline_ms)
        self.last_encode_ms = (time.perf_counter() - t0) * 1e3
        self._send(frames)
        return self._seq

    # ------------------------------------------------------------ receiving

    def receive(self, timeout_s: float = 0.0) -> Reply | None:
        """The next reply within ``timeout_s`` (0 = only if one is waiting), or None.

        Raises ``ProtocolError`` for a malformed reply and ``PlanSyntaxError`` for a step
        whose text does not parse.
        """
        sock = self.sock
        if self._monitor is not None:
            self._check_refused()
            ready, _, _ = zmq.select([sock, self._monitor], [], [], timeout_s)
            self._check_refused()
            if not any(r is sock for r in ready):
                return None
            first = _recv(sock, NOBLOCK, False)
        else:
            # block in recv itself (one wake-up less than poll + recv); RCVTIMEO bounds the wait
            wait_ms = round(timeout_s * 1000) if timeout_s > 0 else 0
            if wait_ms != self._rcvtimeo:
                sock.setsockopt(zmq.RCVTIMEO, wait_ms)
                self._rcvtimeo = wait_ms
            try:
                first = _recv(sock, NOBLOCK if wait_ms == 0 else 0, False)
            except zmq.Again:
                return None
        received = time.time()
        t0 = time.perf_counter()
        n_blobs, total, f = 0, len(first), first
        while f.more:  # replies have one frame; read (and refuse) any others whole
            f = _recv(sock, NOBLOCK, False)
            total += len(f)
            n_blobs += 1
        if self.faults is not None:
            if self.faults.drop():
                return None
            self.faults.delay()
        header = parse_header(first, n_blobs, total, MAX_MESSAGE_BYTES, REPLY_TYPES)
        check_reply(header)
        kind = header["type"]
        step = _parse(header["text"]) if kind == "step" else None
        return Reply(kind, header["seq"], header, received, (time.perf_counter() - t0) * 1e3, step)

    def wait(self, seq: int, timeout_s: float | None = None) -> Reply:
        """The next reply to request ``seq``; raises ``RemoteError`` for an error reply, and for an
        emergency stop or a ``superseded`` notice that arrives meanwhile (the request is void then)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        end = time.perf_counter() + timeout_s
        while True:
            left = end - time.perf_counter()
            if left <= 0:
                raise BridgeTimeoutError(
                    f"no reply from {self.address} within {timeout_s:.2f} s; is `embodied serve` running there "
                    "(and, with CurveZMQ, is this robot's public key in the server's authorized folder)?"
                )
            reply = self.receive(left)
            if reply is None:
                continue
            if reply.seq != seq:
                if reply.type == "estop":
                    raise RemoteError(f"emergency stop from {reply.header.get('by', 'the server')}", "estop")
                if reply.type == "error" and reply.header["code"] == "superseded":
                    raise RemoteError(f"server error superseded: {reply.header['message']}", "superseded")
                continue  # a late reply to an older request, or a notice
            if reply.type == "error":
                raise RemoteError(f"server error {reply.header['code']}: {reply.header['message']}", reply.header["code"])
            return reply

    # ------------------------------------------------------------ blocking calls

    def hello(self, timeout_s: float | None = None, takeover: bool = False) -> dict:
        """The server's metadata: planner name, expected cameras and resolutions, state size.

        ``takeover``: claim this robot id even if another live connection holds it (that one is
        told ``superseded``); for a robot that restarts its connection. Without it such a claim
        gets ``robot_id_taken``.
        """
        fields = {"takeover": True} if takeover else {}
        return self.wait(self.send("hello", **fields), timeout_s).header["metadata"]

    def heartbeat(self, timeout_s: float | None = None) -> dict:
        """The server's health (uptime, plans served, errors, queue)."""
        return self.wait(self.send("heartbeat"), timeout_s).header["health"]

    def reset(self, timeout_s: float | None = None) -> None:
        self.wait(self.send("reset"), timeout_s)

    def estop(self, target: str | None = None, timeout_s: float | None = None) -> dict:
        """Ask the server to stop ``target``'s plans and forward an emergency stop to that robot;
        returns the ``ack`` (``delivered``: whether the robot's connection got it)."""
        return self.wait(self.send("estop", target=target or self.robot_id), timeout_s).header

    def plan(self, obs: Observation, deadline_ms: float | None = None, timeout_s: float | None = None) -> Iterator[Reply]:
        """Stream the ``step`` replies to ``obs``; the generator ends after a ``final`` step or at ``end``.

        Closing the generator early sends ``cancel`` so the server stops computing.
        ``timeout_s`` bounds the wait for each reply.
        """
        seq = self.send_observation(obs, deadline_ms)
        expected, finished = 0, False
        try:
            while True:
                reply = self.wait(seq, timeout_s)
                if reply.type == "end":
                    if reply.header["n_steps"] != expected:
                        raise ProtocolError(f"plan ended after {expected} steps but the server sent {reply.header['n_steps']}; a step was lost", code="lost_step")
                    finished = True
                    return
                if reply.type != "step":
                    continue
                if reply.header["index"] != expected:
                    raise ProtocolError(f"step {reply.header['index']} arrived, expected {expected}; a step was lost", code="lost_step")
                expected += 1
                if reply.header.get("final"):
                    finished = True  # a 'done' step ends the plan: the server sends no 'end'
                yield reply
                if finished:
                    return
        finally:
            if not finished:
                self.send("cancel", cancel=seq)
