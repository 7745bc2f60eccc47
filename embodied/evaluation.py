"""Rollouts and task-success evaluation: ``embodied rollout``, ``embodied eval``, ``embodied compare``.

An evaluation runs every task family for ``episodes`` episodes at one level, in parallel
worker processes, appending one JSON line per finished episode to ``episodes.jsonl``
(so an interrupted run resumes where it stopped), and writes ``summary.json`` (success
rates with Wilson 95% intervals) and ``summary.md``. Episode ``i`` of task ``t`` uses the
seed ``episode_seed(seed, t, i)``, recorded in its line.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from embodied.errors import ConfigError, EmbodiedError
from embodied.planners import PRIVILEGED_PLANNERS, make_planner

LEVELS = ("L1", "L2", "L3", "L4")
ABLATIONS = ("none", "frames", "objects", "relations", "state")


@dataclass
class PlannerOptions:
    planner: str = "oracle"
    model_dir: str = "checkpoints/default"
    device: str = "cpu"
    use_engine: bool = True
    cpu_compile: bool = False  # planner=model on CPU: compile the engine (20-60 s once, then plans about 2x faster than eager)
    keep_patches: Optional[int] = None
    object_aliases: bool = True  # planner=model: plan for objects it never saw under known names of their colour
    server: str = "tcp://127.0.0.1:5555"
    server_key: Optional[str] = None  # CurveZMQ: the server's public key file
    client_key: Optional[str] = None  # CurveZMQ: this robot's secret key file
    latency_ms: Optional[float] = None
    jitter_ms: Optional[float] = None
    loss: Optional[float] = None
    timeout_s: Optional[float] = None
    ablate: str = "none"
    image_size: int = 128


@dataclass
class RolloutConfig(PlannerOptions):
    task: str = "put_in_container"
    level: str = "L1"
    split: str = "test"
    seed: int = 0
    video: bool = False
    out: str = "runs/rollout"


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


# --------------------------------------------------------------------------- episodes
def episode_seed(seed: int, task: str, index: int) -> int:
    """Seed of episode ``index`` of ``task`` in an evaluation seeded with ``seed``."""
    digest = hashlib.sha256(f"{seed}:{task}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _check_options(opts: PlannerOptions, level: str) -> None:
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; use one of {', '.join(LEVELS)}")
    if opts.ablate not in ABLATIONS:
        raise ConfigError(f"unknown ablation {opts.ablate!r}; use one of {', '.join(ABLATIONS)}")


def make_env(task: str, level: str, split: str, image_size: int):
    from envs.tabletop_env import TabletopEnv

    return TabletopEnv(task=task, level=level, split=split, image_size=image_size, privileged=True)


def run_episode(env, planner, seed: int, ablate: str = "none", video_path: Optional[Path] = None) -> dict[str, Any]:
    """Closed loop: observe, take the first streamed step, execute it, observe again."""
    t0 = time.perf_counter()
    env.reset(seed=seed)
    planner.reset()
    base = env.unwrapped
    episode = base.episode
    keep_privileged = getattr(planner, "name", "") in PRIVILEGED_PLANNERS or getattr(planner, "forwards_privileged", False)
    executed: list[str] = []
    success, failure, info = False, None, {}
    recorder = _VideoRecorder(video_path, episode.instruction) if video_path else None
    steps = 0
    while True:
        obs = base.observation()
        if recorder:
            recorder.add(obs.frames["front"], executed, executed[-1] if executed else "")
        if ablate != "none":
            obs = obs.ablated(ablate)
        if not keep_privileged:
            obs.privileged = None
        try:
            stream = planner.plan(obs)
            step = next(stream, None)
            if hasattr(stream, "close"):
                stream.close()
        except EmbodiedError as e:
            failure = f"planner error: {e}"
            break
        if step is None:
            failure = "planner returned no step"
            break
        _, _, terminated, truncated, info = env.step(step.text)
        steps += 1
        executed.append(step.text)
        success = bool(info.get("success", False))
        if terminated or truncated:
            if not success:
                failure = info.get("failure") or info.get("error") or ("step limit" if truncated else "declared done before success" if step.is_done else "terminated")
            break
    if recorder:
        recorder.add(base.observation().frames["front"], executed, "", "SUCCESS" if success else f"FAILED: {failure}")
        recorder.close()
    return {
        "task": episode.family,
        "level": episode.level,
        "seed": seed,
        "success": success,
        "steps": steps,
        "failure": None if success else failure,
        "plan": "; ".join(executed),
        "instruction": episode.instruction,
        "seconds": round(time.perf_counter() - t0, 3),
    }


class _VideoRecorder:
    """Writes the camera view, upscaled, with the instruction and plan overlaid (mp4, opencv)."""

    SIZE = 384
    HOLD = 8  # frames per observation at 8 fps: one second each

    def __init__(self, path: Path, instruction: str):
        import cv2

        self.cv2 = cv2
        self.path = path
        self.instruction = instruction
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (self.SIZE, self.SIZE + 90))

    def add(self, frame, executed: list[str], current: str, banner: str = "") -> None:
        import numpy as np

        cv2 = self.cv2
        img = cv2.resize(np.ascontiguousarray(frame[:, :, :3]), (self.SIZE, self.SIZE), interpolation=cv2.INTER_NEAREST)
        canvas = np.zeros((self.SIZE + 90, self.SIZE, 3), np.uint8)
        canvas[90:] = img
        lines = [self.instruction[:60]] + [f"{i + 1}. {s}" for i, s in enumerate(executed[-3:], start=max(0, len(executed) - 3))]
        if banner:
            lines = [banner] + lines[:3]
        for k, text in enumerate(lines[:4]):
            colour = (255, 255, 0) if text == current or (current and text.endswith(current)) else (255, 255, 255)
            cv2.putText(canvas, text, (6, 18 + 21 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        bgr = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        for _ in range(self.HOLD):
            self.writer.write(bgr)

    def close(self) -> None:
        self.writer.release()


def unique_path(path: Path) -> Path:
    """``path`` itself if free, else ``stem-1.ext``, ``stem-2.ext``...: videos are never overwritten."""
    if not path.exists():
        return path
    k = 1
    while (candidate := path.with_name(f"{path.stem}-{k}{path.suffix}")).exists():
        k += 1
    return candidate


# --------------------------------------------------------------------------- statistics
def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(records: list[dict], level: str, planner: str, seed: int, extra: dict | None = None) -> dict:
    tasks: dict[str, dict] = {}
    for family in sorted({r["task"] for r in records}):
        rs = [r for r in records if r["task"] == family]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, len(rs))
        tasks[family] = {"success_rate": k / len(rs), "episodes": len(rs), "ci95": [round(lo, 4), round(hi, 4)]}
    k = sum(r["success"] for r in records)
    lo, hi = wilson_interval(k, len(records))
    summary = {
        "level": level,
        "planner": planner,
        "seed": seed,
        "overall": {"success_rate": k / len(records) if records else 0.0, "episodes": len(records), "ci95": [round(lo, 4), round(hi, 4)]},
        "tasks": tasks,
    }
    summary.update(extra or {})
    return summary


def markdown_table(summary: dict) -> str:
    head = f"# {summary['planner']} at {summary['level']} (seed {summary['seed']})\n\n"
    rows = ["| task | success | episodes | 95% CI |", "| --- | --- | --- | --- |"]
    for family, t in summary["tasks"].items():
        rows.append(f"| {family} | {t['success_rate']:.1%} | {t['episodes']} | {t['ci95'][0]:.2f}-{t['ci95'][1]:.2f} |")
    o = summary["overall"]
    rows.append(f"| **overall** | **{o['success_rate']:.1%}** | {o['episodes']} | {o['ci95'][0]:.2f}-{o['ci95'][1]:.2f} |")
    return head + "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _worker_init(cfg_dict: dict) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _WORKER["cfg"] = EvalConfig(**cfg_dict)
    _WORKER["planner"] = make_planner(cfg_dict["planner"], cfg_dict)
    _WORKER["envs"] = {}


def _worker_run(job: tuple[str, int]) -> dict:
    task, index = job
    cfg: EvalConfig = _WORKER["cfg"]
    envs = _WORKER["envs"]
    if task not in envs:
        envs[task] = make_env(task, cfg.level, cfg.split, cfg.image_size)
    seed = episode_seed(cfg.seed, task, index)
    video = unique_path(Path(cfg.out) / "videos" / f"{task}_{index:04d}_{seed}.mp4") if cfg.video else None
    try:
        record = run_episode(envs[task], _WORKER["planner"], seed, cfg.ablate, video)
    except EmbodiedError as e:
        record = {"task": task, "level": cfg.level, "seed": seed, "success": False, "steps": 0, "failure": f"error: {e}", "plan": "", "instruction": ""}
    record["index"] = index
    if video:
        record["video"] = str(video)
    return record


def _read_jsonl(path: Path) -> list[dict]:
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
    from envs.tasks import TASKS

    _check_options(cfg, cfg.level)
    if cfg.tasks == "all":
        families = list(TASKS)
    elif isinstance(cfg.tasks, str):
        families = [t.strip() for t in cfg.tasks.split(",") if t.strip()]
    else:
        families = [str(t) for t in cfg.tasks]
    unknown = [t for t in families if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task {unknown[0]!r}; tasks are {', '.join(TASKS)}")
    if cfg.episodes < 1 or cfg.workers < 1:
        raise ConfigError("episodes and workers must be at least 1")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "eval_config.json"
    identity = _identity(cfg)
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        if {k: old.get(k) for k in identity} != identity:
            changed = sorted(k for k in identity if old.get(k) != identity[k])
            raise ConfigError(
                f"{out} holds an evaluation with other settings ({', '.join(changed)} differ: {old}); its episodes "
                "cannot be resumed with these. Choose a new out=<dir>, or delete that folder to start afresh"
            )
    meta_path.write_text(json.dumps(identity, indent=2))

    log_path = out / "episodes.jsonl"
    logged = _read_jsonl(log_path)
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

        if cfg.workers == 1 or len(jobs) <= 1:
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
         "workers": cfg.workers},
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(markdown_table(summary))
    return summary


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="eval", unit="ep", disable=not enabled, file=sys.stderr)


# --------------------------------------------------------------------------- CLI entry points
def eval_main(cfg) -> int:
    from embodied.cli import validated

    summary = evaluate(validated(cfg, EvalConfig))
    print(markdown_table(summary))
    print(f"wrote {Path(cfg.out) / 'summary.json'}")
    return 0


TASK_FAILED = 3  # exit status of `embodied rollout` when the episode ran but the task was not achieved


def rollout_main(cfg) -> int:
    """``embodied rollout``: one episode. Exit status 0 success, 3 task not achieved, 2 bad config."""
    from embodied.cli import validated

    c: RolloutConfig = validated(cfg, RolloutConfig)
    _check_options(c, c.level)
    planner = make_planner(c.planner, asdict(c))
    env = make_env(c.task, c.level, c.split, c.image_size)
    video = unique_path(Path(c.out) / f"{c.task}_{c.level}_seed{c.seed}.mp4") if c.video else None
    result = run_episode(env, planner, c.seed, c.ablate, video)
    if video:
        result["video"] = str(video)
    print(json.dumps(result, indent=2))
    return 0 if result["success"] else TASK_FAILED


def compare_main(argv: list[str]) -> int:
    """``embodied compare <dirA> <dirB>``: paired comparison on the seeds both evaluated."""
    if len(argv) != 2:
        raise ConfigError("usage: embodied compare <eval dir A> <eval dir B>")
    print(format_comparison(compare(Path(argv[0]), Path(argv[1]))))
    return 0


def compare(dir_a: Path, dir_b: Path) -> dict:
    a = {(r["task"], r["seed"]): r["success"] for r in _read_jsonl(dir_a / "episodes.jsonl")}
    b = {(r["task"], r["seed"]): r["success"] for r in _read_jsonl(dir_b / "episodes.jsonl")}
    if not a or not b:
        raise ConfigError(f"no episodes.jsonl with episodes in {dir_a if not a else dir_b}")
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ConfigError("the two evaluations share no (task, seed) pairs: run them with the same seed and level")
    rows: dict[str, dict] = {}
    for family in sorted({t for t, _ in shared}) + ["overall"]:
        keys = [k for k in shared if family == "overall" or k[0] == family]
        both = sum(a[k] and b[k] for k in keys)
        only_a = sum(a[k] and not b[k] for k in keys)
        only_b = sum(b[k] and not a[k] for k in keys)
        rows[family] = {
            "pairs": len(keys),
            "a_rate": sum(a[k] for k in keys) / len(keys),
            "b_rate": sum(b[k] for k in keys) / len(keys),
            "both": both, "only_a": only_a, "only_b": only_b,
            "mcnemar_p": mcnemar_exact(only_a, only_b),
        }
    return {"a": str(dir_a), "b": str(dir_b), "rows": rows}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test (binomial on the discordant pairs)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def format_comparison(result: dict) -> str:
    lines = [f"A = {result['a']}", f"B = {result['b']}", "",
             f"{'task':<22}{'pairs':>6}{'A':>8}{'B':>8}{'B-A':>8}{'A only':>8}{'B only':>8}{'p':>8}"]
    for family, r in result["rows"].items():
        lines.append(f"{family:<22}{r['pairs']:>6}{r['a_rate']:>8.1%}{r['b_rate']:>8.1%}{r['b_rate'] - r['a_rate']:>+8.1%}"
                     f"{r['only_a']:>8}{r['only_b']:>8}{r['mcnemar_p']:>8.3f}")
    return "\n".join(lines)
