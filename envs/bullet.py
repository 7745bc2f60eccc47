"""pybullet, imported and connected without its console noise.

pybullet's C code prints its build banner on import and ``argv[0]=`` on every connection
straight to the process's stdout and stderr (file descriptors 1 and 2), which Python cannot
catch: in an evaluation with worker processes that is dozens of lines. Everything in
``envs`` takes pybullet from here, where both happen with those descriptors pointed at
/dev/null (an import or connection error still raises as usual).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

try:
    _libc = ctypes.CDLL(None)
except OSError:  # pragma: no cover - no C library to flush
    _libc = None


def _flush() -> None:
    """Flush Python's and C's stdio buffers (a pipe's stdout is fully buffered)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _libc is not None:
        _libc.fflush(None)


@contextlib.contextmanager
def quiet_console():
    """Silence writes to file descriptors 1 and 2 (C code included) inside the block."""
    _flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no such descriptors (some embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                _flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


with quiet_console():
    import pybullet
    import pybullet_data
    from pybullet_utils.bullet_client import BulletClient


def connect() -> BulletClient:
    """A new physics client of its own in DIRECT mode (never the global one), quietly."""
    with quiet_console():
        return BulletClient(connection_mode=pybullet.DIRECT)


__all__ = ["pybullet", "pybullet_data", "BulletClient", "connect", "quiet_console"]
