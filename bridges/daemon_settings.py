"""The daemon's settings (``Settings``, checked when made) and its JSONL event log (``JsonlLog``)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, fields

from embodied.core.errors import ConfigError


@dataclass
class Settings:
    hz: float = 20.0
    watchdog_s: float = 1.0
    heartbeat_s: float = 0.2
    stale_s: float = 1.0
    deadline_ms: float | None = 2000.0
    backoff_s: float = 0.1
    backoff_max_s: float = 2.0
    episodes: int | None = 1  # None: forever
    max_seconds: float | None = None
    rate_log_s: float = 1.0
    max_repeats: int | None = None  # no-progress guard: end the episode when one step succeeded this many times in a row

    def __post_init__(self):
        for name in ("hz", "watchdog_s", "heartbeat_s", "stale_s", "backoff_s", "backoff_max_s", "rate_log_s"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"daemon setting {name} must be > 0, got {getattr(self, name)!r}")
        if self.max_repeats is not None and (isinstance(self.max_repeats, bool) or int(self.max_repeats) != self.max_repeats or self.max_repeats < 1):
            raise ConfigError(f"daemon setting max_repeats must be a positive integer or null, got {self.max_repeats!r}")
        if self.heartbeat_s >= self.watchdog_s:
            raise ConfigError(f"heartbeat_s ({self.heartbeat_s}) must be shorter than watchdog_s ({self.watchdog_s})")

    @classmethod
    def from_config(cls, cfg) -> "Settings":
        return cls(**{f.name: cfg.get(f.name) for f in fields(cls) if cfg.get(f.name, "unset") != "unset"})


class JsonlLog:
    """Append one JSON object per line; ``echo`` also prints it."""

    def __init__(self, path: str | None, echo: bool = False, **common):
        self.common, self.echo = common, echo
        self.lock = threading.Lock()  # the executor thread logs too
        self.f = None
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.f = open(path, "a", buffering=1)  # closed in close()

    def __call__(self, event: str, **data) -> None:
        line = json.dumps({"t": round(time.time(), 6), "event": event, **self.common, **data}, default=str)
        with self.lock:
            if self.f is not None:
                self.f.write(line + "\n")
            if self.echo:
                print(line, flush=True)

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
