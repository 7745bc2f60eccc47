"""Optional visual-token reduction (PoWER-BERT style): keep the k most informative image patches.

Each frame's patch embeddings are scored and only the ``k`` best are kept, in their original
order; text and state positions are untouched. Scores:

- ``"norm"`` (default): the L2 norm of the projected patch embedding (no extra compute);
- ``"attention"``: the attention a patch receives from the text positions in the decoder's
  first layer (PoWER-BERT's significance score, computed with one layer's q/k projections).

Off by default; ``ModelPlanner(keep_patches=k)`` turns it on.
"""

from __future__ import annotations

import torch

from embodied.core.errors import ConfigError


def keep_top_patches(
    embeds: torch.Tensor,  # (T, D)
    patch_groups: list[torch.Tensor],  # per frame: (P,) long positions of its patches
    k: int,
    prefix_len: int = 0,
    score: str = "norm",
    decoder=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(embeds (T', D), kept positions (T',))`` with at most ``k`` patches per frame.

    Positions before ``prefix_len`` are never removed (so prefix KV reuse is unaffected).
    """
    if k < 1:
        raise ConfigError(f"keep_patches must be >= 1, got {k}")
    T = embeds.shape[0]
    keep = torch.ones(T, dtype=torch.bool, device=embeds.device)  # (T,)
    if score == "attention":
        if decoder is None:
            raise ConfigError("keep_patches score='attention' needs the engine's decoder")
        scores = _attention_received(embeds, patch_groups, decoder)  # (T,)
    elif score == "norm":
        scores = embeds.float().norm(dim=-1)  # (T,)
    else:
        raise ConfigError(f"unknown patch score {score!r}; use 'norm' or 'attention'")
    for g in patch_groups:
        g = g[g >= prefix_len]
        if g.numel() <= k:
            continue
        top = scores[g].topk(k).indices  # (k,)
        drop = torch.ones(g.numel(), dtype=torch.bool, device=embeds.device)
        drop[top] = False
        keep[g[drop]] = False
    kept = keep.nonzero().squeeze(1)  # (T',)
    return embeds[kept], kept


def _attention_received(embeds: torch.Tensor, patch_groups: list[torch.Tensor], decoder) -> torch.Tensor:
    """Attention mass each position receives from the non-patch positions, decoder layer 0, all heads."""
    s = decoder.shape
    blk = decoder.blocks[0]
    x = embeds.to(decoder.lm_head.weight.dtype)[None]  # (1, T, D)
    q, k, _ = blk.qkv(blk.attn_norm(x)).split([s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], -1)
    T = x.shape[1]
    q = q.view(T, s.heads, s.head_dim).transpose(0, 1).float()  # (H, T, hd)
    k = k.view(T, s.kv_heads, s.head_dim).transpose(0, 1).float()  # (Hkv, T, hd)
    k = k.repeat_interleave(s.heads // s.kv_heads, dim=0)  # (H, T, hd)
    att = (q @ k.transpose(1, 2) / s.head_dim**0.5).softmax(-1)  # (H, T, T), bidirectional
    is_patch = torch.zeros(T, dtype=torch.bool, device=embeds.device)
    for g in patch_groups:
        is_patch[g] = True
    return att[:, ~is_patch].sum(dim=(0, 1))  # (T,)
