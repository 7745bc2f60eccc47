"""The paraphrase generator (envs.tasks.phrasing): goal fidelity, train / dev disjoint, determinism,
typos away from the words a plan needs, dev never in training data."""

from __future__ import annotations

import random
import re
import string

import pytest

from embodied.core import vocab
from embodied.core.errors import ConfigError
from envs.tasks import TASKS
from envs.tasks.base import renders
from envs.tasks.phrasing import (
    ANCHOR_SIDE,
    CONSTRUCTIONS,
    CONTAINER_WORDS,
    L2_PHRASES,
    LEXICON,
    LOCATION_WORDS,
    MEANING_WORDS,
    RELATION_WORDS,
    SHAPE_WORDS,
    grammar_words,
    reword,
    rewording,
    skeleton_key,
    typo,
)

FAMILIES = tuple(TASKS)
WORDINGS = ("train", "dev")
CASES = [("L1", "test"), ("L1", "train"), ("L2", "test"), ("L3", "test"), ("L4", "test")]
SEEDS = range(25)
INSTRUCTION_CHARSET = set(string.ascii_letters + string.digits + " .,;:'\"!?-()/&")  # envs.tabletop_env's


def episodes(family):
    for level, split in CASES:
        for seed in SEEDS:
            yield TASKS[family].sample(seed, level, split)


# --- what a description means: read back independently of how it was written -------------------
def shape_of(word: str) -> str | None:
    for shape in vocab.SHAPES:
        if word == shape:
            return shape
    for table in SHAPE_WORDS.values():
        for shape, names in table.items():
            if word in names:
                return shape
    return None


def resolve(desc: str, scene) -> list[str]:
    """The scene's objects a description can mean: its colour word, and its shape word when it has one."""
    words = desc.split()
    colours = [w for w in words if w in vocab.COLOURS]
    assert len(colours) == 1, desc
    rest = " ".join(w for w in words if w not in colours and w not in ("the", "that", "is", "which", "in", "coloured"))
    shape = shape_of(rest)
    return [o.name for o in scene.objects if o.colour == colours[0] and (shape is None or o.shape == shape)]


def goal_objects(ep) -> list[str]:
    g = ep.goal
    return {
        "put_in_container": lambda: g["objects"], "stack": lambda: [g["object"], g["base"]],
        "tower": lambda: g["order"], "line_up": lambda: g["order"], "move_to_location": lambda: [o for o, _ in g["moves"]],
        "place_relative": lambda: sorted({n for o, _, a in g["relations"] for n in (o, a)}),
        "clean_up_except": lambda: g.get("keep", []),
    }.get(ep.family, lambda: [])()


def without(text: str, phrases) -> str:
    for p in sorted(phrases, key=len, reverse=True):
        text = text.replace(p, " ")
    return text


# --- fidelity ------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_every_goal_part_is_named_and_nothing_else(family):
    """For many seeds at every level: the goal's objects are named, each description means exactly
    that object in the scene, no other object is named, and the containers, locations and relations
    are the goal's."""
    for ep in episodes(family):
        for wording in WORDINGS:
            r = rewording(ep, wording)
            text = r.text.lower()
            assert set(r.mentions) == set(goal_objects(ep)), (text, ep.goal)
            for name, desc in r.mentions.items():
                assert desc in text, (desc, text)
                assert resolve(desc, ep.scene) == [name], (desc, text)
            g = ep.goal
            containers = [g["container"]] if "container" in g else []
            if family == "sort_by_colour" and r.constructions[0] in ("srt.t3", "srt.t6", "srt.d1"):  # bins by name
                containers = list(g["bins"])
            for c in containers:
                words = CONTAINER_WORDS[wording]["tray" if c == "tray" else "bin"]
                colour = "" if c == "tray" else c.split()[0] + " "
                assert any(f"{colour}{w}" in text for w in words), (c, text)
            if family == "move_to_location":
                phrases = {loc: LOCATION_WORDS[wording][loc] for loc in vocab.LOCATIONS}
                rest = text
                for _, loc in g["moves"]:
                    assert any(p in rest for p in phrases[loc]), (loc, text)
                    rest = without(rest, phrases[loc])
                others = [p for loc, ps in phrases.items() if loc not in {m[1] for m in g["moves"]} for p in ps]
                assert not any(p in rest for p in others), text
            if family == "place_relative":
                for (_, rel, _), con in zip(g["relations"], r.constructions):
                    table = ANCHOR_SIDE if con in ("rel.t4", "rel.d3") else RELATION_WORDS
                    assert any(p in text for p in table[wording][rel]), (rel, text)
            if family == "line_up":  # a direction, or where the row starts or ends (the goldens check which)
                assert re.search(r"left to right|right to left|the (left|right)\b", text), text
            if family == "group_by_attribute":
                assert g["value"] in text, text


def positions(text: str, descs: list[str]) -> list[int]:
    out, start = [], 0
    for d in descs:
        i = text.find(d, start)
        assert i >= 0, (d, text)
        out.append(i)
        start = i + len(d)
    return out


@pytest.mark.parametrize("family", ["tower", "line_up", "stack"])
def test_objects_appear_in_the_order_the_construction_writes_them(family):
    for ep in episodes(family):
        for wording in WORDINGS:
            r = rewording(ep, wording)
            order = ep.goal["order"] if family != "stack" else [ep.goal["object"], ep.goal["base"]]
            slot_of = {f"x{i}": n for i, n in enumerate(order)} | {"o": order[0], "b": order[-1]}
            lists = {"bu": order, "lst": order, "td": order[::-1], "rlst": order[::-1]}
            written = []
            for s in r.slots:
                written += [slot_of[s]] if s in slot_of else lists.get(s, [])
            assert written and set(written) == set(order)
            positions(r.text.lower(), [r.mentions[n] for n in written])  # in this order


# Each construction read by a person: plain words (the first of each category, canonical names). The
# meaning of each line was checked by hand against the goal above it.
GOLDEN = {
    ("put_in_container", "L1", 0): ({"objects": ["yellow triangle"], "container": "tray"}, [
        ("pic.t1", "put the yellow triangle into the tray"),
        ("pic.t2", "pick up the yellow triangle and put it into the tray"),
        ("pic.t3", "the yellow triangle should go into the tray"),
        ("pic.t4", "i want the yellow triangle into the tray"),
        ("pic.t5", "into the tray with the yellow triangle"),
        ("pic.t6", "the tray should contain the yellow triangle"),
        ("pic.t7", "the yellow triangle into the tray"),
        ("pic.t8", "first pick up the yellow triangle, then put it into the tray"),
        ("pic.t9", "put the yellow triangle away into the tray"),
        ("pic.d1", "the tray is where the yellow triangle ought to end up"),
        ("pic.d2", "the yellow triangle ought to be stowed inside the tray"),
        ("pic.d3", "can the yellow triangle go inside the tray?"),
        ("pic.d4", "fetch the yellow triangle, carry it over to the tray and let go"),
        ("pic.d5", "the place for the yellow triangle is inside the tray"),
    ]),
    ("stack", "L1", 0): ({"object": "purple cube", "base": "green cube"}, [
        ("stk.t1", "put the purple cube on the green cube"),
        ("stk.t2", "on the green cube, put the purple cube"),
        ("stk.t3", "the purple cube should be on the green cube"),
        ("stk.t4", "the green cube should be under the purple cube"),
        ("stk.t5", "stack the green cube and the purple cube, with the purple cube on top"),
        ("stk.t6", "use the green cube as the base for the purple cube"),
        ("stk.t7", "pick up the purple cube and put it on the green cube"),
        ("stk.t8", "i want the purple cube on the green cube"),
        ("stk.d1", "the green cube ought to have the purple cube on top of it"),
        ("stk.d2", "the purple cube ought to be rested on the green cube"),
        ("stk.d3", "the green cube goes at the bottom and the purple cube goes on it"),
        ("stk.d4", "with the green cube beneath, plonk the purple cube on it"),
        ("stk.d5", "plonk the purple cube down so that it rests on the green cube"),
    ]),
    ("tower", "L1", 0): ({"order": ["purple cylinder", "yellow cube", "green cylinder"]}, [
        ("twr.t1", "build a tower of the purple cylinder, the yellow cube and the green cylinder, from bottom to top"),
        ("twr.t2", "build a tower of the green cylinder, the yellow cube and the purple cylinder, from the top down"),
        ("twr.t3", "build a tower with the purple cylinder at the bottom, the yellow cube in the middle and the green cylinder on top"),
        ("twr.t4", "build a tower with the green cylinder on top, the yellow cube in the middle and the purple cylinder at the bottom"),
        ("twr.t5", "the yellow cube in the middle, the green cylinder on top and the purple cylinder at the bottom"),
        ("twr.t6", "put the yellow cube on the purple cylinder, then the green cylinder on the yellow cube"),
        ("twr.t7", "stack the green cylinder on the yellow cube after putting the yellow cube on the purple cylinder"),
        ("twr.t8", "first put the purple cylinder down, then stack the yellow cube on it and finally the green cylinder on the yellow cube"),
        ("twr.t9", "the green cylinder should sit on the yellow cube, which should sit on the purple cylinder"),
        ("twr.t10", "the tower should have the purple cylinder at the bottom, the green cylinder on top and the yellow cube in between"),
        ("twr.d1", "the purple cylinder is the base, the yellow cube goes on it, and the green cylinder goes on top of that"),
        ("twr.d2", "heap the green cylinder onto the yellow cube and the yellow cube onto the purple cylinder"),
        ("twr.d3", "the yellow cube goes between the purple cylinder below and the green cylinder above"),
        ("twr.d4", "the highest bit ought to be the green cylinder and the lowest the purple cylinder, with the yellow cube in the middle"),
        ("twr.d5", "a tower, highest first: the green cylinder, the yellow cube, and the purple cylinder"),
        ("twr.d6", "a tower, base first: the purple cylinder, the yellow cube, and the green cylinder"),
    ]),
    ("tower", "L4", 0): ({"order": ["red cube", "purple cube", "yellow cube", "green cube"]}, [
        ("twr.t1", "build a tower of the red cube, the purple cube, the yellow cube and the green cube, from bottom to top"),
        ("twr.t2", "build a tower of the green cube, the yellow cube, the purple cube and the red cube, from the top down"),
        ("twr.t11", "build a tower: the red cube at the bottom, then the purple cube, then the yellow cube, and the green cube on top"),
        ("twr.d5", "a tower, highest first: the green cube, the yellow cube, the purple cube, and the red cube"),
        ("twr.d6", "a tower, base first: the red cube, the purple cube, the yellow cube, and the green cube"),
    ]),
    ("sort_by_colour", "L1", 0): ({"bins": ["yellow bin", "orange bin"]}, [
        ("srt.t1", "sort the things by colour into the bins"),
        ("srt.t2", "put each thing into the bin of the same colour"),
        ("srt.t3", "put the yellow ones into the yellow bin and the orange ones into the orange bin"),
        ("srt.t4", "every thing goes into the bin that matches its colour"),
        ("srt.t5", "sort the things, each colour into its own bin"),
        ("srt.t6", "the yellow ones into the yellow bin and the orange ones into the orange bin"),
        ("srt.d1", "anything yellow inside the yellow bin, anything orange inside the orange bin"),
        ("srt.d2", "each bin ought to hold the bits of its own colour"),
        ("srt.d3", "separate the bits so that every colour ends up in its own bin"),
        ("srt.d4", "the bits need sorting into bins so the colours agree"),
        ("srt.d5", "match every bit with the bin of its colour"),
    ]),
    ("move_to_location", "L1", 0): ({"moves": [["green cube", "bottom right"]]}, [
        ("mov.t1", "move the green cube to the bottom right"),
        ("mov.t2", "put the green cube at the bottom right"),
        ("mov.t3", "the green cube should go to the bottom right"),
        ("mov.t4", "the green cube to the bottom right"),
        ("mov.t5", "i want the green cube at the bottom right"),
        ("mov.t6", "pick up the green cube and put it at the bottom right"),
        ("mov.t7", "over to the bottom right with the green cube"),
        ("mov.d1", "the bottom right is where the green cube ought to be"),
        ("mov.d2", "the green cube has to be relocated to the bottom right"),
        ("mov.d3", "can the green cube go at the bottom right?"),
        ("mov.d4", "get the green cube over to the bottom right"),
    ]),
    ("place_relative", "L1", 0): ({"relations": [["orange triangle", "in front of", "orange cylinder"]]}, [
        ("rel.t1", "put the orange triangle in front of the orange cylinder"),
        ("rel.t2", "in front of the orange cylinder, put the orange triangle"),
        ("rel.t3", "the orange triangle should be in front of the orange cylinder"),
        ("rel.t4", "put the orange triangle down with the orange cylinder behind it"),
        ("rel.t5", "pick up the orange triangle and put it in front of the orange cylinder"),
        ("rel.t6", "i want the orange triangle in front of the orange cylinder"),
        ("rel.d1", "the orange triangle goes in front of the orange cylinder"),
        ("rel.d2", "in front of the orange cylinder is where the orange triangle ought to go"),
        ("rel.d3", "plonk the orange triangle so that the orange cylinder ends up directly behind it"),
    ]),
    ("place_relative", "L4", 0): ({"relations": [["orange triangle", "left of", "blue triangle"],
                                                 ["yellow triangle", "behind", "orange triangle"]]}, [
        ("rel.t4", "put the orange triangle down with the blue triangle on its right and put the yellow triangle down "
                   "with the orange triangle in front of it"),
        ("rel.d3", "plonk the orange triangle so that the blue triangle ends up to its right; also plonk the yellow "
                   "triangle so that the orange triangle ends up directly in front of it"),
    ]),
    ("group_by_attribute", "L1", 0): ({"attribute": "colour", "value": "purple", "container": "red bin"}, [
        ("grp.t1", "put all the purple things into the red bin"),
        ("grp.t2", "purple things into the red bin"),
        ("grp.t3", "the red bin should get every purple thing"),
        ("grp.t4", "gather the purple things and put them into the red bin"),
        ("grp.t5", "everything that is purple goes into the red bin"),
        ("grp.t6", "put any purple thing you see into the red bin"),
        ("grp.d1", "the red bin is for the purple bits, so stow them all there"),
        ("grp.d2", "anything purple ought to be in the red bin"),
        ("grp.d3", "every single purple bit has to be stowed inside the red bin"),
        ("grp.d4", "scoop up whatever is purple and stow it inside the red bin"),
    ]),
    ("group_by_attribute", "L4", 0): ({"attribute": "shape", "value": "cylinder", "container": "tray"}, [
        ("grp.t1", "put all the cylinders into the tray"),
        ("grp.t3", "the tray should get every cylinder"),
        ("grp.d3", "every single cylinder has to be stowed inside the tray"),
    ]),
    ("unstack", "L1", 0): ({}, [
        ("uns.t1", "unstack everything"),
        ("uns.t2", "put every stacked thing on the table"),
        ("uns.t3", "no thing should be on top of another"),
        ("uns.t4", "make every thing stand on the table by itself"),
        ("uns.t5", "pick up the top things off and put them on the table"),
        ("uns.t6", "unstack the stacks so every thing is on the table"),
        ("uns.d1", "nothing ought to stay stacked"),
        ("uns.d2", "i don't want anything resting on anything else"),
        ("uns.d3", "every bit on the table surface, none on top of another"),
        ("uns.d4", "could the stacks be taken down?"),
    ]),
    ("line_up", "L1", 0): ({"order": ["red cube", "red triangle", "orange triangle"], "direction": "right to left"}, [
        ("lin.t1", "line up the red cube, the red triangle and the orange triangle in a row from right to left"),
        ("lin.t2", "line up the orange triangle, the red triangle and the red cube in a row from left to right"),
        ("lin.t3", "make a row with the red cube on the right, the red triangle in the middle and the orange triangle on the left"),
        ("lin.t4", "the orange triangle on the left, the red cube on the right and the red triangle between them, in a row"),
        ("lin.t5", "first put the red cube down, then the red triangle to its left, and finally the orange triangle to the "
                   "left of the red triangle"),
        ("lin.t6", "put the red triangle to the left of the red cube and the orange triangle to the left of the red triangle"),
        ("lin.d1", "starting on the right, align the red cube, the red triangle, and the orange triangle"),
        ("lin.d2", "in a row: the red cube at the right end, the orange triangle at the left end, the red triangle in between"),
        ("lin.d3", "a row that reads the orange triangle, the red triangle, and the red cube reading from the left"),
        ("lin.d4", "the red triangle goes between the red cube and the orange triangle, and the red cube is on the right"),
    ]),
    ("clean_up_except", "L1", 0): ({"container": "tray", "keep": ["blue cylinder"]}, [
        ("cue.t1", "put everything except the blue cylinder into the tray"),
        ("cue.t2", "put all the things into the tray except the blue cylinder"),
        ("cue.t3", "put all things except the blue cylinder into the tray"),
        ("cue.t4", "the blue cylinder stays on the table; put the rest into the tray"),
        ("cue.t5", "leave the blue cylinder on the table and put the rest into the tray"),
        ("cue.t6", "don't touch the blue cylinder, but put the rest into the tray"),
        ("cue.t7", "the tray should get everything except the blue cylinder"),
        ("cue.t8", "except the blue cylinder, put everything into the tray"),
        ("cue.t9", "clear everything into the tray but leave the blue cylinder on the table"),
        ("cue.d1", "the blue cylinder is the only bit that stays out of the tray; everything else goes in"),
        ("cue.d2", "everything save for the blue cylinder ought to be stowed inside the tray"),
        ("cue.d3", "fill the tray with everything save for the blue cylinder"),
        ("cue.d4", "the blue cylinder is not to go inside the tray, but all the others are"),
        ("cue.d5", "all but the blue cylinder inside the tray"),
    ]),
}


@pytest.mark.parametrize("key", list(GOLDEN), ids=lambda k: f"{k[0]}-{k[1]}")
def test_each_construction_says_what_a_person_checked(key):
    family, level, seed = key
    goal, lines = GOLDEN[key]
    ep = TASKS[family].sample(seed, level, "test")
    assert ep.goal == goal
    for cid, text in lines:
        wording = "dev" if ".d" in cid else "train"
        assert rewording(ep, wording, plain=True, construction=cid).text == text
    if level == "L1":  # every construction that applies to the goal is read
        n = len(goal.get("order", [])) or None
        applicable = {c.id for w in WORDINGS for c in CONSTRUCTIONS[family][w]
                      if (c.n is None or c.n == n) and (c.attribute is None or c.attribute == goal.get("attribute"))}
        assert applicable == {cid for cid, _ in lines}


# --- train and dev ---------------------------------------------------------------------------------
def test_train_and_dev_share_no_construction_and_differ_in_words():
    assert set(LEXICON["train"]) == set(LEXICON["dev"])  # the same categories: a renamed slot cannot hide a copy
    fields = {"objs", "it", "o", "b", "bu", "td", "lst", "rlst", "start", "end", "dirn", "opp", "c", "loc", "rel", "side",
              "a", "vt", "v1", "value", "k", "enum_ones", "enum_anything"} | {f"x{i}" for i in range(4)}
    keys = {}
    for family in FAMILIES:
        assert len(CONSTRUCTIONS[family]["train"]) >= 6 and len(CONSTRUCTIONS[family]["dev"]) >= 3
        for wording in WORDINGS:
            keys[wording] = keys.get(wording, set()) | {skeleton_key(c.skeleton) for c in CONSTRUCTIONS[family][wording]}
            for c in CONSTRUCTIONS[family][wording]:
                for slot in re.findall(r"\{(\w+)\}", c.skeleton):
                    assert slot in LEXICON[wording] or slot in fields, (c.id, slot)
        # templates are constructions too: dev shares none with them either
        templates = {skeleton_key(t) for t in TASKS[family].phrasings + TASKS[family].heldout_templates()}
        assert not {skeleton_key(c.skeleton) for c in CONSTRUCTIONS[family]["dev"]} & templates
    assert not keys["train"] & keys["dev"]
    ids = [c.id for f in FAMILIES for w in WORDINGS for c in CONSTRUCTIONS[f][w]]
    assert len(ids) == len(set(ids))

    def words(wording):
        out = set()
        for family in FAMILIES:
            for c in CONSTRUCTIONS[family][wording]:
                out.update(re.findall(r"[a-z']+", re.sub(r"\{\w+\}", " ", c.skeleton)))
        for options in LEXICON[wording].values():
            for o in options:
                out.update(re.findall(r"[a-z']+", o))
        return out

    dev_only = words("dev") - words("train")
    assert len(dev_only) >= 60, sorted(dev_only)  # e.g. stow, plonk, heap, beneath, whatever, save, ought ...


@pytest.mark.parametrize("family", FAMILIES)
def test_dev_never_renders_a_template_and_train_keeps_away_from_l2_wording(family):
    task = TASKS[family]
    for ep in episodes(family):
        dev = reword(ep, "dev")
        assert not any(renders(t, dev) for t in task.phrasings + task.heldout_templates()), dev
        train = reword(ep, "train")
        assert not task.is_heldout_phrasing(train), train
        low = train.lower()
        assert not any(re.search(rf"\b{re.escape(p)}\b", low) for p in L2_PHRASES), train
        for text in (dev, train):
            assert set(text) <= INSTRUCTION_CHARSET and len(text) <= 256, text


def test_deterministic_per_episode_and_the_episode_is_untouched():
    ep = TASKS["tower"].sample(3, "L1", "test")
    before = ep.to_dict()
    assert reword(ep, "templates") == ep.instruction
    a, b = reword(ep, "dev"), reword(ep, "dev")
    assert a == b and a != ep.instruction
    assert ep.to_dict() == before
    assert TASKS["tower"].sample(3, "L1", "test").to_dict() == before  # the scene stream is not the wording's
    texts = {reword(TASKS["tower"].sample(s, "L1", "test"), "train") for s in range(30)}
    assert len(texts) >= 25
    with pytest.raises(ConfigError, match="templates, train, dev"):
        reword(ep, "fancy")


def test_typos_never_touch_grammar_or_meaning_words():
    protected = grammar_words() | MEANING_WORDS
    rng = random.Random(0)
    changed = 0
    for family in FAMILIES:
        for ep in list(episodes(family))[:40]:
            for wording in WORDINGS:
                text = rewording(ep, wording, plain=True).text
                for _ in range(3):
                    out = typo(text, rng, wording)
                    a, b = text.split(" "), out.split(" ")
                    assert len(a) == len(b)
                    diff = [(x, y) for x, y in zip(a, b) if x != y]
                    assert len(diff) <= 1
                    for x, _ in diff:
                        changed += 1
                        assert x.lower() not in protected, (x, text)
                        for name in list(ep.goal.get("objects", [])) + list(ep.goal.get("order", [])):
                            assert x not in name.split()
    assert changed > 100


def test_unseen_words_reach_the_model_as_known_pieces():
    """The shipped tokenizer (BPE over a-z, a few marks) splits a word it never saw into known
    pieces; only characters outside its alphabet ('?', '!') become <unk>. Every grammar word of a
    reworded instruction stays one whole token."""
    from pathlib import Path

    from embodied.model.tokenizer import WORD_PREFIX, load_tokenizer

    model_dir = Path(__file__).resolve().parent.parent / "checkpoints" / "default"
    if not (model_dir / "tokenizer.json").is_file():
        pytest.skip("no shipped tokenizer")
    tok = load_tokenizer(str(model_dir))
    grammar = grammar_words()
    for family in FAMILIES:
        for ep in list(episodes(family))[:10]:
            for wording in WORDINGS:
                text = reword(ep, wording)
                pieces = tok.convert_ids_to_tokens(tok(text)["input_ids"])
                unk = pieces.count(tok.unk_token)
                assert unk == sum(text.count(ch) for ch in "?!"), (text, pieces)
                for w in re.findall(r"[a-z]+", text.lower()):
                    if w in grammar and re.search(rf"(^|[ ,;:]){w}\b", text.lower()):
                        assert WORD_PREFIX + w in pieces, (w, text, pieces)


# --- where the wording goes ------------------------------------------------------------------------
def test_datagen_refuses_dev_and_names_reworded_shards_apart(tmp_path):
    from embodied.commands.datagen import DatagenConfig, plan_units, reworded

    with pytest.raises(ConfigError, match="held out"):
        plan_units(DatagenConfig(phrasing="dev", out=str(tmp_path)))
    with pytest.raises(ConfigError, match="phrasing_share"):
        plan_units(DatagenConfig(phrasing="train", phrasing_share=1.5, out=str(tmp_path)))
    units = plan_units(DatagenConfig(phrasing="train", phrasing_share=0.5, episodes=40, episodes_per_shard=40,
                                     tasks="stack", out=str(tmp_path)))
    assert units[0].path.endswith("-train50.parquet") and units[0].phrasing == "train"
    share = sum(reworded(units[0], s) for s in units[0].seeds) / len(units[0].seeds)
    assert 0.25 < share < 0.75
    plain = plan_units(DatagenConfig(episodes=1, tasks="stack", out=str(tmp_path)))
    assert plain[0].path.endswith("-0000000.parquet") and plain[0].phrasing == "templates"


def test_eval_options_take_the_wording():
    from embodied.commands.eval import EvalConfig, _identity
    from embodied.commands.options import check_options

    cfg = EvalConfig(phrasing="dev")
    check_options(cfg, "L1")
    assert _identity(cfg)["phrasing"] == "dev"
    assert "phrasing" not in _identity(EvalConfig())  # folders written before the option still resume
    with pytest.raises(ConfigError, match="phrasing"):
        check_options(EvalConfig(phrasing="poetry"), "L1")
