#!/usr/bin/env bash
# Compile-check csrc/ without a GPU, with the extension's sources, include path and flags
# (rfkernels/_build.py):
#  - every torch-free kernel file (*.cu) with nvcc for sm_90, keeping ptxas' register/spill report;
#  - every binding (*.cpp) with g++ -fsyntax-only against torch's headers. The CPU torch wheel lacks
#    one generated CUDA header (c10/cuda/impl/cuda_cmake_macros.h); a stub with its one define is
#    written to a temp dir. Usage: .ci/compile_csrc.sh [files...]  (default: every source under csrc/)
set -euo pipefail
cd "$(dirname "$0")/.."
build() { python rfkernels/_build.py "$1"; }  # one value per line
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(build sources)
[ ${#files[@]} -gt 0 ] || { echo "FAILED: no sources under csrc/"; exit 1; }
INCLUDES=() NVCC_FLAGS=() CXX_FLAGS=()
while read -r d; do INCLUDES+=("-I$d"); done < <(build include-dirs)
mapfile -t NVCC_FLAGS < <(build nvcc-flags)
mapfile -t CXX_FLAGS < <(build cxx-flags)
ARCH=$(build offline-arch)
NAME=$(build name)
NVCC=${NVCC:-nvcc}
command -v "$NVCC" >/dev/null || { echo "FAILED: nvcc not found (NVCC=$NVCC)"; exit 1; }
CUDA_INC=${CUDA_INC:-$(dirname "$(dirname "$(readlink -f "$(command -v $NVCC)")")")/include}
[ -f "$CUDA_INC/cuda_runtime_api.h" ] || CUDA_INC=$(ls -d /usr/local/cuda*/include 2>/dev/null | head -1)
stub=$(mktemp -d)
mkdir -p "$stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$stub/c10/cuda/impl/cuda_cmake_macros.h"
TORCH_INC=$(python -c "import torch.utils.cpp_extension as c; print(' '.join('-isystem '+p for p in c.include_paths()))")
PY_INC=$(python -c "import sysconfig; print('-I' + sysconfig.get_paths()['include'])")
status=0
for f in "${files[@]}"; do
  case "$f" in
    *.cu)
      echo "== nvcc $f"
      # nvcc's exit status decides (not grep's): the full log is kept and filtered afterwards
      rc=0
      $NVCC -c -std=c++17 "${NVCC_FLAGS[@]}" -arch=sm_$ARCH -Xptxas -v "${INCLUDES[@]}" "$f" -o "$stub/unit.o" \
        >"$stub/log" 2>&1 || rc=$?
      if [ $rc -eq 0 ]; then
        grep -E "error|warning|Compiling entry|registers|spill" "$stub/log" || true
      else
        cat "$stub/log"; echo "FAILED: $f (nvcc exit status $rc)"; status=1
      fi ;;
    *.cpp)
      echo "== g++ -fsyntax-only $f"
      g++ -std=c++20 -fsyntax-only -Wall "${CXX_FLAGS[@]}" -DTORCH_EXTENSION_NAME="$NAME" -I"$stub" $TORCH_INC \
        -I"$CUDA_INC" $PY_INC "${INCLUDES[@]}" "$f" || { echo "FAILED: $f"; status=1; } ;;
  esac
done
rm -rf "$stub"
exit $status
