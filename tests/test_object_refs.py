"""Object references: plans point into the prompt's object list (``<o2>``) instead of spelling names."""

from __future__ import annotations

import random
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from embodied.core.errors import ConfigError, ObservationError
from embodied.core.observation import Observation
from embodied.model.refs import MAX_REFS, REF_TOKENS, ObjectRefs, add_ref_tokens

DETECTED = ["red cube", "tray", "purple triangle", "blue cylinder", "red bin"]


def test_references_follow_the_list_order_and_skip_containers():
    refs = ObjectRefs.from_detections(DETECTED)
    assert refs.objects == ("red cube", "purple triangle", "blue cylinder")
    assert refs.refs == ("<o1>", "<o2>", "<o3>")
    assert refs.listing(DETECTED) == "red cube <o1>, tray, purple triangle <o2>, blue cylinder <o3>, red bin"


def test_plan_text_round_trips_through_references():
    refs = ObjectRefs.from_detections(DETECTED)
    plan = "put purple triangle in red bin; put blue cylinder left of red cube; move red cube to top left; done"
    coded = refs.to_refs(plan)
    assert coded == (
        "put <o2> purple triangle in red bin; put <o3> blue cylinder left of <o1> red cube; "
        "move <o1> red cube to top left; done"
    )
    assert refs.to_names(coded) == plan
    assert refs.to_names("put <o2> in red bin") == "put purple triangle in red bin"  # a bare reference too
    # a name that is not listed stays a name (e.g. an object the camera no longer sees)
    assert refs.to_refs("put green cube in tray") == "put green cube in tray"


def test_bad_references_are_named_errors():
    refs = ObjectRefs.from_detections(DETECTED)
    with pytest.raises(ObservationError, match="<o4>"):
        refs.to_names("put <o4> in tray")
    too_many = [f"{c} {s}" for c in ("red", "green", "blue", "yellow", "purple", "orange") for s in ("cube", "cylinder", "triangle")]
    assert len(too_many) > MAX_REFS
    with pytest.raises(ObservationError, match="at most"):
        ObjectRefs.from_detections(too_many)


def test_reference_tokens_are_single_tokens_that_decode_as_written():
    from embodied.model.tokenizer import build_tokenizer

    tok = build_tokenizer(["put red cube on blue cube; done", "stack the red cube"], vocab_size=256)
    n = len(tok)
    assert add_ref_tokens(tok) == MAX_REFS and len(tok) == n + MAX_REFS
    assert add_ref_tokens(tok) == 0  # idempotent
    vocab = tok.get_vocab()
    for text in ("put <o2> red cube in tray", "put <o12> blue cube on <o1> red cube; done", "move <o16> to top left"):
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
        for r in REF_TOKENS:
            if r in text.split():
                assert vocab[r] in ids


def test_constraint_over_references_allows_exactly_the_listed_ones():
    from embodied.engine.constrained import build_constraint
    from embodied.model.tokenizer import build_tokenizer

    tok = build_tokenizer(["put red cube on blue cube; done", "stack the red cube"], vocab_size=256)
    add_ref_tokens(tok)
    refs = ObjectRefs.from_detections(DETECTED)
    c = build_constraint(tok, refs.choices, ["red bin", "tray"])
    s = c.start
    for t in tok.encode("put ", add_special_tokens=False):
        s = int(c.next_state[s, t])
    ref_ids = {tok.convert_tokens_to_ids(r) for r in REF_TOKENS}
    allowed = {int(i) for i in c.allowed[s].nonzero().flatten()}
    assert allowed & ref_ids == {tok.convert_tokens_to_ids(r) for r in refs.refs}
    assert not allowed - ref_ids  # after "put " only a reference may follow
    # after a reference, only that object's name
    s2 = int(c.next_state[s, tok.convert_tokens_to_ids("<o2>")])
    name = tok.encode(" purple triangle", add_special_tokens=False)
    assert {int(i) for i in c.allowed[s2].nonzero().flatten()} == {name[0]}


def _tiny(object_refs: bool):
    from embodied.model import PalmE
    from embodied.model.config import LMConfig, ModelConfig, VisionConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        lm=LMConfig(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128, max_positions=256),
        vision=VisionConfig(image_size=32, patch_size=8, stem_channels=8, width=32, depth=1, heads=2),
        state_hidden=32, vocab_size=300, prompt_objects=True, object_refs=object_refs,
    )
    return PalmE.create(cfg, ["put red cube on blue cube; done", "stack the purple triangle on the red cube"]).eval()


def _obs(seed=0, history=()):
    rng = np.random.default_rng(seed)
    return Observation(
        frames={"front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)},
        state=rng.normal(size=15).astype(np.float32),
        instruction="stack the purple triangle on the red cube",
        history=list(history),
        detections=list(DETECTED),
    )


def test_object_refs_need_the_object_list():
    from embodied.model.config import ModelConfig

    with pytest.raises(ConfigError, match="prompt_objects"):
        ModelConfig(object_refs=True, prompt_objects=False).check()


def test_prompt_lists_references_and_writes_history_with_them():
    model = _tiny(True)
    prompt = model.build_prompt(_obs(history=["put blue cylinder in tray"]))
    texts = [s.text for s in prompt.segments if hasattr(s, "text")]
    assert "Objects: red cube <o1>, tray, purple triangle <o2>, blue cylinder <o3>, red bin" in texts
    assert "Done so far: put <o3> blue cylinder in tray" in texts


def test_training_examples_shuffle_the_list_and_point_into_it():
    model = _tiny(True)
    obs = _obs()
    orders, rng = set(), random.Random(0)
    for _ in range(20):
        o, target = model.training_example(obs, "put purple triangle on red cube; done", rng)
        refs = ObjectRefs.from_detections(o.detections)
        assert sorted(o.detections) == sorted(DETECTED)
        assert target == refs.to_refs("put purple triangle on red cube; done")
        assert "<o" in target and refs.to_names(target) == "put purple triangle on red cube; done"
        orders.add(tuple(o.detections))
    assert len(orders) > 5  # the order varies, so a reference means nothing by itself
    plain = _tiny(False)
    assert plain.training_example(obs, "put purple triangle on red cube; done", rng) == (obs, "put purple triangle on red cube; done")


def test_enabling_references_keeps_the_old_tokens_logits_and_survives_save_load(tmp_path):
    from embodied.model import PalmE

    model = _tiny(False)
    prompt = model.build_prompt(_obs())
    with torch.no_grad():
        before = model([prompt]).logits  # (1, T, V)
    model.enable_object_refs()
    assert model.config.object_refs and model.lm.config.vocab_size == len(model.tokenizer) == before.shape[-1] + MAX_REFS
    model.save(tmp_path / "m")
    loaded = PalmE.load(tmp_path / "m")
    assert loaded.config.object_refs
    p = loaded.build_prompt(_obs())
    with torch.no_grad():
        a, b = model([p]).logits, loaded([p]).logits
    assert torch.equal(a, b)
    # the old vocabulary's logits are unchanged where the prompt has no reference tokens
    plain_prompt = model.build_prompt(replace(_obs(), detections=[]))
    with torch.no_grad():
        after = model([plain_prompt]).logits[..., : before.shape[-1]]
    m2 = _tiny(False)
    with torch.no_grad():
        ref = m2([m2.build_prompt(replace(_obs(), detections=[]))]).logits
    assert torch.allclose(after, ref, atol=1e-5)


def test_planner_with_references_names_only_listed_objects_engine_equal_to_reference():
    from embodied.model.planner import ModelPlanner

    model = _tiny(True)
    eng = ModelPlanner(model, max_new_tokens=24)
    ref = ModelPlanner(model, use_engine=False, max_new_tokens=24)
    objects = {d for d in DETECTED if "bin" not in d and d != "tray"}
    for seed in range(3):
        obs = _obs(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random weights rarely reach "done" within the budget
            steps = list(eng.plan(obs))
            assert steps == list(ref.plan(obs))
        assert steps
        for s in steps:
            if not s.is_done:
                assert s.object in objects
                assert s.verb == "move" or s.target in DETECTED


def test_a_listed_reference_carries_its_name_embedding():
    model = _tiny(True)
    prompt = model.build_prompt(_obs())
    toks = model.tokenize(prompt)
    names = [model.tokenizer.decode(n).strip() for _, n in toks.ref_names]
    assert names == ["red cube", "purple triangle", "blue cylinder"]
    with torch.no_grad():
        embeds, _ = model.embed([prompt])  # (1, T, D)
        table = model.lm.get_input_embeddings()
        for pos, name in toks.ref_names:
            want = table(torch.tensor([toks.ids[pos]] + name)).sum(0)
            assert torch.allclose(embeds[0, pos], want, atol=1e-6)
        # a reference outside the list (the history) is a plain token embedding
        hist = model.build_prompt(_obs(history=["put blue cylinder in tray"]))
        htoks = model.tokenize(hist)
        listed = {p for p, _ in htoks.ref_names}
        ref3 = model.tokenizer.convert_tokens_to_ids("<o3>")
        later = [p for p, t in enumerate(htoks.ids) if t == ref3 and p not in listed]
        assert later
        he, _ = model.embed([hist])
        assert torch.allclose(he[0, later[0]], table(torch.tensor(ref3)), atol=1e-6)


def test_pointer_attention_loss_is_the_heads_real_attention_and_trains_it():
    model = _tiny(True).train()
    obs = _obs()
    prompts, targets = [model.build_prompt(obs)], ["put <o2> purple triangle on <o1> red cube; done"]
    out = model(prompts, targets, ref_attention=1.0)
    base = model(prompts, targets).loss
    extra = float((out.loss - base).detach())
    # the same number from the attention weights eager attention reports
    toks = model.tokenize(prompts[0])
    listed = {toks.ids[p]: p for p, _ in toks.ref_names}
    tgt = model.encode_text(targets[0])
    model.lm.config._attn_implementation = "eager"
    try:
        embeds, mask = model.embed(prompts)
        full = torch.cat([embeds, model.lm.get_input_embeddings()(torch.tensor([tgt]))], 1)
        m = torch.ones(full.shape[:2], dtype=torch.long)
        att = model.lm(inputs_embeds=full, attention_mask=m, output_attentions=True).attentions[-1][0, 0]  # (T, T)
    finally:
        model.lm.config._attn_implementation = "sdpa"
    want = []
    for j, t in enumerate(tgt):
        if t in listed:
            want.append(-torch.log(att[len(toks.ids) + j - 1, listed[t]]))
    assert len(want) == 2
    assert extra == pytest.approx(float(torch.stack(want).mean().detach()), rel=1e-3)
    # a few steps on that loss alone make the head point where it should
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        loss = model(prompts, targets, ref_attention=1.0).loss - model(prompts, targets).loss.detach()
        first = float(loss) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5 * first
