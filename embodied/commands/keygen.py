"""``embodied keygen out=<dir> [clients=[a,b]]``: CurveZMQ key pairs for the bridge."""

from __future__ import annotations

from bridges.keys import generate


def main(cfg) -> dict[str, str]:
    """Write the server's and each client's key pair; print where they went."""
    out = cfg.get("out") or "keys"
    clients = tuple(cfg.get("clients") or ("client",))
    paths = generate(out, clients)
    for k, v in paths.items():
        print(f"{k}: {v}")
    return paths
