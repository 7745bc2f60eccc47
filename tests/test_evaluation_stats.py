"""Statistics and bookkeeping of evaluations (no simulator needed)."""

import json

import pytest

from embodied.commands.compare import compare
from embodied.commands.episodes import episode_seed, unique_path
from embodied.commands.stats import mcnemar_exact, summarise, wilson_interval
from embodied.core.errors import ConfigError


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-3)
    lo, hi = wilson_interval(50, 50)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.9287, abs=1e-3)


def test_episode_seed_depends_on_seed_task_and_index():
    s = episode_seed(0, "stack", 3)
    assert s == episode_seed(0, "stack", 3)
    assert len({s, episode_seed(1, "stack", 3), episode_seed(0, "tower", 3), episode_seed(0, "stack", 4)}) == 4
    assert 0 <= s < 2**31


def test_summary_schema():
    recs = [{"task": "a", "success": True}, {"task": "a", "success": False}, {"task": "b", "success": True}]
    s = summarise(recs, "L1", "oracle", 7)
    assert s["level"] == "L1" and s["planner"] == "oracle" and s["seed"] == 7
    assert s["overall"] == {"success_rate": pytest.approx(2 / 3), "episodes": 3, "ci95": s["overall"]["ci95"]}
    assert s["tasks"]["a"]["success_rate"] == 0.5 and s["tasks"]["a"]["episodes"] == 2
    lo, hi = s["tasks"]["b"]["ci95"]
    assert 0 < lo < 1 and hi == pytest.approx(1.0)


def test_compare_pairs_on_shared_seeds(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    rows_a = [{"task": "t", "seed": s, "success": s % 2 == 0} for s in range(10)]
    rows_b = [{"task": "t", "seed": s, "success": True} for s in range(5, 15)]
    (a / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    (b / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_b))
    r = compare(a, b)["rows"]["overall"]
    assert r["pairs"] == 5  # seeds 5..9
    assert r["a_rate"] == pytest.approx(2 / 5) and r["b_rate"] == 1.0
    assert r["only_b"] == 3 and r["only_a"] == 0 and r["both"] == 2


def test_compare_without_shared_seeds_is_a_named_error(tmp_path):
    for d, seeds in (("a", [1]), ("b", [2])):
        (tmp_path / d).mkdir()
        (tmp_path / d / "episodes.jsonl").write_text(json.dumps({"task": "t", "seed": seeds[0], "success": True}) + "\n")
    with pytest.raises(ConfigError, match="share no"):
        compare(tmp_path / "a", tmp_path / "b")


def test_mcnemar_exact():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(5, 5) == 1.0


def test_unique_path_never_overwrites(tmp_path):
    p = tmp_path / "v.mp4"
    assert unique_path(p) == p
    p.write_bytes(b"x")
    q = unique_path(p)
    assert q != p and q.name == "v-1.mp4"
