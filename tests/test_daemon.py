"""The control daemon as a real process against a real server process, on loopback."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from bridges.client import BridgeClient
from tests.test_bridge_planners import free_port, start_daemon, start_server, stop

P = "tests.test_bridge_planners:"
STEPS = '+planner_args.steps=["put red cube on blue cube","move red cube to top left","done"]'


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.endswith("}"):
            out.append(json.loads(line))
    return out


def wait_for(path: Path, event: str, timeout: float, after: float = 0.0, **match) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for rec in read_log(path):
            if rec["event"] == event and rec["t"] >= after and all(rec.get(k) == v for k, v in match.items()):
                return rec
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} event within {timeout} s; log: {[r['event'] for r in read_log(path)][-30:]}")


def daemon_args(address: str, log: Path, *extra: str) -> list[str]:
    return ["robot=dry", f"server={address}", f"log={log}", "hz=50", "heartbeat_s=0.1", "watchdog_s=1.0",
            "stale_s=2.0", "backoff_s=0.1", "backoff_max_s=0.4", "episodes=null", "rate_log_s=0.5", *extra]


def run_to_exit(tmp_path: Path, server_args: tuple, *extra: str, timeout: float = 20) -> list[dict]:
    """Run a server and a dry-robot daemon until the daemon exits (it must exit 0); return its log."""
    server, address = start_server(P + "FixedPlanner", *server_args)
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, *extra))
    try:
        assert daemon.wait(timeout) == 0
    finally:
        stop(daemon)
        stop(server)
    return read_log(log)


def test_daemon_runs_plans_at_its_rate_and_logs_latency(tmp_path):
    recs = run_to_exit(tmp_path, (), "dry.step_s=0.05", "max_seconds=2.5")
    plans = [r for r in recs if r["event"] == "plan"]
    assert len(plans) >= 5
    for p in plans:
        for key in ("encode_ms", "network_ms", "queue_ms", "inference_ms", "decode_ms", "obs_age_ms"):
            assert isinstance(p[key], float), key
        assert p["step"] == "put red cube on blue cube" and 0 <= p["obs_age_ms"] < 2000
    results = [r for r in recs if r["event"] == "step_result"]
    assert len(results) >= 5 and all(r["success"] and not r["halted"] for r in results[:-1])
    assert results[-1]["success"] or results[-1]["halted"]  # the shutdown may stop the last motion
    rates = [r for r in recs if r["event"] == "rate"]
    assert rates and all(r["target_hz"] == 50.0 and "overruns" in r for r in rates)
    # a loaded 2-core machine may slip a little; a broken loop would be far off
    assert 30 <= sorted(r["achieved_hz"] for r in rates)[len(rates) // 2] <= 55
    shutdown = recs[-1]
    assert shutdown["event"] == "shutdown" and shutdown["why"] == "max_seconds" and "overruns" in shutdown


def test_no_progress_guard_ends_an_episode_that_repeats_one_step(tmp_path):
    # the planner always answers "put red cube on blue cube" first, and the dry robot succeeds
    recs = run_to_exit(tmp_path, (), "dry.step_s=0.05", "max_repeats=3", "episodes=2", timeout=30)
    stuck = [r for r in recs if r["event"] == "no_progress"]
    ends = [r for r in recs if r["event"] == "episode_end"]
    assert [(r["step"], r["repeats"]) for r in stuck] == [("put red cube on blue cube", 3)] * 2
    assert len(ends) == 2 and all(r["why"].startswith("no progress") and r["steps"] == 3 for r in ends)
    assert sum(r["event"] == "step_result" for r in recs) == 6


def test_server_killed_mid_plan_safe_hold_within_watchdog_then_resume(tmp_path):
    port = free_port()
    server, address = start_server(P + "FixedPlanner", STEPS, "+planner_args.delay_s=0.3", port=port)
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "dry.step_s=3.0"))  # a long motion, in progress at the kill
    try:
        wait_for(log, "plan", 15)
        time.sleep(0.1)  # the server is computing step 2 of that plan
        server.kill()
        killed = time.time()
        hold = wait_for(log, "safe_hold", 5)
        assert hold["why"] == "watchdog"
        assert hold["t"] - killed <= 1.0 + 0.6  # watchdog_s plus a heartbeat period and scheduling slack
        halted = wait_for(log, "step_result", 2, after=killed)
        assert halted["halted"] is True  # the motion stopped where it was
        time.sleep(0.5)
        assert not [r for r in read_log(log) if r["event"] == "plan" and r["t"] > hold["t"]]  # nothing runs in hold
        server, _ = start_server(P + "FixedPlanner", STEPS, port=port)
        resumed = wait_for(log, "resumed", 10, after=hold["t"])
        assert resumed["held_s"] > 0
        wait_for(log, "plan", 10, after=resumed["t"])  # and it plans and moves again
        attempts = [r for r in read_log(log) if r["event"] == "connect_attempt" and hold["t"] <= r["t"] <= resumed["t"]]
        assert len(attempts) >= 2 and attempts[0]["backoff_s"] < attempts[-1]["backoff_s"] <= 0.4  # backoff grew
    finally:
        stop(daemon)
        stop(server)


def test_stale_observations_are_not_executed(tmp_path):
    recs = run_to_exit(tmp_path, ("+planner_args.first_delay_s=0.4",), "stale_s=0.15", "watchdog_s=2.0", "max_seconds=2.5")
    stale = [r for r in recs if r["event"] == "stale_plan"]
    assert len(stale) >= 2 and all(r["obs_age_ms"] > 150 for r in stale)
    assert not [r for r in recs if r["event"] in ("plan", "step_result")]


def test_sigusr1_emergency_stop_halts_at_once_and_latches(tmp_path):
    server, address = start_server(P + "FixedPlanner")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "dry.step_s=5.0"))
    try:
        wait_for(log, "plan", 15)
        sent = time.time()
        daemon.send_signal(signal.SIGUSR1)
        estop = wait_for(log, "estop", 3)
        assert estop["source"] == "SIGUSR1" and estop["t"] - sent < 0.5
        assert wait_for(log, "step_result", 2, after=sent)["halted"] is True
        time.sleep(0.6)
        assert not [r for r in read_log(log) if r["event"] == "plan" and r["t"] > estop["t"]]  # latched
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(10) == 0
        assert read_log(log)[-1]["event"] == "shutdown" and read_log(log)[-1]["why"] == "SIGTERM"
    finally:
        stop(daemon)
        stop(server)


def test_estop_message_from_an_operator_halts_the_robot(tmp_path):
    server, address = start_server(P + "FixedPlanner")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "dry.step_s=5.0", "robot_id=arm-3"))
    try:
        wait_for(log, "plan", 15)
        with BridgeClient(address, "operator", timeout_s=5.0) as op:
            op.estop("arm-3")
        estop = wait_for(log, "estop", 3)
        assert estop["source"] == "message from operator"
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(10) == 0
        assert read_log(log)[-1]["why"] == "SIGINT"
    finally:
        stop(daemon)
        stop(server)


def test_sim_daemon_runs_an_oracle_episode_to_success(tmp_path):
    pytest.importorskip("pybullet")
    server, address = start_server("oracle")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon("robot=sim", f"server={address}", f"log={log}", "sim.task=stack", "sim.seed=0",
                          "sim.realtime=false", "episodes=1", "watchdog_s=5.0", "stale_s=5.0", "max_seconds=60")
    try:
        assert daemon.wait(90) == 0, daemon.stderr.read()[-2000:]
    finally:
        stop(daemon)
        stop(server)
    recs = read_log(log)
    end = [r for r in recs if r["event"] == "episode_end"]
    assert end and end[0]["success"] is True, [r["event"] for r in recs]
    assert [r["step"] for r in recs if r["event"] == "plan"][0].startswith("put ")


def test_sim_emergency_stop_interrupts_a_motion(tmp_path):
    pytest.importorskip("pybullet")
    server, address = start_server("oracle")
    log = tmp_path / "d.jsonl"
    daemon = start_daemon("robot=sim", f"server={address}", f"log={log}", "sim.task=stack", "sim.realtime=true",
                          "episodes=1", "watchdog_s=5.0", "stale_s=5.0", "max_seconds=60")
    try:
        wait_for(log, "plan", 40)
        time.sleep(0.4)  # the arm is moving (real-time pace)
        daemon.send_signal(signal.SIGUSR1)
        estop = wait_for(log, "estop", 3)
        assert estop["halt_ms"] < 200
        assert wait_for(log, "step_result", 2)["halted"] is True
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        stop(daemon)
        stop(server)


def test_error_replies_are_logged_and_retried_with_backoff(tmp_path):
    server, address = start_server(P + "FixedPlanner", "max_message_bytes=1000")  # every observation is too large
    log = tmp_path / "d.jsonl"
    daemon = start_daemon(*daemon_args(address, log, "max_seconds=2.0", "backoff_max_s=0.8"))
    try:
        assert daemon.wait(20) == 0
    finally:
        stop(daemon)
        stop(server)
    errors = [r for r in read_log(log) if r["event"] == "server_error"]
    assert 3 <= len(errors) <= 12 and all(r["code"] == "too_large" for r in errors)  # not one per tick (100)
    waits = [r["retry_in_s"] for r in errors]
    assert waits[:4] == [0.1, 0.2, 0.4, 0.8] and max(waits) == 0.8
    assert not [r for r in read_log(log) if r["event"] == "plan"]


def test_dry_robot_sends_a_bounded_history():
    from bridges.robot import DryRobot
    from embodied.core.plan import parse_step

    robot = DryRobot(step_s=0.0)  # episodes=null never resets it: the history must not outgrow the protocol (512)
    for _ in range(600):
        robot.execute(parse_step("put red cube on blue cube"))
    assert len(robot.observe().history) == DryRobot.max_history <= 512
