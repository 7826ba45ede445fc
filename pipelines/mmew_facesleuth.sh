#!/usr/bin/env bash
# FaceSleuth on MMEW (protocol mmew-7, or PROTOCOL=...), LOSO:
#   index -> align (onset/apex key frames, 224 px) -> pairs -> train -> report
# Usage:  pipelines/mmew_facesleuth.sh DATA/MMEW [WORK_DIR] [MODEL]
#   MODEL defaults to facesleuth (SOA, shared angle); any facesleuth-* variant works.
#   Env: JOBS (align workers, default 2), DEVICE (auto|cpu|cuda, default auto),
#        APEX=spot to estimate missing apex frames with `mertool keyframes` (aligns all
#        frames; larger) instead of taking the middle frame.
# Re-running resumes: every stage skips finished work (stage files and runs are keyed).
set -euo pipefail
DATASET=mmew
PROTOCOL=${PROTOCOL:-mmew-7}
ROOT=${1:-}
if [ -z "$ROOT" ]; then echo "usage: $0 DATASET_ROOT [WORK_DIR] [MODEL]" >&2; exit 2; fi
if [ ! -d "$ROOT" ]; then
  echo "error: $ROOT: dataset root not found (MMEW: the folder holding Micro_Expression/ and MMEW_Micro_Exp.xlsx; see data/README.md)" >&2
  exit 2
fi
WORK=${2:-work/$DATASET}
MODEL=${3:-facesleuth}
RUN=runs/${DATASET}_${MODEL}
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
mkdir -p "$WORK"

[ -f "$WORK/samples.csv" ] || mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" -o "$WORK/samples.csv"
if [ "${APEX:-middle}" = spot ]; then
  mertool align "$WORK/samples.csv" -o "$WORK/aligned_all.h5" --size 224 --frames all --jobs "${JOBS:-2}"
  [ -f "$WORK/samples_kf.csv" ] || mertool keyframes "$WORK/samples.csv" --aligned "$WORK/aligned_all.h5" -o "$WORK/samples_kf.csv"
  mertool pairs "$WORK/aligned_all.h5" -o "$WORK/pairs.h5" --size 224 --samples "$WORK/samples_kf.csv"
else
  mertool align "$WORK/samples.csv" -o "$WORK/aligned.h5" --size 224 --frames keyframes --jobs "${JOBS:-2}"
  mertool pairs "$WORK/aligned.h5" -o "$WORK/pairs.h5" --size 224 --missing-apex middle
fi
mertool train "$WORK/pairs.h5" --model "$MODEL" -o "$RUN" --device "${DEVICE:-auto}"
mertool report "$RUN"
