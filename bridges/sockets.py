"""Hot-path ZeroMQ calls without pyzmq's convenience layer.

pyzmq's ``send_multipart``/``recv_multipart``/``Socket.poll`` convert flags through Python
enums and build a ``Poller`` per call; on a 150 kB observation round trip that is a
measurable share of the latency. These helpers make the same libzmq calls with plain
integer flags. Semantics are unchanged (multipart messages are atomic in ZeroMQ).
"""

from __future__ import annotations

import zmq
from zmq.backend import zmq_poll

NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
POLLIN = int(zmq.POLLIN)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)


def send_frames(sock: zmq.Socket, frames: list, flags: int = NOBLOCK, copy: bool = True) -> None:
    """Send a multipart message (raises ``zmq.Again`` with NOBLOCK when the queue is full)."""
    last = len(frames) - 1
    for i, f in enumerate(frames):
        sock.send(f, flags | SNDMORE if i < last else flags, copy=copy)


def recv_frames(sock: zmq.Socket, flags: int = 0, copy: bool = False) -> list:
    """Receive a whole multipart message; ``zmq.Frame`` objects unless ``copy``."""
    first = sock.recv(flags, copy=copy)
    parts = [first]
    if copy:
        while sock.get(RCVMORE):
            parts.append(sock.recv(flags, copy=True))
    else:
        while parts[-1].more:
            parts.append(sock.recv(flags, copy=False))
    return parts


def readable(sock: zmq.Socket, timeout_ms: int) -> bool:
    """Whether a message can be read within ``timeout_ms`` (-1 = wait forever)."""
    return bool(zmq_poll([(sock, POLLIN)], timeout_ms))
