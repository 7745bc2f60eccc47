"""Generalisation levels L1-L4 and their train/test partitions (deterministic, no randomness).

Every level has two splits. ``split="train"`` only ever yields training content: training
colours and shapes (``embodied.core.vocab.TRAIN_COLOURS`` x ``TRAIN_SHAPES``) minus the held-out
colour-shape combinations, the families' training phrasings and their base compositions.
Training data generation uses only train splits. ``split="test"`` yields the level's test
content:

- **L1**: training content in new placements (the scene RNG stream of a split is its own).
- **L2**: at least one goal object has a held-out colour-shape combination
  (``HELDOUT_COMBOS``) and the instruction uses a held-out phrasing of the family.
- **L3**: at least one goal object has an unseen colour (``UNSEEN_COLOURS``) or an unseen
  shape (``UNSEEN_SHAPES``); training phrasings.
- **L4**: a held-out task composition of the family (e.g. a tower of 4, group by shape,
  sort into 3 bins; each family's ``l4_variant`` says which), training objects.

The scene RNG of an episode is seeded from sha256(family, level, split, seed), so episodes
are reproducible across processes and machines, and train and test scenes differ.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from embodied.core.errors import ConfigError
from embodied.core.vocab import COLOURS, SHAPES, TRAIN_COLOURS, TRAIN_SHAPES, UNSEEN_COLOURS, UNSEEN_SHAPES

SPLITS: tuple[str, ...] = ("train", "test")


@dataclass(frozen=True)
class Level:
    name: str
    description: str


LEVELS: dict[str, Level] = {
    "L1": Level("L1", "training colours, shapes and phrasings in new placements"),
    "L2": Level("L2", "held-out colour-shape combinations and held-out phrasings"),
    "L3": Level("L3", "unseen colours and unseen shapes"),
    "L4": Level("L4", "held-out task compositions (family variants never trained on)"),
}

# One held-out shape per training colour, two per training shape: every training colour and
# shape is still seen in training, just never in these pairings.
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "cylinder"),
        ("green", "triangle"),
        ("blue", "cube"),
        ("yellow", "cylinder"),
        ("purple", "triangle"),
        ("orange", "cube"),
    }
)
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in TRAIN_COLOURS for s in TRAIN_SHAPES if (c, s) not in HELDOUT_COMBOS
)
UNSEEN_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOURS for s in SHAPES if c in UNSEEN_COLOURS or s in UNSEEN_SHAPES
)


def is_unseen(colour: str, shape: str) -> bool:
    """The object has an attribute never seen in training (L3)."""
    return colour in UNSEEN_COLOURS or shape in UNSEEN_SHAPES


def is_heldout_combo(colour: str, shape: str) -> bool:
    """A pair of training colour and training shape that training never shows together (L2)."""
    return (colour, shape) in HELDOUT_COMBOS


def is_training_object(colour: str, shape: str) -> bool:
    """The object may appear in training data."""
    return (colour, shape) in TRAIN_COMBOS


@dataclass(frozen=True)
class Content:
    """What an episode of (level, split) may contain.

    ``pool``: colour-shape pairs any object may have; ``key_pool``: when not empty, at least
    one goal object is drawn from it; ``phrasings``: "train" or "heldout";
    ``composition``: "base" or "heldout" (the family's L4 variant).
    """

    level: str
    split: str
    pool: tuple[tuple[str, str], ...]
    key_pool: tuple[tuple[str, str], ...]
    phrasings: str
    composition: str


def check(level: str, split: str) -> None:
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r}; levels are {', '.join(LEVELS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")


def content(level: str, split: str) -> Content:
    check(level, split)
    if split == "train" or level == "L1":
        return Content(level, split, TRAIN_COMBOS, (), "train", "base")
    if level == "L2":
        heldout = tuple(sorted(HELDOUT_COMBOS))
        return Content(level, split, TRAIN_COMBOS + heldout, heldout, "heldout", "base")
    if level == "L3":
        return Content(level, split, TRAIN_COMBOS + UNSEEN_COMBOS, UNSEEN_COMBOS, "train", "base")
    return Content(level, split, TRAIN_COMBOS, (), "train", "heldout")


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the parts' text, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def episode_rng(family: str, level: str, split: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(stable_seed("episode", family, level, split, int(seed)))
