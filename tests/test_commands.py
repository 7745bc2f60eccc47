"""The commands as a newcomer meets them: --help, bad settings caught before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from embodied.commands.cli import COMMANDS, main
from tests.test_bridge_planners import ROOT


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_keys_with_defaults_and_comments(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"embodied {command}\n")
    assert "keys (override as key=value):" in out
    assert "=" in out.split("keys (override as key=value):")[1]


def test_eval_help_shows_defaults_and_the_config_comments(capsys):
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "planner=oracle" in out and "# oracle | model | remote | random" in out
    assert "episodes=10" in out and "# per task family" in out


def test_a_misspelt_planner_is_refused_before_the_output_folder_is_touched(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "planner=modle", f"out={out}", "episodes=1", "tasks=stack"]) == 2
    err = capsys.readouterr().err
    assert "unknown planner 'modle'" in err and "did you mean 'model'" in err
    assert not out.exists()
    # the corrected command is not refused as "other settings"
    assert main(["eval", "planner=oracle", f"out={out}", "episodes=1", "tasks=stack", "progress=false"]) == 0


@pytest.mark.parametrize("override, message", [
    ("level=L7", "unknown level"), ("ablate=eyes", "unknown ablate"), ("tasks=[stack,juggle]", "unknown task"),
    ("object_aliases=maybe", "object_aliases"), ("model_dir=/nonexistent", "no model.safetensors"),
])
def test_eval_settings_are_all_checked_before_writing(override, message, tmp_path, capsys):
    out = tmp_path / "eval"
    planner = "planner=model" if override.startswith(("object", "model")) else "planner=oracle"
    assert main(["eval", planner, override, f"out={out}"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_serve_with_a_bad_bind_address_is_a_named_error():
    out = subprocess.run([sys.executable, "-m", "embodied.commands.cli", "serve", "bind=garbage"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "cannot bind to 'garbage'" in out.stderr and "Traceback" not in out.stderr
