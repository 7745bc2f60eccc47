"""Object aliases: plan for an object the model never saw under a name it knows.

A model trained from scratch reads an object name as the pair of words it saw together in
training; a colour-shape pair that never occurred there (``orange cube`` when training only
showed orange triangles and cylinders) is out of its distribution, and its plans for such
scenes fall apart. The planner therefore renames each perceived object whose name is not
among the checkpoint's ``known_objects`` to a known name of the **same colour** that nothing
in the observation already uses (``orange cube`` -> ``orange cylinder``), plans on the
renamed observation, and writes the real names back into every step. The colour is kept
because containers and colour-keyed tasks (bins, "the red objects") depend on it; the shape
is only a label, since the camera frames still show the object as it is.

A colour no known name has (an unseen colour, ``pink``) is first renamed as a word, in every
name and every text field at once (``pink cube``, ``pink bin``, "the pink things" -> ``red``),
to the known colour nearest in RGB that the observation does not mention at all; so the colour
stays consistent between objects, bins and instruction, and a step's alias colour can only mean
the renamed one. The object names are then aliased as above.

Objects with no free known name of their colour (every known name of that colour already in
the scene, or no free known colour) keep their names. ``ModelPlanner(object_aliases=False)``
(``embodied eval ... object_aliases=false``) switches this off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Iterable

from embodied.core.observation import Observation
from embodied.core.plan import PlanStep, parse_step
from embodied.core.vocab import COLOUR_RGBA, COLOURS, is_object_name, object_name_pattern


def _rename(text: str, mapping: dict[str, str]) -> str:
    return object_name_pattern().sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


@lru_cache(maxsize=1)
def _colour_pattern() -> re.Pattern:
    return re.compile(r"\b(?:%s)\b" % "|".join(COLOURS))


def _recolour(text: str, mapping: dict[str, str]) -> str:
    return _colour_pattern().sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def _texts(observation: Observation) -> list[str]:
    return [*observation.detections, observation.instruction, *observation.history,
            *observation.relations.keys(), *observation.relations.values()]


def _colour_aliases(known: list[str], observation: Observation) -> dict[str, str]:
    """Each colour word of the observation that no known name has -> the nearest (RGB) known colour
    the observation does not mention."""
    present = {c for text in _texts(observation) for c in _colour_pattern().findall(text)}
    known_colours = {k.split()[0] for k in known}
    free = sorted(known_colours - present)
    mapping: dict[str, str] = {}
    for colour in sorted(present - known_colours):
        if not free:
            break
        rgb = COLOUR_RGBA[colour][:3]
        best = min(free, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOUR_RGBA[c][:3], rgb)))
        mapping[colour] = best
        free.remove(best)
    return mapping


def _apply(observation: Observation, rename) -> Observation:
    """``observation`` with ``rename`` (text -> text) applied to every name and text field."""
    return replace(
        observation,
        instruction=rename(observation.instruction),
        history=[rename(h) for h in observation.history],
        detections=[rename(d) for d in observation.detections],
        relations={rename(k): rename(v) for k, v in observation.relations.items()},
    )


def _names_in(text: str) -> set[str]:
    return set(object_name_pattern().findall(text))


def _mentioned(observation: Observation, *texts: str) -> set[str]:
    """Every object name the observation (and ``texts``) perceives or mentions."""
    names = set(observation.detections)
    for text in [*_texts(observation), *texts]:
        names |= _names_in(text)
    return names


def _free_names(known: list[str], name: str, taken: set[str]) -> list[str]:
    """The known names of ``name``'s colour that nothing in ``taken`` uses, in ``known``'s order."""
    colour = name.split()[0]
    return [k for k in known if k.split()[0] == colour and k not in taken]


@dataclass(frozen=True)
class ObjectAliases:
    """Real name -> alias for the unknown objects of one observation (empty: nothing to rename).

    ``colours``: unseen colour -> known colour, applied as a word first; ``to_alias`` then maps
    the (recoloured) object names.
    """

    to_alias: dict[str, str]
    colours: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, known_objects: Iterable[str], observation: Observation) -> "ObjectAliases":
        """Aliases for ``observation``'s perceived objects that are not in ``known_objects``.

        Deterministic: unknown objects in detection order, candidates in sorted order. A
        candidate is skipped when the observation mentions it anywhere (detections,
        instruction, history, relations) or another object already took it.
        """
        known = sorted(set(known_objects))
        if not known:
            return cls({})
        colours = _colour_aliases(known, observation)
        if colours:
            observation = _apply(observation, lambda t: _recolour(t, colours))
        taken = _mentioned(observation)
        mapping: dict[str, str] = {}
        for name in dict.fromkeys(observation.detections):
            if not is_object_name(name) or name in known:
                continue
            free = _free_names(known, name, taken)
            if free:
                mapping[name] = free[0]
                taken.add(free[0])
        return cls(mapping, colours)

    def __bool__(self) -> bool:
        return bool(self.to_alias or self.colours)

    def apply(self, observation: Observation) -> Observation:
        """The observation as the model reads it: every renamed colour and object under its alias."""
        if not self:
            return observation
        if self.colours:
            observation = _apply(observation, lambda t: _recolour(t, self.colours))
        m = self.to_alias
        return _apply(observation, lambda t: _rename(t, m)) if m else observation

    def restore(self, step: PlanStep) -> PlanStep:
        """A step the model wrote about aliases, with the real names back."""
        if not self or step.is_done:
            return step
        text = _rename(step.text, {alias: real for real, alias in self.to_alias.items()})
        if self.colours:
            text = _recolour(text, {alias: real for real, alias in self.colours.items()})
        return parse_step(text)


def alias_for_training(known_objects: Iterable[str], observation: Observation, target: str, rng) -> tuple[Observation, str]:
    """Training noise (``embodied train alias_noise=p``): one perceived object renamed to a known name
    of its colour that the example does not use, in every text field and the target.

    The frames then show another shape than the name says, as they do when the planner aliases
    an object the model never saw, so the model learns to follow the name. ``rng``: a
    ``random.Random``. Unchanged when no object has a free known name of its colour.
    """
    taken = _mentioned(observation, target)
    known = sorted(set(known_objects))
    choices = [(name, alias) for name in dict.fromkeys(observation.detections) if is_object_name(name)
               for alias in _free_names(known, name, taken)]
    if not choices:
        return observation, target
    name, alias = rng.choice(choices)
    return ObjectAliases({name: alias}).apply(observation), _rename(target, {name: alias})
