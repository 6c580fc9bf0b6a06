#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run sized for a short lease (~8-9 minutes on an H100):
# the cuda-marked tests and the GPU-capable generation tests, then benchmarks/gpu.py (the infer grid trimmed;
# gpt2-large batch 1 with compile=True last).
# Writes logs and tables to $OUT (default ./gpu-out). Uses the machine's python3 (PyTorch with CUDA there).
# Usage: bash benchmarks/gpu_check.sh [python]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"
timeout 150 "$PY" -m pytest tests/test_cuda.py tests/test_generation_cache.py tests/test_generation_graphs.py \
    tests/test_attention_options.py -q -p no:warnings -p no:cacheprovider -rs 2>&1 | tee "$OUT/tests.log" | tail -25
timeout 170 "$PY" benchmarks/gpu.py --sections decode encoder train --out "$OUT/gpu-a.md" 2>&1 \
    | grep -v "Loading weights\|Writing model" | tee "$OUT/bench-a.log" | grep -v "^\[" 
timeout 200 "$PY" benchmarks/gpu.py --sections infer --reps 2 --infer-seqs 128 512 --out "$OUT/gpu-b.md" 2>&1 \
    | grep -v "Loading weights\|Writing model" | tee "$OUT/bench-b.log" | grep -v "^\["
timeout 100 "$PY" benchmarks/gpu.py --sections infer --reps 2 --batches 1 --infer-seqs 128 --infer-compile \
    --out "$OUT/gpu-c.md" 2>&1 | grep -v "Loading weights\|Writing model" | tee "$OUT/bench-c.log" | grep -v "^\["
