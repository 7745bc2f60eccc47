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

Objects with no free known name of their colour (an unseen colour, or every known name of
that colour already in the scene) keep their names. ``ModelPlanner(object_aliases=False)``
(``embodied eval ... object_aliases=false``) switches this off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from embodied.observation import Observation
from embodied.plan import PlanStep, parse_step
from embodied.vocab import is_object_name, object_name_pattern


def _rename(text: str, mapping: dict[str, str]) -> str:
    return object_name_pattern().sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def _names_in(text: str) -> set[str]:
    return set(object_name_pattern().findall(text))


def _mentioned(observation: Observation, *texts: str) -> set[str]:
    """Every object name the observation (and ``texts``) perceives or mentions."""
    names = set(observation.detections)
    for text in [observation.instruction, *observation.history, *observation.relations.values(), *texts]:
        names |= _names_in(text)
    return names


def _free_names(known: list[str], name: str, taken: set[str]) -> list[str]:
    """The known names of ``name``'s colour that nothing in ``taken`` uses, in ``known``'s order."""
    colour = name.split()[0]
    return [k for k in known if k.split()[0] == colour and k not in taken]


@dataclass(frozen=True)
class ObjectAliases:
    """Real name -> alias for the unknown objects of one observation (empty: nothing to rename)."""

    to_alias: dict[str, str]

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
        taken = _mentioned(observation)
        mapping: dict[str, str] = {}
        for name in dict.fromkeys(observation.detections):
            if not is_object_name(name) or name in known:
                continue
            free = _free_names(known, name, taken)
            if free:
                mapping[name] = free[0]
                taken.add(free[0])
        return cls(mapping)

    def __bool__(self) -> bool:
        return bool(self.to_alias)

    def apply(self, observation: Observation) -> Observation:
        """The observation as the model reads it: every renamed object under its alias."""
        if not self.to_alias:
            return observation
        m = self.to_alias
        return replace(
            observation,
            instruction=_rename(observation.instruction, m),
            history=[_rename(h, m) for h in observation.history],
            detections=[m.get(d, d) for d in observation.detections],
            relations={m.get(k, k): _rename(v, m) for k, v in observation.relations.items()},
        )

    def restore(self, step: PlanStep) -> PlanStep:
        """A step the model wrote about aliases, with the real names back."""
        if not self.to_alias or step.is_done:
            return step
        back = {alias: real for real, alias in self.to_alias.items()}
        return parse_step(_rename(step.text, back))


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
