#!/usr/bin/env bash
# Off-TANet on the MEGC 2019 composite 3-class set (SMIC-HS + CASME II + SAMM: 442 clips,
# 68 subjects; positive / negative / surprise), LOSO, UF1 and UAR pooled over folds:
#   index (megc2019-3) -> align (all frames) -> keyframes (SMIC has no apex: spotted)
#   -> flow (onset->apex TV-L1 at 112x112: u, v, strain) -> train offtanet -> report
# Usage:  pipelines/composite_offtanet.sh COMPOSITE_ROOT [WORK_DIR]
#   COMPOSITE_ROOT holds the three corpora as SMIC, CASME2 (or "CASME II") and SAMM
#   (see data/README.md). WORK_DIR defaults to work/megc2019 and is shared with the
#   other composite_*.sh scripts, so the aligned clips are made once.
#   Env: JOBS (workers, default 2), DEVICE (auto|cpu|cuda, default auto), EPOCHS (default:
#        the model's recipe), ALIGN_SIZE (default 224), APEX_METHOD (keyframes spotting
#        method for clips without an apex, default regions).
# Re-running resumes: every stage skips finished work (stage files and runs are keyed).
set -euo pipefail
DATASET=megc2019
MODEL=offtanet
ROOT=${1:-}
if [ -z "$ROOT" ]; then echo "usage: $0 COMPOSITE_ROOT [WORK_DIR]" >&2; exit 2; fi
if [ ! -d "$ROOT" ]; then
  echo "error: $ROOT: dataset root not found (a folder holding SMIC, CASME2 and SAMM; see data/README.md)" >&2
  exit 2
fi
WORK=${2:-work/$DATASET}
RUN=runs/${DATASET}_${MODEL}
JOBS=${JOBS:-2}
TRAIN_ARGS=(--device "${DEVICE:-auto}")
if [ -n "${EPOCHS:-}" ]; then TRAIN_ARGS+=(--epochs "$EPOCHS"); fi
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
mkdir -p "$WORK"

[ -f "$WORK/samples.csv" ] || mertool index --dataset "$DATASET" --root "$ROOT" --protocol megc2019-3 -o "$WORK/samples.csv"
mertool align "$WORK/samples.csv" -o "$WORK/aligned.h5" --size "${ALIGN_SIZE:-224}" --frames all --jobs "$JOBS"
[ -f "$WORK/samples_kf.csv" ] || mertool keyframes "$WORK/samples.csv" --aligned "$WORK/aligned.h5" \
  --method "${APEX_METHOD:-regions}" -o "$WORK/samples_kf.csv"
mertool flow "$WORK/aligned.h5" -o "$WORK/flow112.h5" --preset offtanet --samples "$WORK/samples_kf.csv" --jobs "$JOBS"
mertool train "$WORK/flow112.h5" --model "$MODEL" -o "$RUN" "${TRAIN_ARGS[@]}"
mertool report "$RUN"
