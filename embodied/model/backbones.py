"""The backbones of the planner: a language model built from the config (trained from scratch) or
loaded from a user's local pretrained directory, and a local pretrained vision model. Nothing is
fetched from a hub."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from embodied.core.errors import ConfigError
from embodied.model.config import ModelConfig
from embodied.model.tokenizer import IMAGE, STATE


def build_lm(config: ModelConfig, tokenizer) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    c = config.lm
    lc = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        num_key_value_heads=c.kv_heads,
        max_position_embeddings=c.max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(lc)


def load_pretrained_lm(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from embodied.model.tokenizer import BOS, EOS, PAD

    if not Path(path).is_dir():
        raise ConfigError(f"lm.pretrained={path!r} is not a local directory; download it first (no hub access at run time)")
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    extra = {"additional_special_tokens": [IMAGE, STATE]}
    for attr, val in (("pad_token", PAD), ("bos_token", BOS), ("eos_token", EOS)):
        if getattr(tok, attr) is None:
            extra[attr] = val
    tok.add_special_tokens(extra)
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    lm.resize_token_embeddings(len(tok))
    return lm, tok


def load_pretrained_vision(path: str) -> nn.Module:
    from transformers import AutoModel

    if not Path(path).is_dir():
        raise ConfigError(f"vision.pretrained={path!r} is not a local directory")
    m = AutoModel.from_pretrained(path, local_files_only=True)
    return getattr(m, "vision_model", m)
