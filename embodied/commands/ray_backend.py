"""``backend=ray``: run the episodes of ``embodied eval`` and the shards of ``embodied datagen`` as Ray tasks.

    embodied eval planner=oracle episodes=1000 backend=ray ray.address=auto workers=64 out=runs/big
    embodied datagen episodes=100000 backend=ray ray.address=ray://head:10001 workers=64 out=data/big

Each evaluation episode (``eval``) or shard of episodes (``datagen``) is one Ray task. The
driver keeps at most ``workers`` tasks in flight and writes each result as it arrives, to the
same ``episodes.jsonl`` / shard files as the process pool: so an interrupted run resumes as
today, and nothing needs a shared filesystem (a task returns its episode video or its Parquet
shard as bytes; the driver writes it). A worker process runs the same code as a process-pool
worker (``embodied.commands.eval._worker_init`` / ``_worker_run``, ``datagen.run_unit``) and
keeps its planner and simulators between tasks, so the same seeds give the same episodes.

Fault tolerance is Ray's: a task whose worker process or node dies is run again
(``ray.max_retries``, 3 by default); the finished episodes of other workers are kept.

``ray.address``: ``null`` starts a Ray on this machine for the run (``workers`` x
``ray.num_cpus`` CPUs) and stops it after; ``auto`` joins the cluster that ``ray start`` made on
this machine; ``ray://host:10001`` connects through Ray Client; ``host:6379`` as a cluster node.
Per-task resources: ``ray.num_cpus``, ``ray.num_gpus``, ``ray.memory_mb``, ``ray.resources``
(custom resources, e.g. ``"ray.resources={sim: 1}"``); ``ray.runtime_env`` is handed to Ray
(e.g. ``working_dir``) for clusters whose nodes lack the project. ``docs/scale.md`` has recipes.
Ray is an optional extra: ``pip install -e .[ray]``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from embodied.core.errors import ConfigError, EmbodiedError

BACKENDS = ("process", "ray")
_log = logging.getLogger("embodied.ray")


class DistributedError(EmbodiedError, RuntimeError):
    """A Ray task failed for good (its retries spent, or an error in the episode code itself)."""


@dataclass
class RayOptions:
    address: Optional[str] = None  # null: a Ray on this machine for this run; auto: the running cluster; ray://host:10001
    num_cpus: float = 1.0  # CPUs per task (one episode of eval, one shard of datagen)
    num_gpus: float = 0.0  # GPUs per task (planner=model device=cuda on GPU nodes)
    memory_mb: Optional[int] = None  # memory per task that Ray schedules on (null: not counted)
    resources: Dict[str, float] = field(default_factory=dict)  # custom resources per task, e.g. {sim: 1}
    max_retries: int = 3  # a task whose worker process or node died runs again this many times
    runtime_env: Dict[str, Any] = field(default_factory=dict)  # handed to ray.init, e.g. {working_dir: .}


def check_backend(backend: str, opts: RayOptions | dict | None) -> None:
    """Named errors for a bad backend or Ray option, and for backend=ray without Ray installed."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "ray":
        return
    o = _options(opts)
    if o.num_cpus < 0 or o.num_gpus < 0 or o.max_retries < 0 or (o.memory_mb is not None and o.memory_mb <= 0):
        raise ConfigError("ray.num_cpus, ray.num_gpus and ray.max_retries must be >= 0 and ray.memory_mb > 0")
    if o.num_cpus == 0 and o.num_gpus == 0 and not o.resources:
        raise ConfigError("a Ray task needs some resource: set ray.num_cpus, ray.num_gpus or ray.resources")
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise ConfigError("backend=ray needs Ray: pip install -e .[ray]  (or pip install 'ray[client]')") from e


def _options(opts) -> RayOptions:
    if opts is None:
        return RayOptions()
    if isinstance(opts, RayOptions):
        return opts
    d = dict(opts)
    return RayOptions(**{k: v for k, v in d.items() if k in RayOptions.__dataclass_fields__})


class _Session:
    """ray.init for a run. A Ray this run started on this machine (``ray.address=null``) is shut down
    after it; a connection to a cluster stays open until the process ends (its workers stay warm for
    the next run of the same process: tests, notebooks)."""

    def __init__(self, opts: RayOptions, workers: int):
        import ray

        self.ray = ray
        self.owned = False
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if opts.runtime_env:
            kwargs["runtime_env"] = dict(opts.runtime_env)
        address = opts.address or os.environ.get("RAY_ADDRESS")
        if not address:
            kwargs.update(num_cpus=max(1, int(round(workers * max(opts.num_cpus, 1.0)))), include_dashboard=False)
            if opts.num_gpus:
                kwargs["num_gpus"] = int(round(workers * opts.num_gpus))
        try:
            ray.init(address=address or "local", **kwargs)
        except ConnectionError as e:
            raise ConfigError(f"ray.address={address}: no Ray cluster there ({e}); start one with `ray start --head`") from e
        self.owned = not address

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def _remote(fn: Callable, opts: RayOptions, name: str):
    import ray

    o: dict[str, Any] = {"num_cpus": opts.num_cpus, "num_gpus": opts.num_gpus, "max_retries": opts.max_retries,
                         "retry_exceptions": False, "name": name}
    if opts.memory_mb:
        o["memory"] = int(opts.memory_mb) * 1024 * 1024
    if opts.resources:
        o["resources"] = {str(k): float(v) for k, v in opts.resources.items()}
    return ray.remote(fn).options(**o)


def stream(fn: Callable, args: Iterable[tuple], opts, workers: int, name: str) -> Iterator[Any]:
    """Run ``fn(*a)`` for every ``a`` in ``args`` as Ray tasks, at most ``workers`` in flight;
    yields results as they finish (any order). Ray owns the retries of tasks whose worker died."""
    opts = _options(opts)
    args = list(args)
    if not args:
        return
    session = _Session(opts, workers)
    ray = session.ray
    task = _remote(fn, opts, name)
    todo = iter(args)
    pending: list = []
    try:
        while True:
            while len(pending) < workers:
                nxt = next(todo, None)
                if nxt is None:
                    break
                pending.append(task.remote(*nxt))
            if not pending:
                return
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as e:
                raise DistributedError(f"a Ray task of {name} failed for good ({type(e).__name__}: {e}); the results so far "
                                       "are kept: run the same command again to resume") from e
            yield result
    finally:
        for ref in pending:  # an interrupted run: the driver stops waiting, Ray drops the rest
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        session.close()


# --- embodied eval ---------------------------------------------------------------------------

_STATE: dict[str, Any] = {}
_PATH_KEYS = ("model_dir", "server_key", "client_key")
# settings that do not change what a worker builds (its planner and simulators)
_RUN_KEYS = ("out", "episodes", "workers", "tasks", "progress", "backend", "ray")


def worker_config(cfg: dict) -> dict:
    """The settings a worker on another node gets: relative paths made absolute (the driver's view)."""
    out = dict(cfg)
    for k in _PATH_KEYS:
        v = out.get(k)
        if isinstance(v, str) and v and not os.path.isabs(v) and Path(v).exists():
            out[k] = str(Path(v).resolve())
    return out


def _eval_episode(init: Callable, run: Callable, cfg: dict, job: tuple[str, int]) -> tuple[dict, Optional[bytes]]:
    """One episode in a Ray worker: the process-pool worker's code (``init(cfg)`` once per worker
    process and settings, then ``run(job)``), with videos into a local temp folder."""
    key = json.dumps({k: v for k, v in cfg.items() if k not in _RUN_KEYS}, sort_keys=True, default=str)
    if _STATE.get("eval") != key:  # a new run (or a first task): build the planner once per worker process
        scratch = _STATE.get("scratch") or tempfile.mkdtemp(prefix="embodied-ray-")
        _STATE["scratch"] = scratch
        init(dict(cfg, out=scratch))
        _STATE["eval"] = key
    record = run(tuple(job))
    video = None
    if record.get("video"):
        path = Path(record.pop("video"))
        video = path.read_bytes()
        record["video_name"] = path.name
        path.unlink(missing_ok=True)
    return record, video


def run_eval_jobs(cfg: dict, jobs: list[tuple[str, int]], workers: int, opts, out: Path,
                  init: Callable[[dict], None], run: Callable[[tuple], dict]) -> Iterator[dict]:
    """The records of ``jobs`` (task, index) evaluated as Ray tasks by eval's worker functions ``init``
    and ``run`` (handed over, not imported: they travel to the workers by reference); videos are
    written under ``out/videos``."""
    from embodied.commands.episodes import unique_path

    wcfg = worker_config(cfg)
    args = ((init, run, wcfg, job) for job in jobs)
    for record, video in stream(_eval_episode, args, opts, workers, "embodied-eval-episode"):
        name = record.pop("video_name", None)
        if video is not None and name:
            path = unique_path(out / "videos" / name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(video)
            record["video"] = str(path)
        yield record


# --- embodied datagen ------------------------------------------------------------------------

def _datagen_unit(run: Callable, unit) -> tuple[dict, bytes]:
    """One shard in a Ray worker: ``run(unit)`` (datagen's ``run_unit``) into a local temp file, returned as bytes."""
    scratch = tempfile.mkdtemp(prefix="embodied-ray-")
    try:
        local = Path(scratch) / Path(unit.path).name
        counts = run(replace(unit, path=str(local)))
        return dict(counts, path=unit.path), local.read_bytes()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_datagen_units(units: list, workers: int, opts, run: Callable) -> Iterator[dict]:
    """Counts of each unit (a dataclass with ``path``: one shard) run by ``run`` (datagen's ``run_unit``,
    handed over) as a Ray task; the shard is written where the process pool writes it."""
    args = [(run, u) for u in units]
    for counts, data in stream(_datagen_unit, args, opts, workers, "embodied-datagen-shard"):
        write_atomic(Path(counts.pop("path")), data)
        yield counts
