"""``embodied bench bridge`` runs end to end (tiny settings) and writes the documented JSON."""

from __future__ import annotations

import json

import pytest

from embodied.commands.bench_bridge import main


def test_bench_bridge_writes_bridge_json(tmp_path):
    pytest.importorskip("grpc")
    pytest.importorskip("websockets")
    result = main({"out": str(tmp_path), "payloads": ["1x224", "vga_rgbd"], "robots": [1, 2], "repeats": 30, "warmup": 5,
                   "rounds": 2, "concurrent_s": 0.3, "jpeg": True})
    saved = json.loads((tmp_path / "bridge.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [(r["payload"], r["robots"]) for r in saved["rows"]] == [("1x224", 1), ("1x224", 2), ("vga_rgbd", 1), ("vga_rgbd", 2)]
    for r in saved["rows"]:
        for k in ("ours", "zmq_floor", "websockets", "grpc"):
            assert 0 < r[f"{k}_p50_ms"] <= r[f"{k}_p99_ms"], (k, r)
        assert r["ours_over_floor_p50"] == round(r["ours_p50_ms"] / r["zmq_floor_p50_ms"], 3)
        if r["robots"] > 1:
            assert all(r[f"{k}_plans_per_s"] > 0 for k in ("ours", "zmq_floor", "websockets", "grpc"))
        else:
            assert r["ours_n"] == 30 and r["ours_jpeg_p50_ms"] > 0
    assert saved["rows"][2]["bytes"] == 640 * 480 * 3 + 640 * 480 * 2 + 15 * 4  # RGB + uint16 depth + state
    assert saved["machine"]["cpus"] >= 1 and saved["targets_total"] == len(saved["targets"]) == 4
