#!/usr/bin/env bash
# A model's feature stages (align -> keyframes -> flow | dynimg | pairs, as `mertool models
# --recipe MODEL`) with the per-sample work on a dask.distributed cluster (`mertool
# --scheduler`, through MERTOOL_SCHEDULER): an existing scheduler, or one this script starts
# on this machine (`dask scheduler` + `dask worker`, one thread per worker) and stops when
# done. The stage files are byte-identical to a local run's; the last line names the
# features file to give `mertool train`.
# Usage:  pipelines/dask_stages.sh SAMPLES_CSV MODEL WORK [SCHEDULER]
#   SAMPLES_CSV: from `mertool index`; MODEL: the model whose features to make (offtanet,
#   ststnet, dianet, ...); WORK: output folder (aligned.h5, samples_apex.csv, the features);
#   SCHEDULER: a running scheduler (tcp://HOST:8786, or the file of `dask scheduler
#   --scheduler-file`) whose workers see SAMPLES_CSV, the clips and WORK under the same
#   paths (a shared file system; start them in this folder or give absolute paths).
#   Without SCHEDULER, a scheduler and WORKERS local workers are started here.
#   Env: WORKERS (local workers, default: all cores), APEX_METHOD, PREVIEWS (see lib/recipe.bash);
#   TRAIN=1 also trains MODEL's LOSO on the cluster (one fold, or one stacked fold group, per
#   task) into WORK/run.
#   Needs `pip install "mertool[dask]"`.
# Re-running resumes: every stage decides itself what is up to date (stage files are keyed).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
if [ $# -lt 3 ]; then echo "usage: $0 SAMPLES_CSV MODEL WORK [SCHEDULER]   (--help for more)" >&2; exit 2; fi
SAMPLES=$1
MODEL=$2
WORK=$3
SCHEDULER=${4:-}
if [ ! -f "$SAMPLES" ]; then echo "error: $SAMPLES: samples.csv not found (make it with mertool index)" >&2; exit 2; fi
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
command -v dask >/dev/null || { echo "error: dask not on PATH (pip install \"mertool[dask]\")" >&2; exit 2; }
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/recipe.bash"
mkdir -p "$WORK"

PIDS=()
stop_local() { if [ ${#PIDS[@]} -gt 0 ]; then kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; fi; }
if [ -z "$SCHEDULER" ]; then
  SCHEDULER=$WORK/dask-scheduler.json
  rm -f "$SCHEDULER"
  trap stop_local EXIT
  dask scheduler --scheduler-file "$SCHEDULER" --port 0 --no-dashboard >"$WORK/dask-scheduler.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$SCHEDULER" ] && break; sleep 0.2; done
  [ -s "$SCHEDULER" ] || { echo "error: the local dask scheduler did not start (see $WORK/dask-scheduler.log)" >&2; exit 1; }
  dask worker --scheduler-file "$SCHEDULER" --nworkers "${WORKERS:-$(nproc)}" --nthreads 1 --no-dashboard \
    >"$WORK/dask-workers.log" 2>&1 &
  PIDS+=($!)
  echo "local dask cluster: ${WORKERS:-$(nproc)} workers (logs in $WORK/dask-*.log)"
fi

export MERTOOL_SCHEDULER=$SCHEDULER  # what `mertool --scheduler $SCHEDULER` sets, for every verb below
make_features "$MODEL" "$WORK" "$SAMPLES"
if [ "${TRAIN:-0}" = 1 ]; then
  mertool train "$FEATURES" --model "$MODEL" -o "$WORK/run" --jobs "${WORKERS:-$(nproc)}"
else
  echo "features: $FEATURES   (next: mertool train $FEATURES --model $MODEL, or TRAIN=1)"
fi
