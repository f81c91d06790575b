"""``python -m rfkernels info [--build]``"""

import argparse
import json

from ._info import info

parser = argparse.ArgumentParser(prog="python -m rfkernels")
parser.add_argument("command", choices=["info"])
parser.add_argument("--build", action="store_true", help="JIT-build the CUDA extension if a GPU is present")
args = parser.parse_args()
print(json.dumps(info(build_cuda=args.build), indent=2))
