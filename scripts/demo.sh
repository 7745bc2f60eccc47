#!/usr/bin/env bash
# The main job: set up, then one recorded rollout and a task-success evaluation of the
# shipped default model (checkpoints/default) in the simulated tabletop, next to the oracle.
# Outputs: runs/demo/rollout/*.mp4, runs/demo/{model,oracle}/summary.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
EPISODES=${EPISODES:-5}
WORKERS=${WORKERS:-2}
.venv/bin/embodied rollout planner=model task=group_by_attribute level=L1 seed=0 video=true out=runs/demo/rollout || rc=$?
# exit status 3 = the episode ran but the task was not achieved (printed above); anything else is an error
if [ "${rc:-0}" -ne 0 ] && [ "$rc" -ne 3 ]; then echo "demo: rollout failed with exit status $rc" >&2; exit "$rc"; fi
# a fresh evaluation on every run: the folders of an earlier run (an earlier checkpoint) would not resume
rm -rf runs/demo/oracle runs/demo/model
.venv/bin/embodied eval planner=oracle level=L1 episodes="$EPISODES" workers="$WORKERS" seed=0 out=runs/demo/oracle progress=false
.venv/bin/embodied eval planner=model level=L1 episodes="$EPISODES" workers="$WORKERS" seed=0 out=runs/demo/model progress=false
.venv/bin/embodied compare runs/demo/oracle runs/demo/model
