"""Bridge configs, key generation, and the robot side's import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from bridges import bench, daemon
from bridges.config import parse_overrides
from embodied.commands import daemon as daemon_command
from embodied.commands import serve as serve_command
from embodied.core.errors import ConfigError
from tests.test_bridge_planners import ROOT


@pytest.mark.parametrize("name, defaults", [("serve", serve_command.DEFAULTS), ("daemon", daemon_command.DEFAULTS), ("bench_bridge", bench.DEFAULTS)])
def test_yaml_configs_match_the_plain_defaults(name, defaults):
    assert yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()) == defaults


def test_cli_composes_bridge_configs_with_overrides():
    from embodied.commands.config import compose

    cfg = compose("daemon", ["robot=dry", "hz=50", "sim.seed=3"])
    assert cfg.robot == "dry" and cfg.hz == 50 and cfg.sim.seed == 3
    assert daemon.Settings.from_config(cfg).hz == 50
    assert compose("serve", ["planner=oracle", "bind=tcp://127.0.0.1:6000"]).bind == "tcp://127.0.0.1:6000"
    assert compose("keygen", ["out=/tmp/k"]).out == "/tmp/k"
    assert compose("bench_bridge", ["repeats=10"]).repeats == 10


def test_plain_overrides_parse_values_and_reject_unknown_keys():
    cfg = parse_overrides(["hz=12.5", "episodes=null", "sim.realtime=false", "dry.cameras={\"front\": [8, 8]}"], daemon_command.DEFAULTS)
    assert cfg["hz"] == 12.5 and cfg["episodes"] is None and cfg["sim"]["realtime"] is False
    assert cfg["dry"]["cameras"] == {"front": [8, 8]}
    assert daemon_command.DEFAULTS["hz"] == 20.0  # defaults untouched
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_overrides(["watchdog=1"], daemon_command.DEFAULTS)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["watchdog_s"], daemon_command.DEFAULTS)


def test_daemon_settings_are_validated():
    with pytest.raises(ConfigError, match="heartbeat_s"):
        daemon.Settings(heartbeat_s=2.0, watchdog_s=1.0)
    with pytest.raises(ConfigError, match="hz"):
        daemon.Settings(hz=0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="max_repeats"):
            daemon.Settings(max_repeats=bad)


def test_keygen_writes_loadable_keys(tmp_path):
    from bridges.keys import client_keys, server_keys
    from embodied.commands.keygen import main

    paths = main({"out": str(tmp_path / "k"), "clients": ["arm1", "arm2"]})
    assert server_keys(paths["server_secret"], paths["authorized"]).secret
    ck = client_keys(paths["arm2_secret"], paths["server"])
    assert len(ck.public) == 40 and ck.server_public == server_keys(paths["server_secret"], paths["authorized"]).public
    assert sorted(p.name for p in (tmp_path / "k" / "authorized").iterdir()) == ["arm1.key", "arm2.key"]
    with pytest.raises(ConfigError, match="keygen"):
        client_keys(tmp_path / "missing.key_secret", paths["server"])
    with pytest.raises(ConfigError, match="no secret"):
        client_keys(paths["arm1"], paths["server"])  # a public key where the secret one belongs


def test_unknown_robot_and_planner_names_are_named_errors():
    from embodied.commands.robots import make_robot
    from embodied.commands.serve import load_planner

    with pytest.raises(ConfigError, match="unknown robot"):
        make_robot({"robot": "ur5"})
    with pytest.raises(ConfigError, match="planner"):
        load_planner(None)


def test_bridges_modules_import_without_heavy_dependencies():
    code = (
        "import importlib, pkgutil, sys, bridges\n"
        "for m in pkgutil.iter_modules(bridges.__path__, 'bridges.'): importlib.import_module(m.name)\n"
        "heavy = {'torch', 'transformers', 'pybullet', 'cv2', 'hydra', 'omegaconf', 'gymnasium', 'websockets'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
