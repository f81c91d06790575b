"""Install rfkernels + reconfusion.

A plain ``pip install -e .`` installs pure Python only: it never imports torch and never compiles
CUDA (the extension is JIT-built with ninja on first CUDA use, see ``rfkernels/_cuda_ext.py``).
Set ``RFKERNELS_BUILD_CUDA=1`` (and pass ``--no-build-isolation`` so torch is importable) to build
the CUDA extension ahead of time as ``rfkernels._C``.
"""
import glob
import os
import re

from setuptools import find_packages, setup

VERSION = re.search(r'^__version__ = "([^"]+)"', open("rfkernels/_version.py").read(), re.M).group(1)

ext_modules, cmdclass = [], {}
if os.environ.get("RFKERNELS_BUILD_CUDA", "0") == "1":
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension  # opt-in only

    sources = sorted(glob.glob("csrc/*.cu")) + sorted(glob.glob("csrc/*.cpp"))
    ext_modules = [
        CUDAExtension(
            "rfkernels._C",
            sources,
            extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--use_fast_math", "-lineinfo"]},
        )
    ]
    cmdclass = {"build_ext": BuildExtension}

setup(
    name="rfkernels",
    version=VERSION,
    description="Fused kernels for few-view NeRF with diffusion priors, and the ReconFusion library",
    # csrc/ also ships inside the wheel as rfkernels/_csrc so that a non-editable install can JIT-build
    packages=find_packages(include=["rfkernels*", "reconfusion*"]) + ["rfkernels._csrc"],
    package_dir={"rfkernels._csrc": "csrc"},
    package_data={"reconfusion": ["demo/*", "demo/**/*"], "rfkernels._csrc": ["*.cu", "*.cuh", "*.h", "*.cpp"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "imageio", "pillow", "tqdm", "safetensors"],
    extras_require={
        "triton": ["triton>=3.6"],
        "test": ["pytest>=8", "pytest-benchmark", "scipy", "ninja", "triton>=3.6", "hypothesis>=6"],
        "diffusion": ["diffusers>=0.30", "transformers>=4.40", "safetensors"],
        "xformers": ["xformers>=0.0.35"],
        "video": ["imageio-ffmpeg"],
    },
    entry_points={"console_scripts": ["reconfusion=reconfusion.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
