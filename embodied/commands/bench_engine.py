"""``embodied bench engine``: our engine vs ``transformers`` ``generate()``, measured in the same run.

For each model (``default``: the shipped planner's decoder; ``1b``: a 1.1B Llama-shaped config,
random weights) and batch size, a PaLM-E-shaped prompt of ``prompt_tokens`` input embeddings
(random, standing for image patches, state and text) is decoded greedily for ``new_tokens``
tokens (EOS ignored, so both sides decode exactly that many). Reported, p50 and p99 over
``repeats`` timed runs after ``warmup`` runs:

- ``ours.first_step_ms``: from submitting the prompt until the first plan step's tokens
  (``first_step_tokens``, the length of ``put red cube on blue cube;``) are readable on the host;
- ``ours.plan_ms`` and ``baseline.plan_ms``: until the whole plan is on the host;
- ``speedup_plan_p50`` = baseline p50 / ours p50.

Embedding the prompt (vision encoder) is outside the timed region on both sides.
Rows are written to ``<out>/engine.json``; rows already there for another model, device, card
or batch size are kept, so CPU and CUDA runs accumulate in one file.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodied.core.errors import ConfigError


@dataclass
class BenchEngineConfig:
    models: str = "default"  # default | 1b | both
    device: str = "cpu"  # cpu | cuda
    batch: Any = 1  # an int or a list, e.g. batch=[1,8]
    repeats: int = 5
    warmup: int = 1
    prompt_tokens: int = 300
    new_tokens: int = 24
    first_step_tokens: int = 7
    out: str = "benchmarks/results"
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    checkpoint: str = "checkpoints/default"  # the default model's weights, when present
    cuda_graphs: bool = True
    compile: bool = True  # CUDA: inductor-compile our decode step (the first call pays for it)
    cpu_compile: bool = True  # CPU: the same, with inductor's C++ wrapper (needs a C++ compiler)
    baseline: bool = True
    threads: Any = None  # torch CPU threads (None: torch's default)
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form notes copied into each row


def _validate(cfg) -> BenchEngineConfig:
    from omegaconf import OmegaConf

    try:
        merged = OmegaConf.merge(OmegaConf.structured(BenchEngineConfig), cfg)
    except Exception as e:  # omegaconf raises several types for unknown keys / bad values
        raise ConfigError(f"bench engine: {e}; known keys: {', '.join(BenchEngineConfig.__dataclass_fields__)}") from e
    c: BenchEngineConfig = OmegaConf.to_object(merged)
    if c.models not in ("default", "1b", "both"):
        raise ConfigError(f"models={c.models!r}; use default, 1b or both")
    if c.device not in ("cpu", "cuda"):
        raise ConfigError(f"device={c.device!r}; use cpu or cuda")
    batches = c.batch if isinstance(c.batch, (list, tuple)) else [c.batch]
    try:
        c.batch = [int(b) for b in batches]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"batch={c.batch!r}; use an integer or a list like [1,8]") from e
    if min(c.batch) < 1 or c.repeats < 1 or c.warmup < 0 or c.prompt_tokens < 1 or c.new_tokens < 1:
        raise ConfigError("batch, repeats, prompt_tokens and new_tokens must be >= 1, warmup >= 0")
    if not 1 <= c.first_step_tokens <= c.new_tokens:
        raise ConfigError("first_step_tokens must be between 1 and new_tokens")
    return c


def _llama_1b(vocab: int = 32000):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )


def _default_lm(checkpoint: str):
    """(lm, how its weights were obtained): the trained checkpoint if present, else the default config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if (Path(checkpoint) / "model.safetensors").is_file():
        from embodied.model import PalmE

        return PalmE.load(checkpoint).lm, f"checkpoint {checkpoint}"
    from embodied.model.config import ModelConfig

    mc = ModelConfig()
    c = mc.lm
    cfg = LlamaConfig(
        vocab_size=mc.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.layers, num_attention_heads=c.heads, num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.max_positions, tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg), "random (default ModelConfig; no checkpoint found)"


def _pct(xs: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(xs, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def _bench_model(name: str, lm, weights: str, c: BenchEngineConfig) -> list[dict]:
    import torch

    from embodied.engine.core import Engine
    from embodied.engine.records import EngineConfig, Request

    dev = torch.device(c.device)
    cuda = dev.type == "cuda"
    dtype = {"auto": torch.bfloat16 if cuda else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16}[c.dtype]
    lm = lm.to(dev, dtype).eval()
    if hasattr(lm, "set_attn_implementation"):
        try:
            lm.set_attn_implementation("sdpa")
        except Exception:
            pass
    D = lm.config.hidden_size
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    device_name = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or platform.machine()) + f" ({torch.get_num_threads()} threads)"
    rows = []
    max_len = c.prompt_tokens + c.new_tokens + 8
    for B in c.batch:
        ecfg = EngineConfig(
            max_batch=B, max_len=max_len, max_new_tokens=c.new_tokens, dtype=c.dtype,
            cuda_graphs=c.cuda_graphs, compile=c.compile, cpu_compile=c.cpu_compile, stop_at_eos=False,
        )
        engine = Engine(lm, dev, ecfg)
        gen = torch.Generator().manual_seed(c.seed)
        ours_first, ours_plan, base_plan = [], [], []
        first_call_s = None  # the first plan includes CUDA-graph capture (and inductor compilation)
        for i in range(c.warmup + c.repeats):
            x = torch.randn(B, c.prompt_tokens, D, generator=gen).to(dev, dtype)  # (B, T, D)
            sync()
            t0 = time.perf_counter()
            tickets = engine.submit_many([Request(x[b]) for b in range(B)])
            while not all(t.finished for t in tickets):
                engine.step()
            t_first = max(t.times[c.first_step_tokens - 1] for t in tickets)
            t_plan = max(t.times[-1] for t in tickets)
            if first_call_s is None:
                first_call_s = round(t_plan - t0, 2)
            if any(len(t.tokens) != c.new_tokens for t in tickets):
                raise RuntimeError("engine produced the wrong number of tokens")
            if c.baseline:
                mask = torch.ones(B, c.prompt_tokens, dtype=torch.long, device=dev)
                sync()
                b0 = time.perf_counter()
                with torch.no_grad():
                    out = lm.generate(
                        inputs_embeds=x, attention_mask=mask, do_sample=False, max_new_tokens=c.new_tokens,
                        min_new_tokens=c.new_tokens, pad_token_id=0, eos_token_id=None,
                    )
                sync()
                b1 = time.perf_counter()
                if i == 0 and c.dtype in ("auto", "float32") and not cuda:
                    same = all(out[b].tolist() == tickets[b].tokens for b in range(B))
                    if not same:
                        print(f"[bench engine] note: {name} batch {B}: tokens differ from generate() (float rounding)")
            if i >= c.warmup:
                ours_first.append((t_first - t0) * 1e3)
                ours_plan.append((t_plan - t0) * 1e3)
                if c.baseline:
                    base_plan.append((b1 - b0) * 1e3)
        row = {
            "model": name,
            "device": c.device,
            "device_name": device_name,
            "batch": B,
            "prompt_tokens": c.prompt_tokens,
            "new_tokens": c.new_tokens,
            "ours": {"first_step_ms": _pct(ours_first), "plan_ms": _pct(ours_plan)},
            "baseline": {"plan_ms": _pct(base_plan)} if base_plan else None,
            "speedup_plan_p50": round(_pct(base_plan)["p50"] / _pct(ours_plan)["p50"], 2) if base_plan else None,
            "plans_per_s_ours": round(B * 1e3 / _pct(ours_plan)["p50"], 2),
            "dtype": str(dtype).replace("torch.", ""),
            "weights": weights,
            "params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 1),
            "repeats": c.repeats,
            "cuda_graphs": bool(cuda and c.cuda_graphs),
            "compiled": bool(engine.compiled),
            "first_call_s": first_call_s,
            "torch": torch.__version__,
            **({"notes": dict(c.extra)} if c.extra else {}),
        }
        rows.append(row)
        _print_row(row)
        del engine
    return rows


def _print_row(r: dict) -> None:
    o, b = r["ours"], r["baseline"]
    base = f"generate() plan p50 {b['plan_ms']['p50']:.1f} ms p99 {b['plan_ms']['p99']:.1f} ms | speedup {r['speedup_plan_p50']}x" if b else "no baseline"
    print(
        f"[bench engine] {r['model']} ({r['params_m']}M, {r['weights']}) {r['device']} {r['dtype']} batch {r['batch']}: "
        f"first step p50 {o['first_step_ms']['p50']:.1f} ms p99 {o['first_step_ms']['p99']:.1f} ms | "
        f"plan p50 {o['plan_ms']['p50']:.1f} ms p99 {o['plan_ms']['p99']:.1f} ms | {base}",
        flush=True,
    )


def _merge(path: Path, rows: list[dict]) -> list[dict]:
    """Rows already in ``path`` for other (model, device, card, batch) keys are kept; same keys are replaced."""
    def key(r):
        return (r.get("model"), r.get("device"), r.get("device_name"), r.get("batch"))

    try:
        old = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        old = []
    new_keys = {key(r) for r in rows}
    kept = [r for r in old if isinstance(r, dict) and key(r) not in new_keys] if isinstance(old, list) else []
    return kept + rows


def main(cfg) -> list[dict]:
    """Entry point of ``embodied bench engine``; returns the rows written to ``<out>/engine.json``."""
    import torch

    c = _validate(cfg)
    if c.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA GPU; run with device=cpu")
    if c.threads:
        torch.set_num_threads(int(c.threads))
    torch.manual_seed(c.seed)
    rows: list[dict] = []
    out = Path(c.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "engine.json"

    def save(new_rows: list[dict]) -> None:  # after each model, so a cut-short run keeps what it measured
        rows.extend(new_rows)
        path.write_text(json.dumps(_merge(path, new_rows), indent=2))
        print(f"[bench engine] wrote {path}")

    if c.models in ("default", "both"):
        lm, weights = _default_lm(c.checkpoint)
        save(_bench_model("default", lm, weights, c))
        del lm
    if c.models in ("1b", "both"):
        from transformers import LlamaForCausalLM

        cfg1b = _llama_1b()
        with torch.device(c.device):
            lm = LlamaForCausalLM(cfg1b)  # random weights: latency does not depend on their values
        save(_bench_model("1b", lm, "random", c))
        del lm
    return rows
