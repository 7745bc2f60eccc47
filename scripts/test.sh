#!/usr/bin/env bash
# The test command: set up .venv, run the fast test suite, then prove the robot side
# (bridges/) installs and runs in a clean venv with only numpy, pyzmq and msgpack.
# Slow and GPU tests are deselected by default: run them with `-m slow` / `-m gpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
.ci/robot_side_check.sh
