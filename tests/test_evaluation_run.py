"""Real (small) evaluations in the simulator: output schema, resume, videos, compare."""

import json

import pytest

from embodied.commands.compare import compare
from embodied.commands.episodes import episode_seed
from embodied.commands.eval import EvalConfig, evaluate
from embodied.core.errors import ConfigError


def _cfg(out, **kw):
    base = dict(planner="oracle", level="L1", episodes=2, seed=3, workers=1, tasks="stack,move_to_location", out=str(out), progress=False)
    base.update(kw)
    return EvalConfig(**base)


def test_eval_outputs_schema_and_resume(tmp_path):
    out = tmp_path / "ev"
    s = evaluate(_cfg(out))
    assert {"level", "planner", "seed", "overall", "tasks"} <= set(s)
    assert s["overall"]["episodes"] == 4 and set(s["overall"]) >= {"success_rate", "episodes"}
    for family in ("stack", "move_to_location"):
        t = s["tasks"][family]
        assert t["episodes"] == 2 and 0.0 <= t["ci95"][0] <= t["success_rate"] <= t["ci95"][1] <= 1.0
    assert json.loads((out / "summary.json").read_text()) == s
    assert "| stack |" in (out / "summary.md").read_text()
    lines = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for r in lines:
        assert {"task", "seed", "success", "steps", "failure", "plan"} <= set(r)
        assert r["seed"] == episode_seed(3, r["task"], r["index"])
        assert r["success"] and r["plan"]  # the oracle solves these at L1

    # interrupt: drop the last episode and leave a torn line, then resume with more episodes
    text = (out / "episodes.jsonl").read_text().splitlines()
    (out / "episodes.jsonl").write_text("\n".join(text[:3]) + "\n" + text[3][:10])
    s2 = evaluate(_cfg(out, episodes=3))
    assert s2["new_episodes"] == 3  # the dropped one + one more per family
    assert s2["overall"]["episodes"] == 6
    kept = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(kept) == 6 and len({(r["task"], r["index"]) for r in kept}) == 6

    # the same seeds evaluated again compare pairwise on all 6 episodes
    assert compare(out, out)["rows"]["overall"]["pairs"] == 6


def test_eval_refuses_to_mix_settings(tmp_path):
    evaluate(_cfg(tmp_path, episodes=1, tasks="stack"))
    with pytest.raises(ConfigError, match="other settings"):
        evaluate(_cfg(tmp_path, episodes=1, tasks="stack", level="L2"))


def test_eval_unknown_task(tmp_path):
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(_cfg(tmp_path, tasks="juggle"))


def test_videos_are_never_overwritten(tmp_path):
    cfg = _cfg(tmp_path / "v", episodes=1, tasks="stack", video=True)
    evaluate(cfg)
    first = sorted((tmp_path / "v" / "videos").glob("*.mp4"))
    assert len(first) == 1 and first[0].stat().st_size > 1000
    (tmp_path / "v" / "episodes.jsonl").unlink()  # force the episode to run again
    evaluate(cfg)
    assert len(sorted((tmp_path / "v" / "videos").glob("*.mp4"))) == 2


def test_parallel_workers_give_the_same_episodes(tmp_path):
    a = evaluate(_cfg(tmp_path / "one", tasks="stack"))
    b = evaluate(_cfg(tmp_path / "two", tasks="stack", workers=2))
    rows = lambda d: sorted((r["index"], r["seed"], r["success"], r["plan"]) for r in map(json.loads, (d / "episodes.jsonl").read_text().splitlines()))  # noqa: E731
    assert rows(tmp_path / "one") == rows(tmp_path / "two")
    assert a["overall"] == b["overall"]


def test_eval_does_not_resume_with_other_model_weights(tmp_path):
    """Resuming into a folder evaluated with other weights (same model_dir path) is refused."""
    import shutil

    import torch

    from embodied.model import PalmE

    model_dir = tmp_path / "model"
    shutil.copytree("checkpoints/default", model_dir)
    cfg = _cfg(tmp_path / "ev", planner="model", model_dir=str(model_dir), episodes=1, tasks="stack")
    evaluate(cfg)
    m = PalmE.load(model_dir)
    with torch.no_grad():
        m.lm.lm_head.weight.add_(0.01)
    m.save(model_dir)  # retrained in place: same path, new weights
    with pytest.raises(ConfigError, match="model_sha256"):
        evaluate(cfg)
    # nor with the planner's object aliases switched off, nor with other known objects (same weights)
    fresh = _cfg(tmp_path / "ev3", planner="model", model_dir=str(model_dir), episodes=1, tasks="stack")
    evaluate(fresh)
    with pytest.raises(ConfigError, match="object_aliases"):
        evaluate(_cfg(tmp_path / "ev3", planner="model", model_dir=str(model_dir), episodes=1, tasks="stack",
                      object_aliases=False))
    meta = json.loads((model_dir / "config.json").read_text())
    meta["model"]["known_objects"] = meta["model"]["known_objects"][:3]
    (model_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="model_sha256"):
        evaluate(fresh)
    assert evaluate(_cfg(tmp_path / "ev2", planner="model", model_dir=str(model_dir), episodes=1, tasks="stack"))["overall"]["episodes"] == 1
