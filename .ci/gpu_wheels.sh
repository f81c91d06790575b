#!/usr/bin/env bash
# Download (here, with pip) exactly the wheels the GPU machine lacks into .whl/ (git-ignored), to be
# carried with the device run: `.ci/gpu_check.sh` installs them with --no-index --no-deps --target.
# The GPU image (Python 3.12, torch 2.11.0+cu130; package list in the device README / KINDS.md)
# already has pytest, pytest-benchmark, pytest-timeout, hypothesis, scipy, transformers, safetensors,
# imageio, ninja, triton, rich, ...; it lacks these three:
#   diffusers  the prior (reconfusion.prior, bench_prior): pure Python
#   xformers   an attention backend of the prior benchmark: 0.0.35 needs torch >= 2.10
#   nerfacc    the volume-rendering / sampling peer: pure Python, JIT-builds its CUDA on first use
# Each wheel is checked for the cp312 / manylinux_2_28_x86_64 tags, and each of its requirements
# (markers evaluated for Python 3.12 on Linux) must be in ON_GPU (already on the machine) or here.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1 xformers==0.0.35 nerfacc==0.5.3)
ON_GPU="torch numpy filelock huggingface-hub pillow regex requests safetensors rich"
# declared but never imported on Python 3.12 (diffusers/utils/import_utils.py imports it only below 3.8)
UNUSED="importlib-metadata"
mkdir -p .whl
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
python - "$ON_GPU $UNUSED" "${WHEELS[@]}" <<'PY'
import sys, zipfile
from email.parser import Parser
from pathlib import Path
from packaging.requirements import Requirement
from packaging.tags import Tag, cpython_tags, compatible_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

on_gpu = {canonicalize_name(n) for n in sys.argv[1].split()}
pins = dict(w.split("==") for w in sys.argv[2:])
plats = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
         "manylinux1_x86_64", "any"]
ok_tags = set(cpython_tags((3, 12), platforms=plats)) | set(compatible_tags((3, 12), "cp312", platforms=plats))
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
wheels, errors = {}, []
for path in sorted(Path(".whl").glob("*.whl")):
    name, version, _, tags = parse_wheel_filename(path.name)
    if name not in {canonicalize_name(p) for p in pins}:
        errors.append(f"{path.name}: not in the pinned list (remove it: two versions stop the install)")
        continue
    if str(version) != pins[next(p for p in pins if canonicalize_name(p) == name)]:
        errors.append(f"{path.name}: version is not the pinned one")
    if not tags & ok_tags:
        errors.append(f"{path.name}: no cp312 / manylinux_2_28_x86_64-compatible tag")
    wheels[name] = path
    with zipfile.ZipFile(path) as zf:
        meta = Parser().parsestr(zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    for req in map(Requirement, meta.get_all("Requires-Dist") or []):
        if req.marker is None or req.marker.evaluate(env):
            dep = canonicalize_name(req.name)
            if dep not in on_gpu and dep not in {canonicalize_name(p) for p in pins}:
                errors.append(f"{path.name} requires {req}: neither on the GPU machine nor downloaded")
missing = [p for p in pins if canonicalize_name(p) not in wheels]
errors += [f"{p}: no wheel downloaded" for p in missing]
for name, path in sorted(wheels.items()):
    print(f"  {path.name}  {path.stat().st_size / 2**20:.1f} MiB")
if errors:
    sys.exit("FAILED:\n  " + "\n  ".join(errors))
print(f".whl/: {len(wheels)} wheels, {sum(p.stat().st_size for p in wheels.values()) / 2**20:.1f} MiB, all cp312/manylinux_2_28 "
      "compatible, every requirement on the GPU machine or here")
PY
