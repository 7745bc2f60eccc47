"""The gymnasium envs: API conformance (check_env), determinism, and step semantics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pybullet")

import gymnasium as gym  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

import envs  # noqa: E402,F401  (registers the ids)
from embodied.core.observation import STATE_SIZE, Observation  # noqa: E402
from envs.registration import FAMILIES, env_id, register_all  # noqa: E402

IDS = [env_id(f) for f in FAMILIES]


def test_one_id_per_task_family():
    from envs.tasks import TASKS

    assert set(FAMILIES) == set(TASKS)
    assert register_all() == IDS
    assert env_id("put_in_container") == "embodied/PutInContainer-v0"
    assert all(i in gym.registry for i in IDS)


def test_importing_envs_registers_without_pybullet():
    import subprocess
    import sys

    code = ("import sys, envs, gymnasium; assert 'embodied/Stack-v0' in gymnasium.registry; "
            "assert 'pybullet' not in sys.modules and 'envs.tasks' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0])


@pytest.mark.parametrize("env_id_", IDS)
def test_check_env(env_id_):
    env = gym.make(env_id_, render_mode="rgb_array")
    try:
        check_env(env.unwrapped)
    finally:
        env.close()


@pytest.mark.parametrize("env_id_", IDS)
def test_same_seed_same_observations(env_id_):
    a, b = gym.make(env_id_), gym.make(env_id_)
    try:
        oa, _ = a.reset(seed=7)
        ob, _ = b.reset(seed=7)
        assert np.array_equal(oa["image"], ob["image"]) and np.array_equal(oa["state"], ob["state"])
        assert oa["instruction"] == ob["instruction"]
        oc, _ = a.reset(seed=8)
        assert not np.array_equal(oa["image"], oc["image"]) or oa["instruction"] != oc["instruction"]
        # after another episode, the same seed again; one oracle step on each: same outcome
        a.reset(seed=7)
        u = a.unwrapped
        step = u.task.oracle_plan(u.episode, u.world_state())[0].text
        oa, ra, ta, _, ia = a.step(step)
        ob, rb, tb, _, ib = b.step(step)
        assert np.array_equal(oa["image"], ob["image"]) and np.array_equal(oa["state"], ob["state"])
        assert ra == rb and ta == tb and ia == ib
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def env():
    e = gym.make("embodied/PutInContainer-v0", depth=True, wrist_camera=True, privileged=True, render_mode="rgb_array")
    yield e
    e.close()


def test_check_env_with_depth_and_wrist_camera(env):
    check_env(env.unwrapped)


def test_spaces_and_observation(env):
    obs, info = env.reset(seed=3)
    assert obs in env.observation_space
    assert obs["image"].shape == (128, 128, 3) and obs["image"].dtype == np.uint8
    assert obs["state"].shape == (STATE_SIZE,) and obs["state"].dtype == np.float32
    assert obs["depth"].shape == (128, 128) and obs["wrist_image"].shape == (128, 128, 3)
    assert obs["instruction"] == env.unwrapped.episode.instruction
    full = env.unwrapped.observation()
    assert isinstance(full, Observation)
    full.validate()
    assert set(full.frames) == {"front", "wrist"} and set(full.depth) == {"front", "wrist"}
    assert np.array_equal(full.frames["front"], obs["image"])
    scene = env.unwrapped.episode.scene
    assert set(full.detections) == set(scene.object_names) | set(scene.container_names)
    assert full.privileged["family"] == "put_in_container" and full.history == []
    assert np.array_equal(env.render(), obs["image"])
    assert info["success"] is False and info["error"] == ""


def test_bad_actions_are_info_errors_not_exceptions(env):
    env.reset(seed=3)
    scene = env.unwrapped.episode.scene
    missing = next(f"{c} cube" for c in ("red", "green", "blue", "yellow", "pink", "cyan") if f"{c} cube" not in scene.object_names)
    obs, reward, terminated, truncated, info = env.step(f"move {missing} to center")
    assert "there is no" in info["error"] and info["error_type"] == "UnknownObjectError"
    assert reward == 0.0 and not terminated
    obs, reward, terminated, truncated, info = env.step("jump around")
    assert info["error_type"] == "PlanSyntaxError" and reward == 0.0
    assert env.unwrapped.history == []  # rejected steps are not executed
    assert info["steps"] == 2  # but they count


def test_oracle_episode_succeeds_with_reward(env):
    obs, _ = env.reset(seed=1)
    u = env.unwrapped
    for _ in range(u.episode.max_steps):
        step = u.task.oracle_plan(u.episode, u.world_state())[0]
        obs, reward, terminated, truncated, info = env.step(step.text)
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward == 1.0 and info["failure"] == ""
    assert u.observation().history[-1] == step.text


def test_done_terminates_without_success(env):
    env.reset(seed=2)
    obs, reward, terminated, truncated, info = env.step("done")
    assert terminated and not info["success"] and reward == 0.0


def test_truncates_at_max_steps():
    e = gym.make("embodied/Stack-v0")
    try:
        e.reset(seed=0)
        n = e.unwrapped.episode.max_steps
        for i in range(n):
            _, _, terminated, truncated, info = e.step("put nothing here")
            assert not terminated and truncated == (i == n - 1)
    finally:
        e.close()


def test_level_option_and_bad_level():
    from embodied.core.errors import ConfigError

    e = gym.make("embodied/MoveToLocation-v0", level="L2")
    try:
        e.reset(seed=0)
        assert e.unwrapped.episode.level == "L2"
        e.reset(seed=0, options={"level": "L3"})
        assert e.unwrapped.episode.level == "L3"
        with pytest.raises(ConfigError, match="unknown level"):
            e.reset(seed=0, options={"level": "L9"})
    finally:
        e.close()


def test_instruction_space_covers_every_task_instruction():
    from envs.levels import LEVELS
    from envs.tabletop_env import INSTRUCTION_CHARSET, MAX_INSTRUCTION
    from envs.tasks import TASKS

    allowed = set(INSTRUCTION_CHARSET)
    for task in TASKS.values():
        for level in LEVELS:
            for split in ("train", "test"):
                for seed in range(8):
                    text = task.sample(seed, level, split).instruction
                    assert set(text) <= allowed and len(text) <= MAX_INSTRUCTION, (task.family, level, text)


def test_observation_relations_are_the_scene_graph():
    """Stacked blocks are 'on' the block below; moved into a bin, an object is 'in' it."""
    e = gym.make("embodied/Unstack-v0")
    try:
        e.reset(seed=3)
        u = e.unwrapped
        obs = u.observation()
        placed_on = {n: pl.on for n, pl in u.episode.scene.placements.items() if pl.on}
        assert placed_on, "unstack scenes start with a stack"
        assert set(obs.relations) <= set(obs.detections)
        for top, below in placed_on.items():
            if top in obs.detections:
                assert obs.relations[top] == f"on {below}"
        singles = [n for n in obs.relations if n not in placed_on]
        assert singles and all(obs.relations[n] == "on table" for n in singles)
    finally:
        e.close()
    e = gym.make("embodied/PutInContainer-v0")
    try:
        e.reset(seed=1)
        u = e.unwrapped
        step = u.task.oracle_plan(u.episode, u.world_state())[0]
        e.step(step.text)
        obj, container = step.text.removeprefix("put ").split(" in ")
        assert u.observation().relations[obj] == f"in {container}"
    finally:
        e.close()
