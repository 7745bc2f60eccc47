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
