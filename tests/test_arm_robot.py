"""The robot made of parts (``robot=arm``): the simulated Panda as a bare Arm, the simulator's
cameras, calibration files and perception; nothing of the simulator's ground truth reaches it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bridges.arm_robot import ArmRobot, resize_area
from embodied.core.errors import CalibrationError
from embodied.core.plan import parse_step
from embodied.perception.cameras.replay import Recorder, ReplayCamera
from embodied.perception.tabletop import TabletopPerception
from envs.sim_rig import camera, exact_calibration, panda
from envs.tasks import make_privileged, oracle_plan
from tests.test_bridge_planners import start_daemon, start_server, stop
from tests.test_daemon import read_log


def _robot(task="put_in_container", seed=0, **kw):
    arm = panda(task, "L1", seed)
    cams = {"front": camera(arm, "front", 128), "hd": camera(arm, "front", as_name="hd"), "side": camera(arm, "side")}
    cals = {"hd": exact_calibration("front"), "side": exact_calibration("side")}
    cals["hd"].camera = "hd"
    return arm, ArmRobot(arm, cams, cals, TabletopPerception(), arm.instruction, planner_cameras=["front"], **kw)


def test_arm_robot_sees_the_table_and_executes_steps_from_perception_only():
    arm, robot = _robot("put_in_container", seed=3)
    try:
        obs = robot.observe().validate()
        scene = arm.episode.scene
        assert set(obs.detections) == set(scene.object_names) | set(scene.container_names)
        assert obs.frames["front"].shape == (128, 128, 3) and obs.state.shape == (15,)
        assert all(v == "on table" for v in obs.relations.values())
        step = oracle_plan(make_privileged(arm.episode, arm.sim.world_state()))[0]  # which step: the oracle's choice
        out = robot.execute(step)
        assert out.success, out.reason
        world = arm.sim.world_state()
        assert world.is_in(step.object, step.target)
        assert robot.history == [step.text]
        assert robot.observe().relations[step.object] == f"in {step.target}"
    finally:
        robot.close()


def test_a_step_naming_what_perception_does_not_see_is_refused_without_moving():
    arm, robot = _robot("put_in_container", seed=3)
    try:
        robot.observe()
        before = arm.state().ee_pose.position.copy()
        out = robot.execute(parse_step("put pink hexagon in tray"))
        assert not out.success and "pink hexagon" in out.reason
        assert np.linalg.norm(arm.state().ee_pose.position - before) < 1e-3
    finally:
        robot.close()


def test_a_calibration_that_does_not_match_its_camera_is_refused_at_start():
    arm = panda("stack", "L1", 0)
    with pytest.raises(CalibrationError, match="320x320"):
        ArmRobot(arm, {"front": camera(arm, "front", 128)}, {"front": exact_calibration("front")}, TabletopPerception(), "x")
    with pytest.raises(CalibrationError, match="not configured"):
        ArmRobot(arm, {"front": camera(arm, "front")}, {"side": exact_calibration("side")}, TabletopPerception(), "x")


def test_resize_area_averages_blocks():
    img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    small = resize_area(img, (2, 2))
    assert small.shape == (2, 2, 3) and small[0, 0, 0] == 3  # mean of 0, 1, 4, 5 = 2.5, rounded half up
    assert small[1, 1, 0] == 13  # mean of 10, 11, 14, 15 = 12.5


def test_the_daemon_holds_safely_when_a_camera_stops(tmp_path):
    """A camera that runs out of frames: a named error, a logged safe hold, the loop goes on, never a hang."""
    arm = panda("stack", "L1", 0)
    with Recorder(tmp_path / "session") as rec:
        rec.record(camera(arm, "front", as_name="front"), 3)
    from bridges.client import BridgeClient
    from bridges.daemon import Daemon
    from bridges.daemon_settings import JsonlLog, Settings

    robot = ArmRobot(arm, {"front": ReplayCamera(tmp_path / "session")}, {"front": exact_calibration("front")},
                     TabletopPerception(), "stack the red cube on the blue cube")
    server, address = start_server("bridges.bench:TrivialPlanner")
    log = JsonlLog(str(tmp_path / "d.jsonl"))
    try:
        daemon = Daemon(robot, BridgeClient(address, "cam-stop"), Settings(max_seconds=3.0, backoff_s=0.1, backoff_max_s=0.4,
                                                                           episodes=None), log)
        assert daemon.run() == 0
    finally:
        log.close()
        robot.close()
        stop(server)
    recs = read_log(tmp_path / "d.jsonl")
    holds = [r for r in recs if r["event"] == "safe_hold" and r["why"] == "observe_error"]
    assert holds and holds[0]["error"] == "CameraError"
    assert recs[-1]["event"] == "shutdown" and recs[-1]["why"] == "max_seconds"


def test_embodied_daemon_robot_arm_runs_an_episode_with_the_model(tmp_path):
    """The command line a real-robot user types, with the simulated Panda behind it and the model over the bridge."""
    server, address = start_server("model", wait_s=120)
    log = tmp_path / "arm.jsonl"
    daemon = start_daemon("robot=arm", "arm=envs.sim_rig:panda", "+arm_args.task=put_in_container", "+arm_args.seed=3",
                          "+cameras.front=sim:front@128", "+cameras.hd=sim:front", "+cameras.side=sim:side",
                          "+calibration.hd=sim", "+calibration.side=sim",
                          "planner_cameras=[front]", f"server={address}", f"log={log}", "episodes=1", "max_seconds=150",
                          "max_repeats=3", "deadline_ms=20000", "watchdog_s=20", "stale_s=30")
    try:
        assert daemon.wait(170) == 0, daemon.stderr.read()[-3000:]
    finally:
        stop(daemon)
        stop(server)
    recs = read_log(log)
    results = [r for r in recs if r["event"] == "step_result"]
    assert results and all(r["success"] for r in results), json.dumps(results)
    end = [r for r in recs if r["event"] == "episode_end"]
    assert end and end[0]["why"] == "planner said done", [r["event"] for r in recs]


def test_daemon_robot_sim_with_camera_perception_runs_whole_episodes_at_its_rate(tmp_path):
    """``embodied daemon robot=sim perception=camera``: capture and perception run beside the loop, which keeps 20 Hz."""
    server, address = start_server("oracle")
    log = tmp_path / "sim.jsonl"
    daemon = start_daemon("robot=sim", "perception=camera", "sim.task=put_in_container", "sim.seed=3", f"server={address}",
                          f"log={log}", "episodes=2", "max_seconds=150", "hz=20", "rate_log_s=0.5", "max_repeats=3")
    try:
        assert daemon.wait(170) == 0, daemon.stderr.read()[-3000:]
    finally:
        stop(daemon)
        stop(server)
    recs = read_log(log)
    ends = [r for r in recs if r["event"] == "episode_end"]
    assert len(ends) == 2 and all(e["success"] for e in ends), ends
    rates = sorted(r["achieved_hz"] for r in recs if r["event"] == "rate")
    assert len(rates) >= 6
    # a loaded 2-core machine may slip a little; capture + perception on the control thread would be far off
    assert 16.0 <= rates[len(rates) // 2] <= 21.0, rates


def test_a_dry_run_checks_each_step_against_perception_and_moves_nothing():
    arm, robot = _robot("put_in_container", seed=3, dry_run=True)
    try:
        robot.observe()
        before = arm.sim.world_state().positions
        q0 = arm.state().joint_positions.copy()
        step = oracle_plan(make_privileged(arm.episode, arm.sim.world_state()))[0]
        out = robot.execute(step)
        assert out.success and out.reason.startswith(f"dry run: would {step.text}")
        bad = robot.execute(parse_step("put pink hexagon in tray"))
        assert not bad.success and "pink hexagon" in bad.reason
        assert np.allclose(arm.state().joint_positions, q0)
        after = arm.sim.world_state().positions
        assert all(np.allclose(before[n], after[n]) for n in before)
    finally:
        robot.close()
