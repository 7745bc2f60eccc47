"""The engine's records: its settings (``EngineConfig``), a prompt to decode (``Request``) and a
request in flight (``Ticket``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from embodied.core.errors import ConfigError
from embodied.engine.constrained import PlanConstraint


@dataclass
class EngineConfig:
    """Engine settings (also the schema of ``configs/engine`` sections)."""

    max_batch: int = 8
    max_len: int = 512  # prompt + generated tokens per row
    max_new_tokens: int = 64
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA; or float32 / bfloat16 / float16
    cuda_graphs: bool = True  # CUDA only
    compile: bool = True  # CUDA only: inductor-compile the decode step before capture
    flash_attn: bool = True  # CUDA, bf16/fp16: flash-attn's decode kernel when installed (checked against SDPA once)
    cpu_compile: bool = False  # CPU only: inductor-compile the decode step (needs a C++ compiler; first step per bucket ~5-60 s)
    cpu_steps_per_call: int = 4  # CPU compiled: decode steps per call; a finished row idles at most this - 1 steps
    lookahead: int = 4  # CUDA only: steps launched ahead of the host's reads
    prefill_bucket: int = 64  # CUDA only: prefill lengths are padded to a multiple of this
    max_states: int = 0  # constraint states per row; 0 = build tables on first constrained request
    stop_at_eos: bool = True  # False: always decode max_new_tokens (benchmarks)

    def check(self) -> "EngineConfig":
        if min(self.max_batch, self.max_new_tokens, self.lookahead, self.cpu_steps_per_call) < 1 or self.max_len < 2:
            raise ConfigError("engine: max_batch, max_new_tokens, lookahead and cpu_steps_per_call must be >= 1, max_len >= 2")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"engine.dtype={self.dtype!r}; use auto, float32, bfloat16 or float16")
        return self


@dataclass
class Request:
    """One prompt to decode. ``embeds`` is ``(T, D)`` (no padding)."""

    embeds: torch.Tensor  # (T, D)
    constraint: Optional[PlanConstraint] = None
    session: Optional[str] = None  # e.g. the robot id: enables prefix reuse across calls
    prefix_len: int = 0  # leading positions that depend only on the instruction
    max_new_tokens: Optional[int] = None


@dataclass
class Ticket:
    """A request in flight. The engine appends to ``tokens``/``states``/``times`` as tokens reach the host."""

    request: Request
    slot: int = -1
    tokens: list[int] = field(default_factory=list)
    states: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.perf_counter() when each token was read
    steps: list[list[int]] = field(default_factory=list)  # token ids of each completed plan step
    finished: bool = False
    reused_prefix: int = 0  # how many positions were not recomputed
    t_submit: float = 0.0
    max_new: int = 0
    _step_start: int = 0
