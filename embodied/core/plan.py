"""The plan language: one grammar, used by the oracle, the model, the controller and the bridge.

Grammar (canonical form, lower case, single spaces)::

    plan      := step ( "; " step )*
    step      := put | move | "done"
    put       := "put " OBJECT " " PUT_PREP " " TARGET
    PUT_PREP  := "on" | "in" | "left of" | "right of" | "in front of" | "behind"
    TARGET    := CONTAINER   if PUT_PREP is "in"
               | OBJECT      otherwise
    move      := "move " OBJECT " to " LOCATION
    OBJECT    := COLOUR " " SHAPE                     e.g. "red cube"
    CONTAINER := "tray" | COLOUR " bin"               e.g. "blue bin"
    LOCATION  := "top left" | "top right" | ... (embodied.core.vocab.LOCATIONS)

Examples: ``put red cube on blue cube``, ``put green cube in tray``,
``put red cylinder left of blue cube``, ``move yellow cube to top left``, ``done``.

``parse_step`` checks the grammar (``PlanSyntaxError``); ``validate_step`` checks a step
against what is in a scene (``UnknownObjectError``, ``IllegalStepError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from embodied.core.errors import IllegalStepError, PlanSyntaxError, UnknownObjectError
from embodied.core.vocab import COLOURS, LOCATIONS, RELATIONS, SHAPES

STEP_SEPARATOR = "; "
PUT_PREPOSITIONS: tuple[str, ...] = ("on", "in") + tuple(RELATIONS)
VERBS: tuple[str, ...] = ("put", "move", "done")


@dataclass(frozen=True)
class PlanStep:
    """One skill call. ``verb`` is put/move/done; the other fields are empty for done."""

    verb: str
    object: str = ""
    preposition: str = ""
    target: str = ""

    @property
    def text(self) -> str:
        if self.verb == "done":
            return "done"
        return f"{self.verb} {self.object} {self.preposition} {self.target}"

    @property
    def is_done(self) -> bool:
        return self.verb == "done"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> "PlanStep":
        return parse_step(text)


DONE = PlanStep("done")


def _take_object(words: list[str], i: int, text: str) -> tuple[str, int]:
    if i + 1 >= len(words):
        raise PlanSyntaxError(f"step {text!r}: expected '<colour> <shape>', got {' '.join(words[i:])!r}")
    colour, shape = words[i], words[i + 1]
    if colour not in COLOURS:
        raise PlanSyntaxError(f"step {text!r}: unknown colour {colour!r}; colours are {', '.join(COLOURS)}")
    if shape not in SHAPES:
        raise PlanSyntaxError(f"step {text!r}: unknown shape {shape!r}; shapes are {', '.join(SHAPES)}")
    return f"{colour} {shape}", i + 2


def _take_container(words: list[str], i: int, text: str) -> tuple[str, int]:
    if i < len(words) and words[i] == "tray":
        return "tray", i + 1
    if i + 1 < len(words) and words[i + 1] == "bin":
        if words[i] not in COLOURS:
            raise PlanSyntaxError(f"step {text!r}: unknown bin colour {words[i]!r}; colours are {', '.join(COLOURS)}")
        return f"{words[i]} bin", i + 2
    raise PlanSyntaxError(f"step {text!r}: after 'in' expected 'tray' or '<colour> bin'")


def parse_step(text: str) -> PlanStep:
    """Parse one step. Case and runs of whitespace are normalised; everything else is strict."""
    if not isinstance(text, str):
        raise PlanSyntaxError(f"a plan step must be text, got {type(text).__name__}")
    words = text.strip().lower().split()
    if not words:
        raise PlanSyntaxError("empty plan step; expected 'put ...', 'move ...' or 'done'")
    verb = words[0]
    if verb == "done":
        if len(words) != 1:
            raise PlanSyntaxError(f"step {text!r}: 'done' takes no arguments")
        return DONE
    if verb not in VERBS:
        raise PlanSyntaxError(f"step {text!r}: unknown verb {verb!r}; steps start with put, move or done")
    obj, i = _take_object(words, 1, text)
    rest = words[i:]
    if verb == "move":
        if not rest or rest[0] != "to":
            raise PlanSyntaxError(f"step {text!r}: expected 'move <object> to <location>'")
        location = " ".join(rest[1:])
        if location not in LOCATIONS:
            raise PlanSyntaxError(
                f"step {text!r}: unknown location {location!r}; locations are {', '.join(LOCATIONS)}"
            )
        return PlanStep("move", obj, "to", location)
    # verb == "put": find the longest preposition that matches
    prep = next((p for p in sorted(PUT_PREPOSITIONS, key=len, reverse=True) if rest[: len(p.split())] == p.split()), None)
    if prep is None:
        raise PlanSyntaxError(
            f"step {text!r}: expected a preposition after {obj!r}: one of {', '.join(PUT_PREPOSITIONS)}"
        )
    j = i + len(prep.split())
    if prep == "in":
        target, k = _take_container(words, j, text)
    else:
        target, k = _take_object(words, j, text)
    if k != len(words):
        raise PlanSyntaxError(f"step {text!r}: unexpected trailing words {' '.join(words[k:])!r}")
    return PlanStep("put", obj, prep, target)


def parse_plan(text: str) -> list[PlanStep]:
    """Parse a whole plan ``step; step; ...``. Empty pieces are an error."""
    pieces = [p for p in text.split(";")]
    return [parse_step(p) for p in pieces]


def format_plan(steps: Iterable[PlanStep]) -> str:
    return STEP_SEPARATOR.join(s.text for s in steps)


def validate_step(step: PlanStep, objects: Sequence[str], containers: Sequence[str]) -> PlanStep:
    """Check a parsed step against a scene: every name must be present, and the step legal."""
    if step.is_done:
        return step
    if step.object not in objects:
        raise UnknownObjectError(
            f"step {step.text!r}: there is no {step.object} in the scene; objects: {', '.join(sorted(objects)) or 'none'}"
        )
    if step.verb == "put":
        pool = containers if step.preposition == "in" else objects
        if step.target not in pool:
            kind = "container" if step.preposition == "in" else "object"
            raise UnknownObjectError(
                f"step {step.text!r}: there is no {kind} {step.target!r} in the scene; "
                f"{kind}s: {', '.join(sorted(pool)) or 'none'}"
            )
        if step.target == step.object:
            raise IllegalStepError(f"step {step.text!r}: an object cannot be placed relative to itself")
    return step


def valid_steps(objects: Sequence[str], containers: Sequence[str]) -> list[str]:
    """Every step text the grammar allows for a scene with these objects and containers.

    Used to build the token constraint for decoding; the list is finite and small.
    """
    out: list[str] = []
    for o in objects:
        for t in objects:
            if t != o:
                out.extend(f"put {o} {p} {t}" for p in PUT_PREPOSITIONS if p != "in")
        out.extend(f"put {o} in {c}" for c in containers)
        out.extend(f"move {o} to {loc}" for loc in LOCATIONS)
    out.append("done")
    return out
