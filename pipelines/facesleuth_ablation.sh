#!/usr/bin/env bash
# The ablation rows of the CVA/FPF/AU and FaceSleuth papers, one LOSO run each, one table.
#   index -> align (key frames, 224 px) -> pairs  (once)  ->  train every variant -> report
# Usage:  pipelines/facesleuth_ablation.sh DATASET_ROOT [DATASET] [WORK_DIR]
#   DATASET: casme2 (default), samm or mmew. Env: JOBS, DEVICE, EPOCHS (default: the
#   model's 75), VARIANTS (space-separated model names; default: all rows below).
# Rows: SOA table (A CVA, B SOA shared, C SOA independent, D SOA frozen at 0), attention
# direction (y / x / xy), continuous vs independent, FPF (Swin / ViT / none),
# FPF frames (dual / onset / apex), AU on/off.
# Re-running resumes: finished stages and runs are skipped, a killed run continues.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/lib/usage.bash" "$@"
ROOT=${1:-}
if [ -z "$ROOT" ]; then echo "usage: $0 DATASET_ROOT [casme2|samm|mmew] [WORK_DIR]" >&2; exit 2; fi
if [ ! -d "$ROOT" ]; then echo "error: $ROOT: dataset root not found (see data/README.md)" >&2; exit 2; fi
DATASET=${2:-casme2}
case "$DATASET" in
  casme2) PROTOCOL=casme2-5 ;;
  samm) PROTOCOL=samm-5 ;;
  mmew) PROTOCOL=${PROTOCOL:-mmew-7} ;;
  *) echo "error: unknown dataset '$DATASET' (casme2, samm or mmew)" >&2; exit 2 ;;
esac
WORK=${3:-work/$DATASET}
command -v mertool >/dev/null || { echo "error: mertool not on PATH (pip install -e .)" >&2; exit 2; }
DEFAULT_VARIANTS="facesleuth-cva facesleuth facesleuth-soa-independent facesleuth-soa-frozen0
  facesleuth-cva-x facesleuth-cva-xy facesleuth-cva-independent
  facesleuth-cva-vit facesleuth-cva-nofpf facesleuth-cva-onset facesleuth-cva-apex facesleuth-cva-noau"
VARIANTS=${VARIANTS:-$DEFAULT_VARIANTS}
mkdir -p "$WORK" runs/ablation_"$DATASET"

mertool index --dataset "$DATASET" --root "$ROOT" --protocol "$PROTOCOL" -o "$WORK/samples.csv"
mertool align "$WORK/samples.csv" -o "$WORK/aligned.h5" --size 224 --frames keyframes --jobs "${JOBS:-2}"
mertool pairs "$WORK/aligned.h5" -o "$WORK/pairs.h5" --size 224 --missing-apex middle

runs=()
for model in $VARIANTS; do
  run=runs/ablation_$DATASET/$model
  extra=()
  if [ -n "${EPOCHS:-}" ]; then extra+=(--epochs "$EPOCHS"); fi
  mertool train "$WORK/pairs.h5" --model "$model" -o "$run" --device "${DEVICE:-auto}" --quiet "${extra[@]}"
  runs+=("$run")
done
mertool report "${runs[@]}" --markdown "runs/ablation_$DATASET/table.md"
# Learned SOA angles (mean over folds of the last epoch), per module.
python - "${runs[@]}" <<'PY'
import json, sys
from pathlib import Path
for run in sys.argv[1:]:
    m = json.loads((Path(run) / "metrics.json").read_text())
    angles = m.get("model_log_final", {})
    if angles:
        print(f"{Path(run).name:32s} theta (deg): " + ", ".join(f"{v:.1f}" for k, v in sorted(angles.items())))
PY
