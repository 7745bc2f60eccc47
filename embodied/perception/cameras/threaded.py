"""What the camera sources share: ``CameraBase`` (name, context manager) and ``ThreadedCamera``,
a source captured on a background thread so that ``read(timeout_s)`` never hangs on a dead one."""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np

from embodied.core.camera import Frame
from embodied.core.errors import CameraError

log = logging.getLogger(__name__)


# --- the base classes -------------------------------------------------------------------------
class CameraBase:
    """What the sources share: a name, a context manager, ``is_connected``."""

    name: str = "camera"

    def connect(self) -> None:  # pragma: no cover - every source overrides it
        raise NotImplementedError

    def read(self, timeout_s: float = 1.0) -> Frame:  # pragma: no cover
        raise NotImplementedError

    def latest(self) -> Frame | None:  # pragma: no cover
        raise NotImplementedError

    def disconnect(self) -> None:  # pragma: no cover
        raise NotImplementedError

    @property
    def is_connected(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ThreadedCamera(CameraBase):
    """A source captured on a background thread.

    Subclasses implement, all called on the capture thread: ``_open()`` (raise ``CameraError``
    when the source cannot be opened), ``_grab() -> (rgb, depth, timestamp) | None`` (``None``
    at the end of the stream) with ``_end_message()`` saying why, and ``_close()``.

    ``live=True``: the thread keeps the newest frame only; ``read`` returns a frame newer than
    the last one it returned. ``live=False``: every frame is kept, in order (a bounded queue
    holds the thread back), and ``latest`` is the last frame ``read`` returned.
    """

    QUEUE = 8  # frames buffered ahead of the reader in sequential mode
    JOIN_S = 2.0  # disconnect waits this long for the capture thread

    def __init__(self, name: str, live: bool, open_timeout_s: float = 10.0):
        self.name = name
        self.live = bool(live)
        self.open_timeout_s = float(open_timeout_s)
        self._cond = threading.Condition()
        self._queue: collections.deque[Frame] = collections.deque()
        self._newest: Frame | None = None  # newest frame captured
        self._latest: Frame | None = None  # what latest() returns
        self._returned_seq = 0
        self._error: CameraError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_captured = 0

    # hooks ------------------------------------------------------------------------------
    def _open(self) -> None:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _grab(self) -> tuple[np.ndarray, np.ndarray | None, float] | None:  # pragma: no cover
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _end_message(self) -> str:
        return f"camera {self.name!r} stopped giving frames after {self.frames_captured} (unplugged? stream stopped?)"

    def _check_first(self, frame: Frame) -> None:
        """Called with the first frame on the capture thread; raise CameraError on a wrong mode."""

    # the thread -------------------------------------------------------------------------
    def _fail(self, error: CameraError) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._open()
            seq = 0
            while not self._stop.is_set():
                got = self._grab()
                if got is None:
                    self._fail(CameraError(self._end_message()))
                    return
                rgb, depth, t = got
                seq += 1
                frame = Frame(self.name, rgb, t, seq, depth)
                if seq == 1:
                    self._check_first(frame)
                with self._cond:
                    self.frames_captured = seq
                    self._newest = frame
                    if not self.live:
                        while len(self._queue) >= self.QUEUE and not self._stop.is_set():
                            self._cond.wait(0.1)
                        self._queue.append(frame)
                    self._cond.notify_all()
        except CameraError as e:
            self._fail(e)
        except Exception as e:  # a driver error: report it as the camera's, never kill the caller
            log.exception("camera %r: capture thread failed", self.name)
            self._fail(CameraError(f"camera {self.name!r}: {type(e).__name__}: {e}"))
        finally:
            try:
                self._close()
            except Exception:  # pragma: no cover - closing a broken driver
                log.debug("camera %r: close failed", self.name, exc_info=True)

    # the Camera protocol -------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def connect(self) -> None:
        """Open the source and wait for its first frame (``CameraError`` after ``open_timeout_s``)."""
        if self.is_connected:
            return
        with self._cond:
            self._queue.clear()
            self._newest = self._latest = None
            self._returned_seq = 0
            self._error = None
            self.frames_captured = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.open_timeout_s
        with self._cond:
            while self._newest is None and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            error, first = self._error, self._newest
        if first is None:
            self.disconnect()
            if error is not None:
                raise CameraError(str(error))
            raise CameraError(f"camera {self.name!r}: no frame within {self.open_timeout_s:g} s of opening it "
                              "(wrong index or URL? device busy? stream not running?)")
        if error is not None and self.live:  # opened, then failed at once (e.g. a wrong mode)
            self.disconnect()
            raise CameraError(str(error))
        log.info("camera %r connected: %dx%d", self.name, *first.size)

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The next frame: blocks at most ``timeout_s``; ``CameraError`` when none comes."""
        if self._thread is None:
            raise CameraError(f"camera {self.name!r} is not connected: call connect() first")
        deadline = time.monotonic() + max(0.0, float(timeout_s))
        with self._cond:
            while True:
                if not self.live and self._queue:
                    frame = self._queue.popleft()
                    self._latest = frame
                    self._cond.notify_all()
                    return frame
                if self.live and self._newest is not None and self._newest.seq > self._returned_seq:
                    self._returned_seq = self._newest.seq
                    return self._newest
                if self._error is not None:
                    raise CameraError(str(self._error))
                if self._stop.is_set():
                    raise CameraError(f"camera {self.name!r} was disconnected")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraError(f"camera {self.name!r}: no frame within {timeout_s:g} s "
                                      f"(after {self.frames_captured} frames): unplugged? stream stalled?")
                self._cond.wait(left)

    def latest(self) -> Frame | None:
        with self._cond:
            return self._newest if self.live else self._latest

    def disconnect(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread.join(self.JOIN_S)
        if thread.is_alive():
            log.warning("camera %r: the capture thread is still blocked in the driver; it exits when the driver returns", self.name)
        self._thread = None
