"""Instructions in words no template produces: a paraphrase generator driven by the episode's goal.

``reword(episode, wording)`` writes the instruction of an episode from its structured goal
(``Episode.goal``, the family and the scene), never from the template's text:

- ``wording="templates"``: the episode's own instruction (the task templates), unchanged;
- ``wording="train"``: what demonstration data may use (``embodied datagen phrasing=train``);
- ``wording="dev"``: held out for measuring (``embodied eval phrasing=dev``); ``datagen``
  refuses it. Its constructions (sentence skeletons) are disjoint from train's, and so are
  many of its words (verbs, politeness, container and object wordings): see
  ``tests/test_phrasing.py``.

A *construction* is a skeleton such as ``"{PUT_IN} {objs} {INTO} {c}"``: upper-case slots
are lexical categories (every category exists in both wordings, each with its own words:
``LEXICON``), lower-case slots are the goal's parts (object descriptions, containers,
locations, relations, ordered lists). Then, per wording: object descriptions ("the red
block", "the red one" when red is unique on the table, "the cube that is red"), politeness
before and after, clause order, typos in words the plan does not need, capitals and end
punctuation. Structure varies, not only synonyms: fronted phrases ("on top of the red cube,
put ..."), goal statements ("the red cube should go into the tray"), passives, relative
clauses ("..., which should sit on ..."), "except" / "but not" / "don't touch X, but ...",
order words ("first", "then", "finally", "from the top down", "after putting ..."), object
roles that do not follow the order of mention ("put the red cube under the blue cylinder"
is not among them, but "with the blue cube on its right", "use X as the base for Y" are).

The words are drawn from ``random.Random(stable_seed("phrasing", wording, family, level,
split, seed))``: deterministic per episode and independent of the scene's RNG, so the same
seed gives the same scene whatever the wording (``embodied compare`` pairs them). Train
wording never renders one of the family's held-out (L2) or L4 templates; dev wording never
renders any template of the family.

Why one ~720-line module: about half of it is data (the lexicon and the constructions, one
per line), kept beside the few functions that read it so that a new construction is one line
in one file; the train/dev split is checked by ``tests/test_phrasing.py``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from embodied.core import vocab
from embodied.core.errors import ConfigError
from embodied.core.plan import PUT_PREPOSITIONS, VERBS
from envs.levels import stable_seed
from envs.tasks.base import Episode, renders

WORDINGS: tuple[str, ...] = ("templates", "train", "dev")
REWORDED: tuple[str, ...] = ("train", "dev")
DATA_WORDINGS: tuple[str, ...] = ("templates", "train")  # what training data may use; never dev


def grammar_words() -> frozenset[str]:
    """Words of the plan grammar (verbs, prepositions, colours, shapes, containers, locations)."""
    words: set[str] = set(VERBS) | set(vocab.COLOURS) | set(vocab.SHAPES) | {"tray", "bin", "to"}
    for phrase in list(PUT_PREPOSITIONS) + list(vocab.LOCATIONS):
        words.update(phrase.split())
    return frozenset(words)


# Words that carry the meaning of a construction (roles, order, negation): typos never touch them.
MEANING_WORDS: frozenset[str] = frozenset(
    """except but not don't dont do no none nothing only other others rest else remaining left everything
    all every each any anything whatever under underneath below beneath above over onto top bottom
    middle between base first then next last finally after before afterwards highest lowest end
    start starting leftmost rightmost side its it them they their same colour color matches match
    leave keep stays stay skip skipping save minus exception apart besides excluding than
    without with from up down reading towards toward where is should be has needs must into onto inside atop
    that which""".split()
)

# Distinctive words of the held-out (L2) templates: train wording keeps away from them, so that L2
# still measures phrasing the model never trained on (dev wording may use them).
L2_PHRASES: tuple[str, ...] = (
    "inside", "balance", "sitting", "pile", "from the bottom up", "same-coloured", "tidy", "belongs", "bring",
    "area", "end up", "position", "find each", "spread", "apart from", "straight line", "going", "drop",
)

# --- words --------------------------------------------------------------------------------
# Every category exists in both wordings; their words differ (some overlap, as in life).
LEXICON: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "PUT": ("put", "place", "set", "pop", "stick"),
        "PUT_IN": ("put", "place", "pop", "stick", "toss", "move"),
        "PUT_PP": ("put", "placed", "set"),
        "MOVE": ("move", "slide", "take", "push", "shift", "carry"),
        "MOVED_PP": ("moved", "taken", "slid"),
        "PICK": ("pick up", "grab", "take", "lift"),
        "STACK": ("stack", "stack up"),
        "STACKED_PP": ("stacked", "placed", "put"),
        "PUTTING": ("putting", "placing", "setting"),
        "BUILD": ("build", "make", "put together"),
        "TOWER": ("tower", "stack"),
        "LINE": ("line up", "arrange", "put", "lay out"),
        "ROW": ("row", "line"),
        "SORT": ("sort", "group", "organise", "organize"),
        "GATHER": ("gather", "collect", "round up", "get"),
        "UNSTACK": ("unstack", "take apart", "break up", "undo"),
        "CLEAR": ("clear", "clean up", "clear up"),
        "TOUCH": ("touch", "move"),
        "LEAVE": ("leave", "keep"),
        "INTO": ("into", "in"),
        "ON": ("on", "onto", "on top of", "atop"),
        "AT": ("at", "in", "over at"),
        "UNDER": ("under", "underneath", "below"),
        "FROM": ("from", "counting from"),
        "SHOULD": ("should", "needs to", "has to", "must"),
        "WANT": ("i want", "i'd like", "i need"),
        "FIRST": ("first", "to start,", "first of all,"),
        "THEN": ("then", "and then", "after that", "next"),
        "FINALLY": ("finally", "lastly", "last of all"),
        "AFTER": ("after", "once you are done"),
        "EXCEPT": ("except", "but", "other than", "besides", "excluding", "except for"),
        "REST": ("the rest", "everything else", "all the others", "the other objects"),
        "OUT": ("on the table", "where it is", "out"),
        "THING": ("thing", "object", "item", "piece"),
        "THINGS": ("things", "objects", "items", "pieces"),
        "BIN": ("bin", "container", "bucket"),
        "BINS": ("bins", "containers", "buckets"),
        "TABLE": ("the table", "the tabletop"),
        "BOTTOM_UP": ("from bottom to top", "bottom first", "starting at the bottom", "bottom to top"),
        "TOP_DOWN": ("from the top down", "top first", "from top to bottom", "listed from the top"),
        "JOIN": (" and ", ", then ", ", and also "),
        "PRE": ("please", "could you", "can you", "i'd like you to", "go ahead and", "now", "ok,", "robot,", "would you"),
        "POST": (", please", " please", " for me", ", thanks", " now", " thank you"),
    },
    "dev": {
        "PUT": ("plonk", "lay", "rest", "sit"),
        "PUT_IN": ("stow", "deposit", "tuck", "chuck", "plonk"),
        "PUT_PP": ("stowed", "deposited", "tucked"),
        "MOVE": ("relocate", "nudge", "haul", "scoot"),
        "MOVED_PP": ("relocated", "shifted", "nudged"),
        "PICK": ("fetch", "seize", "take hold of"),
        "STACK": ("heap", "pile", "perch"),
        "STACKED_PP": ("rested", "perched", "sat"),
        "PUTTING": ("laying", "resting", "plonking"),
        "BUILD": ("assemble", "form", "erect"),
        "TOWER": ("tower", "column"),
        "LINE": ("align", "set out", "space out"),
        "ROW": ("row", "straight line"),
        "SORT": ("separate", "divide", "split"),
        "GATHER": ("scoop up", "round up", "herd"),
        "UNSTACK": ("dismantle", "flatten", "take down"),
        "CLEAR": ("empty the table", "clear off everything", "tidy it all"),
        "TOUCH": ("disturb", "handle"),
        "LEAVE": ("ignore", "spare"),
        "INTO": ("inside", "in", "into"),
        "ON": ("on", "onto", "on top of"),
        "AT": ("at", "in"),
        "UNDER": ("beneath", "under"),
        "FROM": ("reading from", "running from", "going from"),
        "SHOULD": ("ought to", "is supposed to", "would need to"),
        "WANT": ("i'm hoping to see", "i would love", "what i need is"),
        "FIRST": ("to begin,", "initially"),
        "THEN": ("afterwards", "subsequently", "after which"),
        "FINALLY": ("to finish", "at the end"),
        "AFTER": ("once you have finished", "as soon as you are done"),
        "EXCEPT": ("save for", "with the exception of", "minus", "but not", "apart from"),
        "REST": ("the remaining ones", "whatever is left", "all remaining objects"),
        "OUT": ("in its place", "untouched"),
        "THING": ("bit", "toy", "shape"),
        "THINGS": ("bits", "toys", "shapes"),
        "BIN": ("bin", "basket", "tub"),
        "BINS": ("bins", "baskets", "tubs"),
        "TABLE": ("the table surface", "the work surface"),
        "BOTTOM_UP": ("base first", "working upwards", "lowest first", "from the bottom up"),
        "TOP_DOWN": ("highest first", "starting from the top", "top downwards"),
        "JOIN": ("; also ", ", followed by ", ", plus "),
        "PRE": ("kindly", "if you could,", "hey there,", "would you be so kind as to", "time to", "let's"),
        "POST": (", cheers", " if you don't mind", " when you can", ", ta", " whenever you are ready"),
    },
}
QUESTION_PREFIXES = ("could you", "can you", "would you", "would you be so kind as to")

DESCRIPTOR_WORDS = ("one", "thing", "piece", "object", "bit", "toy", "shape", "coloured", "ones", "things", "objects")
SHAPE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {  # other names of training shapes
    "train": {"cube": ("block", "box"), "cylinder": ("tube", "round block"), "triangle": ("triangular block", "wedge")},
    "dev": {"cube": ("cube",), "cylinder": ("cylinder",), "triangle": ("triangle",)},
}
CONTAINER_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"tray": ("tray", "tray", "grey tray", "gray tray"), "bin": ("bin", "bin", "container", "bucket")},
    "dev": {"tray": ("tray", "tray", "large tray"), "bin": ("bin", "bin", "basket", "tub")},
}
LOCATION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "top left": ("the top left", "the top left corner", "the upper left corner", "the far left corner"),
        "top right": ("the top right", "the top right corner", "the upper right corner", "the far right corner"),
        "bottom left": ("the bottom left", "the bottom left corner", "the lower left corner", "the near left corner"),
        "bottom right": ("the bottom right", "the bottom right corner", "the lower right corner", "the near right corner"),
        "center": ("the center", "the centre", "the middle", "the middle of the table", "the center of the table"),
        "top center": ("the top center", "the top centre", "the top middle", "the middle of the top edge"),
        "bottom center": ("the bottom center", "the bottom centre", "the bottom middle", "the middle of the bottom edge"),
    },
    "dev": {
        "top left": ("the top left", "the corner at the top left", "the top left part of the table"),
        "top right": ("the top right", "the corner at the top right", "the top right part of the table"),
        "bottom left": ("the bottom left", "the corner at the bottom left", "the bottom left part of the table"),
        "bottom right": ("the bottom right", "the corner at the bottom right", "the bottom right part of the table"),
        "center": ("the center", "the very middle", "the exact centre"),
        "top center": ("the top center", "the middle of the top side", "the top, in the middle"),
        "bottom center": ("the bottom center", "the middle of the bottom side", "the bottom, in the middle"),
    },
}
RELATION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "left of": ("to the left of", "left of", "on the left of", "on the left side of", "just left of"),
        "right of": ("to the right of", "right of", "on the right of", "on the right side of", "just right of"),
        "in front of": ("in front of", "just in front of", "in front of"),
        "behind": ("behind", "just behind", "in back of", "on the far side of"),
    },
    "dev": {
        "left of": ("to the left side of", "at the left of", "immediately left of"),
        "right of": ("to the right side of", "at the right of", "immediately right of"),
        "in front of": ("in front of", "directly in front of"),
        "behind": ("behind", "directly behind", "at the back of"),
    },
}
# Where the anchor ends up, seen from the object put down: "with the blue cube on its right" = left of it.
ANCHOR_SIDE: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"left of": ("on its right",), "right of": ("on its left",), "in front of": ("behind it",), "behind": ("in front of it",)},
    "dev": {"left of": ("to its right",), "right of": ("to its left",), "in front of": ("directly behind it",),
            "behind": ("directly in front of it",)},
}


@dataclass(frozen=True)
class Construction:
    """A sentence skeleton. ``n``: only for ordered goals of that length; ``attribute``: only
    for that grouping attribute; ``imperative``: politeness may go in front."""

    id: str
    skeleton: str
    imperative: bool = True
    n: int | None = None
    attribute: str | None = None


def C(id: str, skeleton: str, imperative: bool = True, n: int | None = None, attribute: str | None = None) -> Construction:
    return Construction(id, skeleton, imperative, n, attribute)


# Per family and wording. Lower-case slots (the goal): objs, it (it/them), o, b (stack: object, base),
# x0.. (tower / row, bottom / first first), bu / td (tower listed bottom-up / top-down), lst / rlst (row listed
# in / against its direction), start / end (row: "left"/"right"), dirn / opp (row direction / its reverse),
# c (container), loc (location), rel (relation), side (where the anchor ends up), a (anchor), vt / v1 (the group
# value: "red things" / "red thing", "cubes" / "cube"), value, k (what clean-up keeps), enum_* (sort: each
# colour with its bin).
CONSTRUCTIONS: dict[str, dict[str, tuple[Construction, ...]]] = {
    "put_in_container": {
        "train": (
            C("pic.t1", "{PUT_IN} {objs} {INTO} {c}"),
            C("pic.t2", "{PICK} {objs} and {PUT_IN} {it} {INTO} {c}"),
            C("pic.t3", "{objs} {SHOULD} go {INTO} {c}", False),
            C("pic.t4", "{WANT} {objs} {INTO} {c}", False),
            C("pic.t5", "{INTO} {c} with {objs}", False),
            C("pic.t6", "{c} {SHOULD} contain {objs}", False),
            C("pic.t7", "{objs} {INTO} {c}", False),
            C("pic.t8", "{FIRST} {PICK} {objs}, {THEN} {PUT_IN} {it} {INTO} {c}", False),
            C("pic.t9", "{PUT_IN} {objs} away {INTO} {c}"),
        ),
        "dev": (
            C("pic.d1", "{c} is where {objs} {SHOULD} end up", False),
            C("pic.d2", "{objs} {SHOULD} be {PUT_PP} {INTO} {c}", False),
            C("pic.d3", "can {objs} go {INTO} {c}?", False),
            C("pic.d4", "{PICK} {objs}, carry {it} over to {c} and let go", False),
            C("pic.d5", "the place for {objs} is {INTO} {c}", False),
        ),
    },
    "stack": {
        "train": (
            C("stk.t1", "{PUT} {o} {ON} {b}"),
            C("stk.t2", "{ON} {b}, {PUT} {o}", False),
            C("stk.t3", "{o} {SHOULD} be {ON} {b}", False),
            C("stk.t4", "{b} {SHOULD} be {UNDER} {o}", False),
            C("stk.t5", "{STACK} {b} and {o}, with {o} on top"),
            C("stk.t6", "use {b} as the base for {o}"),
            C("stk.t7", "{PICK} {o} and {PUT} {it} {ON} {b}"),
            C("stk.t8", "{WANT} {o} {ON} {b}", False),
        ),
        "dev": (
            C("stk.d1", "{b} {SHOULD} have {o} on top of it", False),
            C("stk.d2", "{o} {SHOULD} be {STACKED_PP} {ON} {b}", False),
            C("stk.d3", "{b} goes at the bottom and {o} goes on it", False),
            C("stk.d4", "with {b} {UNDER}, {PUT} {o} {ON} it", False),
            C("stk.d5", "{PUT} {o} down so that it rests on {b}"),
        ),
    },
    "tower": {
        "train": (
            C("twr.t1", "{BUILD} a {TOWER} of {bu}, {BOTTOM_UP}"),
            C("twr.t2", "{BUILD} a {TOWER} of {td}, {TOP_DOWN}"),
            C("twr.t3", "{BUILD} a {TOWER} with {x0} at the bottom, {x1} in the middle and {x2} on top", n=3),
            C("twr.t4", "{BUILD} a {TOWER} with {x2} on top, {x1} in the middle and {x0} at the bottom", n=3),
            C("twr.t5", "{x1} in the middle, {x2} on top and {x0} at the bottom", False, n=3),
            C("twr.t6", "{PUT} {x1} {ON} {x0}, {THEN} {x2} {ON} {x1}", n=3),
            C("twr.t7", "{STACK} {x2} {ON} {x1} {AFTER} {PUTTING} {x1} {ON} {x0}", n=3),
            C("twr.t8", "{FIRST} {PUT} {x0} down, {THEN} {STACK} {x1} {ON} it and {FINALLY} {x2} {ON} {x1}", False, n=3),
            C("twr.t9", "{x2} {SHOULD} sit on {x1}, which {SHOULD} sit on {x0}", False, n=3),
            C("twr.t10", "the {TOWER} {SHOULD} have {x0} at the bottom, {x2} on top and {x1} in between", False, n=3),
            C("twr.t11", "{BUILD} a {TOWER}: {x0} at the bottom, then {x1}, then {x2}, and {x3} on top", n=4),
        ),
        "dev": (
            C("twr.d1", "{x0} is the base, {x1} goes on it, and {x2} goes on top of that", False, n=3),
            C("twr.d2", "{STACK} {x2} onto {x1} and {x1} onto {x0}", n=3),
            C("twr.d3", "{x1} goes between {x0} below and {x2} above", False, n=3),
            C("twr.d4", "the highest {THING} {SHOULD} be {x2} and the lowest {x0}, with {x1} in the middle", False, n=3),
            C("twr.d5", "a {TOWER}, {TOP_DOWN}: {td}", False),
            C("twr.d6", "a {TOWER}, {BOTTOM_UP}: {bu}", False),
        ),
    },
    "sort_by_colour": {
        "train": (
            C("srt.t1", "{SORT} the {THINGS} by colour into the {BINS}"),
            C("srt.t2", "{PUT_IN} each {THING} {INTO} the {BIN} of the same colour"),
            C("srt.t3", "{PUT_IN} {enum_ones}"),
            C("srt.t4", "every {THING} goes {INTO} the {BIN} that matches its colour", False),
            C("srt.t5", "{SORT} the {THINGS}, each colour {INTO} its own {BIN}"),
            C("srt.t6", "{enum_ones}", False),
        ),
        "dev": (
            C("srt.d1", "{enum_anything}", False),
            C("srt.d2", "each {BIN} {SHOULD} hold the {THINGS} of its own colour", False),
            C("srt.d3", "{SORT} the {THINGS} so that every colour ends up in its own {BIN}"),
            C("srt.d4", "the {THINGS} need sorting into {BINS} so the colours agree", False),
            C("srt.d5", "match every {THING} with the {BIN} of its colour"),
        ),
    },
    "move_to_location": {  # one clause per move, joined
        "train": (
            C("mov.t1", "{MOVE} {o} to {loc}"),
            C("mov.t2", "{PUT} {o} {AT} {loc}"),
            C("mov.t3", "{o} {SHOULD} go to {loc}", False),
            C("mov.t4", "{o} to {loc}", False),
            C("mov.t5", "{WANT} {o} {AT} {loc}", False),
            C("mov.t6", "{PICK} {o} and {PUT} {it} {AT} {loc}"),
            C("mov.t7", "over to {loc} with {o}", False),
        ),
        "dev": (
            C("mov.d1", "{loc} is where {o} {SHOULD} be", False),
            C("mov.d2", "{o} has to be {MOVED_PP} to {loc}", False),
            C("mov.d3", "can {o} go {AT} {loc}?", False),
            C("mov.d4", "get {o} over to {loc}"),
        ),
    },
    "place_relative": {  # one clause per relation, joined
        "train": (
            C("rel.t1", "{PUT} {o} {rel} {a}"),
            C("rel.t2", "{rel} {a}, {PUT} {o}", False),
            C("rel.t3", "{o} {SHOULD} be {rel} {a}", False),
            C("rel.t4", "{PUT} {o} down with {a} {side}"),
            C("rel.t5", "{PICK} {o} and {PUT} {it} {rel} {a}"),
            C("rel.t6", "{WANT} {o} {rel} {a}", False),
        ),
        "dev": (
            C("rel.d1", "{o} goes {rel} {a}", False),
            C("rel.d2", "{rel} {a} is where {o} {SHOULD} go", False),
            C("rel.d3", "{PUT} {o} so that {a} ends up {side}"),
        ),
    },
    "group_by_attribute": {
        "train": (
            C("grp.t1", "{PUT_IN} all the {vt} {INTO} {c}"),
            C("grp.t2", "{vt} {INTO} {c}", False),
            C("grp.t3", "{c} {SHOULD} get every {v1}", False),
            C("grp.t4", "{GATHER} the {vt} and {PUT_IN} them {INTO} {c}"),
            C("grp.t5", "everything that is {value} goes {INTO} {c}", False, attribute="colour"),
            C("grp.t6", "{PUT_IN} any {v1} you see {INTO} {c}"),
        ),
        "dev": (
            C("grp.d1", "{c} is for the {vt}, so {PUT_IN} them all there", False),
            C("grp.d2", "anything {value} {SHOULD} be in {c}", False, attribute="colour"),
            C("grp.d3", "every single {v1} has to be {PUT_PP} {INTO} {c}", False),
            C("grp.d4", "{GATHER} whatever is {value} and {PUT_IN} it {INTO} {c}", attribute="colour"),
        ),
    },
    "unstack": {
        "train": (
            C("uns.t1", "{UNSTACK} everything"),
            C("uns.t2", "{PUT} every stacked {THING} on {TABLE}"),
            C("uns.t3", "no {THING} {SHOULD} be on top of another", False),
            C("uns.t4", "make every {THING} stand on {TABLE} by itself"),
            C("uns.t5", "{PICK} the top {THINGS} off and {PUT} them on {TABLE}"),
            C("uns.t6", "{UNSTACK} the stacks so every {THING} is on {TABLE}"),
        ),
        "dev": (
            C("uns.d1", "nothing {SHOULD} stay stacked", False),
            C("uns.d2", "i don't want anything resting on anything else", False),
            C("uns.d3", "every {THING} on {TABLE}, none on top of another", False),
            C("uns.d4", "could the stacks be taken down?", False),
        ),
    },
    "line_up": {
        "train": (
            C("lin.t1", "{LINE} {lst} in a {ROW} {FROM} {dirn}"),
            C("lin.t2", "{LINE} {rlst} in a {ROW} {FROM} {opp}"),
            C("lin.t3", "make a {ROW} with {x0} on the {start}, {x1} in the middle and {x2} on the {end}", n=3),
            C("lin.t4", "{x2} on the {end}, {x0} on the {start} and {x1} between them, in a {ROW}", False, n=3),
            C("lin.t5", "{FIRST} {PUT} {x0} down, {THEN} {x1} to its {end}, and {FINALLY} {x2} to the {end} of {x1}", False, n=3),
            C("lin.t6", "{PUT} {x1} to the {end} of {x0} and {x2} to the {end} of {x1}", n=3),
        ),
        "dev": (
            C("lin.d1", "starting on the {start}, {LINE} {lst}"),
            C("lin.d2", "in a {ROW}: {x0} at the {start} end, {x2} at the {end} end, {x1} in between", False, n=3),
            C("lin.d3", "a {ROW} that reads {rlst} {FROM} the {end}", False),
            C("lin.d4", "{x1} goes between {x0} and {x2}, and {x0} is on the {start}", False, n=3),
        ),
    },
    "clean_up_except": {
        "train": (
            C("cue.t1", "{PUT_IN} everything {EXCEPT} {k} {INTO} {c}"),
            C("cue.t2", "{PUT_IN} all the {THINGS} {INTO} {c} {EXCEPT} {k}"),
            C("cue.t3", "{PUT_IN} all {THINGS} {EXCEPT} {k} {INTO} {c}"),
            C("cue.t4", "{k} stays {OUT}; {PUT_IN} {REST} {INTO} {c}", False),
            C("cue.t5", "{LEAVE} {k} {OUT} and {PUT_IN} {REST} {INTO} {c}"),
            C("cue.t6", "don't {TOUCH} {k}, but {PUT_IN} {REST} {INTO} {c}", False),
            C("cue.t7", "{c} {SHOULD} get everything {EXCEPT} {k}", False),
            C("cue.t8", "{EXCEPT} {k}, {PUT_IN} everything {INTO} {c}", False),
            C("cue.t9", "{CLEAR} everything {INTO} {c} but {LEAVE} {k} {OUT}"),
        ),
        "dev": (
            C("cue.d1", "{k} is the only {THING} that stays out of {c}; everything else goes in", False),
            C("cue.d2", "everything {EXCEPT} {k} {SHOULD} be {PUT_PP} {INTO} {c}", False),
            C("cue.d3", "fill {c} with everything {EXCEPT} {k}"),
            C("cue.d4", "{k} is not to go {INTO} {c}, but all the others are", False),
            C("cue.d5", "all but {k} {INTO} {c}", False),
        ),
    },
}
CLAUSE_FAMILIES = frozenset({"move_to_location", "place_relative"})

# How often the decorations apply, per wording.
RATES: dict[str, dict[str, float]] = {
    "train": {"pre": 0.25, "post": 0.2, "typo": 0.15, "capital": 0.3, "period": 0.2, "bang": 0.05},
    "dev": {"pre": 0.25, "post": 0.2, "typo": 0.1, "capital": 0.3, "period": 0.3, "bang": 0.0},
}


@dataclass
class Rewording:
    """A reworded instruction and how it was made (for tests and reports)."""

    text: str
    constructions: list[str] = field(default_factory=list)  # construction ids, one per clause
    mentions: dict[str, str] = field(default_factory=dict)  # object name -> its description in the text
    slots: list[str] = field(default_factory=list)  # the goal slots filled, in the order they were written


def check_wording(wording: str, allowed: tuple[str, ...] = WORDINGS) -> str:
    if wording not in allowed:
        extra = " (dev wording is held out: training data never uses it)" if wording == "dev" and "dev" not in allowed else ""
        raise ConfigError(f"unknown phrasing {wording!r}; choose one of {', '.join(allowed)}{extra}")
    return wording


def reword(episode: Episode, wording: str) -> str:
    """The instruction of ``episode`` in ``wording`` (``templates``: the episode's own)."""
    check_wording(wording)
    if wording == "templates":
        return episode.instruction
    return rewording(episode, wording).text


def constructions(family: str, wording: str) -> tuple[Construction, ...]:
    return CONSTRUCTIONS[family][wording]


def rewording(episode: Episode, wording: str, plain: bool = False, construction: str | None = None) -> Rewording:
    """Reword ``episode``; ``plain``: the first word of every category, canonical names, no decoration
    (for reading a construction's meaning); ``construction``: use that one (every clause)."""
    check_wording(wording, REWORDED)
    if episode.family not in CONSTRUCTIONS:
        raise ConfigError(f"no constructions for family {episode.family!r}")
    from envs.tasks import get_task

    task = get_task(episode.family)
    banned = task.heldout_templates() + (task.phrasings if wording == "dev" else ())
    rng = random.Random(stable_seed("phrasing", wording, episode.family, episode.level, episode.split, episode.seed))
    for _ in range(50):
        r = _Speaker(episode, wording, rng, plain).say(construction)
        if plain or not any(renders(t, r.text) for t in banned):
            return r
    raise ConfigError(f"could not reword {episode.family} seed {episode.seed} without a template")  # pragma: no cover


# --- the speaker ---------------------------------------------------------------------------
_SLOT = re.compile(r"\{([A-Za-z_0-9]+)\}")


class _Speaker:
    def __init__(self, episode: Episode, wording: str, rng: random.Random, plain: bool):
        self.ep, self.w, self.rng, self.plain = episode, wording, rng, plain
        self.lex = LEXICON[wording]
        self.mentions: dict[str, str] = {}
        self.slots: list[str] = []
        colours = [o.colour for o in episode.scene.objects]
        self.unique_colour = {c for c in colours if colours.count(c) == 1}

    # choices ----------------------------------------------------------------------------
    def pick(self, options):
        options = list(options)
        return options[0] if self.plain else options[self.rng.randrange(len(options))]

    def word(self, cat: str) -> str:
        return self.pick(self.lex[cat])

    def chance(self, p: float) -> bool:
        return (not self.plain) and self.rng.random() < p

    # the goal's parts -----------------------------------------------------------------------
    def obj(self, name: str) -> str:
        if name in self.mentions:
            return self.mentions[name]
        colour, shape = name.split(" ", 1)
        desc = f"the {name}"
        if not self.plain:
            u = self.rng.random()
            syn = SHAPE_WORDS[self.w].get(shape)
            if self.w == "train":
                if u < 0.2 and syn:
                    desc = f"the {colour} {self.pick(syn)}"
                elif u < 0.35 and colour in self.unique_colour:
                    desc = f"the {colour} {self.pick(DESCRIPTOR_WORDS[:4])}"
                elif u < 0.42:
                    desc = f"the {self.pick(syn) if syn and self.rng.random() < 0.5 else shape} {self.pick(('that is', 'which is', 'that is coloured'))} {colour}"
                elif u < 0.47:
                    desc = f"that {name}"
            else:
                if u < 0.15 and colour in self.unique_colour:
                    desc = f"the {colour} {self.pick(DESCRIPTOR_WORDS[4:7])}"
                elif u < 0.3:
                    desc = f"the {shape} in {colour}"
                elif u < 0.4:
                    desc = f"the {colour} coloured {shape}"
        self.mentions[name] = desc
        return desc

    def container(self, name: str) -> str:
        words = CONTAINER_WORDS[self.w]
        if name == "tray":
            return "the " + self.pick(words["tray"])
        colour = name.split()[0]
        return f"the {colour} {self.pick(words['bin'])}"

    def objects(self, names: list[str]) -> str:
        descs = [self.obj(n) for n in names]
        return descs[0] if len(descs) == 1 else self.listing(descs)

    def listing(self, items: list[str]) -> str:
        if len(items) == 1:
            return items[0]
        last = ", and " if (self.w == "dev" and len(items) > 2) else " and "
        return ", ".join(items[:-1]) + last + items[-1]

    # a construction ------------------------------------------------------------------------
    def fill(self, skeleton: str, fields: dict) -> str:
        def repl(m):
            key = m.group(1)
            if key.isupper():
                return self.word(key)
            value = fields[key]
            self.slots.append(key)
            return value() if callable(value) else value

        return _SLOT.sub(repl, skeleton)

    def choose(self, family: str, construction: str | None, n: int | None = None, attribute: str | None = None) -> Construction:
        pool = [c for c in CONSTRUCTIONS[family][self.w]
                if (c.n is None or c.n == n) and (c.attribute is None or c.attribute == attribute)]
        if construction is not None:
            named = [c for c in pool if c.id == construction]
            if not named:
                raise ConfigError(f"construction {construction!r} does not apply to this {family} goal")
            return named[0]
        return self.pick(pool)

    def say(self, construction: str | None) -> Rewording:
        ep, g = self.ep, self.ep.goal
        fam = ep.family
        used: list[Construction] = []
        if fam in CLAUSE_FAMILIES:
            clauses = []
            items = g["moves"] if fam == "move_to_location" else g["relations"]
            for item in items:
                con = self.choose(fam, construction)
                used.append(con)
                clauses.append(self.fill(con.skeleton, self.fields(fam, g, item)))
            text = clauses[0]
            for clause in clauses[1:]:  # a question mark only at the very end
                text = text.rstrip("?") + self.word("JOIN") + clause
        else:
            n = len(g["order"]) if "order" in g else None
            con = self.choose(fam, construction, n=n, attribute=g.get("attribute"))
            used.append(con)
            text = self.fill(con.skeleton, self.fields(fam, g, None))
        text = self.decorate(_tidy(text), used[0].imperative)
        return Rewording(text, [c.id for c in used], dict(self.mentions), list(self.slots))

    def fields(self, fam: str, g: dict, item) -> dict:
        f: dict = {}
        if fam == "put_in_container":
            f = {"objs": lambda: self.objects(g["objects"]), "it": "them" if len(g["objects"]) > 1 else "it",
                 "c": lambda: self.container(g["container"])}
        elif fam == "stack":
            f = {"o": lambda: self.obj(g["object"]), "b": lambda: self.obj(g["base"]), "it": "it"}
        elif fam == "tower":
            order = g["order"]
            f = {f"x{i}": (lambda n=n: self.obj(n)) for i, n in enumerate(order)}
            f["bu"] = lambda: self.listing([self.obj(n) for n in order])
            f["td"] = lambda: self.listing([self.obj(n) for n in reversed(order)])
        elif fam == "sort_by_colour":
            bins = g["bins"]
            f = {"enum_ones": lambda: self.listing([f"the {b.split()[0]} {self.pick(('ones', 'things', 'objects'))} "
                                                    f"{self.word('INTO')} {self.container(b)}" for b in bins]),
                 "enum_anything": lambda: ", ".join(f"anything {b.split()[0]} {self.word('INTO')} {self.container(b)}" for b in bins)}
        elif fam == "move_to_location":
            o, loc = item
            f = {"o": lambda: self.obj(o), "it": "it", "loc": lambda: self.pick(LOCATION_WORDS[self.w][loc])}
        elif fam == "place_relative":
            o, rel, a = item
            f = {"o": lambda: self.obj(o), "a": lambda: self.obj(a), "it": "it",
                 "rel": lambda: self.pick(RELATION_WORDS[self.w][rel]), "side": lambda: self.pick(ANCHOR_SIDE[self.w][rel])}
        elif fam == "group_by_attribute":
            v = g["value"]
            if g["attribute"] == "colour":
                f = {"vt": lambda: f"{v} {self.word('THINGS')}", "v1": lambda: f"{v} {self.word('THING')}", "value": v}
            else:
                f = {"vt": f"{v}s", "v1": v, "value": f"a {v}"}
            f["c"] = lambda: self.container(g["container"])
        elif fam == "line_up":
            order = g["order"]
            ltr = g["direction"] == "left to right"
            f = {f"x{i}": (lambda n=n: self.obj(n)) for i, n in enumerate(order)}
            f["lst"] = lambda: self.listing([self.obj(n) for n in order])
            f["rlst"] = lambda: self.listing([self.obj(n) for n in reversed(order)])
            f["start"], f["end"] = ("left", "right") if ltr else ("right", "left")
            f["dirn"] = g["direction"]
            f["opp"] = "right to left" if ltr else "left to right"
        elif fam == "clean_up_except":
            if "keep_colour" in g:
                col = g["keep_colour"]
                k = (lambda: f"the {col} {self.pick(('ones', 'things', 'objects'))}") if self.w == "train" else \
                    (lambda: f"whatever is {col}")
            else:
                k = lambda: self.objects(g["keep"])  # noqa: E731
            f = {"k": k, "c": lambda: self.container(g["container"])}
        return f

    # decoration -----------------------------------------------------------------------------
    def decorate(self, text: str, imperative: bool) -> str:
        rates = RATES[self.w]
        question = text.endswith("?")
        if imperative and self.chance(rates["pre"]):
            pre = self.word("PRE")
            question = question or pre in QUESTION_PREFIXES
            text = f"{pre} {text}"
        if self.chance(rates["post"]):
            post = self.word("POST")
            if not ("please" in post and "please" in text):
                text = text.rstrip("?") + post
        if self.chance(rates["typo"]):
            text = typo(text, self.rng, self.w)
        if question:
            text = text.rstrip("?") + "?"
        elif self.chance(rates["period"]):
            text += "."
        elif self.chance(rates["bang"]):
            text += "!"
        if self.chance(rates["capital"]):
            text = text[:1].upper() + text[1:]
        return text


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,;:?])", r"\1", text)


def typo(text: str, rng: random.Random, wording: str = "train") -> str:
    """One typo in one word of at least 4 letters that is neither a plan-grammar word nor a word
    that carries the construction's meaning (``MEANING_WORDS``); ``text`` itself if there is none.
    Train swaps two neighbouring letters or drops one; dev doubles one or drops the word's last letter."""
    protected = _protected_words()
    words = text.split(" ")
    cands = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4 and w.lower() not in protected]
    if not cands:
        return text
    i = cands[rng.randrange(len(cands))]
    w = words[i]
    j = rng.randrange(1, len(w) - 1)
    if wording == "train":
        w = w[:j] + w[j + 1] + w[j] + w[j + 2:] if rng.random() < 0.5 else w[:j] + w[j + 1:]
    else:
        w = w[:j] + w[j] + w[j:] if rng.random() < 0.5 else w[:-1]
    words[i] = w
    return " ".join(words)


def _protected_words() -> frozenset[str]:
    """Grammar words, meaning words and every word of the object, container, location and relation wordings."""
    words = set(grammar_words()) | set(MEANING_WORDS) | set(DESCRIPTOR_WORDS)
    for table in (SHAPE_WORDS, CONTAINER_WORDS, LOCATION_WORDS, RELATION_WORDS, ANCHOR_SIDE):
        for per_wording in table.values():
            for options in per_wording.values():
                for phrase in options:
                    words.update(phrase.split())
    words.update(w + "s" for w in list(words))  # plurals: "cubes", "blocks"
    return frozenset(words)


def skeleton_key(skeleton: str) -> str:
    """A skeleton without punctuation and case: two constructions with the same key are one construction."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w{} ']", " ", skeleton.lower())).strip()


__all__ = ["WORDINGS", "REWORDED", "DATA_WORDINGS", "LEXICON", "CONSTRUCTIONS", "Construction", "Rewording",
           "reword", "rewording", "constructions", "check_wording", "typo", "grammar_words", "skeleton_key"]
