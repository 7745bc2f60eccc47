"""Observation validation/ablation and the command line's handling of bad input."""

import json

import numpy as np
import pytest

from embodied.commands.cli import main
from embodied.core.errors import ObservationError
from embodied.core.observation import STATE_SIZE, Observation


def make_obs(**kw):
    base = dict(
        frames={"front": np.full((32, 32, 3), 7, np.uint8)},
        state=np.arange(STATE_SIZE, dtype=np.float32),
        instruction="put the red cube in the tray",
        history=["put red cube in tray"],
        detections=["red cube", "tray"],
        relations={"red cube": "on table"},
        privileged={"family": "put_in_container"},
    )
    base.update(kw)
    return Observation(**base)


def test_valid_observation_passes():
    assert make_obs().validate() is not None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"frames": {}}, "non-empty"),
        ({"frames": {"front": np.zeros((32, 32), np.uint8)}}, "HxWx3"),
        ({"frames": {"front": np.zeros((32, 32, 3), np.float32)}}, "uint8"),
        ({"state": np.zeros(3, np.float32)}, "size 15"),
        ({"state": np.full(STATE_SIZE, np.nan, np.float32)}, "NaN"),
        ({"instruction": 5}, "text"),
        ({"relations": {"blue cube": "on table"}}, "not in observation.detections"),
        ({"relations": [("red cube", "on table")]}, "must map detected object names"),
        ({"relations": {"red cube": 3}}, "must map detected object names"),
    ],
)
def test_bad_observations_get_named_errors(kw, match):
    with pytest.raises(ObservationError, match=match):
        make_obs(**kw).validate()


def test_ablate_frames_blanks_frames_and_perception():
    o = make_obs().ablated("frames")
    assert not o.frames["front"].any() and o.detections == [] and o.relations == {} and o.privileged is None
    assert o.state[3] == 3.0 and o.instruction.startswith("put")


def test_ablate_objects_clears_perception_only():
    o = make_obs().ablated("objects")
    assert o.detections == [] and o.relations == {} and o.privileged is None
    assert o.frames["front"].all() and o.state[3] == 3.0


def test_ablate_relations_clears_the_scene_graph_only():
    o = make_obs().ablated("relations")
    assert o.relations == {} and o.detections == ["red cube", "tray"] and o.privileged is not None
    assert o.frames["front"].all() and o.state[3] == 3.0


def test_ablate_state_zeroes_state_only():
    o = make_obs().ablated("state")
    assert not o.state.any() and o.frames["front"].all() and o.detections


def test_unknown_ablation():
    with pytest.raises(ObservationError, match="unknown ablation"):
        make_obs().ablated("sound")


def test_cli_unknown_key_and_command(capsys):
    assert main(["eval", "episdoes=3"]) == 2
    err = capsys.readouterr().err
    assert "episdoes" in err and "did you mean 'episodes'" in err
    assert main(["evl"]) == 2
    assert "did you mean 'eval'" in capsys.readouterr().err
    assert main(["eval", "notakeyvalue"]) == 2


def test_cli_bad_value_type(capsys):
    assert main(["eval", "episodes=many"]) == 2
    assert "episodes" in capsys.readouterr().err


def test_cli_bad_level_and_planner(capsys):
    assert main(["rollout", "level=L9"]) == 2
    assert "unknown level" in capsys.readouterr().err
    assert main(["rollout", "planner=telepathy"]) == 2
    assert "unknown planner" in capsys.readouterr().err


def test_rollout_exit_status_tells_success_from_failure(capsys, tmp_path):
    """0 when the task is achieved, 3 when the episode ran but failed (2 stays 'bad config')."""
    common = ["task=stack", "level=L1", "seed=0", f"out={tmp_path}"]
    assert main(["rollout", "planner=oracle", *common]) == 0
    assert json.loads(capsys.readouterr().out)["success"] is True
    rc = main(["rollout", "planner=random", *common])
    result = json.loads(capsys.readouterr().out)
    assert result["success"] is False  # a random plan does not stack on this seed
    assert rc == 3
