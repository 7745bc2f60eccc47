"""``embodied eval``: success rates of a planner over the task suite at one level.

Every task family runs for ``episodes`` episodes, in parallel worker processes, appending
one JSON line per finished episode to ``episodes.jsonl`` (so an interrupted run resumes
where it stopped), and writes ``summary.json`` (success rates with Wilson 95% intervals) and
``summary.md``. Episode ``i`` of task ``t`` uses the seed ``episode_seed(seed, t, i)``,
recorded in its line. Every setting is checked before the output folder is touched.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from embodied.commands.config import one_of, validated
from embodied.commands.episodes import episode_seed, make_env, run_episode, unique_path
from embodied.commands.options import PlannerOptions, SimOptions, check_options
from embodied.commands.planners import make_planner
from embodied.commands.ray_backend import RayOptions, check_backend
from embodied.commands.stats import markdown_table, summarise
from embodied.commands.viz import check_viz, make_viz
from embodied.core.errors import ConfigError, EmbodiedError


@dataclass
class EvalConfig(PlannerOptions):
    level: str = "L1"
    split: str = "test"
    episodes: int = 10
    seed: int = 0
    workers: int = 1
    tasks: Any = "all"  # "all", one family, or a list: tasks=[stack,tower]
    video: bool = False
    out: str = "runs/eval"
    progress: bool = True
    backend: str = "process"  # process | ray: episodes as Ray tasks (embodied.commands.ray_backend)
    ray: RayOptions = field(default_factory=RayOptions)
    viz: str = "none"  # none | rerun: every episode in the Rerun viewer (embodied.commands.viz)
    viz_save: Optional[str] = None  # viz=rerun: a folder for one .rrd per episode instead of a live viewer
    viz_connect: Optional[str] = None  # viz=rerun: the gRPC URL of a running viewer


def check_eval_config(cfg: EvalConfig) -> list[str]:
    """Every setting checked before the output folder is touched; returns the task families."""
    from envs.tasks import TASKS

    check_options(cfg, cfg.level, cfg.split)
    if cfg.tasks == "all":
        families = list(TASKS)
    elif isinstance(cfg.tasks, str):
        families = [t.strip() for t in cfg.tasks.split(",") if t.strip()]
    else:
        families = [str(t) for t in cfg.tasks]
    for t in families:
        one_of(t, list(TASKS), "tasks")
    if cfg.episodes < 1 or cfg.workers < 1:
        raise ConfigError("episodes and workers must be at least 1")
    check_backend(cfg.backend, cfg.ray)
    check_viz(cfg.viz, cfg.viz_save, cfg.viz_connect)
    return families


_WORKER: dict[str, Any] = {}


def _worker_init(cfg_dict: dict) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _WORKER["cfg"] = EvalConfig(**{**cfg_dict, "sim": SimOptions(**cfg_dict.get("sim", {}))})
    _WORKER["planner"] = make_planner(cfg_dict["planner"], cfg_dict)
    _WORKER["envs"] = {}


def _worker_run(job: tuple[str, int]) -> dict:
    task, index = job
    cfg: EvalConfig = _WORKER["cfg"]
    envs = _WORKER["envs"]
    if task not in envs:
        envs[task] = make_env(task, cfg.level, cfg.split, cfg.image_size, cfg.perception, cfg.phrasing, cfg.sim.randomize)
    seed = episode_seed(cfg.seed, task, index)
    video = unique_path(Path(cfg.out) / "videos" / f"{task}_{index:04d}_{seed}.mp4") if cfg.video else None
    try:
        name = f"{task}_{index:04d}_{seed}"
        viz = make_viz(cfg.viz, name, str(Path(cfg.viz_save) / f"{name}.rrd") if cfg.viz_save else None, cfg.viz_connect)
        record = run_episode(envs[task], _WORKER["planner"], seed, cfg.ablate, video, viz)
    except EmbodiedError as e:
        record = {"task": task, "level": cfg.level, "seed": seed, "success": False, "steps": 0, "failure": f"error: {e}", "plan": "", "instruction": ""}
    variation = getattr(envs[task], "variation", None)
    if variation is not None:  # randomised rendering: what this episode looked like (seeded, repeatable)
        record["variation"] = variation.to_dict()
    record["index"] = index
    if video:
        record["video"] = str(video)
    return record


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by an interruption: that episode runs again
    return out


def _identity(cfg: EvalConfig) -> dict:
    """What must match for an evaluation to resume: settings, and for the model planner its weights."""
    keys = ("planner", "level", "split", "seed", "ablate", "model_dir", "image_size", "keep_patches")
    identity = {k: v for k, v in asdict(cfg).items() if k in keys}
    if cfg.perception != "ground_truth":  # absent = ground truth, as in folders written before the option
        identity["perception"] = cfg.perception
    if cfg.phrasing != "templates":  # absent = the task templates, as in folders written before the option
        identity["phrasing"] = cfg.phrasing
    if cfg.sim.randomize:  # absent = plain rendering
        identity["randomize"] = True
    if cfg.planner == "model":
        identity["model_sha256"] = _model_digest(Path(cfg.model_dir))
        identity["object_aliases"] = cfg.object_aliases
    return identity


def _model_digest(model_dir: Path) -> str | None:
    """sha256 (first 16 hex digits) of a model directory's weights and config (its known objects
    change its plans too); None when there are no weights."""
    path = model_dir / "model.safetensors"
    if not path.is_file():
        return None  # the planner itself reports a missing model with a clear error
    h = hashlib.sha256()
    for part in (path, model_dir / "config.json"):
        if part.is_file():
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def evaluate(cfg: EvalConfig) -> dict:
    """Run (or resume) an evaluation and write its outputs under ``cfg.out``."""
    families = check_eval_config(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "eval_config.json"
    identity = _identity(cfg)
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        changed = sorted(k for k in set(identity) | set(old) if old.get(k) != identity.get(k))
        if changed:
            raise ConfigError(
                f"{out} holds an evaluation with other settings ({', '.join(changed)} differ: {old}); its episodes "
                "cannot be resumed with these. Choose a new out=<dir>, or delete that folder to start afresh"
            )
    meta_path.write_text(json.dumps(identity, indent=2))

    log_path = out / "episodes.jsonl"
    logged = read_jsonl(log_path)
    # rewrite the log without a torn last line before appending
    log_path.write_text("".join(json.dumps(r) + "\n" for r in logged))
    records = [r for r in logged if r.get("task") in families]
    done = {(r["task"], r["index"]) for r in records}
    jobs = [(t, i) for t in families for i in range(cfg.episodes) if (t, i) not in done]
    cfg_dict = asdict(cfg)
    t0 = time.perf_counter()
    bar = _progress(len(families) * cfg.episodes, len(done), cfg.progress)
    with open(log_path, "a") as log:
        def record(r: dict) -> None:
            records.append(r)
            log.write(json.dumps(r) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix(success=f"{sum(x['success'] for x in records) / len(records):.0%}")

        if cfg.backend == "ray":
            from embodied.commands.ray_backend import run_eval_jobs

            for r in run_eval_jobs(cfg_dict, jobs, cfg.workers, cfg.ray, out, _worker_init, _worker_run):
                record(r)
        elif cfg.workers == 1 or len(jobs) <= 1:
            _worker_init(cfg_dict)
            for job in jobs:
                record(_worker_run(job))
        elif jobs:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(cfg.workers, initializer=_worker_init, initargs=(cfg_dict,)) as pool:
                for r in pool.imap_unordered(_worker_run, jobs):
                    record(r)
    bar.close()
    elapsed = time.perf_counter() - t0
    records = [r for r in records if r["task"] in families and r["index"] < cfg.episodes]
    summary = summarise(
        records, cfg.level, cfg.planner, cfg.seed,
        {"ablate": cfg.ablate, "split": cfg.split, "seconds": round(elapsed, 1), "new_episodes": len(jobs),
         "episodes_per_minute": round(len(jobs) / elapsed * 60, 2) if jobs and elapsed > 0 else None,
         "workers": cfg.workers, "backend": cfg.backend},
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown_table(summary))
    return summary


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="eval", unit="ep", disable=not enabled, file=sys.stderr)


def main(cfg) -> int:
    summary = evaluate(validated(cfg, EvalConfig))
    print(markdown_table(summary))
    print(f"wrote {Path(cfg.out) / 'summary.json'}")
    return 0
