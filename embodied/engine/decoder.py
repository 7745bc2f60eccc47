"""A plain-torch Llama decoder with a static KV cache, loaded from a transformers ``LlamaForCausalLM``.

Same maths as ``transformers``' Llama (RMSNorm, RoPE from the config's rope parameters, GQA,
SwiGLU), written so every decode step has static shapes (CUDA-graph friendly):

- the KV cache is allocated once: per layer ``k, v: (B_max, kv_heads, T_cache, head_dim)``;
  separate tensors (not views of one) so a compiled step writes them in place;
- each row keeps its tokens at their absolute positions ``0 .. len-1`` (no padding inside a row),
  so the attention mask is simply ``key_position <= query_position``;
- writes go to explicit positions (``pos``), so a row can be prefilled from any start
  (prefix reuse) and rows decode independently (continuous batching);
- few ops per layer, because on CUDA each op is a kernel launch even inside a CUDA graph and a
  small model's decode step is bound by their number: one RMSNorm op, RoPE in three, residual
  adds inside the output GEMMs (``addmm``), GQA decode attending to the un-repeated cache, the
  additive mask built once per step (14 ops per layer, 27 before, in bf16).

The last cache column (``T_cache - 1``) is a scratch column: padded prefill positions and idle
rows write there, never over real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from embodied.core.errors import ConfigError


@dataclass(frozen=True)
class DecoderShape:
    """The few numbers the decoder needs, read from a ``LlamaConfig``."""

    vocab: int
    dim: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    eps: float
    attn_bias: bool
    mlp_bias: bool


class KVCache:
    """Static K/V buffers for all layers and ``batch`` rows; allocated once per engine."""

    def __init__(self, shape: DecoderShape, batch: int, length: int, dtype: torch.dtype, device: torch.device):
        size = (batch, shape.kv_heads, length, shape.head_dim)
        # one tensor per layer: inductor compiled the write into a view of one (L, B, ...) tensor
        # as a copy of the cache each step; into a whole input it writes in place (default model,
        # compiled CPU step: 0.98 -> 0.70 ms)
        self.k = [torch.zeros(size, dtype=dtype, device=device) for _ in range(shape.layers)]  # L x (B, Hkv, Tc, hd)
        self.v = [torch.zeros(size, dtype=dtype, device=device) for _ in range(shape.layers)]  # L x (B, Hkv, Tc, hd)
        self.batch = batch
        self.length = length

    @property
    def scratch(self) -> int:
        return self.length - 1


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One op (one fused kernel on CUDA in recent torch, not checked here), where the written-out form is eight. Same
        # formula as transformers' LlamaRMSNorm, computed in float32; in bf16/fp16 it rounds once,
        # after the weight, where transformers also rounds before it (the two differ by an ulp).
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class _Proj(nn.Module):
    """A linear layer storing its weight as ``(in, out)``: ``x @ w`` is the faster GEMV on CPU."""

    def __init__(self, d_in: int, d_out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ w (+ b)``, plus ``residual`` if given (then one GEMM with beta=1: one kernel, not two)."""
        if residual is None:
            y = x @ self.weight
            return y if self.bias is None else y + self.bias
        if self.bias is not None:
            return residual + (x @ self.weight + self.bias)
        d_in, d_out = self.weight.shape
        return torch.addmm(residual.reshape(-1, d_out), x.reshape(-1, d_in), self.weight).view(residual.shape)


class _Block(nn.Module):
    def __init__(self, s: DecoderShape):
        super().__init__()
        self.s = s
        q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
        self.attn_norm = _RMSNorm(s.dim, s.eps)
        self.qkv = _Proj(s.dim, q + 2 * kv, s.attn_bias)  # fused q, k, v projections
        self.o = _Proj(q, s.dim, s.attn_bias)
        self.mlp_norm = _RMSNorm(s.dim, s.eps)
        self.gate_up = _Proj(s.dim, 2 * s.ffn, s.mlp_bias)  # fused gate, up projections
        self.down = _Proj(s.ffn, s.dim, s.mlp_bias)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D)
        cos: torch.Tensor,  # (B, T, 1, hd)
        sin: torch.Tensor,  # (B, T, 1, hd), first half negated (see Decoder.forward)
        k_cache: torch.Tensor,  # (B_max, Hkv, Tc, hd) this layer's cache, written in place
        v_cache: torch.Tensor,  # (B_max, Hkv, Tc, hd)
        rows: torch.Tensor,  # (B, 1) long: cache rows row0 .. row0+B-1
        row0: int,
        pos: torch.Tensor,  # (B, T) long, where each token is written
        mask: torch.Tensor | None,  # (B, 1, T, Tk) additive (0 or -inf); None = causal over [0, T)
        kv_len: int,
        lens: torch.Tensor | None = None,  # (B,) int32 keys per row, with ``flash`` (decode only)
        flash=None,  # flash-attn's flash_attn_with_kvcache, or None for SDPA
    ) -> torch.Tensor:
        s = self.s
        B, T, _ = x.shape
        qkv = self.qkv(self.attn_norm(x)).view(B, T, s.heads + 2 * s.kv_heads, s.head_dim)  # (B, T, H+2Hkv, hd)
        qk = qkv[:, :, : s.heads + s.kv_heads]  # (B, T, H+Hkv, hd): RoPE on q and k at once
        qk = torch.addcmul(qk * cos, qk.roll(s.head_dim // 2, dims=-1), sin)  # == x*cos + rotate_half(x)*sin
        q, k = qk[:, :, : s.heads], qk[:, :, s.heads :]  # (B, T, H, hd), (B, T, Hkv, hd)
        v = qkv[:, :, s.heads + s.kv_heads :]  # (B, T, Hkv, hd)
        # advanced indices around a slice: the indexed view is (B, T, Hkv, hd)
        k_cache[rows, :, pos] = k
        v_cache[rows, :, pos] = v
        att = self._attend(q, k_cache[row0 : row0 + B], v_cache[row0 : row0 + B], mask, kv_len, lens, flash)  # (B, T, H*hd)
        x = self.o(att, residual=x)  # (B, T, D)
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)  # (B, T, F) each
        return self.down(F.silu(gate) * up, residual=x)

    def _attend(self, q, k_rows, v_rows, mask, kv_len: int, lens, flash) -> torch.Tensor:
        """Attention of ``q`` (B, T, H, hd) over cache rows ``k_rows``, ``v_rows`` (B, Hkv, Tc, hd); (B, T, H*hd)."""
        s = self.s
        B, T = q.shape[:2]
        if flash is not None and T == 1:
            # flash-attn's decode kernel reads the cache where it lies ((B, Tc, Hkv, hd) strides),
            # the first lens[b] columns of row b, GQA heads in transformers' order
            return flash(q, k_rows.transpose(1, 2), v_rows.transpose(1, 2), cache_seqlens=lens).reshape(B, T, -1)
        kk, vv = k_rows[:, :, :kv_len], v_rows[:, :, :kv_len]  # (B, Hkv, Tk, hd)
        rep = s.heads // s.kv_heads
        if rep > 1 and T == 1:
            # decode with GQA: the rep query heads that share a KV head become rep query rows of
            # that head (head h = kv * rep + r, transformers' repeat_kv order). Same maths as
            # repeating K/V, without copying the cache; the mask (B, 1, 1, Tk) broadcasts.
            att = F.scaled_dot_product_attention(q.reshape(B, s.kv_heads, rep, s.head_dim), kk, vv, attn_mask=mask)
            return att.reshape(B, T, s.heads * s.head_dim)  # (B, 1, H*hd): a view
        gqa = rep > 1
        if gqa and kk.is_cuda:
            # expand KV heads so SDPA can use its fused (mem-efficient) kernel with a mask;
            # enable_gqa with a mask would fall back to the unfused maths kernel on CUDA
            kk = kk[:, :, None].expand(B, s.kv_heads, rep, kv_len, s.head_dim).reshape(B, s.heads, kv_len, s.head_dim)
            vv = vv[:, :, None].expand(B, s.kv_heads, rep, kv_len, s.head_dim).reshape(B, s.heads, kv_len, s.head_dim)
            gqa = False
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), kk, vv, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa
        )  # (B, H, T, hd)
        return att.transpose(1, 2).reshape(B, T, s.heads * s.head_dim)  # (B, T, H*hd)


class Decoder(nn.Module):
    """Llama decoder over ``inputs_embeds`` and token ids, writing into a ``KVCache``."""

    def __init__(self, shape: DecoderShape, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__()
        self.shape = shape
        self.embed = nn.Embedding(shape.vocab, shape.dim)
        self.blocks = nn.ModuleList(_Block(shape) for _ in range(shape.layers))
        self.norm = _RMSNorm(shape.dim, shape.eps)
        self.lm_head = _Proj(shape.dim, shape.vocab, False)
        self.register_buffer("cos", cos, persistent=False)  # (T_max, hd)
        self.register_buffer("sin", sin, persistent=False)  # (T_max, hd)
        # 0 .. T_max-1: rows and key positions are views of it, not a new tensor per step
        self.register_buffer("index", torch.arange(cos.shape[0]), persistent=False)  # (T_max,) long
        self.flash_decode = None  # flash_attn_with_kvcache for decode steps (set by the engine), else SDPA

    @property
    def max_positions(self) -> int:
        return self.cos.shape[0]

    @classmethod
    def from_hf(cls, lm, max_positions: int, dtype: torch.dtype | None = None, device=None) -> "Decoder":
        """Copy the weights of a transformers ``LlamaForCausalLM`` (any rope type it supports)."""
        cfg = lm.config
        act = getattr(cfg, "hidden_act", "silu")
        if act != "silu":
            raise ConfigError(f"the engine's decoder supports hidden_act='silu' only, got {act!r}; use use_engine=False")
        if getattr(cfg, "model_type", "llama") not in ("llama",):
            raise ConfigError(
                f"the engine's decoder is Llama-shaped; got model_type {cfg.model_type!r}; use use_engine=False"
            )
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = DecoderShape(
            vocab=cfg.vocab_size,
            dim=cfg.hidden_size,
            layers=cfg.num_hidden_layers,
            heads=cfg.num_attention_heads,
            kv_heads=cfg.num_key_value_heads,
            head_dim=head_dim,
            ffn=cfg.intermediate_size,
            eps=cfg.rms_norm_eps,
            attn_bias=bool(getattr(cfg, "attention_bias", False)),
            mlp_bias=bool(getattr(cfg, "mlp_bias", False)),
        )
        src_device = next(lm.parameters()).device
        # RoPE tables from the model's own rotary module: identical values, any rope type.
        probe = torch.zeros(1, dtype=torch.float32, device=src_device)
        positions = torch.arange(max_positions, device=src_device)[None]  # (1, T_max)
        with torch.no_grad():
            cos, sin = lm.model.rotary_emb(probe, position_ids=positions)  # (1, T_max, hd) each
        sin = sin[0].float().cpu()  # (T_max, hd)
        half = head_dim // 2
        # rotate_half(x) * sin == roll(x, half) * [-sin_1, sin_2]: fold the sign into the table
        sin = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)
        dec = cls(shape, cos[0].float().cpu(), sin)
        sd = {k: v.detach().cpu() for k, v in lm.state_dict().items()}
        new = {"embed.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
        new["lm_head.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"]).t().contiguous()
        for i in range(shape.layers):
            p = f"model.layers.{i}."
            new[f"blocks.{i}.attn_norm.weight"] = sd[p + "input_layernorm.weight"]
            new[f"blocks.{i}.mlp_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
            a = p + "self_attn."
            new[f"blocks.{i}.qkv.weight"] = torch.cat([sd[a + n + "_proj.weight"] for n in "qkv"]).t().contiguous()
            new[f"blocks.{i}.o.weight"] = sd[a + "o_proj.weight"].t().contiguous()
            if shape.attn_bias:
                new[f"blocks.{i}.qkv.bias"] = torch.cat([sd[a + n + "_proj.bias"] for n in "qkv"])
                new[f"blocks.{i}.o.bias"] = sd[a + "o_proj.bias"]
            m = p + "mlp."
            new[f"blocks.{i}.gate_up.weight"] = torch.cat([sd[m + "gate_proj.weight"], sd[m + "up_proj.weight"]]).t().contiguous()
            new[f"blocks.{i}.down.weight"] = sd[m + "down_proj.weight"].t().contiguous()
            if shape.mlp_bias:
                new[f"blocks.{i}.gate_up.bias"] = torch.cat([sd[m + "gate_proj.bias"], sd[m + "up_proj.bias"]])
                new[f"blocks.{i}.down.bias"] = sd[m + "down_proj.bias"]
        dec.load_state_dict(new, strict=True)
        dtype = dtype or next(lm.parameters()).dtype
        dec = dec.to(device=device or src_device, dtype=dtype)
        # keep the RoPE tables in the compute dtype (transformers casts cos/sin to x.dtype too)
        dec.eval().requires_grad_(False)
        return dec

    def new_cache(self, batch: int, length: int) -> KVCache:
        if length > self.max_positions:
            raise ConfigError(f"cache length {length} exceeds the decoder's {self.max_positions} positions")
        w = self.lm_head.weight
        return KVCache(self.shape, batch, length, w.dtype, w.device)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, D) input embeddings
        pos: torch.Tensor,  # (B, T) long absolute positions (scratch column for padding)
        cache: KVCache,
        row0: int,  # rows row0 .. row0+B-1 of the cache
        kv_len: int,  # attend over cache columns [0, kv_len)
        out_index: torch.Tensor | None = None,  # (B,) long: which of the T positions gives logits
        causal: bool = False,  # pos is 0..T-1 in every row and kv_len == T: skip building the mask
    ) -> torch.Tensor:
        """Run all layers, write K/V at ``pos``; return logits ``(B, V)`` (float32)."""
        B, T, _ = x.shape
        rows = self.index[row0 : row0 + B, None]  # (B, 1)
        cos = self.cos[pos][:, :, None, :]  # (B, T, 1, hd)
        sin = self.sin[pos][:, :, None, :]
        mask, lens, flash = None, None, self.flash_decode if T == 1 else None
        if flash is not None:
            lens = (pos[:, 0] + 1).to(torch.int32)  # (B,) row b attends to columns [0, lens[b])
        elif not (causal and kv_len == T):
            allowed = self.index[None, None, :kv_len] <= pos[:, :, None]  # (B, T, Tk)
            # additive, built once per call: SDPA would convert a bool mask again in every layer
            mask = torch.full(allowed.shape, float("-inf"), dtype=x.dtype, device=x.device).masked_fill_(allowed, 0.0)
            mask = mask[:, None]  # (B, 1, T, Tk)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, cache.k[i], cache.v[i], rows, row0, pos, mask, kv_len, lens, flash)
        if out_index is None:
            h = x[:, -1]  # (B, D)
        else:
            h = x[self.index[:B], out_index]  # (B, D)
        return self.lm_head(self.norm(h)).float()  # (B, V)


def check_flash_decode(flash, shape: DecoderShape, dtype: torch.dtype, device) -> str | None:
    """Run ``flash`` (``flash_attn_with_kvcache``'s signature) once on random data in this decoder's
    cache layout and compare it with SDPA; returns why it disagrees, or None when it agrees."""
    g = torch.Generator(device="cpu").manual_seed(0)
    B, Tc, H, Hkv, hd = 2, 64, shape.heads, shape.kv_heads, shape.head_dim
    q = torch.randn(B, 1, H, hd, generator=g).to(device, dtype)  # (B, 1, H, hd)
    kc, vc = (torch.randn(B, Hkv, Tc, hd, generator=g).to(device, dtype) for _ in range(2))  # (B, Hkv, Tc, hd)
    lens = torch.tensor([5, 40], dtype=torch.int32, device=device)  # (B,)
    try:
        got = flash(q, kc.transpose(1, 2), vc.transpose(1, 2), cache_seqlens=lens).float()  # (B, 1, H, hd)
    except Exception as e:  # any failure means: use SDPA
        return f"{type(e).__name__}: {e}"
    rep = H // Hkv
    want = torch.stack([
        F.scaled_dot_product_attention(q[b, 0].float().view(Hkv, rep, hd), kc[b, :, :n].float(), vc[b, :, :n].float())
        for b, n in enumerate(lens.tolist())
    ]).view(B, 1, H, hd)  # (B, 1, H, hd)
    err = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    return None if err <= tol else f"max |flash - SDPA| = {err:.3g} > {tol} (output {tuple(got.shape)})"
