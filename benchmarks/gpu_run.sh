#!/usr/bin/env bash
# GPU figures in one go (flow backends + training throughput), as recorded in benchmarks/README.md.
# Run from the repository root on a CUDA machine with torch installed:
#   bash benchmarks/gpu_run.sh            (results under ${OUT:-benchmarks/out})
set -uo pipefail
out=${OUT:-benchmarks/out}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, cv2; print('torch', torch.__version__, '|', torch.cuda.get_device_name(), '| opencv', cv2.__version__)" | tee -a "$out/gpu.txt"
nproc | sed 's/^/cpu cores: /' | tee -a "$out/gpu.txt"

echo "== flow (TV-L1: OpenCV 1 process vs torch CUDA eager / compiled)"
timeout "${FLOW_SECONDS:-210}" python3 benchmarks/flow.py --device cuda --compile --jobs -1 \
    --batches "${FLOW_BATCHES:-1,64,256,1024}" --pairs 8 --max-seconds "${FLOW_MAX:-150}" --out "$out/flow_gpu.md" 2>&1 | tee "$out/flow_gpu.log"

echo "== training (samples/s per model, LOSO on a synthetic set)"
timeout "${TRAIN_SECONDS:-150}" python3 benchmarks/train.py --device cuda --models offtanet ststnet offapexnet facesleuth dianet \
    --steps 10 --subjects 6 --per-subject 6 --epochs 2 --jobs 1 2>&1 | tee "$out/train_gpu.log"
echo "== offtanet: LOSO at the protocol's size (49 subjects x 6), 3 epochs"
timeout "${LOSO_SECONDS:-100}" python3 benchmarks/train.py --device cuda --models offtanet \
    --steps 20 --subjects 49 --per-subject 6 --epochs 3 --jobs 1 2>&1 | tee "$out/train_loso49_gpu.log"
