#!/usr/bin/env bash
# FaceSleuth, LOSO, on one of its datasets (5-class protocols; MMEW: mmew-7 or PROTOCOL=...):
#   index -> align (onset/apex key frames, 224 px) -> pairs -> train -> report
# Usage:  pipelines/facesleuth.sh casme2|samm|mmew DATASET_ROOT [WORK_DIR] [MODEL]
#   MODEL defaults to facesleuth (SOA, shared angle); any facesleuth-* variant works.
#   Env: JOBS (align workers, default 2), DEVICE (auto|cpu|cuda, default auto),
#        APEX=spot to estimate missing apex frames with `mertool keyframes` (aligns all
#        frames; larger) instead of taking the middle frame.
# Re-running resumes: every stage decides itself what is up to date (stage files and runs are keyed).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
DATASET=${1:-}
ROOT=${2:-}
USAGE="usage: ${PIPELINE:-$0 casme2|samm|mmew DATASET_ROOT [WORK_DIR] [MODEL]}"
case "$DATASET" in
  casme2) PROTOCOL=casme2-5; HOLDS="CASME II: the folder holding sub01/... and the sheet" ;;
  samm) PROTOCOL=samm-5; HOLDS="SAMM: the folder holding 006/... and SAMM_Micro_FACS_Codes_v2.xlsx" ;;
  mmew) PROTOCOL=${PROTOCOL:-mmew-7}; HOLDS="MMEW: the folder holding Micro_Expression/ and MMEW_Micro_Exp.xlsx" ;;
  *) echo "$USAGE" >&2; exit 2 ;;
esac
if [ -z "$ROOT" ]; then echo "$USAGE" >&2; exit 2; fi
if [ ! -d "$ROOT" ]; then
  echo "error: $ROOT: dataset root not found ($HOLDS; see data/README.md)" >&2
  exit 2
fi
WORK=${3:-work/$DATASET}
MODEL=${4:-facesleuth}
RUN=runs/${DATASET}_${MODEL}
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/recipe.bash"
mkdir -p "$WORK"

mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" -o "$WORK/samples.csv"
if [ "${APEX:-middle}" = spot ]; then
  make_features "$MODEL" "$WORK" "$WORK/samples.csv"  # the recipe: align (all frames) -> keyframes -> pairs
else  # cheaper: align only onset and apex, the middle frame where the sheet has no apex
  FEATURES=$WORK/pairs_keyframes.h5
  mertool align "$WORK/samples.csv" -o "$WORK/aligned_keyframes.h5" --size 224 --frames keyframes --jobs "${JOBS:-2}"
  mertool pairs "$WORK/aligned_keyframes.h5" -o "$FEATURES" --for-model "$MODEL" --missing-apex middle
fi
mertool train "$FEATURES" --model "$MODEL" -o "$RUN" --device "${DEVICE:-auto}"
mertool report "$RUN"
