"""The engine's fixed-shape device steps: prefill and decode bodies, the constrained choice,
CPU compilation (inductor, C++ wrapper) with its eager fallback, and CUDA graph capture.

``DeviceSteps`` is mixed into ``embodied.engine.core.Engine``, which owns the device state
these methods read and write (``tok``, ``pos``, ``state``, ``active``, the cache, the
constraint tables); the engine's scheduling (slots, sessions, streaming) stays in ``core``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from embodied.engine.decoder import check_flash_decode

if TYPE_CHECKING:
    from embodied.engine.records import Ticket


class DeviceSteps:
    """Device-side steps of ``Engine``; see the module docstring."""

    def _choose(self, logits: torch.Tensor, s0: int) -> torch.Tensor:
        """Greedy (constrained) choice for rows ``s0 .. s0+n-1`` of ``logits`` (n, V); updates ``state``;
        returns tokens (n,)."""
        if self.blocked is None:
            return logits.argmax(-1)
        n = logits.shape[0]
        rows = self.decoder.index[s0 : s0 + n]  # (n,)
        st = self.state[s0 : s0 + n]  # (n,) a view: updated in place
        nxt = logits.masked_fill(self.blocked[rows, st], float("-inf")).argmax(-1)  # (n,)
        st.copy_(self.next_state[rows, st, nxt])
        return nxt

    def _prefill_nograd(self, s0: int, n: int, Tb: int, kv_len: int, causal: bool) -> None:
        with torch.no_grad():
            self._prefill_body(s0, n, Tb, kv_len, causal)

    def _prefill_impl(self, s0: int, n: int, Tb: int, kv_len: int, causal: bool = False) -> None:
        # inference_mode is cheaper per op on CPU; on CUDA no_grad, like the (compiled) decode step
        with torch.no_grad() if self.is_cuda else torch.inference_mode():
            self._prefill_body(s0, n, Tb, kv_len, causal)

    def _prefill_body(self, s0: int, n: int, Tb: int, kv_len: int, causal: bool) -> None:
        x = self.pf_embeds[s0 : s0 + n, :Tb]  # (n, Tb, D)
        pos = self.pf_pos[s0 : s0 + n, :Tb]  # (n, Tb)
        logits = self.decoder(x, pos, self.cache, s0, kv_len, out_index=self.pf_last[s0 : s0 + n], causal=causal)  # (n, V)
        self.tok[s0 : s0 + n] = self._choose(logits, s0)
        self.pos[s0 : s0 + n] = self.pf_next[s0 : s0 + n]

    @torch.inference_mode()
    def _decode_impl(self, n: int) -> None:
        self._decode_body(n)

    def _decode_nograd(self, n: int) -> None:
        with torch.no_grad():
            self._decode_body(n)

    def _decode_body(self, n: int) -> None:
        pos = self.pos[:n]  # (n,) a view: advanced in place below
        x = self.decoder.embed(self.tok[:n])[:, None]  # (n, 1, D)
        kv_len = self.cache_len if self.is_cuda or self.compiled else self._cpu_kv_len(n)  # static when compiled
        logits = self.decoder(x, pos[:, None], self.cache, 0, kv_len)  # (n, V)
        self.tok[:n] = self._choose(logits, 0)
        # active rows move to the next column; idle rows stay on the scratch column (_finish put them
        # there); the clamp keeps a row the host has not yet retired (CUDA lookahead) inside the cache
        pos.add_(self.active[:n]).clamp_(max=self.scratch)

    def _cpu_kv_len(self, n: int) -> int:
        # on CPU attend only over the columns in use; idle rows (writing to the scratch
        # column) then see only finite garbage, which is harmless
        return max((self._host_pos[s] for s in range(n) if self.slots[s] is not None), default=0) + 1

    def _run(self, key, fn) -> None:
        """Run ``fn`` eagerly, or as a CUDA graph captured on first use (per ``key``)."""
        if not self._use_graphs:
            if key[0] == "decode" and not self.is_cuda and not self.compiled:
                self._host_pos = self.pos.tolist()  # eager: attend only over the columns in use
            fn()
            return
        g = self._graphs.get(key)
        if g is None:
            g = self._capture(fn)
            if g is None:
                fn()
                return
            self._graphs[key] = g
        g.replay()

    def _decode_chunk(self, n: int) -> None:
        """CPU compiled: ``K`` decode steps in one call; each step's tokens and states go to ``_chunk``."""
        with torch.no_grad():
            for i in range(self._chunk.shape[0]):
                self._decode_body(n)
                self._chunk[i, 0, :n] = self.tok[:n]
                self._chunk[i, 1, :n] = self.state[:n]

    def _cpu_decode(self, n: int) -> int:
        """Run the compiled chunk (or one eager step after a compile failure); returns how many steps ran."""
        try:
            self._compiled_decode(n)
            return self._chunk.shape[0]
        except Exception as e:  # inductor compiles (and may fail) before a step touches any state
            self._compile_failed(e)
        self._host_pos = self.pos.tolist()
        self._eager_decode(n)
        self._chunk[0, 0, :n] = self.tok[:n]
        self._chunk[0, 1, :n] = self.state[:n]
        return 1

    def _deliver_chunk(self, k: int, n: int, live: list[tuple[int, Ticket]]) -> None:
        """CPU: hand the tokens of ``k`` steps to their tickets; a row that finished ignores the rest."""
        now = time.perf_counter()
        for toks, states in self._chunk[:k, :, :n].tolist():
            for slot, t in live:
                if slot < n and not t.finished:
                    self._deliver(t, toks[slot], states[slot], now)

    def _cpu_prefill(self, s0: int, n: int, Tb: int, kv_len: int, causal: bool) -> None:
        try:
            return self._compiled_prefill(s0, n, Tb, kv_len, causal)
        except Exception as e:
            self._compile_failed(e)
        self._prefill_impl(s0, n, Tb, kv_len, causal)

    def _compile_failed(self, e: Exception) -> None:
        """CPU: inductor failed (e.g. no C++ compiler): warn once and run eagerly from now on."""
        import warnings

        warnings.warn(f"engine: compiling for the CPU failed ({type(e).__name__}: {e}); running eagerly", stacklevel=2)
        self.compiled = False  # step() and _prefill() take the eager paths from now on
        torch._dynamo.reset()

    def _capture(self, fn):  # pragma: no cover - CUDA only
        """Warm up and capture ``fn``; device state is restored so the capture has no effect."""
        saved = [t.clone() for t in (self.tok, self.pos, self.state, self.active)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(stream):
                for _ in range(2):
                    fn()
            torch.cuda.current_stream().wait_stream(stream)
            for t, s in zip((self.tok, self.pos, self.state, self.active), saved):
                t.copy_(s)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            g = torch.cuda.CUDAGraph()
            # thread_local: other threads (e.g. the vision encoder of another robot) may use the GPU meanwhile
            with torch.cuda.graph(g, pool=self._pool, capture_error_mode="thread_local"):
                fn()
        except Exception as e:
            import warnings

            if self.compiled:
                # inductor failed here: fall back to the eager step and capture that next time
                warnings.warn(f"engine: compiled decode step failed ({e}); using the eager step", stacklevel=2)
                self._decode_fn, self.compiled = self._eager_decode, False
                torch._dynamo.reset()  # drop dynamo's half-built state (it broke later eager calls on torch 2.11)
            else:
                warnings.warn(f"engine: CUDA graph capture failed ({e}); running eagerly", stacklevel=2)
                self._use_graphs = False
            torch.cuda.current_stream().wait_stream(stream)
            for t, s in zip((self.tok, self.pos, self.state, self.active), saved):
                t.copy_(s)
            return None
        for t, s in zip((self.tok, self.pos, self.state, self.active), saved):
            t.copy_(s)
        return g


def flash_decode_kernel(shape, dtype: torch.dtype, device):
    """flash-attn's ``flash_attn_with_kvcache`` when installed and it agrees with SDPA on our cache
    layout (one check on random data); otherwise None, and the decode step uses SDPA."""
    try:
        from flash_attn import flash_attn_with_kvcache
    except ImportError:
        return None
    why = check_flash_decode(flash_attn_with_kvcache, shape, dtype, device)
    if why is not None:
        import warnings

        warnings.warn(f"engine: flash-attn's decode kernel disagrees with SDPA here ({why}); using SDPA", stacklevel=2)
        return None
    return flash_attn_with_kvcache
