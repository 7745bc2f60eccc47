"""``embodied bench bridge out=<dir> repeats=<n>``: bridge latency and throughput on loopback
(``bridges.bench``: ours against the bare ZeroMQ floor, websockets + msgpack and gRPC, for
several payloads and numbers of robots, in one run)."""

from __future__ import annotations

from bridges.bench import DEFAULTS, run


def main(cfg) -> dict:
    kw = {k: cfg.get(k, v) for k, v in DEFAULTS.items()}
    kw["out"] = kw["out"] or DEFAULTS["out"]
    for k in ("payloads", "robots"):  # a hydra ListConfig or a plain list
        kw[k] = list(kw[k]) if kw[k] is not None else None
    return run(**kw)
