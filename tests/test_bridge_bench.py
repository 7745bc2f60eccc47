"""``embodied bench bridge`` runs end to end (tiny sizes) and writes the documented JSON."""

from __future__ import annotations

import json

from embodied.commands.bench_bridge import main


def test_bench_bridge_writes_bridge_json(tmp_path):
    result = main({"out": str(tmp_path), "repeats": 40, "warmup": 5, "rounds": 2, "throughput_s": 0.5})
    saved = json.loads((tmp_path / "bridge.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["frame"] == [224, 224, 3]
    for variant in (saved["ours"]["raw"], saved["ours"]["jpeg"], saved["baseline_websockets"], saved["floor_zmq_echo"]):
        assert 0 < variant["p50_ms"] <= variant["p99_ms"] and variant["n"] == 40
    assert saved["speedup_p50"] > 0 and saved["throughput_8_robots_per_s"] > 0
    assert saved["ours"]["jpeg"]["frame_bytes"] < 224 * 224 * 3 / 4
