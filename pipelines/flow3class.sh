#!/usr/bin/env bash
# Flow-based 3-class recipes (Off-TANet, STSTNet, Off-ApexNet), LOSO, UF1 and UAR pooled
# over folds, on either 3-class set:
#   megc2019   MEGC 2019 composite: SMIC-HS + CASME II + SAMM (442 clips, 68 subjects)
#   offtanet3  Off-TANet's set: CASME + CASME II + CAS(ME)^2 (294 clips, 49 subjects)
#   index (3-class protocol) -> the model's recipe (`mertool models --recipe MODEL`): align
#   (all frames, 112 px) -> keyframes (spots missing apexes; SMIC has none) -> flow
#   (onset->apex TV-L1: 112x112 for offtanet, 28x28 for the others) -> train -> report
# Usage:  pipelines/flow3class.sh megc2019|offtanet3 offtanet|ststnet|offapexnet ROOT [WORK_DIR]
#   ROOT holds the three corpora (megc2019: SMIC, CASME2 (or "CASME II"), SAMM; offtanet3:
#   CASME, CASME2, CAS(ME)^2 (or CASME^2); see data/README.md). WORK_DIR defaults to
#   work/DATASET and is shared by the models, so the aligned clips are made once.
#   Env: JOBS (workers, default 2), DEVICE (auto|cpu|cuda, default auto), EPOCHS (default:
#        the model's recipe), APEX_METHOD (keyframes spotting method for clips without an
#        apex, default flowpeak).
# Re-running resumes: every stage decides itself what is up to date (stage files and runs are keyed).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
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
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/recipe.bash"
mkdir -p "$WORK"

mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" -o "$WORK/samples.csv"
make_features "$MODEL" "$WORK" "$WORK/samples.csv"  # align -> keyframes -> flow, as `mertool models --recipe MODEL`
mertool train "$FEATURES" --model "$MODEL" -o "$RUN" "${TRAIN_ARGS[@]}"
mertool report "$RUN"
