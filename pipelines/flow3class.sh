#!/usr/bin/env bash
# Flow-based 3-class recipes (Off-TANet, STSTNet, Off-ApexNet), LOSO, UF1 and UAR pooled
# over folds, on either 3-class set:
#   megc2019   MEGC 2019 composite: SMIC-HS + CASME II + SAMM (442 clips, 68 subjects)
#   offtanet3  Off-TANet's set: CASME + CASME II + CAS(ME)^2 (294 clips, 49 subjects)
#   index (3-class protocol) -> align (all frames) -> keyframes (spots missing apexes; SMIC
#   has none) -> flow (onset->apex TV-L1: 112x112 for offtanet, 28x28 for the others)
#   -> train -> report. The flow options come from the model's recipe (--for-model).
# Usage:  pipelines/flow3class.sh megc2019|offtanet3 offtanet|ststnet|offapexnet ROOT [WORK_DIR]
#   ROOT holds the three corpora (megc2019: SMIC, CASME2 (or "CASME II"), SAMM; offtanet3:
#   CASME, CASME2, CAS(ME)^2 (or CASME^2); see data/README.md). WORK_DIR defaults to
#   work/DATASET and is shared by the models, so the aligned clips are made once.
#   Env: JOBS (workers, default 2), DEVICE (auto|cpu|cuda, default auto), EPOCHS (default:
#        the model's recipe), ALIGN_SIZE (default 224), APEX_METHOD (keyframes spotting
#        method for clips without an apex, default regions).
# Re-running resumes: every stage decides itself what is up to date (stage files and runs are keyed).
set -euo pipefail
DATASET=${1:-}
MODEL=${2:-}
ROOT=${3:-}
USAGE="usage: ${PIPELINE:-$0 megc2019|offtanet3 offtanet|ststnet|offapexnet ROOT [WORK_DIR]}"
case "$DATASET" in
  megc2019) PROTOCOL=megc2019-3; HOLDS="SMIC, CASME2 and SAMM" ;;
  offtanet3) PROTOCOL=offtanet-3; HOLDS="CASME, CASME2 and CAS(ME)^2" ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
case "$MODEL" in
  offtanet | ststnet | offapexnet) ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
if [ -z "$ROOT" ]; then echo "$USAGE" >&2; exit 2; fi
if [ ! -d "$ROOT" ]; then
  echo "error: $ROOT: dataset root not found (a folder holding $HOLDS; see data/README.md)" >&2
  exit 2
fi
WORK=${4:-work/$DATASET}
RUN=runs/${DATASET}_${MODEL}
JOBS=${JOBS:-2}
TRAIN_ARGS=(--device "${DEVICE:-auto}")
if [ -n "${EPOCHS:-}" ]; then TRAIN_ARGS+=(--epochs "$EPOCHS"); fi
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
# The model's recipe names its features file (flow112.h5, flow28.h5): `mertool models --recipe MODEL`.
FEATURES=$WORK/$(mertool models --recipe "$MODEL" | tail -n 1 | cut -f2 | xargs basename)
mkdir -p "$WORK"

mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" -o "$WORK/samples.csv"
mertool align "$WORK/samples.csv" -o "$WORK/aligned.h5" --size "${ALIGN_SIZE:-224}" --frames all --jobs "$JOBS"
mertool keyframes "$WORK/samples.csv" --aligned "$WORK/aligned.h5" \
  --method "${APEX_METHOD:-regions}" -o "$WORK/samples_kf.csv"
mertool flow "$WORK/aligned.h5" -o "$FEATURES" --for-model "$MODEL" --samples "$WORK/samples_kf.csv" --jobs "$JOBS"
mertool train "$FEATURES" --model "$MODEL" -o "$RUN" "${TRAIN_ARGS[@]}"
mertool report "$RUN"
