"""Training: the tiny config learns on CPU in seconds; checkpoints resume; configs are validated."""

import json
import math

import pytest

from embodied.commands.config import compose, validated
from embodied.core.errors import ConfigError, TrainingDivergedError
from embodied.data.synthetic import write_synthetic
from embodied.model.training import TrainConfig, lr_at, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("syn"), 96, image_size=32)


def cfg_for(data, out, *extra):
    return validated(compose("train", [f"data={data}", f"out={out}", "model=tiny", "batch_size=8", "warmup_steps=3",
                                       "lr=0.003", "val_every=10", "log_every=2", "val_fraction=0.15",
                                       "progress=false", *extra]), TrainConfig)


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_model_loss_falls_and_checkpoint_loads(data, tmp_path):
    from embodied.model import PalmE

    out = tmp_path / "run"
    summary = train(cfg_for(data, out, "steps=30"))
    recs = records(out)
    losses = [r["loss"] for r in recs if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    vals = [r for r in recs if "val_loss" in r]
    assert len(vals) == 3 and vals[-1]["val_loss"] < vals[0]["val_loss"]
    assert 0.0 <= vals[-1]["val_exact_match"] <= 1.0 and summary["mean_tokens_per_s"] > 0
    state = json.loads((out / "train_state.json").read_text())
    assert state["finished"] and state["step"] == 30
    assert not (out / "optimizer.safetensors").exists()  # removed once finished (keep_optimizer=false)
    model = PalmE.load(out)
    assert model.config.name == "tiny"
    # the object names it trained on, for the planner's aliases of objects it never saw
    from embodied.data.dataset import PlanDataset

    assert model.config.known_objects and model.config.known_objects == PlanDataset(data, "train", 0.15).object_names()
    # keep_best: the weights of the lowest validation loss, as a loadable model directory
    best = json.loads((out / "best" / "best.json").read_text())
    lowest = min(vals, key=lambda r: r["val_loss"])
    assert (best["step"], best["val_loss"]) == (lowest["step"], lowest["val_loss"])
    assert PalmE.load(out / "best").config.name == "tiny"


def test_stop_on_time_budget_and_resume(data, tmp_path):
    out = tmp_path / "run"
    train(cfg_for(data, out, "steps=8", "max_minutes=0", "keep_optimizer=true"))  # stops after the first step
    state = json.loads((out / "train_state.json").read_text())
    assert state["step"] == 1 and state["finished"]  # the time budget ends the run
    assert (out / "optimizer.safetensors").is_file()
    train(cfg_for(data, out, "steps=10", "lr=0.0"))  # a longer run resumes from the checkpoint (weights frozen)
    steps = [r["step"] for r in records(out) if "loss" in r]
    assert steps == [2, 4, 6, 8, 10]  # continued from step 1, not restarted
    assert train(cfg_for(data, out, "steps=10"))["step"] == 10  # finished: nothing more to do
    assert [r["step"] for r in records(out) if "loss" in r] == steps
    assert json.loads((out / "train_state.json").read_text())["finished"]
    assert not (out / "optimizer.safetensors").exists()
    # the resumed run compared against the first run's best (step 1) instead of starting over:
    # with lr 0 its validation loss only ties, so the best stays at step 1
    vals = [r for r in records(out) if "val_loss" in r]
    assert [r["step"] for r in vals] == [1, 10] and vals[0]["val_loss"] == pytest.approx(vals[1]["val_loss"])
    assert json.loads((out / "best" / "best.json").read_text())["step"] == 1
    train(cfg_for(data, out, "steps=2", "resume=false", "keep_best=false"))  # a new run drops the old best
    assert not (out / "best").exists()


def test_lr_schedule_warms_up_then_decays():
    c = TrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    lrs = [lr_at(s, c) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] >= 0.1 and lrs[-1] < 0.11


def test_config_errors_are_named(tmp_path):
    with pytest.raises(ConfigError, match="stepz"):
        compose("train", ["stepz=3"])
    with pytest.raises(ConfigError):
        validated(compose("train", ["steps=lots"]), TrainConfig)
    with pytest.raises(ConfigError):
        compose("train", ["model.lm.hiden_size=3"])
    with pytest.raises(ConfigError, match="instruction_word_noise is a probability"):
        train(validated(compose("train", [f"data={tmp_path}/none", f"out={tmp_path}/o", "instruction_word_noise=1.5"]), TrainConfig))
    with pytest.raises(ConfigError, match="datagen"):
        train(validated(compose("train", [f"data={tmp_path}/none", f"out={tmp_path}/o", "model=tiny"]), TrainConfig))


def test_time_budget_drives_the_decay_and_word_noise_keeps_grammar_words():
    import random

    from embodied.model.augment import drop_words as _drop_words
    from embodied.model.augment import noise_words as _noise_words

    c = TrainConfig(steps=1000, warmup_steps=0, lr=1.0, min_lr_ratio=0.1, max_minutes=1.0)
    assert lr_at(10, c, elapsed_s=0.0) > 0.99 and lr_at(10, c, elapsed_s=60.0) == pytest.approx(0.1)
    rng = random.Random(0)
    out = _drop_words("please could you put the red cube into the tray", 1.0, rng)
    assert out == "put red cube tray"
    text = "please could you put the red cube into the tray"
    noisy = _noise_words(text, 1.0, rng).split()
    assert len(noisy) == len(text.split()) + 1  # every word kept or replaced, one made-up word inserted
    assert [w for w in noisy if w in ("put", "red", "cube", "tray")] == ["put", "red", "cube", "tray"]
    assert not {"please", "could", "you", "the", "into"} & set(noisy)
    assert _noise_words(text, 0.0, rng) == text


def test_blank_frames_keeps_the_perception_list():
    import numpy as np

    from embodied.core.observation import Observation
    from embodied.model.augment import blank_frames as _blank_frames

    obs = Observation({"front": np.full((8, 8, 3), 9, np.uint8)}, np.ones(15, np.float32), "unstack all the blocks",
                      depth={"front": np.ones((8, 8), np.float32)}, detections=["red cube", "blue cube"],
                      relations={"red cube": "on blue cube"})
    blank = _blank_frames(obs)
    assert not blank.frames["front"].any() and not blank.depth["front"].any()
    assert blank.detections == obs.detections and blank.relations == obs.relations and blank.state.all()
    assert obs.frames["front"].all()  # the input is untouched


def test_init_fine_tunes_from_a_model_directory(data, tmp_path):
    import torch

    from embodied.model import PalmE

    base = tmp_path / "base"
    train(cfg_for(data, base, "steps=4"))
    meta = json.loads((base / "config.json").read_text())
    trained_on = meta["model"]["known_objects"]
    meta["model"]["known_objects"] = trained_on + ["pink hexagon"]  # as if the base had seen one more object
    (base / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "ft"
    train(cfg_for(data, out, "steps=2", f"init={base}", "lr=0.0"))  # lr 0: the weights must be the base's
    a, b = PalmE.load(base), PalmE.load(out)
    assert b.tokenizer.get_vocab() == a.tokenizer.get_vocab()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not a.config.prompt_objects and not b.config.prompt_objects
    assert b.config.known_objects == sorted(trained_on + ["pink hexagon"])  # the base's names and its data's
    # fine-tuning may switch on the perception list in the prompt (same weights, longer prompt)
    train(cfg_for(data, tmp_path / "ft_obj", "steps=2", f"init={base}", "model.prompt_objects=true",
                  "target_colour_noise=0.5", "alias_noise=0.5"))
    assert PalmE.load(tmp_path / "ft_obj").config.prompt_objects
    with pytest.raises(ConfigError, match="init="):
        train(cfg_for(data, tmp_path / "x", "steps=2", f"init={tmp_path / 'missing'}"))


def test_object_references_train_from_scratch_and_by_fine_tuning(data, tmp_path):
    from embodied.model import PalmE

    out = tmp_path / "refs"
    train(cfg_for(data, out, "steps=30", "model.prompt_objects=true", "model.object_refs=true", "ref_attention_loss=1.0"))
    losses = [r["loss"] for r in records(out) if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    model = PalmE.load(out)
    assert model.config.object_refs and "<o1>" in model.tokenizer.get_vocab()
    # fine-tuning switches a names model to references: 16 new tokens, the old rows kept
    base = tmp_path / "base"
    train(cfg_for(data, base, "steps=2", "model.prompt_objects=true"))
    ft = tmp_path / "ft_refs"
    train(cfg_for(data, ft, "steps=2", f"init={base}", "model.object_refs=true", "lr=0.0"))
    a, b = PalmE.load(base), PalmE.load(ft)
    assert b.config.object_refs and len(b.tokenizer) == len(a.tokenizer) + 16
    wa, wb = a.lm.get_input_embeddings().weight, b.lm.get_input_embeddings().weight
    assert wb.shape[0] == wa.shape[0] + 16 and (wb[: wa.shape[0]] == wa).all()
    with pytest.raises(ConfigError, match="prompt_objects"):
        train(cfg_for(data, tmp_path / "bad", "steps=2", "model.object_refs=true"))


def test_bf16_autocast_trains_on_cpu_too(data, tmp_path):
    """precision=bf16 is the CUDA default; on CPU it runs the same autocast path where a test can see it."""
    out = tmp_path / "run"
    train(cfg_for(data, out, "steps=30", "precision=bf16"))
    losses = [r["loss"] for r in records(out) if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < 0.5 * losses[0]


def _nan_loss_on(monkeypatch, bad_calls):
    """Make the training forward pass (not validation) return a NaN loss on the given calls."""
    import torch

    from embodied.model.palme import PalmE

    forward, calls = PalmE.forward, []

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if torch.is_grad_enabled():
            calls.append(1)
            if bad_calls(len(calls)):
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(PalmE, "forward", poisoned)


def test_a_nonfinite_step_is_skipped_and_the_weights_stay_finite(data, tmp_path, monkeypatch):
    import torch

    from embodied.model import PalmE

    _nan_loss_on(monkeypatch, lambda n: n in (3, 4, 9))
    out = tmp_path / "run"
    train(cfg_for(data, out, "steps=20"))
    recs = [r for r in records(out) if "loss" in r]
    assert recs[-1]["nonfinite_steps"] == 3
    # log_every=2: the window of steps 3-4 had no finite step and logs null; every other window a finite loss
    assert [r["step"] for r in recs if r["loss"] is None] == [4]
    assert all(math.isfinite(r["loss"]) for r in recs if r["step"] != 4) and recs[-1]["loss"] < recs[0]["loss"]
    assert all(bool(torch.isfinite(p).all()) for p in PalmE.load(out).parameters())


def test_nonfinite_steps_in_a_row_stop_the_run_with_a_named_error(data, tmp_path, monkeypatch):
    import torch

    from embodied.model import PalmE

    _nan_loss_on(monkeypatch, lambda n: n >= 5)
    out = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="5 steps in a row"):
        train(cfg_for(data, out, "steps=40", "max_nonfinite_steps=5"))
    assert all(bool(torch.isfinite(p).all()) for p in PalmE.load(out).parameters())  # the last good weights
    assert json.loads((out / "train_state.json").read_text())["step"] == 8  # resumable from the last good step
    monkeypatch.undo()
    # weights that are already NaN are refused before the first step
    model = PalmE.load(out)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    model.save(tmp_path / "nan")
    with pytest.raises(TrainingDivergedError, match="before training"):
        train(cfg_for(data, tmp_path / "from_nan", "steps=2", f"init={tmp_path / 'nan'}"))
    with pytest.raises(ConfigError, match="precision"):
        train(cfg_for(data, tmp_path / "x", "precision=fp16"))
