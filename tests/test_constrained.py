"""The plan-grammar token automaton: it accepts exactly the valid steps of a scene."""

from __future__ import annotations

import random

import pytest
import torch

from embodied.core.errors import ObservationError
from embodied.core.plan import parse_step, valid_steps, validate_step
from embodied.engine.constrained import build_constraint, constraint_for_detections, full_vocabulary, scene_vocabulary

SCENE_OBJECTS = ["red cube", "blue cube", "green cylinder"]
SCENE_CONTAINERS = ["tray", "yellow bin"]


@pytest.fixture(scope="module")
def tok():
    from embodied.model.tokenizer import build_tokenizer

    return build_tokenizer(["put red cube on blue cube; done", "stack the red cube"], vocab_size=256)


def _run(c, ids):
    """Feed token ids through the automaton; return the states, failing on a disallowed token."""
    s, states = c.start, []
    for t in ids:
        assert c.allowed[s, t], f"token {t} rejected in state {s}"
        s = int(c.next_state[s, t])
        states.append(s)
    return states


def test_every_valid_step_is_accepted_and_ends_a_step(tok):
    c = build_constraint(tok, SCENE_OBJECTS, SCENE_CONTAINERS)
    sep = list(c.separator_ids)
    for text in valid_steps(SCENE_OBJECTS, SCENE_CONTAINERS):
        ids = tok.encode(text, add_special_tokens=False)
        tail = [tok.eos_token_id] if text == "done" else sep
        states = _run(c, ids + tail)
        assert states[-1] == (c.end if text == "done" else c.start)
        assert not any(c.step_done(s) for s in states[:-1])


def test_random_walks_only_produce_valid_steps(tok):
    c = build_constraint(tok, SCENE_OBJECTS, SCENE_CONTAINERS)
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        s, ids = c.start, []
        while True:
            choices = c.allowed[s].nonzero().squeeze(1).tolist()
            assert choices, f"dead state {s}"
            t = rng.choice(choices)
            ids.append(t)
            s = int(c.next_state[s, t])
            if c.step_done(s):
                break
        text = tok.decode(ids, skip_special_tokens=True).strip().rstrip(";").strip()
        step = validate_step(parse_step(text), SCENE_OBJECTS, SCENE_CONTAINERS)
        seen.add(step.verb)
    assert seen == {"put", "move", "done"}


def test_end_state_only_allows_eos(tok):
    c = build_constraint(tok, SCENE_OBJECTS, SCENE_CONTAINERS)
    assert c.allowed[c.end].nonzero().squeeze(1).tolist() == [tok.eos_token_id]
    assert int(c.next_state[c.end, tok.eos_token_id]) == c.end
    # a plan cannot end before "done": eos is not allowed at the start of a step
    assert not c.allowed[c.start, tok.eos_token_id]


def test_objects_not_in_the_scene_are_masked(tok):
    c = build_constraint(tok, SCENE_OBJECTS, SCENE_CONTAINERS)
    def tid(word):
        return tok.convert_tokens_to_ids("▁" + word)

    put = _run(c, tok.encode("put", add_special_tokens=False))[-1]
    assert c.allowed[put, tid("red")] and not c.allowed[put, tid("purple")]
    after_in = _run(c, tok.encode("put red cube in", add_special_tokens=False))[-1]
    assert c.allowed[after_in, tid("yellow")] and c.allowed[after_in, tid("tray")]
    assert not c.allowed[after_in, tid("red")]  # no red bin in the scene
    after_on = _run(c, tok.encode("put red cube on", add_special_tokens=False))[-1]
    assert c.allowed[after_on, tid("blue")] and not c.allowed[after_on, tid("red")]  # not on itself
    after_blue = _run(c, tok.encode("put red cube on blue", add_special_tokens=False))[-1]
    assert c.allowed[after_blue].nonzero().squeeze(1).tolist() == [tid("cube")]


def test_constrained_random_models_never_emit_invalid_steps(tok):
    """Greedy decoding through the engine with random weights, many seeds: every step is valid."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from embodied.engine.core import Engine
    from embodied.engine.records import EngineConfig, Request

    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1)).eval()
    eng = Engine(lm, config=EngineConfig(max_batch=8, max_len=96, max_new_tokens=48), eos_token_id=tok.eos_token_id)
    scenes = [(SCENE_OBJECTS, SCENE_CONTAINERS), (["pink hexagon", "cyan pentagon"], []), full_vocabulary()]
    n_steps = 0
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        objs, cons = scenes[seed % 3]
        c = build_constraint(tok, objs, cons)
        tickets = eng.submit_many([Request(torch.randn(8 + b, 32, generator=g) * 3, c) for b in range(8)])
        eng.run()
        for t in tickets:
            for ids in t.steps:
                text = tok.decode(ids, skip_special_tokens=True).strip().rstrip(";").strip()
                validate_step(parse_step(text), objs, cons)
                n_steps += 1
    assert n_steps > 50


def test_scene_vocabulary_from_detections():
    assert scene_vocabulary([]) == full_vocabulary()
    objs, cons = scene_vocabulary(["Red Cube", "tray", "blue bin", "red cube"])
    assert objs == ["red cube"] and cons == ["blue bin", "tray"]
    with pytest.raises(ObservationError, match="table"):
        scene_vocabulary(["red cube", "table"])


def test_full_vocabulary_when_perception_is_empty(tok):
    c = constraint_for_detections(tok, [])
    objs, cons = full_vocabulary()
    assert c.objects == tuple(sorted(objs)) and c.containers == tuple(sorted(cons))
    ids = tok.encode("put cyan pentagon in purple bin", add_special_tokens=False) + list(c.separator_ids)
    assert _run(c, ids)[-1] == c.start
