#!/usr/bin/env bash
# One LOSO run as a SLURM job array: task I of N trains the I-th of N near-equal slices of
# the folds (`mertool train ... --fold-index I/N`) into one shared run folder, and a collect
# job that starts after every task succeeded (--dependency=afterok) pools the folds into the
# run's metrics, predictions and plots (`mertool train --collect RUN_DIR`) and prints the
# report. The task that finishes the last fold pools the run too; collecting again is harmless.
# Usage:  pipelines/slurm_loso.sh FEATURES MODEL N RUN_DIR [TRAIN_OPTION ...]
#   FEATURES: the stage file the model reads (e.g. work/flow.h5, made beforehand by the
#   model's recipe, `mertool models --recipe MODEL`); N: array tasks (at most the number of
#   folds is useful; extra tasks find nothing to train); TRAIN_OPTION: more `mertool train`
#   options, the same for every task (e.g. --epochs 20 --device cuda). Submit from the folder
#   the relative paths are relative to: the jobs run there.
#   Env: SBATCH_ARGS (more sbatch options for every job, e.g. "--partition=gpu --gres=gpu:1
#        --time=02:00:00"). Inside the jobs, LOSO_STEP (train|collect, set by this script)
#        picks the step; run by hand with LOSO_STEP=train SLURM_ARRAY_TASK_ID=I it trains slice I.
# Re-running resumes: finished folds are kept, and a task re-trains only its unfinished ones.
set -euo pipefail
HERE=${LOSO_PIPELINES:-$(cd "$(dirname "$0")" && pwd)}  # SLURM runs a copy of the script: it is told where it lives
# shellcheck source=/dev/null
. "$HERE/lib/usage.bash" "$@"
USAGE="usage: ${PIPELINE:-$0 FEATURES MODEL N RUN_DIR [TRAIN_OPTION ...]}   (--help for more)"
if [ $# -lt 4 ]; then echo "$USAGE" >&2; exit 2; fi
FEATURES=$1
MODEL=$2
N=$3
RUN=$4
shift 4
case "$N" in
  '' | *[!0-9]* | 0) echo "error: N must be a positive number of array tasks, got '$N'" >&2; exit 2 ;;
esac
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }

case "${LOSO_STEP:-submit}" in
  train)
    if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
      echo "error: LOSO_STEP=train needs SLURM_ARRAY_TASK_ID (1..$N)" >&2
      exit 2
    fi
    mertool train "$FEATURES" --model "$MODEL" -o "$RUN" --fold-index "$((SLURM_ARRAY_TASK_ID))/$N" "$@"
    ;;
  collect)
    mertool train --collect "$RUN"
    mertool report "$RUN"
    ;;
  submit)
    if [ ! -f "$FEATURES" ]; then echo "error: $FEATURES: features file not found" >&2; exit 2; fi
    command -v sbatch >/dev/null || { echo "error: sbatch not on PATH (run this on a SLURM login node)" >&2; exit 2; }
    read -ra EXTRA <<< "${SBATCH_ARGS:-}"
    ARRAY=$(sbatch --parsable --job-name=mertool-loso --array="1-$N" "${EXTRA[@]}" \
      --export="ALL,LOSO_STEP=train,LOSO_PIPELINES=$HERE" "$0" "$FEATURES" "$MODEL" "$N" "$RUN" "$@")
    ARRAY=${ARRAY%%;*}  # --parsable prints JOBID[;CLUSTER]
    COLLECT=$(sbatch --parsable --job-name=mertool-loso-collect --dependency="afterok:$ARRAY" "${EXTRA[@]}" \
      --export="ALL,LOSO_STEP=collect,LOSO_PIPELINES=$HERE" "$0" "$FEATURES" "$MODEL" "$N" "$RUN" "$@")
    echo "submitted: folds as array job $ARRAY (tasks 1-$N), collect as job ${COLLECT%%;*} (after all tasks succeed)"
    echo "results:   $RUN/metrics.json, or: mertool report $RUN"
    ;;
  *) echo "error: LOSO_STEP must be train or collect, got '$LOSO_STEP'" >&2; exit 2 ;;
esac
