"""Install rfkernels + reconfusion.

A plain ``pip install -e .`` installs pure Python only: it never imports torch and never compiles
CUDA (the extension is JIT-built with ninja on first CUDA use, see ``rfkernels/_cuda_ext.py``).
Set ``RFKERNELS_BUILD_CUDA=1`` (and pass ``--no-build-isolation`` so torch is importable) to build
the CUDA extension ahead of time as ``rfkernels._C``.
"""

import importlib.util
import os
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "rfkernels/_version.py").read_text(), re.M).group(1)


def _load_build_flags():
    """rfkernels/_build.py loaded by path: importing the rfkernels package would import torch."""
    spec = importlib.util.spec_from_file_location("rfkernels_build", HERE / "rfkernels" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_flags()
ext_modules, cmdclass = [], {}
if os.environ.get("RFKERNELS_BUILD_CUDA", "0") == "1":
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension  # opt-in only

    csrc = HERE / "csrc"
    ext_modules = [
        CUDAExtension(
            build.AOT_EXTENSION_NAME,
            [str(p.relative_to(HERE)) for p in build.sources(csrc)],  # setuptools wants relative paths
            include_dirs=[str(p) for p in build.include_dirs(csrc)],
            extra_compile_args={"cxx": list(build.CXX_FLAGS), "nvcc": list(build.NVCC_FLAGS)},
        )
    ]
    cmdclass = {"build_ext": BuildExtension}

setup(
    name="rfkernels",
    version=VERSION,
    description="Fused kernels for few-view NeRF with diffusion priors, and the ReconFusion library",
    # csrc/ (every folder) also ships inside the wheel as rfkernels/_csrc so that a non-editable
    # install can JIT-build
    packages=find_packages(include=["rfkernels*", "reconfusion*"]) + ["rfkernels._csrc"],
    package_dir={"rfkernels._csrc": "csrc"},
    package_data={"reconfusion": ["demo/*", "demo/**/*"], "rfkernels._csrc": list(build.PACKAGE_DATA)},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "imageio", "pillow", "tqdm", "safetensors"],
    extras_require={
        "triton": ["triton>=3.6"],
        "test": [
            "pytest>=8",
            "pytest-benchmark",
            "pytest-xdist",  # .ci/gpu_check.sh runs the kernel tests with -n 8 (its dry run in CI too)
            "scipy",
            "ninja",
            "triton>=3.6",
            "hypothesis>=6",
            "opencv-python-headless>=4.8",
        ],
        "geometry": ["opencv-python-headless>=4.8"],  # the sparse-depth term's SIFT (4.8: precise upscale)
        "diffusion": ["diffusers>=0.30", "transformers>=4.40", "safetensors"],
        "xformers": ["xformers>=0.0.35"],
        "video": ["imageio-ffmpeg"],
    },
    entry_points={
        "console_scripts": ["reconfusion=reconfusion.app.cli:main"],
        # ns-train reconfusion-fewview (imported only by nerfstudio, only when installed)
        "nerfstudio.method_configs": ["reconfusion-fewview=reconfusion.nerfstudio.method:reconfusion_fewview"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
