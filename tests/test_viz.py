"""viz=rerun (optional extra): a real episode recorded to an .rrd file and read back with Rerun's reader."""

from __future__ import annotations

from collections import Counter

import pytest

from embodied.commands.viz import check_viz
from embodied.core.errors import ConfigError


def test_viz_settings_are_checked():
    check_viz("none")
    with pytest.raises(ConfigError, match="unknown viz"):
        check_viz("opengl")
    pytest.importorskip("rerun")
    with pytest.raises(ConfigError, match="exclusive"):
        check_viz("rerun", save="a.rrd", connect="rerun+http://127.0.0.1:9876/proxy")


def _rows(path) -> Counter:
    """Rows logged per entity path in an .rrd file."""
    from rerun.chunk import RrdReader

    counts: Counter = Counter()
    for chunk in RrdReader(str(path)).stream():
        counts[str(chunk.entity_path)] += chunk.num_rows
    return counts


def test_rollout_episode_to_rrd(tmp_path):
    pytest.importorskip("rerun")
    from embodied.commands.episodes import make_env, run_episode
    from embodied.commands.planners import make_planner
    from embodied.commands.viz import make_viz

    env = make_env("tower", "L1", "test", 128)
    try:
        rec = run_episode(env, make_planner("oracle"), seed=2, viz=make_viz("rerun", "t", save=str(tmp_path / "ep.rrd")))
    finally:
        env.close()
    rows = _rows(tmp_path / "ep.rrd")
    assert rows["/camera/front"] >= rec["steps"] and rows["/camera/front"] == rows["/perception/detections"]
    assert rows["/plan/stream"] == rec["steps"] and rows["/episode/result"] == rec["steps"]  # each streamed step, each result
    assert rows["/robot/joints/j0"] == rows["/camera/front"] and rows["/robot/ee"] == rows["/camera/front"]
    assert rows["/episode/outcome"] == 1 and rows["/episode/instruction"] == 1


def test_eval_saves_one_recording_per_episode(tmp_path):
    pytest.importorskip("rerun")
    from embodied.commands.eval import EvalConfig, evaluate

    evaluate(EvalConfig(planner="oracle", level="L1", episodes=2, tasks="stack", out=str(tmp_path / "ev"), progress=False,
                        viz="rerun", viz_save=str(tmp_path / "ev" / "rerun")))
    files = sorted((tmp_path / "ev" / "rerun").glob("*.rrd"))
    assert len(files) == 2 and all(_rows(f)["/plan/stream"] >= 1 for f in files)


# --- experiment logging of `embodied train` (logger=tensorboard|wandb, optional extras) -------------------


def _train(tmp_path, *extra):
    from embodied.commands.config import compose, validated
    from embodied.data.synthetic import write_synthetic
    from embodied.model.training import TrainConfig, train

    data = write_synthetic(tmp_path / "syn", 48, image_size=32)
    out = tmp_path / "run"
    cfg = validated(compose("train", [f"data={data}", f"out={out}", "model=tiny", "batch_size=8", "warmup_steps=2", "steps=6",
                                      "val_every=3", "log_every=2", "val_fraction=0.15", "progress=false", *extra]), TrainConfig)
    return out, train(cfg)


def test_train_logs_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = _train(tmp_path, "logger=tensorboard")
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4, 6]
    assert [e.step for e in acc.Scalars("val/val_loss")] == [3, 6]
    assert {"train/lr", "train/tokens_per_s", "val/val_exact_match"} <= set(acc.Tags()["scalars"])


def test_train_logs_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out, summary = _train(tmp_path, "logger=wandb", "wandb_mode=offline")
    runs = list((out / "wandb").glob("offline-run-*"))  # written without a network; `wandb sync` uploads it
    assert len(runs) == 1 and summary["steps_done"] == 6
    records = list(runs[0].glob("run-*.wandb"))
    assert len(records) == 1
    # the run's record log (wandb's own binary format, no reader in its public API): the history keys
    # of each logged record and the summary are in it, as protobuf strings
    raw = records[0].read_bytes()
    missing = [k for k in (b"loss", b"tokens_per_s", b"val_loss", b"val_exact_match", b"steps_done") if k not in raw]
    assert not missing, (missing, len(raw))


def test_unknown_logger_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown logger"):
        _train(tmp_path, "logger=mlflow")
