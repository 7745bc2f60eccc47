"""Object references: plans point into the prompt's object list instead of spelling names.

With ``ModelConfig.object_refs`` the prompt lists each perceived object with a reference
token, ``Objects: purple cube <o1>, red triangle <o2>, tray, red bin``, and the model writes
``put <o2> red triangle in tray`` (containers keep their names). It chooses the reference;
the name after it is the only continuation the grammar constraint allows, so the model never
has to produce a colour-shape pair it did not see in training: it only has to find the
listed object the instruction means. The name is still written, so what follows (the bin of
that colour, the next step) reads it as before. Training shuffles the list, so a reference
carries no meaning of its own.

``ObjectRefs`` maps names to references for one observation; the tokenizer gets the
reference tokens ``<o1>`` .. ``<o{MAX_REFS}>`` from ``add_ref_tokens``.

Two things make the pointer learnable by a small model trained from scratch:

- each reference token of the list gets its name's token embeddings added to its own
  (``listed_refs`` finds them; ``PalmE`` adds them), so it carries what it stands for from the
  first layer on;
- ``pointer_attention_loss`` (training, ``ref_attention_loss``): where the next target token is
  a reference, the last layer's first head is taught to attend to that reference in the list.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

from embodied.core.errors import ObservationError
from embodied.core.observation import Observation
from embodied.core.vocab import is_object_name, object_name_pattern

MAX_REFS = 16
REF_TOKENS: tuple[str, ...] = tuple(f"<o{i}>" for i in range(1, MAX_REFS + 1))


@dataclass(frozen=True)
class ObjectRefs:
    """The objects of one observation's detection list, in list order, and their references."""

    objects: tuple[str, ...]

    @classmethod
    def from_detections(cls, detections: Sequence[str]) -> "ObjectRefs":
        objects = tuple(dict.fromkeys(d for d in detections if is_object_name(d)))
        if len(objects) > MAX_REFS:
            raise ObservationError(f"{len(objects)} objects perceived; object references cover at most {MAX_REFS}")
        return cls(objects)

    @property
    def refs(self) -> tuple[str, ...]:
        return REF_TOKENS[: len(self.objects)]

    def listing(self, detections: Sequence[str]) -> str:
        """The ``Objects:`` text: each object followed by its reference, containers as they are.

        After the name, so the reference token's own position can gather the name it stands for
        (one attention hop for the model to find it again).
        """
        index = {o: r for o, r in zip(self.objects, self.refs)}
        return ", ".join(f"{d} {index[d]}" if d in index else d for d in detections)

    @property
    def choices(self) -> tuple[str, ...]:
        """How plans name each object: its reference, then its name (``<o2> purple triangle``)."""
        return tuple(f"{r} {o}" for r, o in zip(self.refs, self.objects))

    def to_refs(self, text: str) -> str:
        """Plan or step text with each listed object's reference written before its name."""
        index = dict(zip(self.objects, self.choices))
        return object_name_pattern().sub(lambda m: index.get(m.group(0), m.group(0)), text)

    def to_names(self, text: str) -> str:
        """Decoded step text with each reference (and the name after it) replaced by the object's name."""

        def name(m: re.Match) -> str:
            i = int(m.group(1)) - 1
            if not 0 <= i < len(self.objects):
                raise ObservationError(f"reference {m.group(0).split()[0]} points past the {len(self.objects)} listed objects")
            return self.objects[i]

        return _ref_pattern().sub(name, text)


@lru_cache(maxsize=1)
def _ref_pattern() -> re.Pattern:
    return re.compile(r"<o(\d+)>(?: %s)?" % object_name_pattern().pattern)


def shuffled(observation: Observation, rng: random.Random) -> Observation:
    """The observation with its detection list in random order (training: references carry no meaning)."""
    dets = list(observation.detections)
    rng.shuffle(dets)
    return replace(observation, detections=dets)


def add_ref_tokens(tokenizer) -> int:
    """Add ``<o1>`` .. ``<o16>`` to a tokenizer (whole tokens, decoded as written); returns how many were new."""
    from tokenizers import AddedToken

    missing = [t for t in REF_TOKENS if t not in tokenizer.get_vocab()]
    return tokenizer.add_tokens([AddedToken(t, normalized=False) for t in missing], special_tokens=False)


def listed_refs(ids: Sequence[int], vocab: dict[str, int], offset: int = 0) -> list[tuple[int, list[int]]]:
    """(position, name token ids) of each reference in the token ids of an ``Objects:`` segment.

    ``..., purple triangle <o2>, ...``: the name is every token since the last ``,`` or ``:``,
    without the lone word-start piece the tokenizer puts before a reference.
    """
    from embodied.model.tokenizer import WORD_PREFIX

    refs = {vocab[r] for r in REF_TOKENS if r in vocab}
    breaks = {vocab.get(","), vocab.get(":")}
    space = vocab.get(WORD_PREFIX)
    out, name = [], []
    for j, t in enumerate(ids):
        if t in refs:
            out.append((offset + j, name))
            name = []
        elif t in breaks:
            name = []
        elif t != space:
            name.append(t)
    return out


def pointer_attention_loss(attn, layer_inputs: dict, mask, pointers: list[tuple[int, int, int]]):
    """Mean -log(attention weight) of ``attn``'s head 0 from each query position to its key position.

    ``attn``: a transformers Llama attention module; ``layer_inputs``: the keyword arguments it
    was called with (``hidden_states`` (B, T, D) after the layer norm, ``position_embeddings``);
    ``mask`` (B, T): 1 on real positions; ``pointers``: (row, query position, key position).
    The head's scores are recomputed from its own projections and rotary embedding: the same
    numbers its attention uses, whichever attention kernel runs.
    """
    import torch
    from transformers.models.llama.modeling_llama import rotate_half

    h = layer_inputs["hidden_states"]  # (B, T, D)
    cos, sin = layer_inputs["position_embeddings"]  # (B, T, hd) each
    hd = attn.head_dim
    b, qp, kp = (torch.tensor(c, device=h.device) for c in zip(*pointers))  # (N,) each
    q = attn.q_proj(h[b, qp])[:, :hd]  # (N, hd): head 0
    k = attn.k_proj(h[b])[..., :hd]  # (N, T, hd): its key-value head
    q = q * cos[b, qp] + rotate_half(q) * sin[b, qp]
    k = k * cos[b] + rotate_half(k) * sin[b]
    scores = (k @ q[:, :, None]).squeeze(-1).float() * attn.scaling  # (N, T)
    T = h.shape[1]
    visible = mask[b].bool() & (torch.arange(T, device=h.device)[None] <= qp[:, None])  # (N, T): causal, no padding
    logp = scores.masked_fill(~visible, float("-inf")).log_softmax(-1)
    return -logp[torch.arange(len(pointers), device=h.device), kp].mean()
