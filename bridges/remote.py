"""``RemotePlanner``: the Planner interface over the bridge.

``embodied eval planner=remote server=tcp://host:5555`` evaluates in simulation through
the same network path a real robot uses, optionally through injected latency, jitter
and message loss (``latency_ms``, ``jitter_ms``, ``loss``). A lost message shows up as a
timeout or a gap in the step indices; the request is then sent again (``retries``) and
steps already yielded are skipped, so a deterministic planner gives the same plan.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from bridges.client import BridgeClient, Faults
from embodied.core.errors import BridgeTimeoutError, ProtocolError, RemoteError
from embodied.core.observation import Observation
from embodied.core.plan import PlanStep

RETRYABLE_CODES = ("deadline_exceeded",)


class RemotePlanner:
    """Streams plans from an inference server. ``timings`` holds the server timing of the last plan."""

    def __init__(
        self,
        server: str = "tcp://127.0.0.1:5555",
        robot_id: str = "eval",
        *,
        timeout_s: float = 5.0,
        deadline_ms: float | None = None,
        retries: int = 3,
        codec: str = "raw",
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        loss: float = 0.0,
        seed: int = 0,
        server_key: str | None = None,  # the server's public key file (CurveZMQ)
        client_key: str | None = None,  # this robot's secret key file (CurveZMQ)
        keys=None,  # or a ready bridges.keys.ClientKeys
    ):
        if keys is None and (server_key or client_key):
            from bridges.keys import client_keys

            if not (server_key and client_key):
                from embodied.core.errors import ConfigError

                raise ConfigError("CurveZMQ needs both server_key (server.key) and client_key (client.key_secret)")
            keys = client_keys(client_key, server_key)
        faults = Faults(float(latency_ms or 0), float(jitter_ms or 0), float(loss or 0), int(seed or 0))
        self.client = BridgeClient(server, robot_id, timeout_s=float(timeout_s or 5.0), codec=codec, keys=keys, faults=faults)
        self.deadline_ms, self.retries = deadline_ms, int(retries)
        self.metadata = self._retry(self.client.hello)
        self.name = f"remote:{self.metadata['planner']}"
        # the evaluation forwards simulator ground truth only to planners that need it (a served oracle)
        self.forwards_privileged = bool(self.metadata.get("privileged", False))
        self.cameras = self.metadata.get("cameras")
        self.state_size = self.metadata.get("state_size")
        self.timings: list[dict] = []
        self.resends = 0

    @classmethod
    def from_config(cls, cfg) -> "RemotePlanner":
        """Keys: server, robot_id, timeout_s, deadline_ms, retries, codec, latency_ms, jitter_ms,
        loss, seed, server_key, client_key (unset keys take the defaults)."""
        names = ("robot_id", "timeout_s", "deadline_ms", "retries", "codec", "latency_ms", "jitter_ms", "loss",
                 "seed", "server_key", "client_key")
        return cls(cfg.get("server") or "tcp://127.0.0.1:5555", **{k: cfg.get(k) for k in names if cfg.get(k) is not None})

    def _retry(self, call):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (BridgeTimeoutError, ProtocolError) as e:
                if attempt == self.retries:
                    raise
                if isinstance(e, ProtocolError) and e.code != "lost_step":
                    raise
                self.resends += 1

    def plan(self, observation: Observation) -> Iterator[PlanStep]:
        yielded = 0
        for attempt in range(self.retries + 1):
            self.timings = []
            try:
                with contextlib.closing(self.client.plan(observation, self.deadline_ms)) as stream:
                    for i, reply in enumerate(stream):  # closing early cancels the plan on the server
                        self.timings.append(reply.server)
                        if i >= yielded:
                            yielded += 1
                            yield reply.step
                return
            except (BridgeTimeoutError, ProtocolError, RemoteError) as e:
                retryable = isinstance(e, BridgeTimeoutError) or getattr(e, "code", "") in ("lost_step", *RETRYABLE_CODES)
                if not retryable or attempt == self.retries:
                    raise
                self.resends += 1

    def reset(self) -> None:
        self._retry(self.client.reset)

    def close(self) -> None:
        self.client.close()
