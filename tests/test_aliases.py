"""Object aliases: unknown objects are planned for under a known name of their colour."""

import numpy as np

from embodied.core.observation import Observation
from embodied.core.plan import PlanStep
from embodied.model.aliases import ObjectAliases

KNOWN = ["blue cylinder", "orange cylinder", "orange triangle", "red cube", "red triangle"]


def _obs(detections, instruction="put the orange cube in the orange bin", history=(), relations=None):
    return Observation(frames={"front": np.zeros((8, 8, 3), np.uint8)}, state=np.zeros(15, np.float32),
                       instruction=instruction, history=list(history), detections=list(detections),
                       relations=dict(relations or {}))


def test_an_unknown_object_is_renamed_to_a_free_known_name_of_its_colour_everywhere():
    obs = _obs(["orange cube", "orange triangle", "red cube", "tray", "orange bin"],
               history=["put red cube in tray"], relations={"orange cube": "on red cube", "red cube": "in tray"})
    aliases = ObjectAliases.build(KNOWN, obs)
    assert aliases.to_alias == {"orange cube": "orange cylinder"}  # orange triangle is in the scene already
    seen = aliases.apply(obs)
    seen.validate()
    assert seen.instruction == "put the orange cylinder in the orange bin"
    assert seen.detections == ["orange cylinder", "orange triangle", "red cube", "tray", "orange bin"]
    assert seen.history == ["put red cube in tray"]
    assert seen.relations == {"orange cylinder": "on red cube", "red cube": "in tray"}
    assert obs.detections[0] == "orange cube"  # the robot's observation itself is untouched
    step = aliases.restore(PlanStep.parse("put orange cylinder on orange triangle"))
    assert step.text == "put orange cube on orange triangle"
    assert aliases.restore(PlanStep.parse("done")).is_done


def test_known_objects_and_objects_without_a_free_name_keep_their_names():
    assert not ObjectAliases.build(KNOWN, _obs(["red cube", "orange triangle", "tray"]))
    assert not ObjectAliases.build([], _obs(["orange cube", "tray"]))  # a model that records no names
    # both known orange names are taken: one by the scene, one by the instruction
    crowded = _obs(["orange cube", "orange triangle"], instruction="put the orange cube on the orange cylinder")
    aliases = ObjectAliases.build(KNOWN, crowded)
    assert not aliases and aliases.apply(crowded) is crowded


def test_an_unseen_colour_becomes_the_nearest_free_known_colour_as_a_word_everywhere():
    # known colours: blue, orange, red; orange is in the scene, red is the nearest free one to pink
    obs = _obs(["pink cylinder", "pink triangle", "orange triangle", "pink bin", "tray"],
               instruction="put all the pink things in the pink bin", history=["put pink triangle in pink bin"],
               relations={"pink cylinder": "on orange triangle", "pink triangle": "in pink bin"})
    aliases = ObjectAliases.build(KNOWN, obs)
    assert aliases.colours == {"pink": "red"}
    assert aliases.to_alias == {"red cylinder": "red cube"}  # then the name: red cylinder is not a known name
    seen = aliases.apply(obs)
    seen.validate()
    assert seen.detections == ["red cube", "red triangle", "orange triangle", "red bin", "tray"]
    assert seen.instruction == "put all the red things in the red bin"
    assert seen.history == ["put red triangle in red bin"]
    assert seen.relations == {"red cube": "on orange triangle", "red triangle": "in red bin"}
    assert aliases.restore(PlanStep.parse("put red cube on orange triangle")).text == "put pink cylinder on orange triangle"
    assert aliases.restore(PlanStep.parse("put red triangle in red bin")).text == "put pink triangle in pink bin"
    # two unseen colours get two different free colours, each the nearest left
    obs2 = _obs(["pink cube", "cyan cube", "tray"], instruction="put the pink cube on the cyan cube")
    two = ObjectAliases.build(KNOWN, obs2)
    assert two.colours == {"cyan": "blue", "pink": "orange"}
    assert two.apply(obs2).instruction == "put the orange cylinder on the blue cylinder"
    # no free known colour left: the unseen colour keeps its name
    full = _obs(["pink cube", "red cube", "blue cylinder", "orange triangle", "tray"], instruction="put the pink cube in the tray")
    assert not ObjectAliases.build(KNOWN, full)


def test_two_unknown_objects_of_one_colour_get_different_names_deterministically():
    obs = _obs(["red cylinder", "red hexagon", "tray"], instruction="put every red object in the tray")
    first = ObjectAliases.build(KNOWN, obs)
    assert first.to_alias == {"red cylinder": "red cube", "red hexagon": "red triangle"}
    assert ObjectAliases.build(list(reversed(KNOWN)), obs) == first
    assert first.restore(PlanStep.parse("put red triangle in tray")).text == "put red hexagon in tray"


def test_training_noise_renames_one_object_in_every_field_and_the_target():
    import random

    from embodied.model.aliases import alias_for_training

    obs = _obs(["red cube", "orange triangle", "tray"], instruction="put the red cube in the tray",
               history=["put orange triangle in tray"], relations={"red cube": "on table", "orange triangle": "in tray"})
    renamed = set()
    for seed in range(20):
        seen, target = alias_for_training(KNOWN, obs, "put red cube in tray; done", random.Random(seed))
        seen.validate()
        assert target in ("put red triangle in tray; done", "put red cube in tray; done")
        if target.startswith("put red triangle"):  # red cube -> red triangle, the only free red name
            assert seen.instruction == "put the red triangle in the tray" and "red triangle" in seen.detections
            assert seen.relations["red triangle"] == "on table"
            renamed.add("red")
        else:  # orange triangle -> orange cylinder
            assert seen.history == ["put orange cylinder in tray"] and seen.relations["orange cylinder"] == "in tray"
            renamed.add("orange")
    assert renamed == {"red", "orange"}
    crowded = _obs(["red cube", "red triangle"], instruction="stack the red cube on the red triangle")
    assert alias_for_training(KNOWN, crowded, "put red cube on red triangle; done", random.Random(0)) == (
        crowded, "put red cube on red triangle; done")
