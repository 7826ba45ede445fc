#!/usr/bin/env bash
# The `mertool demo` chain as separate verbs, on the built-in synthetic set:
#   synth -> index -> align -> keyframes -> flow -> dynimg -> train (LOSO, per model) -> report
# A template for scripting batches: the per-clip stages run once, then one LOSO run per
# model listed, and one report table compares them.
# Usage:  pipelines/demo.sh [OUT_DIR] [MODEL ...]
#   OUT_DIR defaults to demo_sh; MODEL defaults to offtanet (also: ststnet, offapexnet).
#   Env: QUICK=1 (6 subjects, 16 frames), JOBS (default 2), DEVICE (auto|cpu|cuda),
#        EPOCHS (per LOSO fold, default 20).
# Re-running resumes: every stage skips finished work (stage files and runs are keyed).
set -euo pipefail
OUT=${1:-demo_sh}
if [ $# -gt 0 ]; then shift; fi
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then MODELS=(offtanet); fi
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-auto}
EPOCHS=${EPOCHS:-20}
if [ "${QUICK:-0}" = 1 ]; then
  SET=(--subjects 6 --per-class 2 --frames 16); BATCH=16
else
  SET=(--subjects 12 --per-class 4 --frames 30); BATCH=32
fi
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
for MODEL in "${MODELS[@]}"; do
  case "$MODEL" in
    offtanet | ststnet | offapexnet) ;;
    *) echo "error: $MODEL: this script trains offtanet, ststnet or offapexnet" >&2; exit 2 ;;
  esac
done
DATA=$OUT/data
WORK=$OUT/work
PICS=$OUT/pictures
mkdir -p "$WORK"

mertool synth -o "$DATA" "${SET[@]}" --classes positive,negative,surprise --amplitude 1,2.5 --seed 0 --jobs "$JOBS"
mertool index --dataset manifest --sheet "$DATA/manifest.csv" -o "$WORK/samples.csv"
mertool align "$WORK/samples.csv" -o "$WORK/aligned.h5" --jobs "$JOBS" --preview "$PICS/aligned"
mertool keyframes "$WORK/samples.csv" --aligned "$WORK/aligned.h5" -o "$WORK/samples_kf.csv"
mertool flow "$WORK/aligned.h5" -o "$WORK/flow.h5" --preset offtanet --samples "$WORK/samples_kf.csv" \
  --jobs "$JOBS" --preview "$PICS/flow"
mertool dynimg "$WORK/aligned.h5" -o "$WORK/dynimg.h5" --size 112 --samples "$WORK/samples_kf.csv" \
  --jobs "$JOBS" --preview "$PICS/dynimg"

RUNS=()
for MODEL in "${MODELS[@]}"; do
  FEATURES=$WORK/flow.h5
  if [ "$MODEL" != offtanet ]; then  # STSTNet and Off-ApexNet read 28x28 maps
    FEATURES=$WORK/flow28.h5
    mertool flow "$WORK/aligned.h5" -o "$FEATURES" --preset ststnet --samples "$WORK/samples_kf.csv" --jobs "$JOBS"
  fi
  mertool train "$FEATURES" --model "$MODEL" -o "$OUT/runs/$MODEL" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --seed 0 --device "$DEVICE" --jobs "$JOBS"
  RUNS+=("$OUT/runs/$MODEL")
done
mertool report "${RUNS[@]}" --markdown "$OUT/results.md"
echo "pictures: $PICS/aligned $PICS/flow $PICS/dynimg and $OUT/runs/*/confusion.png, curves.png"
