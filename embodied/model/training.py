"""Train the PaLM-E-style planner on oracle demonstrations.

    embodied train data=data/l1 out=runs/model [model=tiny] [steps=2000] [batch_size=32] ...
    torchrun --nproc_per_node=2 -m embodied.commands.train data=data/l1 out=runs/model

AdamW with linear warm-up and cosine decay, bf16 autocast on CUDA (fp32 on CPU), optional
gradient checkpointing and accumulation, loss on the plan tokens only. Every ``val_every``
steps: validation loss and teacher-forced plan exact match on held-out episodes. ``out``
always holds the latest model (``PalmE.load(out)``), plus ``metrics.jsonl``,
``train_state.json`` and (until the run finishes) ``optimizer.safetensors`` to resume.
Under ``torchrun`` the same script runs DDP (gloo on CPU, nccl on CUDA).

Why one ~480-line module: the loop, its validation, checkpoint/resume and DDP set-up share the
run's state; the augmentations are in ``embodied.model.augment`` and the data in ``embodied.data``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from embodied.core.errors import ConfigError, TrainingDivergedError
from embodied.model.config import ModelConfig

_log = logging.getLogger("embodied.train")


@dataclass
class TrainConfig:
    data: str = "data/l1"
    out: str = "runs/model"
    init: Optional[str] = None  # start from this model directory's weights and tokenizer (fine-tuning)
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 2000
    batch_size: int = 32  # per process and micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    val_fraction: float = 0.05
    val_every: int = 250
    val_batches: int = 8
    checkpoint_every: int = 500
    keep_best: bool = True  # also keep the weights with the lowest validation loss in <out>/best
    resume: bool = True
    keep_optimizer: bool = False  # keep optimizer.safetensors after the run finishes
    grad_checkpointing: bool = False
    seed: int = 0
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 (autocast on either) | fp32
    # A step whose loss or gradient is not finite is skipped (no update; counted as ``nonfinite_steps``
    # in metrics.jsonl); this many in a row stop the run with TrainingDivergedError.
    max_nonfinite_steps: int = 20
    threads: Optional[int] = None  # torch CPU threads
    max_minutes: Optional[float] = None  # stop early (with a checkpoint) after this wall time
    instruction_word_dropout: float = 0.0  # drop non-grammar instruction words (robustness to phrasing)
    # Replace each non-grammar instruction word by a made-up word with this probability, and insert one
    # made-up word with the same probability: words the tokenizer never saw (held-out phrasings) then
    # look like noise the model learned to read past, not like a cue.
    instruction_word_noise: float = 0.0
    # Replace each colour word of the teacher-forced plan *input* (never the labels) by another training
    # colour with this probability, so the next word (the shape) is read from the instruction and the
    # scene rather than from colour-shape bigrams of the training plans.
    target_colour_noise: float = 0.0
    # Blank the camera frames of an example with this probability (the object list and relations stay),
    # so the model learns to read the perception list instead of leaning on the frames alone.
    frame_dropout: float = 0.0
    # With this probability, rename one object of an example to another known name of its colour in every
    # text field and the target (``embodied.model.aliases.alias_for_training``): the frames then disagree
    # with the name, as they do when the planner aliases an object the model never saw.
    alias_noise: float = 0.0
    # Object references (model.object_refs): weight of the loss that teaches one attention head to point
    # at the reference the next token names (``PalmE.pointer_attention_loss``); 0 = off.
    ref_attention_loss: float = 0.0
    progress: bool = True
    # Experiment logging next to metrics.jsonl (rank 0): none | tensorboard (event files in
    # <out>/tensorboard, or log_dir) | wandb (Weights & Biases; wandb_mode=offline needs no network,
    # `wandb sync <out>/wandb/offline-run-*` uploads later). Optional extras: .[tensorboard], .[wandb].
    logger: str = "none"
    log_dir: Optional[str] = None
    wandb_project: str = "embodied"
    wandb_mode: str = "offline"  # offline | online | disabled


LOGGERS = ("none", "tensorboard", "wandb")
PRECISIONS = ("auto", "bf16", "fp32")


class MetricLogger:
    """Sends the numbers of each metrics.jsonl record to TensorBoard or Weights & Biases (``cfg.logger``)."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.kind, self.writer, self.run = cfg.logger, None, None
        if self.kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(cfg.log_dir) if cfg.log_dir else out / "tensorboard"))
        elif self.kind == "wandb":
            import wandb

            directory = Path(cfg.log_dir) if cfg.log_dir else out
            directory.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=cfg.wandb_project, dir=str(directory), mode=cfg.wandb_mode, name=out.name,
                                  config=_plain(cfg))

    def log(self, rec: dict) -> None:
        step = rec.get("step")
        values = {k: float(v) for k, v in rec.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if step is None or not values:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"{'val' if k.startswith('val_') else 'train'}/{k}", v, int(step))
        if self.run is not None:
            self.run.log(values, step=int(step))

    def close(self, summary: Optional[dict] = None) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.run is not None:
            if summary:
                self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float))})
            self.run.finish()


def check_logger(cfg: TrainConfig) -> None:
    if cfg.logger not in LOGGERS:
        raise ConfigError(f"unknown logger {cfg.logger!r}; choose one of {', '.join(LOGGERS)}")
    if cfg.wandb_mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"wandb_mode must be offline, online or disabled, got {cfg.wandb_mode!r}")
    module, extra = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}.get(cfg.logger, (None, None))
    if module:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"logger={cfg.logger} needs {module}: pip install -e .[{extra}]")


def lr_at(step: int, cfg: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``.

    With ``max_minutes`` the decay follows whichever is further along, steps or wall time,
    so a run cut short by its time budget still ends at the low learning rate.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.max_minutes:
        t = max(t, min(1.0, elapsed_s / (60 * cfg.max_minutes)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


class _Dist:
    """Rank / world size from torchrun's environment; process group set up when world > 1."""

    def __init__(self, device_kind: str):
        import torch.distributed as dist

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.destroy_process_group()


def _save_optimizer(opt, model, path: Path) -> None:
    from safetensors.torch import save_file

    index = {p: i for i, p in enumerate(model.parameters())}
    tensors = {}
    for p, st in opt.state.items():
        for k, v in st.items():
            tensors[f"{index[p]}.{k}"] = v.detach().reshape(-1).clone().contiguous() if v.ndim == 0 else v.detach().contiguous()
    save_file(tensors, str(path))


def _load_optimizer(opt, model, path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    params = list(model.parameters())
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        p = params[int(i)]
        opt.state[p][k] = v.reshape(()) if k == "step" else v.to(p.device)


def _batches(n: int, batch: int, seed: int, rank: int, world: int):
    """Endless per-rank batches of indices: a fresh shuffle each epoch, sharded by rank."""
    epoch = 0
    while True:
        order = list(range(n))
        random.Random(seed + epoch).shuffle(order)
        mine = order[rank::world]
        for i in range(0, len(mine) - batch + 1, batch):
            yield mine[i : i + batch]
        epoch += 1


@dataclass
class _Eval:
    loss: float
    exact_match: float
    examples: int


def evaluate(model, dataset, batch_size: int, max_batches: int, autocast) -> _Eval:
    """Validation loss (mean over target tokens) and teacher-forced exact match of whole plans."""
    import torch

    from embodied.model.palme import IGNORE

    was_training = model.training
    model.eval()
    tot_loss = tot_tok = hits = n = 0
    n_eval = min(len(dataset), batch_size * max_batches)
    # evenly spaced over the split, so every family is represented (shards are grouped by family)
    picks = sorted({int(i * len(dataset) / n_eval) for i in range(n_eval)})
    rng = random.Random(0)  # the same object-list order at every validation
    with torch.no_grad():
        for start in range(0, len(picks), batch_size):
            pairs = [model.training_example(dataset[i].observation, dataset[i].target, rng) for i in picks[start : start + batch_size]]
            with autocast():
                out = model([model.build_prompt(obs) for obs, _ in pairs], [t for _, t in pairs])
            tot_loss += float(out.loss) * out.target_tokens
            tot_tok += out.target_tokens
            pred = out.logits[:, :-1].argmax(-1)  # (B, T-1)
            lab = out.labels[:, 1:]  # (B, T-1)
            ok = ((pred == lab) | (lab == IGNORE)).all(-1)  # (B,)
            hits += int(ok.sum())
            n += len(pairs)
    model.train(was_training)
    return _Eval(loss=tot_loss / max(1, tot_tok), exact_match=hits / max(1, n), examples=n)


def train(cfg: TrainConfig) -> dict:
    """Run training; returns the final metrics dict (rank 0's view)."""
    import contextlib

    import torch
    from tqdm import tqdm

    from embodied.data.dataset import PlanDataset
    from embodied.model.augment import augment, swap_colours
    from embodied.model.palme import PalmE

    check_logger(cfg)
    for name in ("instruction_word_dropout", "instruction_word_noise", "target_colour_noise", "frame_dropout", "alias_noise"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{name} is a probability in [0, 1], got {getattr(cfg, name)!r}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {cfg.device!r}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if isinstance(cfg.max_nonfinite_steps, bool) or int(cfg.max_nonfinite_steps) < 1:
        raise ConfigError(f"max_nonfinite_steps must be a positive integer, got {cfg.max_nonfinite_steps!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available; use device=cpu")
    dist = _Dist(kind)
    device = torch.device(f"cuda:{dist.local_rank}" if kind == "cuda" else "cpu")
    torch.manual_seed(cfg.seed + dist.rank)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path, opt_path, metrics_path = out / "train_state.json", out / "optimizer.safetensors", out / "metrics.jsonl"
    best_dir = out / "best"  # a model directory plus best.json (step, val_loss, val_exact_match)

    train_ds = PlanDataset(cfg.data, "train", cfg.val_fraction)
    val_ds = PlanDataset(cfg.data, "val", cfg.val_fraction)
    if len(train_ds) < cfg.batch_size * dist.world:
        raise ConfigError(f"{cfg.data} has {len(train_ds)} training examples, fewer than batch_size x processes; generate more or lower batch_size")

    if cfg.init and not (Path(cfg.init) / "model.safetensors").is_file():
        raise ConfigError(f"init={cfg.init}: no model.safetensors there; name a model directory (as written by embodied train)")
    start_step = 0
    resumed = cfg.resume and state_path.is_file() and (out / "model.safetensors").is_file()
    prior = json.loads(state_path.read_text()) if resumed else {}
    if resumed and prior.get("finished") and prior.get("steps") == cfg.steps:
        if dist.main:
            _log.info(f"{out}: training already finished at step {prior['step']}; use resume=false to retrain")
        dist.close()
        return prior
    if dist.main and not resumed:
        torch.manual_seed(cfg.seed)
        if cfg.init:
            start = PalmE.load(cfg.init)  # its own config and tokenizer; of cfg.model only prompt_objects, prompt_relations, object_refs apply
            start.config.prompt_objects = start.config.prompt_objects or cfg.model.prompt_objects
            start.config.prompt_relations = start.config.prompt_relations or cfg.model.prompt_relations
            if cfg.model.object_refs:
                start.enable_object_refs()
        else:
            start = PalmE.create(cfg.model, train_ds.texts())
        # the names it trains on: the planner renames other objects to these (embodied.model.aliases)
        start.config.known_objects = sorted(set(start.config.known_objects) | set(train_ds.object_names()))
        start.config.check()
        start.save(out)
        metrics_path.unlink(missing_ok=True)
        shutil.rmtree(best_dir, ignore_errors=True)  # a new run: an earlier run's best is not comparable
    dist.barrier()
    best_val = float("inf")
    if resumed and (best_dir / "best.json").is_file():
        best_val = float(json.loads((best_dir / "best.json").read_text())["val_loss"])
    model = PalmE.load(out, device=device).train()
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingDivergedError(f"{out}: {len(bad)} weight tensors hold NaN or inf before training (first: {bad[0]}); "
                                    "start from another init= or with resume=false")
    prior_elapsed = float(prior.get("elapsed_s", 0.0)) if resumed else 0.0
    if resumed:
        start_step = int(prior.get("step", 0))
    if cfg.grad_checkpointing:
        model.lm.gradient_checkpointing_enable()

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), fused=False,
    )
    if resumed and opt_path.is_file():
        _load_optimizer(opt, model, opt_path)
    net = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=None)

    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and kind == "cuda")

    def autocast():
        if bf16:
            return torch.autocast(kind, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def checkpoint(step: int, finished: bool) -> None:
        if not dist.main:
            return
        model.save(out)
        if finished and not cfg.keep_optimizer:
            opt_path.unlink(missing_ok=True)
        else:
            _save_optimizer(opt, model, opt_path)
        state_path.write_text(json.dumps({"step": step, "steps": cfg.steps, "finished": finished,
                                          "elapsed_s": time.time() - t0 + prior_elapsed, "config": _plain(cfg)}, indent=2))

    metric_logger = MetricLogger(cfg, out) if dist.main and cfg.logger != "none" else None

    def log(rec: dict) -> None:
        if dist.main:
            with metrics_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if metric_logger is not None:
                metric_logger.log(rec)

    rng = random.Random(cfg.seed * 1000 + dist.rank + start_step)
    batches = _batches(len(train_ds), cfg.batch_size, cfg.seed + start_step, dist.rank, dist.world)
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (cfg.progress and dist.main), desc="train", dynamic_ncols=True)
    tokens = examples = 0
    window_t, window_tok, window_loss, window_n = time.time(), 0, 0.0, 0
    nonfinite = nonfinite_in_a_row = 0
    last: dict = {}
    step = start_step
    for step in range(start_step, cfg.steps):
        lr = lr_at(step, cfg, dist.mean([time.time() - t0])[0] + prior_elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            exs = [train_ds[i] for i in next(batches)]
            augment(exs, cfg, model.config.known_objects, rng)
            pairs = [model.training_example(e.observation, e.target, rng) for e in exs]
            targets = [t for _, t in pairs]
            noisy = [swap_colours(t, cfg.target_colour_noise, rng) for t in targets] if cfg.target_colour_noise > 0 else None
            sync = contextlib.nullcontext() if (not dist.enabled or micro == cfg.grad_accum - 1) else net.no_sync()
            with sync:
                with autocast():
                    o = net([model.build_prompt(obs) for obs, _ in pairs], targets, input_targets=noisy,
                            ref_attention=cfg.ref_attention_loss)
                (o.loss / cfg.grad_accum).backward()
            step_loss += o.loss.item() / cfg.grad_accum
            n_tok = int(o.attention_mask.sum())
            tokens += n_tok
            window_tok += n_tok
            examples += len(exs)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if dist.any(not (math.isfinite(step_loss) and bool(torch.isfinite(grad_norm)))):
            # one bad batch must not poison the weights: skip the update (every rank alike)
            opt.zero_grad(set_to_none=True)
            nonfinite += 1
            nonfinite_in_a_row += 1
            if dist.main:
                _log.warning(f"step {step + 1}: loss {step_loss} / gradient norm {float(grad_norm)} not finite; update skipped")
            if nonfinite_in_a_row >= cfg.max_nonfinite_steps:
                checkpoint(step, finished=False)  # the last good weights, resumable
                raise TrainingDivergedError(
                    f"loss or gradients not finite for {nonfinite_in_a_row} steps in a row (up to step {step + 1}, lr {lr:.3g}); "
                    f"{out} holds the last finite weights. Try a lower lr or more warmup_steps, or precision=fp32")
        else:
            opt.step()
            nonfinite_in_a_row = 0
            window_loss += step_loss
            window_n += 1
        bar.update(1)
        done_steps = step + 1
        if done_steps % cfg.log_every == 0 or done_steps == cfg.steps:
            dt = max(1e-9, time.time() - window_t)
            loss_avg, = dist.mean([window_loss / window_n if window_n else float("nan")])
            loss_avg = loss_avg if math.isfinite(loss_avg) else None  # null: every step of the window was skipped
            rec = {"step": done_steps, "loss": loss_avg, "lr": lr, "tokens_per_s": window_tok * dist.world / dt,
                   "examples": examples * dist.world, "elapsed_s": time.time() - t0, "nonfinite_steps": nonfinite}
            log(rec)
            bar.set_postfix(loss=f"{loss_avg:.3f}" if loss_avg is not None else "-", tok_s=f"{rec['tokens_per_s']:.0f}")
            last.update(rec)
            window_t, window_tok, window_loss, window_n = time.time(), 0, 0.0, 0
        out_of_time = cfg.max_minutes is not None and (time.time() - t0 + prior_elapsed) > cfg.max_minutes * 60
        out_of_time = dist.any(out_of_time)
        final = done_steps == cfg.steps or out_of_time
        if len(val_ds) and (done_steps % cfg.val_every == 0 or final):
            ev = evaluate(model, val_ds, cfg.batch_size, cfg.val_batches, autocast)
            vl, em = dist.mean([ev.loss, ev.exact_match])
            rec = {"step": done_steps, "val_loss": vl, "val_exact_match": em, "val_examples": ev.examples * dist.world}
            log(rec)
            last.update(rec)
            if dist.main and not cfg.progress:
                _log.info(json.dumps(rec))
            if cfg.keep_best and dist.main and vl < best_val:
                best_val = vl
                model.save(best_dir)
                (best_dir / "best.json").write_text(json.dumps({k: rec[k] for k in ("step", "val_loss", "val_exact_match")}))
        if done_steps % cfg.checkpoint_every == 0 or final:
            # a run stopped by its time budget is finished: the schedule has decayed by then
            checkpoint(done_steps, finished=final)
            dist.barrier()
        if out_of_time:
            if dist.main:
                _log.info(f"stopping at step {done_steps}: max_minutes={cfg.max_minutes} reached")
            break
    bar.close()
    elapsed = time.time() - t0
    summary = dict(last, steps_done=step + 1, train_examples=len(train_ds), val_examples_total=len(val_ds),
                   wall_s=elapsed, mean_tokens_per_s=tokens * dist.world / max(1e-9, elapsed),
                   parameters=sum(p.numel() for p in model.parameters()))
    log({"summary": summary})
    if metric_logger is not None:
        metric_logger.close(summary)
    if dist.main:
        _log.info(json.dumps({"summary": summary}))
    dist.close()
    return summary


def _plain(cfg: TrainConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)
