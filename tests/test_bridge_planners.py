"""Small real planners and process helpers for the bridge and daemon tests.

The planners satisfy ``embodied.core.protocols.Planner``; the server loads them by
``planner=tests.test_bridge_planners:<Name>`` (with ``planner_args``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embodied.core.observation import STATE_SIZE, Observation
from embodied.core.plan import DONE, PlanStep, parse_step, valid_steps
from embodied.core.protocols import Planner

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = ["red cube", "blue cube", "green cylinder"]
CONTAINERS = ["tray"]


class ContentPlanner:
    """A deterministic plan that depends on every byte of the observation it is given.

    Any change in frames, depth, state, instruction, history or detections changes the plan,
    so equal plans in-process and over the bridge mean the bridge carried the data exactly.
    """

    name = "content"

    def __init__(self, length: int = 3, delay_s: float = 0.0, first_delay_s: float = 0.0):
        self.length, self.delay_s, self.first_delay_s = int(length), float(delay_s), float(first_delay_s)
        self.resets = 0

    def plan(self, observation: Observation):
        h = hashlib.sha256()
        for name in sorted(observation.frames):
            h.update(name.encode())
            h.update(np.ascontiguousarray(observation.frames[name]).tobytes())
        for name in sorted(observation.depth):
            h.update(np.ascontiguousarray(observation.depth[name]).tobytes())
        h.update(np.asarray(observation.state, np.float32).tobytes())
        h.update("|".join([observation.instruction, *observation.history, "#", *observation.detections]).encode())
        choices = [s for s in valid_steps(OBJECTS, CONTAINERS) if s != "done"]
        digest = h.digest()
        if self.first_delay_s:
            time.sleep(self.first_delay_s)
        for i in range(self.length):
            if i and self.delay_s:
                time.sleep(self.delay_s)
            yield parse_step(choices[digest[i] % len(choices)])
        yield DONE

    def reset(self) -> None:
        self.resets += 1


class FixedPlanner:
    """Yields the given step texts, sleeping ``delay_s`` before each one after the first."""

    name = "fixed"

    def __init__(self, steps=("put red cube on blue cube", "done"), delay_s: float = 0.0, first_delay_s: float = 0.0):
        self.steps = [parse_step(s) for s in steps]
        self.delay_s, self.first_delay_s = float(delay_s), float(first_delay_s)

    def plan(self, observation: Observation):
        if self.first_delay_s:
            time.sleep(self.first_delay_s)
        for i, s in enumerate(self.steps):
            if i and self.delay_s:
                time.sleep(self.delay_s)
            yield s

    def reset(self) -> None:
        pass


class BrokenPlanner:
    """Raises in the middle of a plan, like a planner with a bug."""

    name = "broken"

    def plan(self, observation: Observation):
        yield PlanStep("move", "red cube", "to", "top left")
        raise RuntimeError("planner bug")

    def reset(self) -> None:
        pass


def observation(seed: int = 0, size: int = 32, depth: bool = False, privileged: dict | None = None) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        frames={"front": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                "wrist": rng.integers(0, 256, (size // 2, size, 3), dtype=np.uint8)},
        state=rng.normal(size=STATE_SIZE).astype(np.float32),
        instruction=f"put the red cube on the blue cube {seed}",
        history=["move red cube to top left"] if seed % 2 else [],
        depth={"front": rng.random((size, size), dtype=np.float32)} if depth else {},
        detections=["red cube", "blue cube"],
        seq=seed,
        privileged=privileged,
    )


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(planner: str, *args: str, port: int | None = None, wait_s: float = 20.0) -> tuple[subprocess.Popen, str]:
    """``python -m embodied.commands.serve`` as a child process; returns (process, address)."""
    bind = f"tcp://127.0.0.1:{port}" if port else "tcp://127.0.0.1:*"
    proc = subprocess.Popen(
        [sys.executable, "-m", "embodied.commands.serve", f"planner={planner}", f"bind={bind}", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
    )
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if "listening on" in line:
                return proc, line.rsplit(" ", 1)[1].strip()
            if not line and proc.poll() is not None:
                break
    stop(proc)
    raise RuntimeError(f"server {planner} did not start")


def start_daemon(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "embodied.commands.daemon", *args], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def stop(proc: subprocess.Popen, sig: int | None = None, timeout: float = 10.0) -> int | None:
    """Stop a child (SIGTERM by default), killing it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig) if sig else proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in (proc.stdout, proc.stderr):
        if f is not None:
            f.close()
    return proc.returncode


# ---------------------------------------------------------------- the fixtures' own checks


def test_content_planner_is_a_planner_and_sees_every_field():
    p = ContentPlanner()
    assert isinstance(p, Planner)
    base = [s.text for s in p.plan(observation(0, depth=True))]
    assert base[-1] == "done" and len(base) == 4
    assert [s.text for s in p.plan(observation(0, depth=True))] == base
    changed = observation(0, depth=True)
    changed.state = changed.state.copy()
    changed.state[3] += 1e-3
    changed2 = observation(0, depth=True)
    changed2.frames["wrist"] = changed2.frames["wrist"].copy()
    changed2.frames["wrist"][0, 0, 0] ^= 1
    # a one-bit change anywhere gives another digest; the plan differs with high probability
    digests = {tuple(s.text for s in p.plan(o)) for o in (observation(0, depth=True), changed, changed2)}
    assert len(digests) == 3
