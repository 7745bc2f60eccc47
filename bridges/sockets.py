"""Socket settings and hot-path ZeroMQ calls without pyzmq's convenience layer.

``tune`` gives every bridge socket the same bounded, self-checking settings:

- high-water marks (HWM) on every queue, so that a slow or vanished peer cannot grow memory:
  the server reads at most ``SERVER_RCVHWM`` messages ahead from one connection (beyond
  that libzmq stops reading that connection's TCP stream: back-pressure, nothing dropped)
  and queues at most ``SERVER_SNDHWM`` replies to it (then the robot counts as stalled);
  a robot queues at most ``CLIENT_SNDHWM`` requests towards a server it cannot reach
  (further sends are dropped and counted, the watchdog or the request timeout notices);
- libzmq's own heartbeats (``ZMQ_HEARTBEAT_IVL`` / ``_TIMEOUT`` / ``_TTL``): a peer that
  has vanished without closing its TCP connection (power cut, cable pulled) is dropped by
  libzmq after ``HEARTBEAT_TIMEOUT_MS``; the server then frees its robot ids and the robot's
  socket reconnects. The daemon's own watchdog (``watchdog_s``) stays the safety mechanism:
  it needs an answer from the server, not only a live TCP connection;
- 4 MiB kernel buffers, so a whole camera frame fits them (fewer write/wake cycles).

pyzmq's ``send_multipart``/``recv_multipart``/``Socket.poll`` convert flags through Python
enums and build a ``Poller`` per call; on a 150 kB observation round trip that is a
measurable share of the latency. The helpers below make the same libzmq calls with plain
integer flags. Semantics are unchanged (multipart messages are atomic in ZeroMQ).
"""

from __future__ import annotations

import zmq
from zmq.backend import Socket as _BaseSocket
from zmq.backend import zmq_poll

NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
POLLIN = int(zmq.POLLIN)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)

BUFFER_BYTES = 4 << 20
HEARTBEAT_IVL_MS = 1000  # libzmq pings an idle connection this often
HEARTBEAT_TIMEOUT_MS = 3000  # and drops it when the ping is not answered in this time
HEARTBEAT_TTL_MS = 6000  # the peer drops the connection when it hears nothing for this long
SERVER_SNDHWM = 1000  # replies queued towards one robot (replies are ~200 bytes)
SERVER_RCVHWM = 8  # messages read ahead from one robot before libzmq pauses that connection
CLIENT_SNDHWM = 16  # requests queued towards the server (observations are large)
CLIENT_RCVHWM = 1000  # replies queued on the robot (small)


def tune(sock: zmq.Socket, server: bool) -> zmq.Socket:
    """Bounded queues, heartbeats, buffers and no linger for a bridge socket (before bind/connect)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDBUF, BUFFER_BYTES)
    sock.setsockopt(zmq.RCVBUF, BUFFER_BYTES)
    sock.setsockopt(zmq.SNDHWM, SERVER_SNDHWM if server else CLIENT_SNDHWM)
    sock.setsockopt(zmq.RCVHWM, SERVER_RCVHWM if server else CLIENT_RCVHWM)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)
    return sock


# pyzmq's Socket.send/recv wrap these (draft routing ids, copy thresholds) and Socket.get converts every
# option through an enum (~3 us for RCVMORE or EVENTS): the hot paths call the base methods and read
# RCVMORE from a zmq.Frame's ``more``, and find out whether a message waits by a non-blocking recv.
_send = _BaseSocket.send
_recv = _BaseSocket.recv


def send_frames(sock: zmq.Socket, frames: list, flags: int = NOBLOCK) -> None:
    """Send a multipart message, each part copied (raises ``zmq.Again`` with NOBLOCK when the queue is full)."""
    last = len(frames) - 1
    for i, f in enumerate(frames):
        _send(sock, f, flags | SNDMORE if i < last else flags)


def recv_frames(sock: zmq.Socket, flags: int = 0, copy: bool = False) -> list:
    """Receive a whole multipart message; ``zmq.Frame`` objects (no copy) unless ``copy`` (bytes)."""
    f = _recv(sock, flags, False)
    parts = [f]
    while f.more:
        f = _recv(sock, flags, False)
        parts.append(f)
    if copy:
        return [p.bytes for p in parts]
    return parts


def readable(sock: zmq.Socket, timeout_ms: int) -> bool:
    """Whether a message can be read within ``timeout_ms`` (-1 = wait forever)."""
    return bool(zmq_poll([(sock, POLLIN)], timeout_ms))
