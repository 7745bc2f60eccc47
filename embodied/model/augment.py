"""Training-time augmentation of examples: instruction words dropped or made up, colour words of
the teacher-forced input swapped, frames blanked, objects renamed to another known name.

``augment(examples, cfg, known_objects, rng)`` applies the ``TrainConfig`` probabilities to a
micro-batch in place; the helpers are the single transforms.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np

from embodied.core.vocab import TRAIN_COLOURS
from embodied.model.aliases import alias_for_training


def _grammar_words() -> frozenset[str]:
    from embodied.model.tokenizer import grammar_words

    return frozenset(grammar_words())


def _is_grammar_word(word: str) -> bool:
    """Whether an instruction word (punctuation stripped) is a plan-grammar word; the noise options keep those."""
    return word.lower().strip(",.:;") in _grammar_words()


def drop_words(text: str, p: float, rng: random.Random) -> str:
    """Drop each word that is not a plan-grammar word with probability ``p``."""
    words = [w for w in text.split() if _is_grammar_word(w) or rng.random() >= p]
    return " ".join(words) or text


def noise_words(text: str, p: float, rng: random.Random) -> str:
    """Replace each non-grammar word by a made-up word with probability ``p``; insert one with probability ``p``."""
    def made_up() -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 8)))

    words = [w if _is_grammar_word(w) or rng.random() >= p else made_up() for w in text.split()]
    if words and rng.random() < p:
        words.insert(rng.randint(0, len(words)), made_up())
    return " ".join(words)


def swap_colours(text: str, p: float, rng: random.Random) -> str:
    """``text`` with each training-colour word replaced by a different training colour with probability ``p``."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if w in TRAIN_COLOURS and rng.random() < p:
            words[i] = rng.choice([c for c in TRAIN_COLOURS if c != w])
    return " ".join(words)


def blank_frames(obs):
    """``obs`` with every camera frame (and depth map) zeroed; the perception list and relations kept."""
    return replace(obs, frames={k: np.zeros_like(v) for k, v in obs.frames.items()},
                   depth={k: np.zeros_like(v) for k, v in obs.depth.items()})


def augment(examples: list, cfg, known_objects, rng: random.Random) -> None:
    """Apply ``cfg``'s instruction dropout and noise, alias noise and frame dropout to ``examples`` (in place)."""
    if cfg.instruction_word_dropout > 0:
        for e in examples:
            e.observation.instruction = drop_words(e.observation.instruction, cfg.instruction_word_dropout, rng)
    if cfg.instruction_word_noise > 0:
        for e in examples:
            e.observation.instruction = noise_words(e.observation.instruction, cfg.instruction_word_noise, rng)
    if cfg.alias_noise > 0:
        for e in examples:
            if rng.random() < cfg.alias_noise:
                e.observation, e.target = alias_for_training(known_objects, e.observation, e.target, rng)
    if cfg.frame_dropout > 0:
        for e in examples:
            if rng.random() < cfg.frame_dropout:
                e.observation = blank_frames(e.observation)
