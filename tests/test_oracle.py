"""The scripted oracle planner: plans from the privileged record only, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.core.errors import ConfigError, ObservationError
from embodied.core.observation import STATE_SIZE, Observation
from embodied.core.protocols import Planner
from envs.tasks import TASKS, episode_from_privileged, get_task, make_privileged, oracle_plan, world_from_privileged
from envs.tasks.common import nominal_world
from policies.oracle import OraclePlanner


def observation(privileged=None, instruction="") -> Observation:
    return Observation(
        frames={"front": np.zeros((8, 8, 3), np.uint8)},
        state=np.zeros(STATE_SIZE, np.float32),
        instruction=instruction,
        privileged=privileged,
    )


def test_oracle_is_a_planner():
    p = OraclePlanner(oracle_plan)
    assert isinstance(p, Planner) and p.name == "oracle"
    p.reset()


@pytest.mark.parametrize("family", sorted(TASKS))
def test_privileged_round_trips_through_json_and_oracle_matches_task(family):
    task = get_task(family)
    e = task.sample(11, "L2", "test")
    world = nominal_world(e.scene)
    priv = json.loads(json.dumps(make_privileged(e, world)))
    assert priv["family"] == family and priv["goal"] == e.goal and priv["held"] is None
    assert set(priv["poses"]) == set(e.scene.object_names) and all(len(v) == 4 for v in priv["poses"].values())
    e2 = episode_from_privileged(priv)
    w2 = world_from_privileged(priv)
    assert e2.to_dict() == e.to_dict()
    for n in e.scene.object_names:
        np.testing.assert_allclose(w2.positions[n], world.positions[n])
    steps = list(OraclePlanner(oracle_plan).plan(observation(priv, e.instruction)))
    assert steps == task.oracle_plan(e, world)


def test_oracle_follows_the_world_in_the_record():
    task = get_task("stack")
    e = task.sample(0)
    world = nominal_world(e.scene)
    o, b = e.goal["object"], e.goal["base"]
    assert [s.text for s in OraclePlanner(oracle_plan).plan(observation(make_privileged(e, world)))] == [f"put {o} on {b}", "done"]
    world.positions[o] = world.positions[b] + np.array([0.0, 0.0, e.scene.object(b).height])
    assert [s.text for s in OraclePlanner(oracle_plan).plan(observation(make_privileged(e, world)))] == ["done"]
    world.held = o
    priv = json.loads(json.dumps(make_privileged(e, world)))
    assert priv["held"] == o and world_from_privileged(priv).held == o


def test_missing_or_bad_privileged_is_a_named_error():
    with pytest.raises(ObservationError, match="privileged=True"):
        OraclePlanner(oracle_plan).plan(observation(None))
    e = get_task("tower").sample(0)
    priv = make_privileged(e, nominal_world(e.scene))
    with pytest.raises(ObservationError, match="poses"):
        OraclePlanner(oracle_plan).plan(observation({k: v for k, v in priv.items() if k != "poses"}))
    with pytest.raises(ConfigError, match="families"):
        OraclePlanner(oracle_plan).plan(observation(priv | {"family": "juggle"}))
    bad = json.loads(json.dumps(priv))
    bad["poses"]["mauve sphere"] = [0.5, 0.0, 0.02, 0.0]
    with pytest.raises(ObservationError, match="mauve sphere"):
        OraclePlanner(oracle_plan).plan(observation(bad))
    # ablating frames drops the privileged record too: the oracle refuses, it does not guess
    with pytest.raises(ObservationError):
        OraclePlanner(oracle_plan).plan(observation(priv).ablated("frames"))
