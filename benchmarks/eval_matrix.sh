#!/usr/bin/env bash
# The README's results table: oracle, model and random planner at L1-L4 plus the model's
# ablations, all on the same seeds (so `embodied compare` pairs them), then one table.
# Rows with perception=camera (the table known from the cameras only) and sim.randomize=true sit beside
# the ground-truth ones (`-camera`, `-camera-randomized`).
# Usage: benchmarks/eval_matrix.sh [episodes-per-family] [workers] [which: all|oracle|model|camera|camera-oracle|camera-model]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
W=${2:-2}
WHICH=${3:-all}
OUT=benchmarks/results/eval
E=".venv/bin/embodied eval episodes=$N workers=$W seed=0 progress=false"
# An eval into a folder that already holds the same settings resumes (and runs nothing): clear the rows first.
if [ "$WHICH" = all ] || [ "$WHICH" = oracle ]; then
  rm -rf "$OUT"/oracle-L? "$OUT"/random-L1
  for L in L1 L2 L3 L4; do $E planner=oracle level=$L out=$OUT/oracle-$L >/dev/null; done
  $E planner=random level=L1 out=$OUT/random-L1 >/dev/null
fi
if [ "$WHICH" = all ] || [ "$WHICH" = model ]; then
  rm -rf "$OUT"/model-L? "$OUT"/model-L?-ablate-* "$OUT"/model-L?-no-aliases "$OUT"/model-L1-keep32 "$OUT"/model-L?-wording-*
  for L in L1 L2 L3 L4; do $E planner=model level=$L out=$OUT/model-$L >/dev/null; done
  $E planner=model level=L1 ablate=frames out=$OUT/model-L1-ablate-frames >/dev/null
  $E planner=model level=L1 ablate=objects out=$OUT/model-L1-ablate-objects >/dev/null
  $E planner=model level=L1 ablate=state out=$OUT/model-L1-ablate-state >/dev/null
  $E planner=model level=L1 ablate=relations out=$OUT/model-L1-ablate-relations >/dev/null
  $E planner=model level=L2 ablate=relations out=$OUT/model-L2-ablate-relations >/dev/null
  $E planner=model level=L2 object_aliases=false out=$OUT/model-L2-no-aliases >/dev/null
  $E planner=model level=L3 object_aliases=false out=$OUT/model-L3-no-aliases >/dev/null
  $E planner=model level=L1 keep_patches=32 out=$OUT/model-L1-keep32 >/dev/null
  # the same L1 episodes, instructions reworded from the goal in the held-out dev wording (envs/tasks/phrasing.py)
  $E planner=model level=L1 phrasing=dev out=$OUT/model-L1-wording-dev >/dev/null
fi
if [ "$WHICH" = all ] || [ "$WHICH" = camera ] || [ "$WHICH" = camera-oracle ]; then
  rm -rf "$OUT"/oracle-L?-camera*
  for L in L1 L2 L3 L4; do
    $E planner=oracle level=$L perception=camera out=$OUT/oracle-$L-camera >/dev/null
    $E planner=oracle level=$L perception=camera sim.randomize=true out=$OUT/oracle-$L-camera-randomized >/dev/null
  done
fi
if [ "$WHICH" = all ] || [ "$WHICH" = camera ] || [ "$WHICH" = camera-model ]; then
  rm -rf "$OUT"/model-L?-camera*
  for L in L1 L2 L3; do $E planner=model level=$L perception=camera out=$OUT/model-$L-camera >/dev/null; done
fi
.venv/bin/python benchmarks/eval_table.py "$OUT"
