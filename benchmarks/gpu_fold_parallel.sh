#!/usr/bin/env bash
# Issue 17's GPU checks in one go, sized for a short device lease (~6 min of work on an H100/H200):
# the CUDA tests of the stacked engine, then the fold-parallel and convolution-forms benchmarks.
# Run from the repository root on a CUDA machine with mertool installed:
#   bash benchmarks/gpu_fold_parallel.sh          (results under ${OUT:-benchmarks/out})
# A CPU dry run of the same steps: DEVICE=cpu FOLDS=2 EPOCHS=1 SEEDS=2 bash benchmarks/gpu_fold_parallel.sh
set -uo pipefail
out=${OUT:-benchmarks/out}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch; print('torch', torch.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  git rev-parse --short HEAD 2>/dev/null; } | tee "$out/fold_parallel_machine.txt"

echo "== CUDA tests of the stacked engine (dropout streams, sync counts, a LOSO run on CUDA)"
timeout "${TEST_SECONDS:-180}" python3 -m pytest -q -p no:cacheprovider tests/test_stacked.py tests/test_devices.py \
    tests/test_train_engine.py -k cuda -m "slow or not slow" 2>&1 | tee "$out/fold_parallel_tests.log"

echo "== fold-parallel: sequential vs stacked folds vs stacked x seeds (all folds unless FOLDS)"
for model in ststnet offapexnet offtanet; do
    timeout "${MODEL_SECONDS:-150}" python3 benchmarks/train.py --fold-parallel --device "$device" --models "$model" \
        --epochs "${EPOCHS:-5}" --folds "${FOLDS:-0}" --seeds "${SEEDS:-5}" 2>&1 | tee -a "$out/fold_parallel.md"
done

echo "== convolution forms: R replicas apart vs grouped vs batched matmul"
timeout "${CONV_SECONDS:-60}" python3 benchmarks/train.py --conv-forms --device "$device" 2>&1 | tee "$out/conv_forms.md"
