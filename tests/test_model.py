"""PalmE: sequence assembly, padding, prefix, loss masking, save/load, pretrained parts."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from embodied.core.errors import ConfigError, ObservationError
from embodied.core.observation import Observation
from embodied.model import ImageSegment, ModelConfig, MultimodalPrompt, PalmE, StateSegment, TextSegment
from embodied.model.palme import IGNORE

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"
CORPUS = ["put all the red things in the tray", "put red cube in tray; done", "stack the cubes"]


def tiny_config() -> ModelConfig:
    return ModelConfig.from_dict(OmegaConf.to_container(OmegaConf.load(CONFIGS / "tiny.yaml")))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PalmE.create(tiny_config(), CORPUS).eval()


def obs(seed=0, instruction="put all the red things in the tray", history=(), cams=("front",)):
    rng = np.random.default_rng(seed)
    return Observation(
        frames={c: rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for c in cams},
        state=rng.normal(size=15).astype(np.float32), instruction=instruction, history=list(history),
    )


def test_build_prompt_order_and_prefix(model):
    p = model.build_prompt(obs(history=["put red cube in tray"], cams=("wrist", "front")))
    kinds = [type(s).__name__ for s in p.segments]
    assert kinds == ["TextSegment", "TextSegment", "ImageSegment", "ImageSegment", "TextSegment", "StateSegment",
                     "TextSegment", "TextSegment"]
    assert p.segments[0].text.startswith("Instruction: ")
    assert [s.camera for s in p.segments if isinstance(s, ImageSegment)] == ["front", "wrist"]
    assert p.segments[-2].text == "Done so far: put red cube in tray"
    assert model.build_prompt(obs()).segments[-2].text == "Done so far: nothing"
    # the prefix depends only on the instruction
    a, b = model.tokenize(p), model.tokenize(model.build_prompt(obs(seed=5, cams=("front",))))
    assert a.prefix_length == b.prefix_length and a.ids[: a.prefix_length] == b.ids[: b.prefix_length]
    assert a.ids[a.prefix_length] == model.image_token_id  # "Scene:" is in the prefix, the frame is not
    other = model.tokenize(model.build_prompt(obs(instruction="stack the cubes")))
    assert other.ids[: other.prefix_length] != a.ids[: a.prefix_length]


def test_placeholders_interleaved_frames_and_states(model):
    rng = np.random.default_rng(1)
    f1, f2 = (rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    s1, s2 = (rng.normal(size=15).astype(np.float32) for _ in range(2))
    prompt = MultimodalPrompt([StateSegment(s1), TextSegment("one"), ImageSegment(f1), StateSegment(s2),
                               ImageSegment(f2), TextSegment("two")])
    t = model.tokenize(prompt)
    P, k = model.tokens_per_frame, model.config.state_tokens
    n_one = len(model.encode_text("one"))
    expect_kinds = ["text"] + ["state"] * k + ["text"] * n_one + ["image"] * P + ["state"] * k + ["image"] * P
    got = ["image" if i == model.image_token_id else "state" if i == model.state_token_id else "text" for i in t.ids]
    assert got[: len(expect_kinds)] == expect_kinds and t.ids[0] == model.tokenizer.bos_token_id
    embeds, mask = model.embed([prompt])
    assert embeds.shape == (1, len(t.ids), model.lm.config.hidden_size) and mask.shape == (1, len(t.ids))
    with torch.no_grad():
        from embodied.model.encoders import frames_to_tensor

        img = model.vision_proj(model.vision(frames_to_tensor([f1, f2], model.config.vision.image_size, model.device)))
        st = model.state_proj(model.state_encoder(torch.from_numpy(np.stack([s1, s2]))))
    ids = torch.tensor(t.ids)
    torch.testing.assert_close(embeds[0, ids == model.image_token_id], img.reshape(-1, img.shape[-1]))
    torch.testing.assert_close(embeds[0, ids == model.state_token_id], st.reshape(-1, st.shape[-1]))
    text_pos = (ids != model.image_token_id) & (ids != model.state_token_id)
    torch.testing.assert_close(embeds[0, text_pos], model.lm.get_input_embeddings()(ids[text_pos]))


def test_left_padding_gives_same_logits_as_alone(model):
    long_p = model.build_prompt(obs(history=["put red cube in tray", "put red triangle in tray"]))
    short_p = model.build_prompt(obs(seed=3))
    embeds, mask = model.embed([long_p, short_p])
    n_short = len(model.tokenize(short_p).ids)
    assert mask[1].tolist() == [0] * (mask.shape[1] - n_short) + [1] * n_short
    with torch.no_grad():
        both = model([long_p, short_p]).logits
        alone = model([short_p]).logits
    torch.testing.assert_close(both[1, -n_short:], alone[0], atol=1e-4, rtol=1e-4)


def test_loss_only_on_plan_tokens(model):
    p = model.build_prompt(obs())
    target = PalmE.plan_target(["put red cube in tray"])
    assert target == "put red cube in tray; done"
    out = model([p], [target])
    n_target = len(model.encode_text(target)) + 1  # + <eos>
    assert out.target_tokens == n_target
    lab = out.labels[0]
    assert (lab != IGNORE).sum() == n_target and lab[-1] == model.tokenizer.eos_token_id
    assert torch.isfinite(out.loss)
    # changing the target changes the loss; the loss is a mean over the target tokens
    logp = torch.log_softmax(out.logits[0, :-1].float(), -1)
    lab1 = lab[1:]
    manual = -logp[lab1 != IGNORE].gather(1, lab1[lab1 != IGNORE][:, None]).mean()
    torch.testing.assert_close(out.loss, manual)


def test_save_load_identical_logits(model, tmp_path):
    model.save(tmp_path / "m")
    for f in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "lm/config.json"):
        assert (tmp_path / "m" / f).is_file(), f
    again = PalmE.load(tmp_path / "m")
    prompts = [model.build_prompt(obs()), model.build_prompt(obs(seed=2, history=["put red cube in tray"]))]
    with torch.no_grad():
        torch.testing.assert_close(model(prompts).logits, again(prompts).logits, atol=0, rtol=0)
    assert again.tokenizer.get_vocab() == model.tokenizer.get_vocab()


def test_bad_inputs_are_named_errors(model, tmp_path):
    with pytest.raises(ObservationError, match="camera"):
        m2 = PalmE(tiny_config(), model.tokenizer)
        m2.config.cameras = ["wrist"]
        m2.build_prompt(obs())
    with pytest.raises(ObservationError, match="state"):
        model.tokenize(MultimodalPrompt([StateSegment(np.zeros(3, np.float32))]))
    with pytest.raises(ConfigError, match="not a saved PalmE"):
        PalmE.load(tmp_path)
    with pytest.raises(ConfigError, match="unknown model config"):
        ModelConfig.from_dict({"hiden_size": 3})


def test_ablate_frames_changes_the_image_embeddings(model):
    o = obs()
    e1, _ = model.embed([model.build_prompt(o)])
    e2, _ = model.embed([model.build_prompt(o, ablate="frames")])
    ids = torch.tensor(model.tokenize(model.build_prompt(o)).ids)
    img = ids == model.image_token_id
    assert not torch.allclose(e1[0, img], e2[0, img])
    torch.testing.assert_close(e1[0, ~img], e2[0, ~img])


def test_pretrained_lm_and_vision_directories(tmp_path, model):
    from transformers import LlamaConfig, LlamaForCausalLM, ViTConfig, ViTModel

    lm_dir, vit_dir = tmp_path / "lm", tmp_path / "vit"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(model.tokenizer), hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2)).save_pretrained(lm_dir)
    model.tokenizer.save_pretrained(str(lm_dir))
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)).save_pretrained(vit_dir)
    cfg = tiny_config()
    cfg.lm.pretrained, cfg.vision.pretrained = str(lm_dir), str(vit_dir)
    m = PalmE.create(cfg).eval()
    p = m.build_prompt(obs())
    assert m.tokens_per_frame == 17  # 16 patches + CLS
    out = m([p], ["put red cube in tray; done"])
    assert torch.isfinite(out.loss)
    m.save(tmp_path / "saved")
    again = PalmE.load(tmp_path / "saved")
    with torch.no_grad():
        torch.testing.assert_close(m([p]).logits, again([p]).logits, atol=0, rtol=0)


def test_noisy_target_inputs_keep_clean_labels(model):
    """``input_targets`` changes what the model reads, never what it is scored against."""
    import random

    from embodied.model.augment import swap_colours as _swap_colours

    p = model.build_prompt(obs())
    clean = PalmE.plan_target(["put red cube in tray"])
    noisy = _swap_colours(clean, 1.0, random.Random(0))
    assert noisy != clean and noisy.split(" ")[2:] == clean.split(" ")[2:] and noisy.split(" ")[1] != "red"
    a, b = model([p], [clean]), model([p], [clean], input_targets=[noisy])
    assert torch.equal(a.labels, b.labels)
    assert not torch.allclose(a.logits, b.logits)  # the swapped colour is read by the model
    n = len(model.encode_text(clean)) + 1
    # positions before the swapped colour see the same inputs: identical logits there
    first = int((a.labels[0] != IGNORE).nonzero()[0])
    torch.testing.assert_close(a.logits[0, : first + 1], b.logits[0, : first + 1])
    assert a.target_tokens == b.target_tokens == n


def test_prompt_objects_lists_perception_and_frames_ablation_clears_it():
    import dataclasses

    torch.manual_seed(0)
    m = PalmE.create(dataclasses.replace(tiny_config(), prompt_objects=True), CORPUS).eval()
    o = obs()
    o.detections = ["blue bin", "red cube"]
    texts = [s.text for s in m.build_prompt(o).segments if isinstance(s, TextSegment)]
    assert texts[2] == "Objects: blue bin, red cube" and texts[3] == "Robot:"
    blanked = [s.text for s in m.build_prompt(o, ablate="frames").segments if isinstance(s, TextSegment)]
    assert blanked[2] == "Objects: nothing"
    listless = m.build_prompt(o, ablate="objects")
    assert [s.text for s in listless.segments if isinstance(s, TextSegment)][2] == "Objects: nothing"
    e_full, _ = m.embed([m.build_prompt(o)])  # (1, T, D)
    e_listless, _ = m.embed([listless])  # (1, T', D), T' < T: 'nothing' is shorter than the list
    e_blank, _ = m.embed([m.build_prompt(o, ablate="frames")])  # (1, T', D)
    image = ~(e_listless[0] == e_blank[0]).all(-1)  # (T',) the positions that only frames change
    assert image.any() and (e_full[0, : e_listless.shape[1]][image] == e_listless[0][image]).all()
    # the option is saved with the model; older configs (without the key) load with it off
    assert ModelConfig.from_dict(m.config.to_dict()).prompt_objects
    old = m.config.to_dict()
    del old["prompt_objects"]
    assert not ModelConfig.from_dict(old).prompt_objects


def test_prompt_relations_follow_each_listed_object():
    import dataclasses

    torch.manual_seed(0)
    m = PalmE.create(dataclasses.replace(tiny_config(), prompt_objects=True, prompt_relations=True), CORPUS).eval()
    o = obs()
    o.detections = ["blue cube", "red bin", "red cube"]
    o.relations = {"red cube": "on blue cube", "blue cube": "on table"}
    texts = [s.text for s in m.build_prompt(o).segments if isinstance(s, TextSegment)]
    assert texts[2] == "Objects: blue cube on table, red bin, red cube on blue cube"
    assert [s.text for s in m.build_prompt(o, ablate="objects").segments if isinstance(s, TextSegment)][2] == "Objects: nothing"
    assert ModelConfig.from_dict(m.config.to_dict()).prompt_relations
    with pytest.raises(ConfigError, match="needs prompt_objects"):
        dataclasses.replace(tiny_config(), prompt_relations=True).check()
    with pytest.raises(ConfigError, match="cannot be combined"):
        dataclasses.replace(tiny_config(), prompt_objects=True, prompt_relations=True, object_refs=True).check()
