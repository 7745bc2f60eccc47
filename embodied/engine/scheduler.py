"""Serve several robots with one engine: requests from many threads share batched decode steps.

A background thread owns the ``Engine``. Between two decode steps it admits waiting
requests into free slots (their prefill runs then) and hands every finished plan step to the
thread that asked for it; a request that finishes frees its slot at once. So a request joins
and leaves the batch without stalling the others beyond its own prefill.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from embodied.core.errors import EngineError
from embodied.engine.core import Engine
from embodied.engine.records import Request, Ticket

_DONE = object()


class _Job:
    def __init__(self, request: Request):
        self.request = request
        self.ticket: Ticket | None = None
        self.out: queue.Queue = queue.Queue()
        self.sent_steps = 0
        self.sent_tokens = 0


class BatchScheduler:
    """Thread-safe front of an ``Engine``. ``stream(request)`` may be called from many threads."""

    def __init__(self, engine: Engine, idle_wait_s: float = 0.05):
        self.engine = engine
        self._pending: list[_Job] = []
        self._running: list[_Job] = []
        self._cv = threading.Condition()
        self._closed = False
        self._idle_wait_s = idle_wait_s
        self.max_concurrent = 0  # most requests decoded together so far (for tests and stats)
        self._thread = threading.Thread(target=self._loop, name="engine-scheduler", daemon=True)
        self._thread.start()

    def stream(self, request: Request, tokens: bool = False) -> Iterator[list[int] | int]:
        """Yield each completed plan step's token ids (or each token, with ``tokens=True``)."""
        job = _Job(request)
        with self._cv:
            if self._closed:
                raise EngineError("the scheduler is closed; create a new one")
            self._pending.append(job)
            self._cv.notify()
        while True:
            item = job.out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            kind, value = item
            if (kind == "token") == tokens:
                yield value

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=10)

    def __enter__(self) -> "BatchScheduler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ engine thread
    def _loop(self) -> None:
        eng = self.engine
        while True:
            with self._cv:
                if self._closed:
                    break
                if not self._pending and not eng.busy:
                    self._cv.wait(self._idle_wait_s)
                    continue
                pending, self._pending = self._pending, []
            waiting = []
            for job in pending:
                if not eng.can_admit(job.request):
                    waiting.append(job)
                    continue
                try:
                    job.ticket = eng.submit(job.request)
                    self._running.append(job)
                except Exception as e:  # a bad request fails alone
                    job.out.put(e)
                    job.out.put(_DONE)
            self.max_concurrent = max(self.max_concurrent, len(self._running))
            if waiting:
                with self._cv:
                    self._pending = waiting + self._pending
            try:
                if eng.busy:
                    eng.step()
            except Exception as e:  # an engine failure ends every running request with the error
                for job in self._running:
                    job.out.put(e)
                    job.out.put(_DONE)
                self._running = []
                continue
            self._forward()
        for job in self._running + self._pending:
            job.out.put(EngineError("the scheduler was closed while this request was waiting"))
            job.out.put(_DONE)

    def _forward(self) -> None:
        still = []
        for job in self._running:
            t = job.ticket
            while job.sent_tokens < len(t.tokens):
                job.out.put(("token", t.tokens[job.sent_tokens]))
                job.sent_tokens += 1
            while job.sent_steps < len(t.steps):
                job.out.put(("step", t.steps[job.sent_steps]))
                job.sent_steps += 1
            if t.finished:
                job.out.put(_DONE)
            else:
                still.append(job)
        self._running = still
