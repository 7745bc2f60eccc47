"""``embodied bench perception`` end to end on one short episode: the report's keys and that its
numbers come from real matching (one scene with a known answer scored by hand)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("cv2")

from embodied.commands.cli import main as cli_main  # noqa: E402
from embodied.commands.perception_scenes import Scorer  # noqa: E402
from embodied.core.scene import PerceivedObject, PerceivedScene  # noqa: E402
from embodied.core.world import ObjectSpec, Placement, SceneSpec, WorldState  # noqa: E402


def test_bench_perception_writes_the_report(tmp_path):
    rc = cli_main(["bench", "perception", "level=L1", "episodes=1", "mid_steps=1", "held=false", f"out={tmp_path}",
                   "sizes=[[96,96]]", "size_scenes=1", "repeats=1"])
    assert rc == 0
    r = json.loads((tmp_path / "perception.json").read_text())
    for block in (r, r["randomized"]):
        for key in ("precision", "recall", "relation_accuracy"):
            assert 0.0 <= block[key] <= 1.0
        assert set(block["position_error_mm"]) == {"p50", "p95"}
        assert block["ms_per_frame"]["p50"] > 0 and block["render_ms_per_frame"]["p50"] > 0
    assert r["scenes"] == 2 and r["objects"] > 0 and r["recall"] > 0.5
    assert r["randomized"]["variation_example"]["scene"] == "put_in_container/L1/0/start"
    assert set(r["frame_sizes"]) == {"96x96"}
    assert r["targets"]["precision"] == 0.98 and isinstance(r["misses"], list)


def test_scorer_counts_name_distance_and_relation():
    a, b = ObjectSpec("red", "cube"), ObjectSpec("blue", "cylinder")
    world = WorldState(SceneSpec([a, b], {a.name: Placement(0.5, 0.0), b.name: Placement(0.5, 0.2)}),
                       {a.name: np.array([0.5, 0.0, 0.02]), b.name: np.array([0.5, 0.2, 0.02])}, {a.name: 0.0, b.name: 0.0})
    seen = PerceivedScene([PerceivedObject("red cube", "object", np.array([0.503, 0.0, 0.02])),  # 3 mm off: matched
                           PerceivedObject("blue cube", "object", np.array([0.5, 0.2, 0.02])),  # wrong name: a miss and a false one
                           PerceivedObject("unknown 1", "unknown", np.array([0.3, 0.0, 0.02]))],  # unknowns are not scored
                          {"red cube": "on table", "blue cube": "on table"})
    s = Scorer()
    s.add("k", world, seen, {"cpu": 2.0, "cpu_median": 2.0, "wall": 2.0}, 10.0, 2)
    r = s.summary()
    assert (r["precision"], r["recall"], r["relation_accuracy"]) == (0.5, 0.5, 1.0)
    assert r["position_error_mm"]["p50"] == pytest.approx(3.0, abs=0.01)
    assert r["ms_per_frame"]["p50"] == 1.0
    assert [f["object"] for f in r["failures"]] == ["blue cylinder"]
