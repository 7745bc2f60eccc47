"""Episodes per second of `embodied eval` on Ray against the process pool, on this machine.

    python benchmarks/bench_ray.py --episodes 3 --rounds 2 --out benchmarks/results/ray.json

The same L1 oracle episodes (all ten families, ``--episodes`` each, seed 0) run through the
code of both backends, with 1 and 2 workers:

- ``process``: eval's own worker functions in a spawn pool (``imap_unordered``), as
  ``embodied eval workers=N`` runs them (for N=1 too, so both sides pay one worker process);
- ``ray``: ``embodied.commands.ray_backend.run_eval_jobs`` (one Ray task per episode, at most N in
  flight) on a Ray started on this machine with N CPUs.

For each run it records the completion time of every episode. ``wall`` is episodes / total
time (pool or Ray start included); ``steady`` is the rate over the last two thirds of the
episodes (worker start-up, imports and each family's first simulator excluded), the number a
long run converges to. The
configurations are interleaved over ``--rounds`` rounds (the machine is shared: medians are
reported next to every round). The per-episode overhead of Ray is measured twice: the
round trip of an empty task through the same ``stream()`` with one worker, and the
difference of steady per-episode times, Ray vs process, with one worker; both as a fraction
of the mean L1 episode (``seconds`` in the episode records).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embodied.commands import eval as ev  # noqa: E402
from embodied.commands.ray_backend import RayOptions, run_eval_jobs, stream  # noqa: E402


def _noop(i: int) -> int:
    return i


def _jobs(episodes: int) -> list[tuple[str, int]]:
    from envs.tasks import TASKS

    return [(t, i) for i in range(episodes) for t in TASKS]


def _cfg(out: Path) -> dict:
    return asdict(ev.EvalConfig(planner="oracle", level="L1", seed=0, out=str(out), progress=False))


def _rates(times: list[float], t0: float, workers: int) -> dict:
    times = sorted(times)
    n = len(times)
    k = max(min(2 * workers, n - 2), n // 3)  # first third out: worker start, imports, one simulator per family
    steady = (n - k) / (times[-1] - times[k - 1]) if k >= 1 and times[-1] > times[k - 1] else None
    return {"episodes": n, "wall_s": round(times[-1] - t0, 2), "wall_eps": round(n / (times[-1] - t0), 4),
            "steady_eps": round(steady, 4) if steady else None}


def run_process(jobs, workers: int, out: Path) -> tuple[dict, list[dict]]:
    cfg = _cfg(out)
    t0 = time.perf_counter()
    times, records = [], []
    with mp.get_context("spawn").Pool(workers, initializer=ev._worker_init, initargs=(cfg,)) as pool:
        for r in pool.imap_unordered(ev._worker_run, jobs):
            times.append(time.perf_counter())
            records.append(r)
    return _rates(times, t0, workers), records


def run_ray(jobs, workers: int, out: Path) -> tuple[dict, list[dict]]:
    import ray

    cfg = _cfg(out)
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    started = time.perf_counter() - t0
    times, records = [], []
    try:
        for r in run_eval_jobs(cfg, jobs, workers, RayOptions(), out, ev._worker_init, ev._worker_run):
            times.append(time.perf_counter())
            records.append(r)
    finally:
        ray.shutdown()
    return dict(_rates(times, t0, workers), ray_init_s=round(started, 2)), records


def task_overhead(n: int) -> dict:
    """Round trip of an empty Ray task through ray_backend.stream() with one worker in flight."""
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        list(stream(_noop, [(i,) for i in range(20)], RayOptions(), 1, "bench-noop"))  # warm the worker
        t0 = time.perf_counter()
        out = list(stream(_noop, [(i,) for i in range(n)], RayOptions(), 1, "bench-noop"))
        dt = time.perf_counter() - t0
    finally:
        ray.shutdown()
    assert sorted(out) == list(range(n))
    return {"tasks": n, "per_task_ms": round(1000 * dt / n, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=3, help="episodes per task family (ten families)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--noop-tasks", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ray.json"))
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import tempfile

    jobs = _jobs(args.episodes)
    configs = [(b, w) for w in args.workers for b in ("process", "ray")]
    runs: dict[str, list[dict]] = {f"{b}-{w}": [] for b, w in configs}
    episode_s: dict[str, list[float]] = {k: [] for k in runs}
    outcomes: dict[str, dict] = {}
    for rnd in range(args.rounds):
        order = configs if rnd % 2 == 0 else configs[::-1]  # interleaved, alternating order
        for backend, w in order:
            key = f"{backend}-{w}"
            with tempfile.TemporaryDirectory() as tmp:
                fn = run_process if backend == "process" else run_ray
                rate, records = fn(jobs, w, Path(tmp))
            rate["round"] = rnd
            runs[key].append(rate)
            episode_s[key] += [r["seconds"] for r in records]
            got = {(r["task"], r["index"]): (r["success"], r["plan"]) for r in records}
            outcomes.setdefault("reference", got)
            rate["same_outcomes_as_first_run"] = got == outcomes["reference"]
            print(json.dumps({key: rate}), flush=True)
    noop = task_overhead(args.noop_tasks)
    print(json.dumps({"noop": noop}), flush=True)

    def med(key, field):
        vals = [r[field] for r in runs[key] if r.get(field)]
        return round(statistics.median(vals), 4) if vals else None

    summary = {k: {"wall_eps": med(k, "wall_eps"), "steady_eps": med(k, "steady_eps"),
                   "mean_episode_s": round(statistics.mean(episode_s[k]), 3)} for k in runs}
    mean_episode = statistics.mean([s for k in runs for s in episode_s[k]])
    result = {
        "command": "python benchmarks/bench_ray.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_at_end": os.getloadavg(),
                    "note": "2 shared vCPUs: rates move between rounds; load_avg_at_end says how busy the machine was"},
        "workload": {"planner": "oracle", "level": "L1", "families": 10, "episodes_per_family": args.episodes,
                     "episodes_per_run": len(jobs)},
        "runs": runs,
        "median": summary,
        "mean_l1_episode_s": round(mean_episode, 3),
        "noop_task": noop,
    }
    r = {}
    for b in ("process", "ray"):
        if f"{b}-1" in summary and f"{b}-2" in summary:
            for f in ("wall_eps", "steady_eps"):
                a, c = summary[f"{b}-1"][f], summary[f"{b}-2"][f]
                r[f"{b}_2_vs_1_{f}"] = round(c / a, 3) if a and c else None
    for w in args.workers:
        p, q = summary.get(f"process-{w}", {}), summary.get(f"ray-{w}", {})
        for f in ("wall_eps", "steady_eps"):
            if p.get(f) and q.get(f):
                r[f"ray_vs_process_{w}w_{f}"] = round(q[f] / p[f], 3)
    if summary.get("process-1", {}).get("steady_eps") and summary.get("ray-1", {}).get("steady_eps"):
        diff = 1 / summary["ray-1"]["steady_eps"] - 1 / summary["process-1"]["steady_eps"]
        r["ray_overhead_per_episode_s_e2e"] = round(diff, 4)
        r["ray_overhead_fraction_e2e"] = round(diff / mean_episode, 4)
    r["ray_overhead_fraction_noop"] = round(noop["per_task_ms"] / 1000 / mean_episode, 5)
    result["ratios"] = r
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
