#!/usr/bin/env bash
# Regenerate the demonstration data and retrain the default planner from nothing, in stages.
#
#   scripts/train_default.sh            # the full recipe (hours on 2 CPU cores; see --plan)
#   scripts/train_default.sh --plan     # print the stages, their commands and expected times, run nothing
#   QUICK=1 scripts/train_default.sh    # the same stages with a tiny budget (a few minutes): checks the pipeline
#
# Resumable: run it again and every stage skips what is done (datagen skips finished shards,
# `embodied train` resumes from its last checkpoint and returns at once when a stage has finished,
# an evaluation resumes its episodes.jsonl; a finished stage leaves <OUT>/<stage>.done).
# The model card (checkpoints/default/MODEL_CARD.md, "One recipe") says which stages the shipped
# weights went through and how this recipe differs.
#
# Settings (environment variables):
#   QUICK=1         tiny budget: 2 episodes per family, 30 steps per training stage, 1 eval episode per family
#   OUT=runs/recipe where the stages write (QUICK: runs/recipe-quick); DATA=data/recipe (QUICK: data/recipe-quick)
#   WORKERS=2       datagen / eval worker processes;  THREADS=2  torch CPU threads for training
#   DEVICE=auto     cpu | cuda | auto (training)
#   EVAL=1          finish with L1 and L2 evaluations on the committed seeds, compared with the shipped rows
#   SHIP=0          1: copy the final weights into checkpoints/default (only after you have looked at the evals)
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-auto}
EVAL=${EVAL:-1}
SHIP=${SHIP:-0}
if [ "$QUICK" = 1 ]; then
  OUT=${OUT:-runs/recipe-quick}; DATA=${DATA:-data/recipe-quick}
else
  OUT=${OUT:-runs/recipe}; DATA=${DATA:-data/recipe}
fi
BIN=${EMBODIED:-.venv/bin/embodied}
PLAN=0
[ "${1:-}" = "--plan" ] && PLAN=1

# --- the stages ------------------------------------------------------------------------------------
# Episodes per family (datagen) and optimizer steps (train) per stage; QUICK shrinks both.
# Expected minutes: measured rates of the shipped checkpoint's stages (model card): datagen ~210 episodes/min
# with 2 workers on an idle 2-core machine; training ~118 steps/min of batch 16 on 2 CPU threads (stage 9:
# 4,710 steps in 40 min). One GPU: training ~22x the CPU rate (H200, bf16: 92k tokens/s against ~4.1k),
# datagen with 16 workers on its 16 cores ~8x (estimated from the 2-core rate, not measured).
if [ "$QUICK" = 1 ]; then
  EP_A=2; EP_B=2; EP_P=2; STEPS_1=30; STEPS_2=30; STEPS_3=30; EVAL_EP=1; VAL_EVERY=15
else
  EP_A=600; EP_B=300; EP_P=300; STEPS_1=20000; STEPS_2=8000; STEPS_3=${STEPS_3:-5000}; EVAL_EP=20; VAL_EVERY=500
fi
SCENE_FAMILIES="[sort_by_colour,clean_up_except,unstack,group_by_attribute,line_up,tower]"
DG="$BIN datagen level=L1 episodes_per_shard=5 workers=$WORKERS progress=false"
TR="$BIN train batch_size=16 val_every=$VAL_EVERY val_batches=8 checkpoint_every=$VAL_EVERY log_every=50 threads=$THREADS device=$DEVICE progress=false"
NOISE="instruction_word_dropout=0.1 target_colour_noise=0.15 frame_dropout=0.3 alias_noise=0.3"

STAGES=(data_templates data_scene data_wording data_links train_base train_robust train_wording eval)
declare -A CMD WHAT MIN_CPU MIN_GPU
CMD[data_templates]="$DG episodes=$EP_A seed=2000000 out=$DATA/l1t"
WHAT[data_templates]="templates' wording, all ten families, $EP_A episodes each (TRAIN split, 40% perturbed, scene graph recorded)"
MIN_CPU[data_templates]=$(( EP_A * 10 / 210 + 1 )); MIN_GPU[data_templates]=$(( EP_A * 10 / 1700 + 1 ))
CMD[data_scene]="$DG episodes=$EP_B seed=2100000 out=$DATA/l1t \"tasks=$SCENE_FAMILIES\""
WHAT[data_scene]="more of the families that track several objects, $EP_B episodes each, into the same folder"
MIN_CPU[data_scene]=$(( EP_B * 6 / 210 + 1 )); MIN_GPU[data_scene]=$(( EP_B * 6 / 1700 + 1 ))
CMD[data_wording]="$DG episodes=$EP_P seed=1200000 out=$DATA/l1p phrasing=train phrasing_share=0.5"
WHAT[data_wording]="half the episodes reworded by the train wording (envs/tasks/phrasing.py), $EP_P per family"
MIN_CPU[data_wording]=$(( EP_P * 10 / 210 + 1 )); MIN_GPU[data_wording]=$(( EP_P * 10 / 1700 + 1 ))
CMD[data_links]="mkdir -p $DATA/all && for d in l1t l1p; do for f in $DATA/\$d/*.parquet; do ln -sf ../\$d/\$(basename \$f) $DATA/all/\${d}_\$(basename \$f); done; done"
WHAT[data_links]="one folder of links to both data sets (the tokenizer of the new model learns the reworded words too)"
MIN_CPU[data_links]=0; MIN_GPU[data_links]=0
CMD[train_base]="$TR data=$DATA/all out=$OUT/base model.prompt_objects=true model.prompt_relations=true steps=$STEPS_1 lr=0.001 warmup_steps=100 instruction_word_dropout=0.1 target_colour_noise=0.1"
WHAT[train_base]="from nothing (new tokenizer and weights): object list and scene graph in the prompt, $STEPS_1 steps"
MIN_CPU[train_base]=$(( STEPS_1 / 118 + 1 )); MIN_GPU[train_base]=$(( STEPS_1 / 118 / 22 + 1 ))
CMD[train_robust]="$TR data=$DATA/all out=$OUT/robust init=$OUT/base steps=$STEPS_2 lr=0.0004 warmup_steps=30 $NOISE instruction_word_noise=0.3"
WHAT[train_robust]="made-up instruction words, colour noise, blank frames, alias noise (stages 4-9 of the card), $STEPS_2 steps"
MIN_CPU[train_robust]=$(( STEPS_2 / 118 + 1 )); MIN_GPU[train_robust]=$(( STEPS_2 / 118 / 22 + 1 ))
CMD[train_wording]="$TR data=$DATA/l1p out=$OUT/wording init=$OUT/robust steps=$STEPS_3 lr=0.0003 warmup_steps=30 $NOISE instruction_word_noise=0.15"
WHAT[train_wording]="the reworded data (stage 10 of the card), $STEPS_3 steps"
MIN_CPU[train_wording]=$(( STEPS_3 / 118 + 1 )); MIN_GPU[train_wording]=$(( STEPS_3 / 118 / 22 + 1 ))
EV="$BIN eval planner=model model_dir=$OUT/wording episodes=$EVAL_EP workers=$WORKERS seed=0 progress=false"
CMD[eval]="$EV level=L1 out=$OUT/eval-L1 && $EV level=L2 out=$OUT/eval-L2 && $EV level=L1 phrasing=dev out=$OUT/eval-L1-dev"
WHAT[eval]="L1 and L2 (templates) and L1 in dev wording, $EVAL_EP episodes per family, the committed rows' seeds"
MIN_CPU[eval]=$(( EVAL_EP * 30 / 170 + 1 )); MIN_GPU[eval]=$(( EVAL_EP * 30 / 170 + 1 ))  # 174 episodes/min measured (committed rows)

total_cpu=0; total_gpu=0
for s in "${STAGES[@]}"; do total_cpu=$(( total_cpu + MIN_CPU[$s] )); total_gpu=$(( total_gpu + MIN_GPU[$s] )); done
echo "recipe: ${#STAGES[@]} stages into $OUT (data in $DATA), QUICK=$QUICK; expected ~$total_cpu min on 2 CPU cores, ~$total_gpu min on one GPU"

i=0
for s in "${STAGES[@]}"; do
  i=$(( i + 1 ))
  echo "[$i/${#STAGES[@]}] $s: ${WHAT[$s]}"
  echo "      expected ~${MIN_CPU[$s]} min on 2 CPU cores, ~${MIN_GPU[$s]} min on one GPU"
  echo "      \$ ${CMD[$s]}"
  [ "$PLAN" = 1 ] && continue
  [ "$s" = eval ] && [ "$EVAL" != 1 ] && { echo "      skipped (EVAL=$EVAL)"; continue; }
  mkdir -p "$OUT"
  if [ -f "$OUT/$s.done" ]; then echo "      done before: skipped"; continue; fi
  t0=$(date +%s)
  bash -c "${CMD[$s]}"
  touch "$OUT/$s.done"
  echo "      finished in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s"
done
[ "$PLAN" = 1 ] && exit 0

if [ "$EVAL" = 1 ]; then
  for L in L1 L2; do
    echo "== $L: shipped rows (A) against this recipe (B), same seeds"
    $BIN compare benchmarks/results/eval/model-$L "$OUT/eval-$L" | tail -1
  done
fi
if [ "$SHIP" = 1 ]; then
  for f in model.safetensors config.json lm/config.json tokenizer.json tokenizer_config.json special_tokens_map.json; do
    if [ -f "$OUT/wording/$f" ]; then mkdir -p "checkpoints/default/$(dirname "$f")"; cp "$OUT/wording/$f" "checkpoints/default/$f"; fi
  done
  echo "copied $OUT/wording into checkpoints/default: update its MODEL_CARD.md and the README rows"
fi
