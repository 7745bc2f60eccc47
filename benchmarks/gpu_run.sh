#!/usr/bin/env bash
# Every GPU measurement in one prepared run (one CUDA machine, ~8 minutes): engine correctness
# and latency (issue 4), training throughput and a GPU-trained model (issue 3). Each part has its
# own time limit and log, and a failing part does not stop the others.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_run.sh [parts]     # parts: any of test,engine,nocompile,train,nanprobe
#
# Results go to $OUT; with PACK=1 they are packed into $OUT/gpu_results.tar.gz instead (one file,
# for machines that return only a few files).
#
#   test       tests/test_engine.py -m gpu: CUDA-graph engine tokens == eager == generate() (float32)
#   engine     embodied bench engine device=cuda models=both batch=[1,8] -> $OUT/engine.json
#   nocompile  the same, batch 1, CUDA graphs without inductor -> $OUT/no_compile/engine.json
#   train      embodied train on $DATA (bf16 autocast) for $TRAIN_MINUTES -> $OUT/train/
#   nanprobe   why a bf16 fine-tune from checkpoints/default went NaN on an H200 (2026-12-04): 40 s
#              each of precision=bf16 and precision=fp32 from it on $DATA at batch 64, lr 3e-4 ->
#              $OUT/nanprobe_{bf16,fp32}/metrics.jsonl (nonfinite_steps counts skipped updates)
#
# Pure-Python dependencies missing on a bare GPU image (hydra, omegaconf) may be put in
# .gpu_site/ and are then added to PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
PARTS=${1:-test,engine,nocompile,train}
REPEATS=${REPEATS:-20}
DATA=${DATA:-data/l1}
TRAIN_MINUTES=${TRAIN_MINUTES:-1}
TRAIN_ARGS=${TRAIN_ARGS:-}
PY=${PY:-python3}
mkdir -p "$OUT"
[ -d .gpu_site ] && export PYTHONPATH="$PWD/.gpu_site:$PWD${PYTHONPATH:+:$PYTHONPATH}" || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/gpu.txt"

part() {  # part <name> <seconds> <command...>
    local name=$1 secs=$2; shift 2
    case ",$PARTS," in *",$name,"*) ;; *) return 0 ;; esac
    echo "== $name (limit ${secs}s): $*"
    local t0=$SECONDS
    timeout "$secs" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: rc=$rc in $((SECONDS - t0))s"
}

part test "${TEST_LIMIT:-90}" $PY -m pytest tests/test_engine.py -m gpu -q -p no:cacheprovider -x
part engine "${ENGINE_LIMIT:-330}" $PY -m embodied.commands.cli bench engine device=cuda models=both "batch=[1,8]" repeats="$REPEATS" warmup=3 out="$OUT"
part nocompile "${NOCOMPILE_LIMIT:-150}" $PY -m embodied.commands.cli bench engine device=cuda models=both batch=1 repeats="$REPEATS" warmup=3 \
    compile=false baseline=false out="$OUT/no_compile"
part train "$(awk "BEGIN {print int($TRAIN_MINUTES * 60 + 75)}")" $PY -m embodied.commands.cli train data="$DATA" out="$OUT/train" device=cuda \
    max_minutes="$TRAIN_MINUTES" progress=false $TRAIN_ARGS
for prec in bf16 fp32; do
    part nanprobe 150 $PY -m embodied.commands.cli train data="$DATA" out="$OUT/nanprobe_$prec" device=cuda \
        init=checkpoints/default precision=$prec max_minutes=0.67 steps=100000 batch_size=64 lr=0.0003 warmup_steps=30 \
        log_every=10 val_every=200 val_batches=4 max_nonfinite_steps=1000 progress=false
    [ -f "$OUT/nanprobe.log" ] && mv "$OUT/nanprobe.log" "$OUT/nanprobe_$prec.log"
done
if [ -f "$OUT/engine.json" ]; then
    $PY - "$OUT" <<'PY'
import json, sys
rows = json.load(open(f"{sys.argv[1]}/engine.json"))
b1 = {r["model"]: r for r in rows if r["batch"] == 1}
for r in rows:
    extra = ""
    if r["batch"] > 1 and r["model"] in b1:
        extra = f" | plans/s vs batch 1: {r['plans_per_s_ours'] / b1[r['model']]['plans_per_s_ours']:.2f}x"
    print(f"{r['device_name']} {r['model']} b{r['batch']} {r['dtype']}: plan p50 {r['ours']['plan_ms']['p50']} p99 "
          f"{r['ours']['plan_ms']['p99']} ms, first step {r['ours']['first_step_ms']['p50']} ms, generate "
          f"{r['baseline']['plan_ms']['p50']} ms, speedup {r['speedup_plan_p50']}x, compiled {r['compiled']}{extra}")
PY
fi
if [ "${PACK:-0}" = 1 ]; then
    rm -f "$OUT/train/optimizer.safetensors"
    tar -C "$OUT" -czf /tmp/gpu_results.tar.gz . && rm -rf "${OUT:?}"/* && mv /tmp/gpu_results.tar.gz "$OUT/"
    ls -la "$OUT"
fi
