"""``embodied bench bridge out=<dir> repeats=<n>``: bridge latency and throughput on loopback
(``bridges.bench``: ours against websockets and the bare ZeroMQ floor, in one run)."""

from __future__ import annotations

from bridges.bench import DEFAULTS, run


def main(cfg) -> dict:
    kw = {k: cfg.get(k, v) for k, v in DEFAULTS.items()}
    kw["out"] = kw["out"] or DEFAULTS["out"]
    return run(**kw)
