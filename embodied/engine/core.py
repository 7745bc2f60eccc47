"""The streaming greedy decoding engine: static KV cache, prefix reuse, constraint, row slots.

One ``Engine`` owns a ``Decoder`` and a KV cache of ``max_batch`` rows allocated once. Each
request occupies one row (a *slot*) from its prefill until it finishes; rows join and leave
between decode steps (continuous batching), and a decode step runs over rows ``0 .. n-1``
for the smallest bucket ``n`` in (1, 2, 4, ..., max_batch) covering the active slots.

Everything a step needs lives in device tensors (``tok``, ``pos``, ``state`` per slot, the
constraint tables per slot), so a step is a fixed-shape function of device state:

- on CUDA it is captured once per bucket as a CUDA graph (optionally compiled by inductor
  first); fixed-shape prefill (lengths padded to ``prefill_bucket``) is captured too;
- on CPU it runs eagerly, or (``cpu_compile``) compiled by inductor into C++ kernels called
  from a C++ wrapper, attending over the whole static cache with a mask;
- masking, argmax and the automaton transition happen on the device;
- the only host synchronisation in the token loop is streaming: after each step the new
  tokens and states are copied asynchronously into a pinned ring buffer and an event is
  recorded; the host reads a step's tokens when its event has completed, and it never runs
  more than ``lookahead`` steps ahead of what it has read (that bounds the wasted steps
  after the last row finishes). On CPU every step is synchronous.

Prefix reuse: a request may name a ``session`` (one robot) and a ``prefix_len``. The slot that
served the session keeps its KV; when the next request's first ``prefix_len`` embeddings
equal the ones cached, only the rest of the prompt is prefilled.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Iterator

import torch

from embodied.core.errors import ConfigError, EngineError
from embodied.engine.constrained import PlanConstraint
from embodied.engine.decoder import Decoder
from embodied.engine.records import EngineConfig, Request, Ticket
from embodied.engine.steps import DeviceSteps, flash_decode_kernel


class Engine(DeviceSteps):
    """Greedy streaming decoder over a transformers ``LlamaForCausalLM`` (or a built ``Decoder``)."""

    def __init__(self, lm, device: str | torch.device = "cpu", config: EngineConfig | None = None, eos_token_id: int | None = None):
        self.config = cfg = (config or EngineConfig()).check()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device=cuda but torch sees no CUDA GPU; use device=cpu")
        self.is_cuda = self.device.type == "cuda"
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.dtype)
        if dtype is None:
            dtype = torch.bfloat16 if self.is_cuda else torch.float32
        # last column = scratch; on CUDA a multiple of 64 keeps attention masks aligned for fused kernels
        self.cache_len = cfg.max_len + 1 if not self.is_cuda else -(-(cfg.max_len + 1) // 64) * 64
        if isinstance(lm, Decoder):
            self.decoder = lm.to(self.device, dtype)
        else:
            self.decoder = Decoder.from_hf(lm, self.cache_len, dtype=dtype, device=self.device)
            if eos_token_id is None:
                eos_token_id = getattr(lm.config, "eos_token_id", None)
        if isinstance(eos_token_id, (list, tuple)):
            eos_token_id = eos_token_id[0] if eos_token_id else None
        self.eos_token_id = eos_token_id
        self.vocab = self.decoder.shape.vocab
        if self.is_cuda and cfg.flash_attn and dtype in (torch.bfloat16, torch.float16):
            self.decoder.flash_decode = flash_decode_kernel(self.decoder.shape, dtype, self.device)
        B, dev = cfg.max_batch, self.device
        self.cache = self.decoder.new_cache(B, self.cache_len)
        self.scratch = self.cache.scratch
        # per-slot device state
        self.tok = torch.zeros(B, dtype=torch.long, device=dev)  # last emitted token = next input
        self.pos = torch.full((B,), self.scratch, dtype=torch.long, device=dev)  # where that token goes
        self.state = torch.zeros(B, dtype=torch.long, device=dev)  # automaton state after tok
        self.active = torch.zeros(B, dtype=torch.bool, device=dev)
        self._graphs: dict = {}
        self.blocked: torch.Tensor | None = None  # (B, S, V) bool, True = the automaton forbids the token
        self.next_state: torch.Tensor | None = None  # (B, S, V) long
        if cfg.max_states > 0:
            self._alloc_tables(cfg.max_states)
        # prefill staging buffers (fixed addresses for CUDA graphs)
        D = self.decoder.shape.dim
        self.pf_embeds = torch.zeros(B, self.cache_len, D, dtype=dtype, device=dev)  # (B, Tbuf, D)
        self.pf_pos = torch.full((B, self.cache_len), self.scratch, dtype=torch.long, device=dev)  # (B, Tbuf)
        self.pf_last = torch.zeros(B, dtype=torch.long, device=dev)  # index of each row's last real token
        self.pf_next = torch.zeros(B, dtype=torch.long, device=dev)  # position after the prompt
        # streaming ring: (R, 2, B) tokens and states
        self.ring_size = cfg.lookahead + 2
        self.ring = torch.zeros(self.ring_size, 2, B, dtype=torch.long, pin_memory=self.is_cuda)
        self._ring_i = 0
        self._inflight: deque = deque()  # (event | None, ring index, [(slot, ticket)])
        self.slots: list[Ticket | None] = [None] * B
        self.sessions: dict[str, tuple[int, torch.Tensor]] = {}  # session -> (slot, prefix embeds (P, D))
        self._slot_session: list[str | None] = [None] * B
        self._slot_constraint: list[int | None] = [None] * B
        self._dev_constraints: dict[int, PlanConstraint] = {}
        self._pool = None
        self._use_graphs = self.is_cuda and cfg.cuda_graphs
        # CPU: inference_mode (cheapest per op). CUDA: no_grad, which dynamo traces reliably
        # (inductor failed under inference_mode with torch 2.11 on an H200).
        self._eager_decode = self._decode_nograd if self.is_cuda else self._decode_impl
        self._decode_fn = self._eager_decode
        self.compiled = False  # whether the decode step (and on CPU the prefill) runs through inductor
        if self.is_cuda and cfg.compile:
            try:
                self._decode_fn = torch.compile(self._decode_nograd, dynamic=False, fullgraph=False)
                self.compiled = True
            except Exception:  # pragma: no cover - depends on the CUDA toolchain
                self._decode_fn = self._eager_decode
        elif not self.is_cuda and cfg.cpu_compile:
            # The C++ wrapper calls the kernels without Python in between (default model, per
            # decode step: 0.98 ms vs 1.27 with the Python wrapper, eager 2.15 ms), and one call
            # runs ``cpu_steps_per_call`` steps (4: 0.61 vs 0.82 ms per token). The prefill is
            # compiled with symbolic lengths, so prompts of any length share a graph (300
            # embeddings: 14.7 vs 18.4 ms eager). Dynamo cannot trace inference tensors: no_grad.
            opts = {"cpp_wrapper": True}
            self._chunk = torch.zeros(cfg.cpu_steps_per_call, 2, B, dtype=torch.long)  # (K, tok/state, B)
            self._compiled_decode = torch.compile(self._decode_chunk, dynamic=False, options=opts)
            self._compiled_prefill = torch.compile(self._prefill_nograd, dynamic=True, options=opts)
            self.compiled = True
        self.peak_batch = 0  # most requests decoded together in one step so far (stats, tests)
        self.buckets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b < B] + [B]

    # ------------------------------------------------------------------ public API
    def submit(self, request: Request) -> Ticket:
        """Prefill a request into a free slot; its tokens arrive with the following ``step()`` calls."""
        ticket = Ticket(request, t_submit=time.perf_counter())
        self._admit([ticket])
        return ticket

    def submit_many(self, requests: list[Request]) -> list[Ticket]:
        """Prefill several requests; same-length prompts without reusable prefix share one batched prefill."""
        tickets = [Ticket(r, t_submit=time.perf_counter()) for r in requests]
        self._admit(tickets)
        return tickets

    def can_admit(self, request: Request) -> bool:
        """Whether ``submit`` would find a slot now (its session's slot idle, or any free slot)."""
        if request.session is not None and request.session in self.sessions:
            return self.slots[self.sessions[request.session][0]] is None
        return any(t is None for t in self.slots)

    @property
    def busy(self) -> bool:
        return any(t is not None for t in self.slots) or bool(self._inflight)

    def step(self) -> None:
        """Launch one decode step over the active rows and deliver every token that reached the host."""
        live = [(s, t) for s, t in enumerate(self.slots) if t is not None]
        self.peak_batch = max(self.peak_batch, len(live))
        if live:
            n = next(b for b in self.buckets if b > max(s for s, _ in live))
            if self.compiled and not self.is_cuda:
                self._deliver_chunk(self._cpu_decode(n), n, live)
            else:
                self._run(("decode", n), lambda: self._decode_fn(n))
                self._publish(n, live)
        self._drain(block=not live or len(self._inflight) > self.config.lookahead)

    def run(self) -> None:
        """Step until every submitted request has finished."""
        while self.busy:
            self.step()

    def stream(self, request: Request) -> Iterator[list[int]]:
        """Decode one request alone; yield each plan step's token ids as soon as it is complete."""
        ticket = self.submit(request)
        sent = 0
        while True:
            while sent < len(ticket.steps):
                yield ticket.steps[sent]
                sent += 1
            if ticket.finished:
                return
            self.step()

    def generate(self, requests: list[Request]) -> list[list[int]]:
        """Decode requests together (batched) and return each one's tokens."""
        tickets = self.submit_many(requests)
        while not all(t.finished for t in tickets):
            self.step()
        return [t.tokens for t in tickets]

    def forget(self, session: str) -> None:
        """Drop a session's cached prefix (e.g. a new episode); no-op while it has a request in flight."""
        if session in self.sessions and self.slots[self.sessions[session][0]] is None:
            self._forget_session(session)

    def cancel(self, ticket: Ticket) -> None:
        """Stop decoding a request; its slot is free for the next one."""
        if not ticket.finished:
            self._finish(ticket)

    # ------------------------------------------------------------------ admission / prefill
    def _admit(self, tickets: list[Ticket]) -> None:
        self._drain(block=False)
        jobs = []  # (ticket, slot, start)
        taken: set[int] = set()
        for t in tickets:
            r = t.request
            if r.embeds.ndim != 2 or r.embeds.shape[1] != self.decoder.shape.dim:
                raise EngineError(
                    f"request embeds must be (T, {self.decoder.shape.dim}), got {tuple(r.embeds.shape)}"
                )
            max_new = r.max_new_tokens or self.config.max_new_tokens
            T = r.embeds.shape[0]
            if T < 1 or T + max_new > self.config.max_len:
                raise EngineError(
                    f"prompt of {T} positions + {max_new} new tokens exceeds the engine's max_len "
                    f"{self.config.max_len}; raise engine max_len or shorten the prompt"
                )
            slot, start = self._pick_slot(r, taken)
            taken.add(slot)
            jobs.append((t, slot, start))
        # group consecutive slots with equal suffix length into one batched prefill
        jobs.sort(key=lambda j: j[1])
        i = 0
        while i < len(jobs):
            k = i + 1
            L = jobs[i][0].request.embeds.shape[0] - jobs[i][2]
            while (
                k < len(jobs)
                and jobs[k][1] == jobs[k - 1][1] + 1
                and jobs[k][0].request.embeds.shape[0] - jobs[k][2] == L
            ):
                k += 1
            self._prefill(jobs[i:k])
            i = k

    def _pick_slot(self, r: Request, taken: set[int]) -> tuple[int, int]:
        """(slot, first position to prefill). Reuses the session's slot when its prefix is cached."""
        if r.session is not None and r.session in self.sessions:
            slot, prefix = self.sessions[r.session]
            if self.slots[slot] is not None or slot in taken:
                raise EngineError(f"session {r.session!r} already has a request in flight; wait for it to finish")
            P = prefix.shape[0]
            if 0 < P == r.prefix_len < r.embeds.shape[0] and torch.equal(prefix, r.embeds[:P].to(prefix)):
                return slot, P
            self._forget_session(r.session)
            return slot, 0
        free = [s for s in range(self.config.max_batch) if self.slots[s] is None and s not in taken]
        if not free:
            raise EngineError(
                f"all {self.config.max_batch} engine slots are busy; wait for a request to finish or raise max_batch"
            )
        # prefer slots that hold no session's prefix, then the lowest index (keeps decode buckets small)
        free.sort(key=lambda s: (self._slot_session[s] is not None, s))
        slot = free[0]
        if self._slot_session[slot] is not None:
            self._forget_session(self._slot_session[slot])
        return slot, 0

    def _forget_session(self, session: str) -> None:
        slot, _ = self.sessions.pop(session)
        self._slot_session[slot] = None

    def _alloc_tables(self, states: int) -> None:
        B = self.config.max_batch
        self.blocked = torch.zeros(B, states, self.vocab, dtype=torch.bool, device=self.device)  # (B, S, V)
        self.next_state = torch.zeros(B, states, self.vocab, dtype=torch.long, device=self.device)  # (B, S, V)
        self._slot_constraint = [None] * B
        self._graphs.clear()  # captured graphs refer to the old tables

    def _load_constraint(self, slot: int, c: PlanConstraint | None) -> int:
        """Write a slot's automaton tables; returns the start state."""
        if c is None:
            if self.blocked is None:
                return 0
            if self._slot_constraint[slot] != -1:
                self.blocked[slot, 0] = False
                self.next_state[slot, 0] = 0
                self._slot_constraint[slot] = -1
            return 0
        if c.vocab_size != self.vocab:
            raise EngineError(f"constraint built for {c.vocab_size} tokens but the model has {self.vocab}; rebuild it with vocab_size={self.vocab}")
        if self.blocked is None or c.num_states > self.blocked.shape[1]:
            if any(t is not None and t.slot != slot for t in self.slots):
                raise EngineError(
                    f"a constraint with {c.num_states} states does not fit the engine tables while requests run; "
                    "set EngineConfig.max_states to the largest automaton (the full-vocabulary one)"
                )
            self._alloc_tables(max(c.num_states, self.config.max_states))
        key = id(c)
        if self._slot_constraint[slot] != key:
            dc = self._dev_constraints.get(key)
            if dc is None and len(self._dev_constraints) >= 256:
                self._dev_constraints.clear()  # keys are ids: forget which slot holds which
                self._slot_constraint = [None] * self.config.max_batch
            if dc is None:
                dc = self._dev_constraints[key] = c.to(self.device)
                dc._source = c  # keep the source alive so id(c) stays unique
            S = c.num_states
            self.blocked[slot, :S] = ~dc.allowed  # stored negated: one op less per decode step
            self.next_state[slot, :S] = dc.next_state
            self._slot_constraint[slot] = key
        return c.start

    def _prefill(self, jobs: list[tuple[Ticket, int, int]]) -> None:
        s0, n = jobs[0][1], len(jobs)
        L = jobs[0][0].request.embeds.shape[0] - jobs[0][2]  # suffix length, equal for all rows
        Tb = L
        if self._use_graphs:
            q = self.config.prefill_bucket
            Tb = min(-(-L // q) * q, self.cache_len)
        for t, slot, start in jobs:
            r = t.request
            t.slot, t.reused_prefix = slot, start
            self.slots[slot] = t
            t.max_new = r.max_new_tokens or self.config.max_new_tokens
            self.pf_embeds[slot, :L].copy_(r.embeds[start:], non_blocking=True)
            p = torch.full((Tb,), self.scratch, dtype=torch.long)
            p[:L] = torch.arange(start, start + L)
            self.pf_pos[slot, :Tb].copy_(p, non_blocking=True)
            st = self._load_constraint(slot, r.constraint)
            self.state[slot] = st
            self.pf_last[slot] = L - 1
            self.pf_next[slot] = start + L
            self.active[slot] = True
            if r.session is not None:
                P = r.prefix_len
                if P > 0 and start == 0:
                    self.sessions[r.session] = (slot, r.embeds[:P].detach().to(self.device).clone())
                    self._slot_session[slot] = r.session
                elif start == 0:
                    self.sessions.pop(r.session, None)
            t._step_start = 0
        kv_len = self.cache_len if self.is_cuda else max(start for _, _, start in jobs) + L
        # whole prompts from position 0 without padding: plain causal attention (fused kernel, no mask)
        causal = not self.is_cuda and all(start == 0 for _, _, start in jobs) and kv_len == Tb
        prefill = self._cpu_prefill if self.compiled and not self.is_cuda else self._prefill_impl
        self._run(("prefill", s0, n, Tb), lambda: prefill(s0, n, Tb, kv_len, causal))
        self._publish_rows(s0, n, [(slot, t) for t, slot, _ in jobs])
        if not self.is_cuda:
            self._drain(block=False)  # the first token is readable now, not after the next step

    # ------------------------------------------------------------------ device functions
    # ------------------------------------------------------------------ streaming to the host
    def _publish(self, n: int, live: list[tuple[int, Ticket]]) -> None:
        self._publish_rows(0, n, [(s, t) for s, t in live if s < n])

    def _publish_rows(self, s0: int, n: int, owners: list[tuple[int, Ticket]]) -> None:
        while len(self._inflight) >= self.ring_size - 1:  # never overwrite an unread ring entry
            self._drain(block=True)
        i = self._ring_i
        self._ring_i = (i + 1) % self.ring_size
        if self.is_cuda:
            self.ring[i, 0, s0 : s0 + n].copy_(self.tok[s0 : s0 + n], non_blocking=True)
            self.ring[i, 1, s0 : s0 + n].copy_(self.state[s0 : s0 + n], non_blocking=True)
            ev = torch.cuda.Event()
            ev.record()
        else:
            self.ring[i, 0, s0 : s0 + n] = self.tok[s0 : s0 + n]
            self.ring[i, 1, s0 : s0 + n] = self.state[s0 : s0 + n]
            ev = None
        self._inflight.append((ev, i, owners))

    def _drain(self, block: bool) -> None:
        """Deliver tokens of completed steps; with ``block``, wait for at least the oldest one."""
        first = True
        while self._inflight:
            ev, i, owners = self._inflight[0]
            if ev is not None and not ev.query():
                if not (block and first):
                    return
                ev.synchronize()
            first = False
            self._inflight.popleft()
            now = time.perf_counter()
            toks, states = self.ring[i].tolist()
            for slot, t in owners:
                if not t.finished:
                    self._deliver(t, toks[slot], states[slot], now)

    def _deliver(self, t: Ticket, tok: int, state: int, now: float) -> None:
        t.tokens.append(tok)
        t.states.append(state)
        t.times.append(now)
        c = t.request.constraint
        eos = tok == self.eos_token_id and self.config.stop_at_eos
        if c is not None and c.step_done(state):
            t.steps.append(t.tokens[t._step_start :])
            t._step_start = len(t.tokens)
        if (c is not None and state == c.end) or eos or len(t.tokens) >= t.max_new:
            self._finish(t)

    def _finish(self, t: Ticket) -> None:
        t.finished = True
        if t.slot >= 0 and self.slots[t.slot] is t:
            self.slots[t.slot] = None
            self.active[t.slot] = False
            self.pos[t.slot] = self.scratch
