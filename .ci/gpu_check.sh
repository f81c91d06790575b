#!/usr/bin/env bash
# One time-boxed run on a lent GPU machine (docs/gpu-checks.md). The headline numbers first, the tests
# last; every stage under its own cap (seconds), the caps summing to 380 s, all under one budget
# (RFK_GPU_BUDGET_S, default 400 s) so that two runs and two machine starts fit a 15-minute lease. A
# stage gets min(its cap, what is left) and is skipped when under 15 s are left. Output goes to
# $OUT/log.txt as it runs; $OUT/summary.json (device, versions, date, per-stage status and seconds) is
# replaced atomically as each stage finishes, so a run cut short still returns what it finished.
#
#   build    JIT-build our CUDA extension (python3 -m rfkernels info --build), while nerfacc's CUDA
#            JIT build runs in the background (both with the arch list and include path exported
#            once, below, so the benchmark process loads nerfacc's build instead of redoing it) cap 120
#   ops      op benchmarks at one size per op, the hash grid first (it has no nerfacc peer, so
#            nerfacc's build gets that long to finish) -> bench_ops.json                    cap  95
#   prior    regularization step: eager vs SDPA vs xformers vs CUDA graph -> bench_prior.json cap 55
#   recon    reconfusion reconstruct --preset base, 150 iterations on the embedded fern, value
#            validation off (RFKERNELS_VALIDATE=0): it/s and peak memory -> recon.json      cap  55
#   tests    the kernel families' tests on the GPU, pytest -n 8 -x (after the numbers: a cold
#            compile of every Triton variant cannot eat their time)                          cap  55
#   graphs   (--with-compile only) one reconfusion base training step, eager vs
#            torch.compile(fullgraph, mode="reduce-overhead": CUDA graphs) -> compile_step.json cap 90
#   compile  (--with-compile only, last) the torch.compile hash-grid peer at 2^20 points
#            -> bench_compile.json; six compilations, so it only runs on what budget is left  cap  60
#
# Usage: bash .ci/gpu_check.sh [--quick] [--dry] [--with-compile]
#   --quick  build, ops, tests: no nerfacc, prior or recon (a second contact)
#   --dry    on a machine without a GPU (CI, tests/ci/test_ci_scripts.py): the same stages and the same
#            commands on the CPU as the device (benchmarks at tiny sizes, the tiny preset for 2
#            iterations on 4x smaller images, tests collected only, nerfacc imported, not built),
#            caps x RFK_GPU_CAP_SCALE (default 3 in dry runs); nvidia-smi is still called
# Outputs ($OUT, default ./gpu_out): summary.json log.txt info.json bench_ops.json bench_prior.json
# recon.json (+ compile_step.json, bench_compile.json with --with-compile): at most 8 files, the device tool's limit.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=full DRY=0 WITH_COMPILE=0
for a in "$@"; do
  case "$a" in
    --quick) MODE=quick ;;
    --dry) DRY=1 ;;
    --with-compile) WITH_COMPILE=1 ;;
    -h|--help) sed -n 2,29p "$0"; exit 0 ;;
    *) echo "unknown argument: $a (see --help)"; exit 2 ;;
  esac
done
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
BUDGET=${RFK_GPU_BUDGET_S:-400}
CAP_SCALE=${RFK_GPU_CAP_SCALE:-$([ "$DRY" = 1 ] && echo 3 || echo 1)}
T0=$SECONDS
PY=${PYTHON:-python3}
O=$OUT
LOG="$OUT/log.txt"
: >"$LOG"
FAILED=0

if ! SMI=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); then
  if [ "$DRY" = 0 ]; then echo "no GPU visible (nvidia-smi failed): use --dry on a machine without one"; exit 2; fi
  SMI="(no nvidia-smi: dry run)"
fi

# The one place the two modes differ: the device and the sizes. Every stage below runs in both.
if [ "$DRY" = 1 ]; then
  DEVICE=cpu SCALE=tiny REPS="--reps 1" RECON="--preset tiny --iterations 2 --downscale 4" TESTS_RUN="--collect-only -q"
  GRAPHS="--models 'reconfusion tiny' --variants eager --warmup 1 --steps 1"  # compiling: minutes on a CPU
  NERFACC_PROBE="import nerfacc"  # the package only: its CUDA build needs a CUDA torch
  EXPECT_CUDA="no CUDA GPU is visible"
else
  DEVICE=cuda SCALE=one REPS="" RECON="--preset base --iterations 150" TESTS_RUN=""
  GRAPHS="--models 'reconfusion base' --variants eager,compiled --warmup 3 --steps 10"
  NERFACC_PROBE="from nerfacc.cuda import _backend; assert _backend._C is not None, 'nerfacc CUDA extension did not build'"
  EXPECT_CUDA="available"
fi

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export RFKERNELS_CACHE=${RFKERNELS_CACHE:-/tmp/rfk_cache} TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/rfk_torch_ext}
# Exported once for every process: torch's JIT writes the arch list into build.ninja, so a process
# with another list (or none) rebuilds the extension. nerfacc includes ATen/cuda/CUDAContext.h, which
# needs the cuBLAS/cuSPARSE headers: the pip nvidia-* include folders fill the gap if the toolkit
# lacks them (CPLUS_INCLUDE_PATH is searched after every -isystem folder: the toolkit's own win).
export TORCH_CUDA_ARCH_LIST=9.0
NV_INC=$($PY -c "import glob,os,nvidia; print(':'.join(sorted({d for r in nvidia.__path__ for d in glob.glob(os.path.join(r, '**', 'include'), recursive=True)})))" 2>/dev/null)
export CPLUS_INCLUDE_PATH=${CPLUS_INCLUDE_PATH:+$CPLUS_INCLUDE_PATH:}$NV_INC

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

# nerfacc's CUDA JIT build, in the background from the start (full mode); the ops stage's process
# waits on torch's build lock if it is still running, and skips nerfacc if it failed
NERFACC_RC=$OUT/.nerfacc.rc NERFACC_LOG=$OUT/.nerfacc.log
rm -f "$NERFACC_RC" "$NERFACC_LOG"
if [ "$MODE" = full ]; then
  ( t=$SECONDS; timeout -k 5 $((BUDGET - 60)) $PY -c "$NERFACC_PROBE" >"$NERFACC_LOG" 2>&1; rc=$?
    echo "nerfacc JIT build: exit $rc after $((SECONDS - t)) s" >>"$NERFACC_LOG"; echo $rc >"$NERFACC_RC" ) &
else
  export RFK_BENCH_NO_NERFACC=1
fi

# summary.json: the environment now, one entry per stage as it finishes; always replaced atomically
write_json() {  # write_json FILE: python on stdin edits the dict `d` read from FILE (or {}), then renames
  $PY - "$1" 3<&0 <<'PY'
import json, os, sys
path = sys.argv[1]
d = json.load(open(path)) if os.path.exists(path) else {}
exec(os.fdopen(3).read())
with open(path + ".tmp", "w") as f:
    json.dump(d, f, indent=2)
os.replace(path + ".tmp", path)
PY
}
MODE=$MODE DRY=$DRY BUDGET=$BUDGET SMI=$SMI DEVICE=$DEVICE write_json "$OUT/summary.json" <<'PY'
import datetime, platform, subprocess, torch
def ver(m):
    try:
        return __import__(m).__version__
    except Exception as exc:
        return f"not importable: {type(exc).__name__}"
def out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None
env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
       "device": torch.cuda.get_device_name() if torch.cuda.is_available() else os.environ["DEVICE"],
       "nvidia_smi": os.environ["SMI"], "python": platform.python_version(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "nvcc": ((out(["nvcc", "--version"]) or "").splitlines() or [None])[-1],
       "commit": out(["git", "rev-parse", "HEAD"]), "torch_cuda_arch_list": os.environ["TORCH_CUDA_ARCH_LIST"],
       **{m: ver(m) for m in ("rfkernels", "triton", "diffusers", "xformers", "nerfacc", "transformers", "pytest_benchmark")}}
d.update(mode=os.environ["MODE"], dry=os.environ["DRY"] == "1", budget_s=int(os.environ["BUDGET"]), env=env, stages=[])
print(json.dumps(env))
PY

record() {  # record NAME STATUS RC SECONDS CAP NOTE
  NAME=$1 STATUS=$2 RC=$3 SECS=$4 CAP=$5 NOTE=${6:-} TOTAL=$((SECONDS - T0)) write_json "$OUT/summary.json" <<'PY'
d["stages"].append({k.lower(): (int(os.environ[k]) if k in ("RC", "SECS", "CAP", "TOTAL") else os.environ[k])
                    for k in ("NAME", "STATUS", "RC", "SECS", "CAP", "NOTE", "TOTAL")})
d["elapsed_s"] = int(os.environ["TOTAL"])
PY
}

stage() {  # stage NAME CAP 'COMMAND' [NOTE]  (bash -c under timeout; output -> terminal + log.txt)
  local name=$1 cap=$(($2 * CAP_SCALE)) cmd=$3 left=$((BUDGET * CAP_SCALE - (SECONDS - T0)))
  [ "$cap" -gt "$left" ] && cap=$left
  if [ "$cap" -lt 15 ]; then
    echo "== [$name] SKIPPED: budget spent ($((SECONDS - T0)) s of $((BUDGET * CAP_SCALE)) s)" | tee -a "$LOG"
    record "$name" skipped 0 0 "$cap" "budget spent"; FAILED=1; return 1
  fi
  echo "== [$name] start (cap $cap s; $((SECONDS - T0)) s of $((BUDGET * CAP_SCALE)) s used)" | tee -a "$LOG"
  local t=$SECONDS rc status
  timeout -k 10 "$cap" bash -c "set -o pipefail; $cmd" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  [ "$rc" = 0 ] || FAILED=1
  echo "== [$name] $status (exit $rc) in $((SECONDS - t)) s; total $((SECONDS - T0)) s" | tee -a "$LOG"
  record "$name" "$status" "$rc" $((SECONDS - t)) "$cap" "${4:-}"
  return "$rc"
}

nerfacc_done() {  # the background build's log into log.txt and its status into summary.json, once
  [ -f "$NERFACC_RC" ] && [ ! -f "$NERFACC_RC.recorded" ] || return 0
  touch "$NERFACC_RC.recorded"
  local rc; rc=$(cat "$NERFACC_RC")
  tee -a "$LOG" <"$NERFACC_LOG"
  record nerfacc "$([ "$rc" = 0 ] && echo ok || echo failed)" "$rc" 0 0 "background JIT build ($NERFACC_PROBE)"
  if [ "$rc" != 0 ]; then FAILED=1; export RFK_BENCH_NO_NERFACC=1; fi  # no second, uncapped build attempt
}

# the op families in the registry's order, the hash grid (the headline op, no nerfacc peer) first
OPS_ORDER=hashgrid,ops
KERNEL_TESTS=$($PY -c "import rfkernels; print(' '.join(f'tests/rfkernels/{f}/test_{f}.py' for f in rfkernels._dispatch.families()))")
[ -n "$KERNEL_TESTS" ] || { echo "FAILED: no op family registered (import rfkernels failed?)" | tee -a "$LOG"; FAILED=1; KERNEL_TESTS=tests/rfkernels; }
TIMEOUT_OPT=$($PY -c "import pytest_timeout" 2>/dev/null && echo "--timeout=60")
BENCH="$PY -m benchmarks --device $DEVICE --scale $SCALE $REPS"

stage build 120 "$PY -m rfkernels info --build > '$O/info.json'; cat '$O/info.json'; EXPECT='$EXPECT_CUDA' $PY -c \"import json,os,sys; r=json.load(open('$O/info.json'))['backends']['cuda']; sys.exit(0 if r.startswith(os.environ['EXPECT']) else 'CUDA backend: '+r)\" || { tail -60 \$RFKERNELS_CACHE/build-*/build.log 2>/dev/null; exit 1; }"
nerfacc_done
stage ops 95 "$BENCH --only $OPS_ORDER --out '$O/bench_ops.json'"
nerfacc_done
if [ "$MODE" = full ]; then
  stage prior 55 "$BENCH --only prior --out '$O/bench_prior.json'"
  stage recon 55 "RFKERNELS_VALIDATE=0 $PY -m benchmarks.reconstruct_rate $RECON --device $DEVICE --out '$O/recon.json'" "validation off"
fi
stage tests 55 "RFK_BENCH_NO_NERFACC=1 $PY -m pytest -n 8 -x -v --tb=short -rfE -p no:cacheprovider $TIMEOUT_OPT $TESTS_RUN $KERNEL_TESTS"
if [ "$WITH_COMPILE" = 1 ]; then
  stage graphs 90 "$PY -m benchmarks.compile_step --device $DEVICE --backend auto --mode reduce-overhead $GRAPHS --out '$O/compile_step.json'" "base step: eager vs torch.compile(mode=reduce-overhead)"
  stage compile 60 "RFK_BENCH_COMPILE=1 $BENCH --only ${OPS_ORDER%%,*} --out '$O/bench_compile.json'" "torch.compile peer"
fi
nerfacc_done
echo "== gpu_check ($MODE$([ "$DRY" = 1 ] && echo ', dry')) finished in $((SECONDS - T0)) s; summary: $OUT/summary.json" | tee -a "$LOG"
$PY -c "import json,sys; [print(f\"  {s['name']:<8} {s['status']:<8} {s['secs']:4d} s (cap {s['cap']} s) {s['note']}\") for s in json.load(open(sys.argv[1]))['stages']]" "$OUT/summary.json"
rm -f "$NERFACC_RC" "$NERFACC_RC.recorded" "$NERFACC_LOG"
exit $FAILED
