#!/usr/bin/env bash
# Robot-side check: the bridge runs on a computer with only numpy, pyzmq and msgpack.
#
# 1. a clean virtual environment in a temp dir; install numpy, pyzmq, msgpack and this repo
#    with --no-deps (no torch, transformers, pybullet, opencv, hydra);
# 2. import every bridges module, the ground (embodied.core) and the daemon command there and check
#    that nothing heavy came in;
# 3. a client in that environment does a round trip with a server from the main environment;
# 4. the control daemon (robot=dry) runs there against that server for a few seconds.
# Usage: .ci/robot_side_check.sh [python-for-the-server]   (default: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SERVER_PY="${1:-$ROOT/.venv/bin/python}"
BASE_PY="${ROBOT_SIDE_PYTHON:-python3}"
START=$(date +%s)
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

"$BASE_PY" -m venv "$TMP/venv"
PY="$TMP/venv/bin/python"
"$PY" -m pip install -q numpy pyzmq msgpack 2>&1 | grep -v "is ignored: it is neither" || true
# build from a copy so that no build/ or *.egg-info is left in the working tree
mkdir "$TMP/src"
cp -r "$ROOT/pyproject.toml" "$ROOT/embodied" "$ROOT/envs" "$ROOT/policies" "$ROOT/bridges" "$TMP/src/"
[ -f "$ROOT/README.md" ] && cp "$ROOT/README.md" "$TMP/src/"
find "$TMP/src" -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m pip install -q --no-deps "$TMP/src" 2>&1 | grep -v "is ignored: it is neither" || true
"$PY" -c "import numpy, zmq, msgpack, bridges"  # fail here if an install above failed
cd "$TMP"  # import the installed package, not the source tree

"$PY" - <<'EOF'
import importlib, pkgutil, sys
import bridges, embodied.core
mods = sorted(m.name for m in pkgutil.iter_modules(bridges.__path__, "bridges."))
mods += sorted(m.name for m in pkgutil.iter_modules(embodied.core.__path__, "embodied.core."))
mods += ["embodied.commands.daemon"]  # the robot side's way in
for m in mods:
    importlib.import_module(m)
heavy = sorted({"torch", "transformers", "pybullet", "cv2", "hydra", "omegaconf", "gymnasium", "websockets"} & set(sys.modules))
if heavy:
    sys.exit(f"robot side imported {heavy}")
print(f"imported {len(mods)} modules (bridges, the ground, the daemon command) without heavy dependencies: {', '.join(mods)}")
EOF

# server in the main environment (any planner works; the trivial one needs nothing)
(cd "$ROOT" && exec "$SERVER_PY" -m embodied.commands.serve planner=bridges.bench:TrivialPlanner "bind=tcp://127.0.0.1:*") \
  >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/server.out" 2>/dev/null && break; sleep 0.1; done
ADDRESS="$(grep -o 'tcp://[^ ]*' "$TMP/server.out" | head -1 || true)"
[ -n "$ADDRESS" ] || { echo "server did not start:"; cat "$TMP/server.err"; exit 1; }

"$PY" - "$ADDRESS" <<'EOF'
import sys, time
import numpy as np
from bridges.client import BridgeClient
from bridges.remote import RemotePlanner
from embodied.core.observation import Observation
obs = Observation({"front": np.zeros((224, 224, 3), np.uint8)}, np.zeros(15, np.float32), "put red cube in tray")
with BridgeClient(sys.argv[1], "robot-side-check", timeout_s=10) as c:
    meta = c.hello()
    t0 = time.perf_counter()
    steps = [r.step.text for r in c.plan(obs)]
    ms = (time.perf_counter() - t0) * 1e3
assert steps == ["done"], steps
planner = RemotePlanner(sys.argv[1], "robot-side-planner")
assert [s.text for s in planner.plan(obs)] == ["done"]
planner.close()
print(f"round trip with {meta['planner']!r} at {sys.argv[1]}: {steps} in {ms:.2f} ms")
EOF

"$PY" -m embodied.commands.daemon robot=dry "server=$ADDRESS" "log=$TMP/daemon.jsonl" max_seconds=2 episodes=null hz=20
"$PY" - "$TMP/daemon.jsonl" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
events = [r["event"] for r in recs]
assert "connected" in events and events.count("plan") >= 1 and events[-1] == "shutdown", events
print(f"daemon (robot=dry) ran: {events.count('plan')} plans, {recs[-1]['achieved_hz']} Hz of {recs[-1]['target_hz']}")
EOF
echo "robot-side check passed in $(( $(date +%s) - START )) s"
