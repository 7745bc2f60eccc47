"""backend=ray against a real local Ray cluster: a head node and a second node on this machine.

The fixture starts both with ``ray start --block`` (loopback only, one CPU each, small object
stores) in their own process groups, and stops exactly those groups afterwards. One module,
one cluster start, kept short for the default suite:

- an eval with ``backend=ray`` gives the same per-episode outcomes and plans as
  ``backend=process`` (timing fields aside), although one Ray worker process is killed
  (SIGKILL) in the middle of an episode: only its episode is lost, and Ray runs it again;
- the run resumes as with the process pool (only the missing episodes run);
- datagen with ``backend=ray`` writes the same shards as the process pool.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# The test cluster's own token (Ray's token authentication): read when Ray is imported, so set before,
# for this process (the driver) and the nodes started below.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
os.environ.update(AUTH)
ray = pytest.importorskip("ray")

from embodied.commands.datagen import DatagenConfig, generate  # noqa: E402
from embodied.commands.eval import EvalConfig, evaluate, read_jsonl  # noqa: E402
from embodied.commands.ray_backend import RayOptions  # noqa: E402
from embodied.core.errors import ConfigError  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
HOST = "127.0.0.2"
OUTCOME = ("task", "index", "seed", "success", "steps", "failure", "plan", "instruction", "level")
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_USAGE_STATS="1", PYTHONUNBUFFERED="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop one `ray start --block` and every process it started (its own process group, by id)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left (raylet, workers)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    """Address of a 2-node local Ray cluster (1 CPU per node)."""
    if not Path(RAY).exists():
        pytest.skip("the ray command is not installed next to this python")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    env = dict(ENV, **AUTH)
    port, client_port = _free_port(), _free_port()
    # loopback only: Ray turns 127.0.0.1 into the machine's outward address, any other 127.x.y.z it keeps
    common = ["--block", f"--node-ip-address={HOST}", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats"]
    base = 20000 + (os.getpid() % 200) * 100
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                             f"--ray-client-server-port={client_port}", f"--min-worker-port={base}", f"--max-worker-port={base + 40}",
                             *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [head]
    try:
        address = f"{HOST}:{port}"
        deadline = time.time() + 60
        while True:  # the GCS listens once the head is up
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or head.poll() is not None:
                    pytest.fail("the Ray head node did not start")
                time.sleep(0.2)
        node = subprocess.Popen([RAY, "start", f"--address={address}", f"--min-worker-port={base + 50}",
                                 f"--max-worker-port={base + 90}", *common],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(node)
        ray.init(address=address, logging_level="WARNING")
        try:
            while sum(n["Alive"] for n in ray.nodes()) < 2:
                if time.time() > deadline:
                    pytest.fail("the second Ray node did not join")
                time.sleep(0.2)
        finally:
            ray.shutdown()  # the first run connects again, by ray.address, and stays connected (warm workers)
        yield {"address": address, "client": f"ray://{HOST}:{client_port}", "groups": {p.pid for p in procs}, "env": env}
    finally:
        ray.shutdown()
        workers = _workers({p.pid for p in procs})
        for p in reversed(procs):
            _stop(p)
        for pid in workers:  # a worker outliving its raylet (they exit on their own when it goes)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _workers(groups: set[int], title: str = "") -> list[int]:
    """Pids of the Ray worker processes of our cluster (children of a raylet in a process group we
    started; Ray gives each worker a group of its own) whose title starts with ``ray::<title>``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not cmd.startswith(f"ray::{title}"):
                continue
            parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if os.getpgid(parent) in groups:
                pids.append(int(d.name))
        except (OSError, ProcessLookupError, ValueError, IndexError):
            continue
    return pids


class _Killer(threading.Thread):
    """Kills (SIGKILL) the first worker process seen running an eval episode for ``after`` seconds."""

    def __init__(self, groups: set[int], after: float = 0.3):
        super().__init__(daemon=True)
        self.groups, self.after, self.killed, self.stop = groups, after, None, threading.Event()

    def run(self) -> None:
        seen: dict[int, float] = {}
        while not self.stop.is_set() and self.killed is None:
            now = time.time()
            for pid in _workers(self.groups, "embodied-eval-episode"):
                seen.setdefault(pid, now)
                if now - seen[pid] >= self.after:
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            time.sleep(0.05)


def _eval_cfg(out, **kw) -> EvalConfig:
    base = dict(planner="oracle", level="L1", seed=5, episodes=2, tasks="stack,move_to_location",
                out=str(out), progress=False)
    base.update(kw)
    return EvalConfig(**base)


def _outcomes(out) -> dict:
    return {(r["task"], r["index"]): {k: r.get(k) for k in OUTCOME} for r in read_jsonl(Path(out) / "episodes.jsonl")}


def test_ray_eval_matches_process_survives_a_killed_worker_and_resumes(cluster, tmp_path):
    t0 = time.time()
    opts = RayOptions(address=cluster["address"], max_retries=3)
    killer = _Killer(cluster["groups"])
    killer.start()
    try:
        s_ray = evaluate(_eval_cfg(tmp_path / "ray", workers=2, backend="ray", ray=opts))
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed is not None, "no Ray worker was seen running an episode"
    with pytest.raises(ProcessLookupError):
        os.kill(killer.killed, 0)
    s_proc = evaluate(_eval_cfg(tmp_path / "proc", workers=1, backend="process"))

    ray_lines = read_jsonl(tmp_path / "ray" / "episodes.jsonl")
    assert len(ray_lines) == 4 and len({(r["task"], r["index"]) for r in ray_lines}) == 4  # the killed episode ran again, once
    assert _outcomes(tmp_path / "ray") == _outcomes(tmp_path / "proc")
    assert s_ray["overall"] == s_proc["overall"] and s_ray["backend"] == "ray"

    # resume as today: only the missing episodes run (one more per family)
    s2 = evaluate(_eval_cfg(tmp_path / "ray", episodes=3, workers=2, backend="ray", ray=opts))
    assert s2["new_episodes"] == 2 and s2["overall"]["episodes"] == 6
    assert ray.is_initialized()  # connected to the cluster by ray.address, and kept for the next run
    print(f"ray eval test: {time.time() - t0:.1f} s after the cluster start")


def test_ray_datagen_writes_the_same_shards(cluster, tmp_path):
    import pyarrow.parquet as pq

    common = dict(level="L1", episodes=2, tasks="stack", episodes_per_shard=1, perturb=0.5, progress=False)
    s_ray = generate(DatagenConfig(out=str(tmp_path / "ray"), workers=2, backend="ray", ray=RayOptions(address=cluster["address"]), **common))
    generate(DatagenConfig(out=str(tmp_path / "proc"), workers=1, **common))
    names = sorted(p.name for p in (tmp_path / "proc").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "ray").glob("*.parquet")) and len(names) == 2
    for n in names:
        assert pq.read_table(tmp_path / "ray" / n).to_pylist() == pq.read_table(tmp_path / "proc" / n).to_pylist()
    assert s_ray["backend"] == "ray" and s_ray["shards_written"] == 2
    assert not list((tmp_path / "ray").glob("*.tmp"))


def test_backend_settings_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown backend"):
        evaluate(_eval_cfg(tmp_path / "a", backend="slurm"))
    with pytest.raises(ConfigError, match="some resource"):
        evaluate(_eval_cfg(tmp_path / "b", backend="ray", ray=RayOptions(num_cpus=0)))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_eval_through_ray_client(cluster, tmp_path):
    """`ray.address=ray://host:port` (Ray Client), from another process, as from a laptop: `-m slow`."""
    out = tmp_path / "client"
    proc = subprocess.run([str(Path(sys.executable).with_name("embodied")), "eval", "planner=oracle", "tasks=[stack]", "episodes=2",
                           "workers=2", "seed=5", "backend=ray", f"ray.address={cluster['client']}", f"out={out}", "progress=false"],
                          env=cluster["env"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = tmp_path / "ref"
    evaluate(_eval_cfg(ref, tasks="stack", workers=1))
    assert _outcomes(out) == _outcomes(ref)
