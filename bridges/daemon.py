"""The robot control loop (``embodied daemon robot=sim server=tcp://host:5555`` runs it).

A fixed-rate control loop (``hz``) that observes, asks the server for a plan, executes the
first streamed step through the robot (on an executor thread, so the loop keeps ticking),
and re-plans after each step. Safety:

- watchdog: nothing heard from the server (reply or heartbeat) for ``watchdog_s`` -> safe
  hold (the arm stops where it is, the gripper keeps its state), logged;
- stale guard: a plan whose observation is older than ``stale_s`` when its first step
  arrives is not executed;
- emergency stop: an ``estop`` message or SIGUSR1 halts motion at once and latches until
  the daemon is restarted; SIGINT and SIGTERM shut down cleanly;
- reconnect: after a safe hold the socket is recreated and ``hello`` retried with
  exponential backoff; the loop resumes when the server answers.

Everything is logged as JSONL (``log``): plans with a latency breakdown (encode, network,
queue, inference, decode, observation age when the first step started), step results,
the achieved loop rate against the target (overruns counted), holds and reconnects.
"""

from __future__ import annotations

import gc
import threading
import time

from bridges.client import BridgeClient, Reply
from bridges.daemon_settings import JsonlLog, Settings
from embodied.core.protocols import Robot, StepOutcome


class Daemon:
    """The control loop. ``run()`` returns an exit code; ``request_*`` are safe from signal handlers."""

    def __init__(self, robot: Robot, client: BridgeClient, settings: Settings, log: JsonlLog):
        self.robot, self.client, self.s, self.log = robot, client, settings, log
        self.state = "connecting"
        self._estop_request: tuple[str, float] | None = None
        self._shutdown_request: str | None = None
        self.last_heard = time.perf_counter()
        self.last_hb = 0.0
        self.req: dict | None = None  # the observation request in flight
        self.exec_thread: threading.Thread | None = None
        self.obs_thread: threading.Thread | None = None  # the observation being taken (capture + perception)
        self.obs_result = None
        self.exec_result: StepOutcome | None = None
        self.exec_info: dict | None = None
        self.hello_seq = -1
        self.hello_first = -1  # the first hello on the current socket: an answer to any of them will do
        self.fresh_socket = True  # the client's socket was just made
        self.takeover = False  # reconnecting after a watchdog hold: claim our robot id back from our old connection
        self.next_attempt = 0.0
        self.next_request = 0.0  # after an error reply, wait (with backoff) before asking again
        self.error_streak = 0
        self.backoff = settings.backoff_s
        self.held_since = 0.0
        self.episodes_done = 0
        self.episode_steps = 0
        self.repeats = (None, 0)  # (step text, how many times in a row it succeeded)
        self.counts = {"ticks": 0, "overruns": 0, "plans": 0, "executed": 0, "stale": 0, "holds": 0, "reconnects": 0,
                       "errors": 0}

    # ------------------------------------------------------------ requests from outside the loop

    def request_estop(self, source: str) -> None:
        if self._estop_request is None:
            self._estop_request = (source, time.perf_counter())

    def request_shutdown(self, why: str) -> None:
        self._shutdown_request = why

    # ------------------------------------------------------------ the loop

    def run(self) -> int:
        period = 1.0 / self.s.hz
        start = time.perf_counter()
        end = None if self.s.max_seconds is None else start + self.s.max_seconds
        window_start, window_ticks, window_overruns = start, 0, 0
        next_tick = start
        gc.collect()
        gc.freeze()  # the robot, simulator and client are built: a full collection must not walk them mid-loop
        self.log("start", target_hz=self.s.hz, server=self.client.address, robot=self.robot.name)
        self._start_episode()
        while self._shutdown_request is None and self.state != "finished":
            if end is not None and time.perf_counter() >= end:
                self._shutdown_request = "max_seconds"
                break
            self._tick()
            self.counts["ticks"] += 1
            window_ticks += 1
            next_tick += period
            now = time.perf_counter()
            if now > next_tick:  # this tick overran its period: count it and do not try to catch up
                self.counts["overruns"] += 1
                window_overruns += 1
                next_tick = now
            else:
                self._pump(until=next_tick)
            if now - window_start >= self.s.rate_log_s:
                self.log("rate", target_hz=self.s.hz, achieved_hz=round(window_ticks / (now - window_start), 3),
                         overruns=window_overruns, overruns_total=self.counts["overruns"], state=self.state)
                window_start, window_ticks, window_overruns = now, 0, 0
        return self._shutdown(self._shutdown_request or "finished", time.perf_counter() - start)

    def _pump(self, until: float) -> None:
        """Handle replies as they arrive until ``until`` (perf_counter)."""
        while self._shutdown_request is None and self._estop_request is None:
            left = until - time.perf_counter()
            if left <= 0:
                return
            try:
                reply = self.client.receive(min(left, 0.02))
            except Exception as e:  # a malformed reply or a step that does not parse: whatever a server sends
                self._bad_reply(e)
                continue
            if reply is not None:
                try:
                    self._on_reply(reply)
                except Exception as e:  # a reply that passed the checks but still cannot be used
                    self._bad_reply(e)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._estop_request is not None and self.state != "estop":
            self._estop()
            return
        if self.state == "estop":
            return
        if self.exec_thread is not None and not self.exec_thread.is_alive():
            self._step_finished()
        if self.state in ("connecting", "hold"):
            self._reconnect(now)
            return
        if now - self.last_hb >= self.s.heartbeat_s:
            self.client.send("heartbeat")
            self.last_hb = now
        silent = now - self.last_heard
        if silent > self.s.watchdog_s:
            self._safe_hold("watchdog", silent_s=round(silent, 3))
            return
        if self.state == "waiting" and now - self.req["sent"] > max(self.s.watchdog_s, (self.s.deadline_ms or 0) / 1e3):
            self.log("request_timeout", seq=self.req["seq"])
            self._drop_request()
        if self.state == "observing" and not self.obs_thread.is_alive():
            self._observed()
        if self.state == "idle" and now >= self.next_request:
            self._request_plan()

    # ------------------------------------------------------------ plans

    def _request_plan(self) -> None:
        """Observe on a thread of its own (capture and perception may take longer than a tick, and the
        loop keeps its rate meanwhile); ``_observed`` sends the observation when it is ready."""
        if self.obs_thread is not None and self.obs_thread.is_alive():
            return  # an earlier look (abandoned by a hold) is still running: one at a time
        self.obs_result = None
        self.obs_thread = threading.Thread(target=self._observe, daemon=True)
        self.state = "observing"
        self.obs_thread.start()

    def _observe(self) -> None:
        try:
            self.obs_result = self.robot.observe()
        except Exception as e:  # handed to the control thread
            self.obs_result = e

    def _observed(self) -> None:
        obs, self.obs_result = self.obs_result, None
        self.state = "idle"
        if isinstance(obs, BaseException):  # a camera that stopped, perception that failed: nothing moves without a fresh look
            self.robot.hold()
            self.counts["holds"] += 1
            wait = self._backoff()
            self.log("safe_hold", why="observe_error", error=type(obs).__name__, message=str(obs), retry_in_s=round(wait, 3))
            return
        if obs is None:
            return
        t_wall = time.time()
        seq = self.client.send_observation(obs, self.s.deadline_ms)
        self.req = {"seq": seq, "obs_time": obs.timestamp, "sent": time.perf_counter(), "sent_wall": t_wall,
                    "encode_ms": self.client.last_encode_ms}
        self.state = "waiting"

    def _drop_request(self) -> None:
        if self.req is not None:
            self.client.send("cancel", cancel=self.req["seq"])
        self.req = None
        if self.state == "waiting":
            self.state = "idle"

    def _backoff(self) -> float:
        """After an error or a bad reply: wait before asking again, doubling up to backoff_max_s."""
        self.counts["errors"] += 1
        self.error_streak += 1
        wait = min(self.s.backoff_s * 2 ** min(self.error_streak - 1, 10), self.s.backoff_max_s)
        self.next_request = time.perf_counter() + wait
        return wait

    def _bad_reply(self, e: Exception) -> None:
        """A reply the robot side cannot use: logged, the request dropped, the next one after a backoff.
        It does not count as a sign of life (the watchdog still needs good replies)."""
        waiting = self.state == "waiting"
        wait = self._backoff() if waiting else 0.0
        self.log("bad_reply", error=type(e).__name__, message=str(e)[:500], **({"retry_in_s": round(wait, 3)} if waiting else {}))
        if waiting:
            self._drop_request()

    def _on_reply(self, reply: Reply) -> None:
        self.last_heard = time.perf_counter()
        kind = reply.type
        if kind == "estop":
            self.request_estop(f"message from {reply.header.get('by', 'server')}")
            return
        if kind == "error" and reply.header["code"] == "superseded":
            # another connection took this robot id over: this daemon no longer gets its plans or e-stops
            self.log("superseded", message=reply.header["message"])
            if self.state not in ("connecting", "hold", "estop", "finished"):
                self._safe_hold("superseded")
            self.takeover = False  # do not take it back: reconnect and wait until the id is free
            return
        if self.state in ("connecting", "hold") and 0 <= self.hello_first <= reply.seq <= self.hello_seq:
            if kind == "metadata":
                self._resume(reply.header.get("metadata", {}))
            elif kind == "error":  # e.g. robot_id_taken: another live connection holds this robot id
                self.counts["errors"] += 1
                self.log("server_error", seq=reply.seq, code=reply.header["code"], message=reply.header["message"],
                         retry_in_s=round(max(0.0, self.next_attempt - time.perf_counter()), 3))
            return
        if kind == "error" and reply.seq == 0:  # a notice not tied to a request (e.g. robot_id_claimed)
            self.log("server_notice", code=reply.header["code"], message=reply.header["message"])
            return
        if self.state != "waiting" or self.req is None or reply.seq != self.req["seq"]:
            return  # heartbeat, ack, or a late reply to an older request
        if kind == "error":
            wait = self._backoff()
            self.log("server_error", seq=reply.seq, code=reply.header.get("code"), message=reply.header.get("message"),
                     retry_in_s=round(wait, 3))
            self.req = None
            self.state = "idle"
            return
        elif reply.type == "end":
            self.log("empty_plan", seq=reply.seq)
            self.req = None
            self.state = "idle"
        elif reply.type == "step":
            self.error_streak = 0
            self._first_step(reply)

    def _first_step(self, reply: Reply) -> None:
        req, srv = self.req, reply.server
        self.counts["plans"] += 1
        age_s = time.time() - req["obs_time"]
        rtt_ms = (reply.received - req["sent_wall"]) * 1e3
        timing = {
            "encode_ms": round(req["encode_ms"], 3),
            "network_ms": round(rtt_ms - srv.get("elapsed_ms", 0.0), 3),
            "queue_ms": round(srv.get("queue_ms", 0.0), 3),
            "inference_ms": round(srv.get("infer_ms", 0.0), 3),
            "decode_ms": round(srv.get("decode_ms", 0.0) + reply.decode_ms, 3),
            "round_trip_ms": round(rtt_ms, 3),
        }
        self._drop_request()  # re-plan after this step: the rest of this plan is not needed
        if age_s > self.s.stale_s:
            self.counts["stale"] += 1
            self.log("stale_plan", seq=reply.seq, step=reply.step.text, obs_age_ms=round(age_s * 1e3, 3),
                     limit_ms=self.s.stale_s * 1e3, **timing)
            return
        if reply.step.is_done:
            self.log("plan", seq=reply.seq, step="done", obs_age_ms=round(age_s * 1e3, 3), **timing)
            self._end_episode("planner said done")
            return
        self.exec_info = {"seq": reply.seq, "step": reply.step.text, "obs_time": req["obs_time"], **timing}
        self.exec_result = None
        self.exec_thread = threading.Thread(target=self._execute, args=(reply.step,), daemon=True)
        self.state = "executing"
        self.exec_thread.start()

    def _execute(self, step) -> None:
        started = time.time()
        self.exec_info["obs_age_ms"] = round((started - self.exec_info["obs_time"]) * 1e3, 3)
        self.log("plan", **{k: v for k, v in self.exec_info.items() if k != "obs_time"})
        try:
            self.exec_result = self.robot.execute(step)
        except Exception as e:  # a driver error must not kill the loop; hold instead
            self.exec_result = StepOutcome(False, f"{type(e).__name__}: {e}")
            self.exec_result.crashed = True  # type: ignore[attr-defined]
        self.exec_info["duration_s"] = round(time.time() - started, 3)

    def _step_finished(self) -> None:
        self.exec_thread = None
        out, info = self.exec_result, self.exec_info or {}
        if out is None:
            return
        self.counts["executed"] += 1
        self.episode_steps += 1
        self.log("step_result", step=info.get("step"), success=out.success, reason=out.reason, halted=out.halted,
                 duration_s=info.get("duration_s"))
        if getattr(out, "crashed", False):
            self._safe_hold("robot_error", reason=out.reason)
            return
        if self.state == "executing":
            self.state = "idle"
        if out.episode_over and not out.halted:
            self._end_episode("episode over")
            return
        self._check_progress(info.get("step"), out)

    def _check_progress(self, step: str | None, out: StepOutcome) -> None:
        """No-progress guard: the same step succeeding ``max_repeats`` times in a row ends the episode."""
        if not (out.success and not out.halted):
            self.repeats = (None, 0)
            return
        last, n = self.repeats
        self.repeats = (step, n + 1 if step == last else 1)
        limit = self.s.max_repeats
        if limit is not None and self.repeats[1] >= limit and self.state == "idle":
            self.log("no_progress", step=step, repeats=self.repeats[1])
            self._end_episode(f"no progress: {step!r} succeeded {self.repeats[1]} times in a row")

    def _stop_motion(self) -> None:
        self.robot.hold()  # returns once the arm is still; an executing step returns halted
        if self.exec_thread is not None:
            self.exec_thread.join(timeout=5.0)
            if not self.exec_thread.is_alive():
                self._step_finished()

    # ------------------------------------------------------------ episodes

    def _start_episode(self) -> None:
        info = self.robot.reset()
        self.episode_steps = 0
        self.repeats = (None, 0)
        self.log("episode_start", episode=self.episodes_done, **(info or {}))

    def _end_episode(self, why: str) -> None:
        success = getattr(self.robot, "success", None)
        self.log("episode_end", episode=self.episodes_done, why=why, steps=self.episode_steps,
                 success=bool(success()) if callable(success) else None)
        self.episodes_done += 1
        if self.s.episodes is not None and self.episodes_done >= self.s.episodes:
            self.state = "finished"
            return
        self.client.send("reset")
        self._start_episode()
        self.state = "idle"

    # ------------------------------------------------------------ safety

    def _safe_hold(self, why: str, **data) -> None:
        self._stop_motion()
        if why != "superseded" and self.state not in ("connecting", "hold"):
            self.takeover = True  # the server may still see our old connection holding the robot id
        self.req = None
        self.counts["holds"] += 1
        self.state = "hold"
        self.held_since = time.perf_counter()
        self.backoff = self.s.backoff_s
        self.next_attempt = 0.0
        self.fresh_socket = False  # the first attempt recreates it: nothing stale is delivered later
        self.log("safe_hold", why=why, **data)

    def _reconnect(self, now: float) -> None:
        if now < self.next_attempt:
            return
        if not self.fresh_socket:
            # once per hold, a fresh socket: nothing stale is queued towards the server. Later attempts keep it
            # (libzmq reconnects it by itself): a new connection per attempt would race the server's view of
            # the previous one, which may still hold this robot id when the next hello arrives.
            self.client.connect()
            self.fresh_socket = True
            self.hello_first = -1
        self.hello_seq = self.client.send("hello", **({"takeover": True} if self.takeover else {}))
        if self.hello_first < 0:
            self.hello_first = self.hello_seq
        self.counts["reconnects"] += 1
        self.log("connect_attempt", backoff_s=round(self.backoff, 3), state=self.state, takeover=self.takeover)
        self.next_attempt = now + self.backoff
        self.backoff = min(self.backoff * 2, self.s.backoff_max_s)

    def _resume(self, metadata: dict) -> None:
        held = time.perf_counter() - self.held_since if self.state == "hold" else 0.0
        self.log("resumed" if self.state == "hold" else "connected", held_s=round(held, 3), metadata=metadata)
        self.state = "idle"
        self.hello_seq = self.hello_first = -1
        self.takeover = False
        self.backoff = self.s.backoff_s
        self.last_heard = time.perf_counter()

    def _estop(self) -> None:
        source, t_req = self._estop_request
        self._stop_motion()
        if self.req is not None:
            self._drop_request()
        self.state = "estop"
        self.log("estop", source=source, halt_ms=round((time.perf_counter() - t_req) * 1e3, 3),
                 note="latched: restart the daemon to move again")

    def _shutdown(self, why: str, elapsed: float) -> int:
        if self.exec_thread is not None or self.state == "executing":
            self._stop_motion()
        if self.obs_thread is not None:
            self.obs_thread.join(timeout=5.0)  # the robot is closed after this returns
        self.client.close()
        gc.unfreeze()
        self.log("shutdown", why=why, elapsed_s=round(elapsed, 3),
                 achieved_hz=round(self.counts["ticks"] / elapsed, 3) if elapsed > 0 else 0.0,
                 target_hz=self.s.hz, **self.counts)
        return 0
