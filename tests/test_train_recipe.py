"""scripts/train_default.sh: its stages parse and its QUICK mode runs from nothing to an evaluated model."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train_default.sh"
STAGES = ["data_templates", "data_scene", "data_wording", "data_links", "train_base", "train_robust", "train_wording", "eval"]


def run(env: dict, *args: str, timeout: int = 60) -> str:
    out = subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_plan_lists_every_stage_with_its_command_and_expected_times():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    text = run({}, "--plan")
    for i, stage in enumerate(STAGES, 1):
        assert f"[{i}/{len(STAGES)}] {stage}:" in text
    assert text.count("min on 2 CPU cores") == len(STAGES) + 1 and text.count("min on one GPU") == len(STAGES) + 1
    assert "phrasing=train" in text and "phrasing=dev" in text  # dev only in the evaluation
    assert "datagen" in text.split("[4/")[0] and "phrasing=dev" not in text.split("[8/")[0]
    quick = run({"QUICK": "1"}, "--plan")
    assert "episodes=2 " in quick and "steps=30 " in quick


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_mode_runs_end_to_end_and_resumes(tmp_path):
    env = {"QUICK": "1", "OUT": str(tmp_path / "out"), "DATA": str(tmp_path / "data"), "WORKERS": "1", "THREADS": "1"}
    text = run(env, timeout=1500)
    for stage in STAGES:
        assert (tmp_path / "out" / f"{stage}.done").is_file()
    state = json.loads((tmp_path / "out" / "wording" / "train_state.json").read_text())
    assert state["finished"] and state["step"] == 30
    assert (tmp_path / "out" / "wording" / "model.safetensors").is_file()
    for ev in ("eval-L1", "eval-L2", "eval-L1-dev"):
        assert json.loads((tmp_path / "out" / ev / "summary.json").read_text())["overall"]["episodes"] == 10
    assert "overall" in text  # the comparison with the shipped rows
    assert list((tmp_path / "data" / "l1p").glob("*-train50.parquet"))
    again = run(env, timeout=120)  # every stage is done: nothing runs again
    assert again.count("done before: skipped") == len(STAGES)
