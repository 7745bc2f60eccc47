"""DDP smoke run: the training script under torchrun with 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from embodied.data.synthetic import write_synthetic

ROOT = Path(__file__).resolve().parent.parent


def test_two_process_gloo_training(tmp_path):
    data = write_synthetic(tmp_path / "syn", 64, image_size=32)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "embodied.commands.train",
           f"data={data}", f"out={out}", "model=tiny", "steps=6", "batch_size=4", "log_every=2", "val_every=3",
           "warmup_steps=2", "val_fraction=0.2", "progress=false", "threads=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in recs if "loss" in r and "step" in r]
    assert [r["step"] for r in logs] == [2, 4, 6]
    assert logs[-1]["examples"] == 6 * 4 * 2  # both processes trained on their own shard
    summary = next(r["summary"] for r in recs if "summary" in r)
    assert summary["steps_done"] == 6
    assert json.loads((out / "train_state.json").read_text())["finished"]
