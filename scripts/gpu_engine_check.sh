#!/usr/bin/env bash
# One-shot CUDA check of the streaming engine (issue 4): correctness on the GPU, then every
# CUDA number the issue asks for, written to $OUT/engine.json (one row per model x batch).
#
#   bash scripts/gpu_engine_check.sh            # OUT defaults to benchmarks/results
#   OUT=/tmp/out REPEATS=10 bash scripts/gpu_engine_check.sh
#
# About 5-8 minutes on one H100/H200 (most of it inductor compiling the decode step per engine).
# Targets (bf16, batch 1): 1b plan p50 <= 25 ms and >= 20x generate(); default plan p50 <= 3 ms;
# batch 8: plans_per_s_ours >= 5x the batch-1 row. Record the card (device_name) with each number.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && source .venv/bin/activate
OUT=${OUT:-benchmarks/results}
REPEATS=${REPEATS:-20}
mkdir -p "$OUT"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
try:
    import flash_attn  # noqa: F401
    print("flash-attn installed (the engine uses PyTorch SDPA kernels)")
except ImportError:
    print("flash-attn not installed")
PY
echo "== 1. correctness on the GPU (float32: CUDA-graph engine == eager engine == generate())"
python -m pytest tests/test_engine.py -m gpu -q -p no:cacheprovider
echo "== 2. benchmark: engine (bf16, CUDA graphs + inductor) vs generate(), batch 1 and 8"
python -m embodied.cli bench engine device=cuda models=both "batch=[1,8]" repeats="$REPEATS" warmup=3 out="$OUT"
echo "== 3. ablation: CUDA graphs without inductor (batch 1) -> $OUT/no_compile/engine.json"
python -m embodied.cli bench engine device=cuda models=both batch=1 repeats="$REPEATS" warmup=3 compile=false \
    baseline=false out="$OUT/no_compile"
python - "$OUT" <<'PY'
import json, sys
rows = json.load(open(f"{sys.argv[1]}/engine.json"))
b1 = {r["model"]: r for r in rows if r["batch"] == 1}
for r in rows:
    extra = ""
    if r["batch"] > 1 and r["model"] in b1:
        extra = f" | aggregate plans/s vs batch 1: {r['plans_per_s_ours'] / b1[r['model']]['plans_per_s_ours']:.2f}x"
    print(f"{r['device_name']} {r['model']} batch {r['batch']}: plan p50 {r['ours']['plan_ms']['p50']} ms "
          f"(first step {r['ours']['first_step_ms']['p50']} ms), generate {r['baseline']['plan_ms']['p50']} ms, "
          f"speedup {r['speedup_plan_p50']}x{extra}")
PY
