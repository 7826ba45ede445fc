#!/usr/bin/env bash
# The `mertool demo` chain as separate verbs, on the built-in synthetic set:
#   synth -> index -> align -> keyframes -> flow (each model's recipe: --for-model) -> train (LOSO) -> report
# A template for scripting batches: the per-clip stages run once, then one LOSO run per
# model listed, and one report table compares them.
# Usage:  pipelines/demo.sh OUT_DIR [MODEL ...]
#   MODEL defaults to offtanet (also: ststnet-fast, offapexnet).
#   Env: QUICK=1 (6 subjects, 16 frames; 30 epochs at batch 16, as `mertool demo --quick`),
#        JOBS (default 2), DEVICE (auto|cpu|cuda), EPOCHS (per LOSO fold, default 20, quick 30).
# Re-running resumes: every stage decides itself what is up to date (stage files and runs are keyed).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
if [ $# -eq 0 ]; then echo "usage: $0 OUT_DIR [MODEL ...]   (--help for more)" >&2; exit 2; fi
OUT=$1
shift
MODELS=("$@")
if [ ${#MODELS[@]} -eq 0 ]; then MODELS=(offtanet); fi
JOBS=${JOBS:-2}
DEVICE=${DEVICE:-auto}
if [ "${QUICK:-0}" = 1 ]; then
  SET=(--subjects 6 --per-class 2 --frames 16); BATCH=16; EPOCHS=${EPOCHS:-30}
else
  SET=(--subjects 12 --per-class 4 --frames 30); BATCH=32; EPOCHS=${EPOCHS:-20}
fi
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/recipe.bash"
for MODEL in "${MODELS[@]}"; do
  case "$MODEL" in
    offtanet | ststnet-fast | offapexnet) ;;
    *) echo "error: $MODEL: this script trains offtanet, ststnet-fast or offapexnet" >&2; exit 2 ;;
  esac
done
DATA=$OUT/data
WORK=$OUT/work
PICS=$OUT/pictures
mkdir -p "$WORK"

mertool synth -o "$DATA" "${SET[@]}" --classes positive,negative,surprise --amplitude 1,2.5 --seed 0 --jobs "$JOBS"
mertool index --dataset manifest --sheet "$DATA/manifest.csv" -o "$WORK/samples.csv"

RUNS=()
for MODEL in "${MODELS[@]}"; do
  # align -> keyframes -> flow (flow112.h5 for Off-TANet, flow28_signed.h5 for ststnet-fast and Off-ApexNet), as
  # `mertool models --recipe MODEL`; the aligned clips are shared, later models find them up to date
  PREVIEWS=$PICS make_features "$MODEL" "$WORK" "$WORK/samples.csv"
  mertool train "$FEATURES" --model "$MODEL" -o "$OUT/runs/$MODEL" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --seed 0 --device "$DEVICE" --jobs "$JOBS"
  RUNS+=("$OUT/runs/$MODEL")
done
mertool report "${RUNS[@]}" --markdown "$OUT/results.md"
echo "pictures: $PICS/align $PICS/flow and $OUT/runs/*/confusion.png, curves.png"
