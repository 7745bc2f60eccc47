"""Load test (slow): 32 simulated robots (dry-robot daemons, each its own process) through one
server for 10 minutes, the server killed (SIGKILL) and restarted twice in the middle.

Checked: no daemon crashes (each exits 0 with ``shutdown`` logged at the end), no stale step is
executed (no step starts from an observation older than ``stale_s``, and none runs between a
kill and that robot's ``resumed``), every robot holds and resumes after each restart and plans
again, and the server's memory at the end of its life is within 10% of its memory after
warm-up. ``BRIDGE_LOAD_S`` shortens the run (e.g. 120 for a quick check); the summary is
printed (``pytest -s``) and written to ``BRIDGE_LOAD_OUT`` when set.

    .venv/bin/python -m pytest -m slow -s tests/test_bridge_load.py --basetemp=/tmp/bridge-load
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import pytest

from tests.test_bridge_hardening import status_mb
from tests.test_bridge_planners import free_port, start_daemon, start_server, stop
from tests.test_daemon import read_log

P = "tests.test_bridge_planners:"
ROBOTS = 32
STALE_S = 1.0


def _server(port: int):
    return start_server(P + "ContentPlanner", "+planner_args.length=3", "+planner_args.delay_s=0.002", port=port)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_32_robots_for_ten_minutes_with_two_server_restarts(tmp_path):
    duration = float(os.environ.get("BRIDGE_LOAD_S", 600))
    port = free_port()
    server, address = _server(port)
    logs = [tmp_path / f"robot{i}.jsonl" for i in range(ROBOTS)]
    daemons = []
    t_start = time.time()
    events = {"kills": [], "restarts": [], "memory": []}  # memory: (incarnation, when, MB)

    def sample(incarnation: int, label: str) -> None:
        events["memory"].append({"server": incarnation, "when": label, "t_s": round(time.time() - t_start, 1),
                                 "rss_mb": round(status_mb(server.pid), 1)})

    try:
        for i, log in enumerate(logs):
            daemons.append(start_daemon("robot=dry", f"server={address}", f"log={log}", f"robot_id=load{i}", "hz=10",
                                        "heartbeat_s=0.2", "watchdog_s=2.0", f"stale_s={STALE_S}", "dry.step_s=0.2",
                                        "backoff_s=0.1", "backoff_max_s=1.0", "episodes=null", "rate_log_s=5.0"))
        incarnation = 0
        phase_ends = [duration * 0.3, duration * 0.6, duration]
        for phase, phase_end in enumerate(phase_ends):
            warm = time.time() - t_start + min(60.0, duration * 0.1)
            while time.time() - t_start < warm:
                time.sleep(0.5)
                assert all(d.poll() is None for d in daemons), "a daemon exited"
            sample(incarnation, "after warm-up")
            while time.time() - t_start < phase_end:
                time.sleep(0.5)
                assert all(d.poll() is None for d in daemons), "a daemon exited"
            sample(incarnation, "end")
            if phase < 2:
                server.kill()  # SIGKILL: no goodbye to anyone
                server.wait()
                events["kills"].append(time.time())
                time.sleep(3.0)  # longer than the daemons' watchdog
                server, _ = _server(port)
                events["restarts"].append(time.time())
                incarnation += 1
        assert all(d.poll() is None for d in daemons), "a daemon exited"
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        codes = [d.wait(30) for d in daemons]
    finally:
        for d in daemons:
            stop(d)
        stop(server)

    crashed = sum(c != 0 for c in codes)
    summary = {"robots": ROBOTS, "duration_s": duration, "crashes": crashed, "memory": events["memory"]}
    plans, stale_executed, holds, resume_s, errors = [], 0, 0, [], {}
    for i, log in enumerate(logs):
        recs = read_log(log)
        assert recs[-1]["event"] == "shutdown" and recs[-1]["why"] == "SIGTERM", (i, recs[-1])
        executed = [r for r in recs if r["event"] == "plan" and r.get("step") != "done"]
        plans.append(len(executed))
        stale_executed += sum(r["obs_age_ms"] > STALE_S * 1000 + 100 for r in executed)
        holds += sum(r["event"] == "safe_hold" for r in recs)
        for r in recs:
            if r["event"] in ("server_error", "bad_reply", "request_timeout"):
                key = r.get("code") or r.get("error") or r["event"]
                errors[key] = errors.get(key, 0) + 1
        for kill, restart in zip(events["kills"], events["restarts"]):
            resumed = next((r for r in recs if r["event"] == "resumed" and r["t"] > kill), None)
            assert resumed is not None, f"robot {i} did not resume after the kill at {kill - t_start:.0f} s"
            # nothing from the dead server's plans runs between the kill and the resume
            stale_executed += sum(1 for r in executed if kill < r["t"] < resumed["t"])
            after = collections.Counter(r["event"] for r in recs if r["t"] > resumed["t"])
            assert any(r["t"] > resumed["t"] for r in executed), f"robot {i} did not plan again after resuming: {after}"
            resume_s.append(resumed["t"] - restart)
    summary.update(plans_executed=sum(plans), plans_per_robot_min=min(plans), plans_per_robot_max=max(plans),
                   stale_steps_executed=stale_executed, safe_holds=holds, errors=errors,
                   resume_after_restart_s={"min": round(min(resume_s), 2), "median": round(sorted(resume_s)[len(resume_s) // 2], 2),
                                           "max": round(max(resume_s), 2)})
    last = [m for m in events["memory"] if m["server"] == 2]
    first = [m for m in events["memory"] if m["server"] == 0]
    summary["server_rss_change_pct"] = {f"server {k}": round(100 * (ms[1]["rss_mb"] / ms[0]["rss_mb"] - 1), 1)
                                        for k, ms in ((0, first), (2, last))}
    print(json.dumps(summary, indent=2))
    if os.environ.get("BRIDGE_LOAD_OUT"):
        with open(os.environ["BRIDGE_LOAD_OUT"], "w") as f:
            json.dump(summary, f, indent=2)
    assert crashed == 0 and stale_executed == 0
    assert all(abs(v) <= 10 for v in summary["server_rss_change_pct"].values()), summary["server_rss_change_pct"]
    assert min(plans) > 0
