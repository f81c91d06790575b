#!/usr/bin/env bash
# One time-boxed run on a lent GPU machine (README "GPU checks"). Stages in priority order, each under
# its own cap (seconds) and all under one budget (RFK_GPU_BUDGET_S, default 470 s < 8 min): a stage
# gets min(its cap, what is left) and is skipped when under 15 s are left. Each stage's output goes to
# $OUT/log.txt as it runs, and $OUT/summary.json (device, versions, date, per-stage status and seconds)
# is rewritten as each stage finishes, so a run cut short still returns what it finished.
#
#   1 build      JIT-build the CUDA extension (python3 -m rfkernels info --build), timed     cap 150
#                (then nerfacc's CUDA JIT build starts in the background, overlapping stage 2)
#   2 tests      the whole suite on the GPU, kernel families first, -v (names survive a cut),
#                --maxfail=5, failures summarized (-rfE)                                       cap 150
#   3 nerfacc    wait for nerfacc's JIT build (its own time is logged)                     cap  60
#   4 ops        op benchmarks + peers -> bench_ops.json (all sizes; --quick: one per op)  cap 120
#   5 prior      regularization step: eager vs SDPA vs xformers vs CUDA graph -> bench_prior.json  cap 90
#   6 recon      reconfusion reconstruct --preset base, 200 iterations on the embedded fern:
#                it/s and peak memory -> recon.json                                         cap  75
#
# Usage: bash .ci/gpu_check.sh [--quick] [--dry]
#   --quick  stages 1, 2 and 4 with one size per op and no nerfacc (a second contact)
#   --dry    on a machine without a GPU (CI): the same stages end to end, skipping what needs a GPU:
#            no CUDA build, tests collected only, benchmarks on CPU at tiny sizes (torch backend),
#            the tiny preset for 2 iterations on 4x smaller images; wheels from .whl/ install into a scratch folder only
# Outputs ($OUT, default ./gpu_out): summary.json log.txt info.json bench_ops.json bench_prior.json
# recon.json (+ build.log when the CUDA build fails): at most 7 files, within the device tool's 8.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=full DRY=0
for a in "$@"; do
  case "$a" in
    --quick) MODE=quick ;;
    --dry) DRY=1 ;;
    -h|--help) sed -n 2,27p "$0"; exit 0 ;;
    *) echo "unknown argument: $a (see --help)"; exit 2 ;;
  esac
done
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
BUDGET=${RFK_GPU_BUDGET_S:-470}
T0=$SECONDS
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export RFKERNELS_CACHE=${RFKERNELS_CACHE:-/tmp/rfk_cache} TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/rfk_torch_ext}
LOG="$OUT/log.txt"
: >"$LOG"
FAILED=0

if [ "$DRY" = 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU visible (nvidia-smi -L failed): use --dry on a machine without one"; exit 2
fi

# wheels carried for packages the GPU machine lacks (.ci/gpu_wheels.sh); dry: install check only
if compgen -G ".whl/*.whl" >/dev/null; then
  SITE=$([ "$DRY" = 1 ] && mktemp -d || echo /tmp/site)
  t=$SECONDS
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      2>&1 | tee -a "$LOG"; then
    echo "installed $(ls .whl/*.whl | wc -l) wheels from .whl/ into $SITE in $((SECONDS - t)) s" | tee -a "$LOG"
    [ "$DRY" = 1 ] && rm -rf "$SITE" || export PYTHONPATH=$SITE:${PYTHONPATH:-}
  else
    echo "FAILED: installing .whl/ wheels" | tee -a "$LOG"; FAILED=1
  fi
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}

# summary.json: environment now, one entry per stage as it finishes
MODE=$MODE DRY=$DRY BUDGET=$BUDGET $PY - "$OUT/summary.json" <<'PY'
import datetime, json, os, platform, subprocess, sys
import torch
def ver(m):
    try:
        return __import__(m).__version__
    except Exception as exc:
        return f"not importable: {type(exc).__name__}"
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip() if os.environ["DRY"] == "0" else None
env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
       "nvidia_smi": smi, "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
       **{m: ver(m) for m in ("triton", "diffusers", "xformers", "nerfacc", "transformers", "pytest_benchmark")}}
json.dump({"mode": os.environ["MODE"], "dry": os.environ["DRY"] == "1", "budget_s": int(os.environ["BUDGET"]),
           "env": env, "stages": []}, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env))
PY

record() {  # record NAME STATUS RC SECONDS CAP NOTE
  NAME=$1 STATUS=$2 RC=$3 SECS=$4 CAP=$5 NOTE=${6:-} TOTAL=$((SECONDS - T0)) $PY - "$OUT/summary.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1]))
d["stages"].append({k.lower(): (int(os.environ[k]) if k in ("RC", "SECS", "CAP", "TOTAL") else os.environ[k])
                    for k in ("NAME", "STATUS", "RC", "SECS", "CAP", "NOTE", "TOTAL")})
d["elapsed_s"] = int(os.environ["TOTAL"])
json.dump(d, open(sys.argv[1], "w"), indent=2)
PY
}

stage() {  # stage NAME CAP 'COMMAND'   (run with bash -c under timeout; output -> terminal + log.txt)
  local name=$1 cap=$2 cmd=$3 left=$((BUDGET - (SECONDS - T0)))
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt 15 ]; then
    echo "== [$name] SKIPPED: budget spent ($((SECONDS - T0)) s of $BUDGET s)" | tee -a "$LOG"
    record "$name" skipped 0 0 "$cap" "budget spent"; FAILED=1; return 1
  fi
  echo "== [$name] start (cap $cap s; $((SECONDS - T0)) s of $BUDGET s used)" | tee -a "$LOG"
  local t=$SECONDS rc status
  timeout -k 10 "$cap" bash -c "$cmd" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  [ "$rc" = 0 ] || FAILED=1
  echo "== [$name] $status (exit $rc) in $((SECONDS - t)) s; total $((SECONDS - T0)) s" | tee -a "$LOG"
  record "$name" "$status" "$rc" $((SECONDS - t)) "$cap" "${4:-}"
  return "$rc"
}

O=$OUT
if [ "$DRY" = 1 ]; then
  stage build 60 "$PY -m rfkernels info > '$O/info.json' && echo 'dry: CUDA JIT build skipped (no GPU; CI builds and links it with .ci/build_ext.py)'" "dry"
  stage tests 150 "$PY -m pytest -q -p no:cacheprovider --collect-only tests | tail -3" "dry: collected only"
  stage ops 150 "$PY -m benchmarks --only ops --device cpu --scale tiny --reps 1 --out '$O/bench_ops.json' | tail -25" "dry: cpu tiny"
  stage prior 150 "$PY -m benchmarks --only prior --device cpu --scale tiny --reps 1 --out '$O/bench_prior.json' | tail -8" "dry: tiny prior"
  stage recon 200 "$PY -m benchmarks.reconstruct_rate --preset tiny --iterations 2 --downscale 4 --device cpu --out '$O/recon.json'" "dry: tiny preset"
else
  SCALE=$([ "$MODE" = quick ] && echo one || echo all)
  [ "$MODE" = quick ] && export RFK_BENCH_NO_NERFACC=1
  stage build 150 "$PY -m rfkernels info --build > '$O/info.json'; cat '$O/info.json'; $PY -c \"import json,sys; r=json.load(open('$O/info.json'))['backends']['cuda']; sys.exit(0 if r=='available' else 'CUDA backend: '+r)\" || { cp \$RFKERNELS_CACHE/build-*/build.log '$O/' 2>/dev/null; tail -60 \$RFKERNELS_CACHE/build-*/build.log; exit 1; }"
  if [ "$MODE" = full ]; then  # nerfacc's CUDA JIT build, overlapping the tests (it has its own cap)
    rm -f /tmp/rfk_nerfacc.rc
    # nerfacc includes ATen/cuda/CUDAContext.h, which needs cublas/cusparse headers: the pip nvidia-*
    # packages' include folders fill the gap if the toolkit beside nvcc lacks them (CPLUS_INCLUDE_PATH
    # is searched after every -isystem folder, so the toolkit's own headers still win)
    NV_INC=$($PY -c "import glob,os,nvidia; print(':'.join(sorted({d for r in nvidia.__path__ for d in glob.glob(os.path.join(r, '**', 'include'), recursive=True)})))" 2>/dev/null)
    ( t=$SECONDS; CPLUS_INCLUDE_PATH=${CPLUS_INCLUDE_PATH:+$CPLUS_INCLUDE_PATH:}$NV_INC TORCH_CUDA_ARCH_LIST=9.0 timeout -k 5 200 $PY -c "from nerfacc.cuda import _backend; assert _backend._C is not None, 'nerfacc CUDA extension did not build'" \
        >/tmp/rfk_nerfacc.log 2>&1; rc=$?; echo "nerfacc JIT build: exit $rc after $((SECONDS - t)) s" >>/tmp/rfk_nerfacc.log; echo $rc >/tmp/rfk_nerfacc.rc ) &
  fi
  TIMEOUT_OPT=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout=120")
  # kernel families first (pytest would otherwise run files alphabetically), then the rest; the dry
  # run of this script is CI's job, not the GPU's; tests that run benchmarks never start a second nerfacc build
  # (the op families of the registry: rfkernels._dispatch.families())
  KERNELS=$($PY -c "import rfkernels; print(' '.join(f'tests/rfkernels/{f}/test_{f}.py' for f in rfkernels._dispatch.families()))")
  [ -n "$KERNELS" ] || { echo "FAILED: no op family registered (import rfkernels failed?)" | tee -a "$LOG"; FAILED=1; KERNELS=tests/rfkernels; }
  PYT="RFK_BENCH_NO_NERFACC=1 $PY -m pytest -v --tb=short -rfE --maxfail=5 -p no:cacheprovider $TIMEOUT_OPT"
  stage tests 150 "$PYT $KERNELS; a=\$?; $PYT tests $(printf -- '--ignore=%s ' $KERNELS)--deselect tests/ci/test_ci_scripts.py::test_gpu_check_dry_runs_end_to_end; b=\$?; exit \$(( a ? a : b ))"
  if [ "$MODE" = full ]; then
    stage nerfacc 60 "while [ ! -f /tmp/rfk_nerfacc.rc ]; do sleep 1; done; cat /tmp/rfk_nerfacc.log; exit \$(cat /tmp/rfk_nerfacc.rc)" \
      || export RFK_BENCH_NO_NERFACC=1  # no second (uncapped) build attempt inside the benchmarks
  fi
  stage ops 120 "$PY -m benchmarks --only ops --scale $SCALE --out '$O/bench_ops.json'"
  if [ "$MODE" = full ]; then
    stage prior 90 "$PY -m benchmarks --only prior --out '$O/bench_prior.json'"
    stage recon 75 "$PY -m benchmarks.reconstruct_rate --preset base --iterations 200 --out '$O/recon.json'"
  fi
fi
echo "== gpu_check ($MODE$([ "$DRY" = 1 ] && echo ', dry')) finished in $((SECONDS - T0)) s; summary: $OUT/summary.json" | tee -a "$LOG"
$PY -c "import json,sys; [print(f\"  {s['name']:<8} {s['status']:<8} {s['secs']:4d} s (cap {s['cap']} s) {s['note']}\") for s in json.load(open(sys.argv[1]))['stages']]" "$OUT/summary.json"
exit $FAILED
