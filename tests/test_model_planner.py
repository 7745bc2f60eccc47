"""ModelPlanner: streams valid, scene-grounded steps; the engine path equals the reference path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.core.observation import Observation
from embodied.core.plan import PlanStep
from embodied.core.protocols import Planner

DETECTED = ["red cube", "blue cube", "green cylinder", "tray"]


@pytest.fixture(scope="module")
def model():
    from embodied.model import PalmE
    from embodied.model.config import LMConfig, ModelConfig, VisionConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        lm=LMConfig(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate_size=128, max_positions=256),
        vision=VisionConfig(image_size=32, patch_size=8, stem_channels=8, width=32, depth=1, heads=2),
        state_hidden=32, vocab_size=300,
    )
    return PalmE.create(cfg, ["put red cube on blue cube; done", "stack the red cube on the blue cube"]).eval()


def _obs(seed=0, detections=DETECTED, history=()):
    rng = np.random.default_rng(seed)
    return Observation(
        frames={"front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)},
        state=rng.normal(size=15).astype(np.float32),
        instruction="stack the red cube on the blue cube",
        history=list(history),
        detections=list(detections),
    )


def _plan(planner, obs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights rarely reach "done" within the budget
        return [s for s in planner.plan(obs)]


def test_engine_plans_equal_reference_plans_and_name_only_detected_objects(model):
    from embodied.model.planner import ModelPlanner

    eng = ModelPlanner(model, max_new_tokens=24)
    ref = ModelPlanner(model, use_engine=False, max_new_tokens=24)
    assert isinstance(eng, Planner) and eng.name == "model"
    for seed in range(2):
        obs = _obs(seed)
        steps = _plan(eng, obs)
        assert steps and all(isinstance(s, PlanStep) for s in steps)
        assert steps == _plan(ref, obs)
        for s in steps:
            if not s.is_done:
                assert s.object in DETECTED
                assert s.verb == "move" or s.target in DETECTED


def test_instruction_prefix_is_reused_across_control_steps(model):
    from embodied.model.planner import ModelPlanner

    p = ModelPlanner(model, max_new_tokens=20)
    first = _plan(p, _obs(0))
    prefix = model.prefix_length(model.build_prompt(_obs(0)))
    second = _plan(p, _obs(1, history=[first[0].text]))
    assert p.last_ticket.reused_prefix == prefix > 0
    assert second == _plan(ModelPlanner(model, max_new_tokens=20), _obs(1, history=[first[0].text]))
    p.reset()
    _plan(p, _obs(2))
    assert p.last_ticket.reused_prefix == 0


def test_ablate_frames_uses_the_full_vocabulary(model):
    from embodied.core.plan import validate_step
    from embodied.engine.constrained import full_vocabulary
    from embodied.model.planner import ModelPlanner

    p = ModelPlanner(model, ablate="frames", max_new_tokens=30)
    objects, containers = full_vocabulary()
    steps = _plan(p, _obs(3, detections=["red cube"]))
    assert steps
    for s in steps:
        validate_step(s, objects, containers)


def test_keep_patches_shortens_the_prompt_and_still_plans(model):
    from embodied.model.planner import ModelPlanner

    full = ModelPlanner(model, max_new_tokens=12)
    reduced = ModelPlanner(model, keep_patches=4, max_new_tokens=12)
    _plan(full, _obs(4))
    steps = _plan(reduced, _obs(4))
    assert steps
    dropped = model.tokens_per_frame - 4
    assert reduced.last_ticket.request.embeds.shape[0] == full.last_ticket.request.embeds.shape[0] - dropped


def test_stopping_early_frees_the_engine(model):
    from embodied.model.planner import ModelPlanner

    p = ModelPlanner(model, max_new_tokens=40)
    it = p.plan(_obs(5))
    next(it)
    it.close()  # the controller took step 1 and re-plans
    assert p.last_ticket.finished
    assert _plan(p, _obs(6))


def test_interleaved_plans_of_several_robots_share_batched_decode_steps(model):
    """What the server does with concurrent_plans=4: advance four plans in turn, one engine."""
    from embodied.model.planner import ModelPlanner

    alone = ModelPlanner(model, max_new_tokens=24)
    batched = ModelPlanner(model, max_new_tokens=24, max_batch=4)
    observations = [_obs(seed) for seed in range(4)]
    expected = [_plan(alone, o) for o in observations]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gens = [batched.plan(o) for o in observations]
        got: list[list[PlanStep]] = [[] for _ in gens]
        live = set(range(len(gens)))
        while live:
            for i in sorted(live):
                try:
                    got[i].append(next(gens[i]))
                except StopIteration:
                    live.discard(i)
    assert got == expected
    assert batched._engine.peak_batch == 4  # the four plans decoded in the same steps
    assert batched._engine.config.max_batch == 4 and not batched._engine.busy


def test_server_with_concurrent_plans_batches_robots_over_the_bridge(model):
    """embodied serve planner=model concurrent_plans=3: three robots, real sockets, one batched engine."""
    import threading
    import warnings

    from bridges.client import BridgeClient
    from bridges.server import InferenceServer
    from embodied.model.planner import ModelPlanner

    alone = ModelPlanner(model, max_new_tokens=24)
    observations = [_obs(seed) for seed in range(3)]
    expected = [[s.text for s in _plan(alone, o)] for o in observations]
    planner = ModelPlanner(model, max_new_tokens=24, max_batch=3)
    server = InferenceServer(planner, "tcp://127.0.0.1:*", concurrent_plans=3, log=lambda m: None)
    thread = threading.Thread(target=server.serve, kwargs={"max_seconds": 60}, daemon=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thread.start()
        try:
            clients = [BridgeClient(server.address, f"robot{i}", timeout_s=30) for i in range(3)]
            seqs = [c.send_observation(o) for c, o in zip(clients, observations)]  # all three in flight
            got = []
            for c, seq in zip(clients, seqs):
                steps = []
                while True:
                    reply = c.wait(seq)
                    if reply.type == "end":
                        break
                    steps.append(reply.header["text"])
                    if reply.header.get("final"):
                        break
                got.append(steps)
                c.close()
        finally:
            server.stop()
            thread.join(10)
            server.close()
    assert got == expected
    assert planner._engine.peak_batch >= 2  # plans of different robots shared decode steps


def test_bad_concurrent_plans_is_a_named_config_error():
    from embodied.commands.planners import make_planner
    from embodied.core.errors import ConfigError

    for bad in ("many", 0, 2.5):
        with pytest.raises(ConfigError, match="concurrent_plans"):
            make_planner("model", {"concurrent_plans": bad, "model_dir": "checkpoints/default"})


def test_bad_true_false_options_are_named_config_errors():
    from embodied.commands.planners import make_planner
    from embodied.core.errors import ConfigError

    for key in ("object_aliases", "cpu_compile", "use_engine"):
        with pytest.raises(ConfigError, match=f"{key}='maybe': expected true or false"):
            make_planner("model", {key: "maybe", "model_dir": "checkpoints/default"})
    planner = make_planner("model", {"object_aliases": "false", "model_dir": "checkpoints/default"})
    assert planner.object_aliases is False


@pytest.mark.parametrize("task", ["put_in_container", "stack"])
def test_shipped_checkpoint_plans_a_valid_successful_plan_on_a_seeded_scene(task):
    """The committed default model, closed loop in the simulator (seeded L1 test scenes)."""
    from embodied.commands.episodes import episode_seed, make_env, run_episode
    from embodied.core.plan import PlanStep as Step
    from embodied.model.planner import ModelPlanner

    planner = ModelPlanner("checkpoints/default")
    env = make_env(task, "L1", "test", 128)
    try:
        record = run_episode(env, planner, episode_seed(0, task, 0))
    finally:
        env.close()
    assert record["success"], record
    steps = [Step.parse(s) for s in record["plan"].split("; ")]  # every executed step parses
    assert steps and not steps[0].is_done  # it acted before declaring the task done


def test_unknown_objects_are_planned_under_known_names_and_streamed_with_their_own(model, monkeypatch):
    from embodied.model.aliases import ObjectAliases
    from embodied.model.planner import ModelPlanner

    # as if the model had trained on green cubes only: the scene's green cylinder is new to it
    monkeypatch.setattr(model.config, "known_objects", ["blue cube", "green cube", "red cube"])
    seen = []
    build = model.build_prompt
    monkeypatch.setattr(model, "build_prompt", lambda o, *a, **k: seen.append(o) or build(o, *a, **k))
    obs = _obs(0)
    steps = _plan(ModelPlanner(model, max_new_tokens=40), obs)
    assert seen and all("green cube" in o.detections and "green cylinder" not in o.detections for o in seen)
    aliases = ObjectAliases.build(model.config.known_objects, obs)
    assert aliases.to_alias == {"green cylinder": "green cube"}
    # the same plan as the model's for the renamed scene, with the real name written back
    renamed = _plan(ModelPlanner(model, max_new_tokens=40, object_aliases=False), aliases.apply(obs))
    assert steps == [aliases.restore(s) for s in renamed]
    assert any("green cube" in s.text for s in renamed) and any("green cylinder" in s.text for s in steps)
    assert not any("green cube" in s.text for s in steps)
    seen.clear()
    _plan(ModelPlanner(model, max_new_tokens=40, object_aliases=False), obs)  # switched off: the real names
    assert seen and all("green cylinder" in o.detections for o in seen)
