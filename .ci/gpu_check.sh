#!/usr/bin/env bash
# One-shot GPU check for a lent GPU machine (see README "GPU checks"): JIT-build the CUDA extension,
# run the whole test suite on the GPU (real Triton compiler, CUDA backend), run the full benchmark
# suite, and leave logs + JSON under ${OUT:-gpu_out}. Usage: bash .ci/gpu_check.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 RFKERNELS_CACHE=${RFKERNELS_CACHE:-/tmp/rfk_cache}
if [ -d .whl ]; then  # wheels carried for packages missing on the GPU machine
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -m rfkernels info --build 2>&1 | tee "$OUT/info.json"
python3 -m pytest -q -rfE "$@" 2>&1 | tee "$OUT/tests.log" | tail -60
python3 -m benchmarks --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
cp -r "${RFKERNELS_CACHE}"/build-*/build.log "$OUT/" 2>/dev/null || true
