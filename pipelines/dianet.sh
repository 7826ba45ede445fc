#!/usr/bin/env bash
# DIANet (phase-aware dynamic images + two-stream cross-attention), LOSO, on one of the
# paper's datasets:
#   index (classes < 10 samples dropped) -> the model's recipe: align (all frames, 224 px)
#   -> keyframes (fills missing apex frames) -> dynimg (DI-Onset, DI-Offset) -> train -> report
# Usage:  pipelines/dianet.sh DATASET DATASET_ROOT [WORK_DIR] [MODEL]
#   DATASET: casme2 | samm | mmew.  MODEL: dianet (default) or any dianet-* preset
#   (the dynimg options, e.g. 64 px for dianet-small-*, come from the model's recipe).
#   Env: JOBS (align/dynimg workers, default 2), DEVICE (auto|cpu|cuda, default auto),
#        KIND (linear|exact rank-pooling weights, default linear), EPOCHS (default: the
#        model's 50).
# Re-running resumes: every stage decides itself what is up to date (stage files and runs are keyed).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
DATASET=${1:-}
ROOT=${2:-}
if [ -z "$DATASET" ] || [ -z "$ROOT" ]; then
  echo "usage: $0 casme2|samm|mmew DATASET_ROOT [WORK_DIR] [MODEL]" >&2; exit 2
fi
case "$DATASET" in
  casme2) PROTOCOL=casme2-5 ;;  # disgust, happiness, surprise, repression, others
  samm) PROTOCOL=samm-5 ;;      # happiness, surprise, anger, contempt, other
  mmew) PROTOCOL=mmew-7 ;;      # 7 classes; the < 10 filter leaves the paper's 6
  *) echo "error: unknown dataset '$DATASET' (DIANet's datasets: casme2, samm, mmew)" >&2; exit 2 ;;
esac
if [ ! -d "$ROOT" ]; then
  echo "error: $ROOT: dataset root not found (the folder holding the $DATASET frames and sheet; see data/README.md)" >&2
  exit 2
fi
WORK=${3:-work/$DATASET}
MODEL=${4:-dianet}
KIND=${KIND:-linear}
RUN=runs/${DATASET}_${MODEL}${KIND:+_$KIND}
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/recipe.bash"
mkdir -p "$WORK"

mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" \
  --min-class-count 10 -o "$WORK/samples.csv"
# align (all frames, 224 px) -> keyframes -> dynimg, as `mertool models --recipe MODEL`
FEATURES_TAG=_$KIND make_features "$MODEL" "$WORK" "$WORK/samples.csv" --kind "$KIND"
extra=()
if [ -n "${EPOCHS:-}" ]; then extra+=(--epochs "$EPOCHS"); fi
mertool train "$FEATURES" --model "$MODEL" -o "$RUN" --device "${DEVICE:-auto}" \
  --min-class-samples 10 "${extra[@]}"
mertool report "$RUN"
