"""Grammar-constrained decoding: a token-level automaton for the plan language.

Built from ``embodied.core.plan.valid_steps(objects, containers)`` and the tokenizer::

    plan := ( step_tokens ";" )* "done" <eos>

Every valid step's token sequence goes into a trie, the trie is minimised (states with the
same future are merged), and the result is two tables a decoder applies on its device with
no host round trip per token::

    allowed    (S, V) bool   which tokens may follow in state s
    next_state (S, V) long   the state after emitting a token

``start`` is the state at the beginning of a step (after ``;``); ``end`` is reached after
``<eos>`` and only allows ``<eos>`` again, so finished rows of a batch idle harmlessly.
A step is complete exactly when a transition lands in ``start`` or ``end``.

Objects and containers come from the robot's perception (``Observation.detections``); when
it reports nothing (e.g. ``ablate=frames``) the full vocabulary of ``embodied.core.vocab`` is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch

from embodied.core.errors import ConfigError, ObservationError
from embodied.core.plan import STEP_SEPARATOR, valid_steps
from embodied.core.vocab import COLOURS, SHAPES, bin_name, object_name

_TO_START, _TO_END = -1, -2  # trie edge targets that leave the step


def full_vocabulary() -> tuple[list[str], list[str]]:
    """All objects (colour x shape) and all containers (tray, one bin per colour)."""
    objects = [object_name(c, s) for c in COLOURS for s in SHAPES]
    containers = ["tray"] + [bin_name(c) for c in COLOURS]
    return objects, containers


def scene_vocabulary(detections: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split perceived names into objects and containers; empty -> the full vocabulary."""
    if not detections:
        return full_vocabulary()
    all_objects, all_containers = full_vocabulary()
    objects, containers = [], []
    for name in detections:
        n = " ".join(str(name).lower().split())
        if n in all_objects:
            objects.append(n)
        elif n in all_containers:
            containers.append(n)
        else:
            raise ObservationError(
                f"detection {name!r} is neither an object '<colour> <shape>' nor a container "
                f"('tray', '<colour> bin') of embodied.core.vocab; fix the perception output"
            )
    return sorted(set(objects)), sorted(set(containers))


@dataclass
class PlanConstraint:
    """The token automaton for one scene. Tables live on ``allowed.device``."""

    allowed: torch.Tensor  # (S, V) bool
    next_state: torch.Tensor  # (S, V) long
    start: int
    end: int
    eos_id: int
    separator_ids: tuple[int, ...]
    objects: tuple[str, ...]
    containers: tuple[str, ...]

    @property
    def num_states(self) -> int:
        return self.allowed.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.allowed.shape[1]

    def to(self, device) -> "PlanConstraint":
        return PlanConstraint(
            self.allowed.to(device), self.next_state.to(device), self.start, self.end, self.eos_id,
            self.separator_ids, self.objects, self.containers,
        )

    def step_done(self, state: int) -> bool:
        """True when a transition into ``state`` completed a step."""
        return state == self.start or state == self.end

    def apply(self, logits: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Greedy constrained choice on the device: ``logits (B, V)``, ``state (B,)`` -> tokens ``(B,)``."""
        masked = logits.masked_fill(~self.allowed[state], float("-inf"))  # (B, V)
        return masked.argmax(-1)

    def logits_processor(self):
        """A transformers ``LogitsProcessor`` enforcing this automaton (for ``generate()``)."""
        from transformers import LogitsProcessor

        class _Processor(_ConstraintProcessor, LogitsProcessor):
            pass

        return _Processor(self)


def build_constraint(
    tokenizer, objects: Sequence[str], containers: Sequence[str], vocab_size: int | None = None
) -> PlanConstraint:
    """The automaton for a scene with these objects and containers (cached per tokenizer and scene).

    ``vocab_size``: the model's logit width when it exceeds ``len(tokenizer)`` (padded embeddings).
    """
    V = max(int(vocab_size or 0), len(tokenizer))
    return _build_cached(_TokKey(tokenizer), tuple(sorted(set(objects))), tuple(sorted(set(containers))), V)


def constraint_for_detections(tokenizer, detections: Sequence[str], vocab_size: int | None = None) -> PlanConstraint:
    """``build_constraint`` over what the robot perceives (full vocabulary when it perceives nothing)."""
    objects, containers = scene_vocabulary(detections)
    return build_constraint(tokenizer, objects, containers, vocab_size)


class _TokKey:
    """Hashes a tokenizer by identity so automata are cached per tokenizer object."""

    def __init__(self, tok):
        self.tok = tok

    def __hash__(self) -> int:
        return id(self.tok)

    def __eq__(self, other) -> bool:
        return isinstance(other, _TokKey) and other.tok is self.tok


def _encode(tok, text: str) -> list[int]:
    return list(tok.encode(text, add_special_tokens=False))


def _separator_ids(tok) -> tuple[int, ...]:
    """Token ids of ``"; "`` between two steps, checked against whole-plan encodings."""
    a, b = "done", "put red cube on blue cube"
    ia, ib = _encode(tok, a), _encode(tok, b)
    joint = _encode(tok, a + STEP_SEPARATOR + b)
    if joint[: len(ia)] != ia or joint[len(joint) - len(ib):] != ib or len(joint) <= len(ia) + len(ib):
        raise ConfigError(
            "the tokenizer does not encode 'step; step' as step tokens + separator + step tokens; "
            "constrained decoding needs a tokenizer built by embodied.model.tokenizer.build_tokenizer"
        )
    return tuple(joint[len(ia): len(joint) - len(ib)])


@lru_cache(maxsize=64)
def _build_cached(key: _TokKey, objects: tuple[str, ...], containers: tuple[str, ...], vocab: int) -> PlanConstraint:
    tok = key.tok
    eos = tok.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no eos token; constrained decoding needs one to end a plan")
    sep = _separator_ids(tok)
    # 1. trie over every step's tokens, ending in an edge to START (after ';') or END (after <eos>)
    trie: list[dict[int, int]] = [{}]
    for text in valid_steps(list(objects), list(containers)):
        ids = _encode(tok, text)
        tail, target = (list(sep), _TO_START) if text != "done" else ([eos], _TO_END)
        seq = ids + tail
        node = 0
        for t in seq[:-1]:
            nxt = trie[node].get(t)
            if nxt is None or nxt < 0:
                if nxt is not None:
                    raise ConfigError(f"step {text!r}: its tokens collide with a step end; tokenizer unsuitable")
                trie.append({})
                nxt = trie[node][t] = len(trie) - 1
            node = nxt
        if trie[node].get(seq[-1], target) != target:
            raise ConfigError(f"step {text!r}: its tokens collide with another step; tokenizer unsuitable")
        trie[node][seq[-1]] = target
    # 2. minimise: merge nodes with identical outgoing edges (bottom-up; the trie is acyclic)
    canon: dict[int, int] = {}
    sig_to_state: dict[tuple, int] = {}
    edges_of_state: list[dict[int, int]] = []

    def visit(node: int) -> int:
        if node in canon:
            return canon[node]
        edges = {t: (c if c < 0 else visit(c)) for t, c in trie[node].items()}
        sig = tuple(sorted(edges.items()))
        if node == 0:  # the root is always its own state (the loop target)
            sig = ("root",) + sig
        state = sig_to_state.get(sig)
        if state is None:
            state = sig_to_state[sig] = len(edges_of_state)
            edges_of_state.append(edges)
        canon[node] = state
        return state

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    root = visit(0)
    S = len(edges_of_state) + 1
    end = S - 1
    allowed = torch.zeros(S, vocab, dtype=torch.bool)
    next_state = torch.full((S, vocab), end, dtype=torch.long)
    for s, edges in enumerate(edges_of_state):
        for t, c in edges.items():
            allowed[s, t] = True
            next_state[s, t] = root if c == _TO_START else end if c == _TO_END else c
    allowed[end, eos] = True
    next_state[end, eos] = end
    return PlanConstraint(allowed, next_state, root, end, eos, sep, objects, containers)


class _ConstraintProcessor:
    """LogitsProcessor for ``generate()``: replays the generated tokens through the automaton."""

    def __init__(self, c: PlanConstraint):
        self.c = c.to("cpu")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # with inputs_embeds only, input_ids holds just the generated tokens
        B, n = input_ids.shape
        states = []
        for b in range(B):
            s = self.c.start
            for t in input_ids[b].tolist():
                s = int(self.c.next_state[s, t])
            states.append(s)
        allowed = self.c.allowed[torch.tensor(states)].to(scores.device)  # (B, V)
        return scores.masked_fill(~allowed, float("-inf"))
