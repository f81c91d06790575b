"""The prior's real path (``reconstruct --prior`` -> ``prior_loss_term`` -> ``SampleLoss``) picks half
precision, the fastest attention that loads and CUDA graphs on CUDA, float32 elsewhere. The CUDA
capability and xformers' extension are mocked: these run on the CPU."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from diffusers.models.attention_processor import Attention

import reconfusion.prior.attention as A
import reconfusion.prior.fast_path as FP
from reconfusion.data.scene import select_views
from reconfusion.prior import ReconFusionPrior
from reconfusion.prior.sample_loss import prior_loss_term
from tests.helpers.prior_scenes import synthetic_scene

CUDA = torch.device("cuda", 0)
LIBCUDART = "libcudart.so.12: cannot open shared object file: No such file or directory"


@pytest.fixture
def gpu(monkeypatch):
    """A CUDA device of a chosen compute capability, and an xformers whose extension loads or not."""
    A.xformers_status.cache_clear()
    FP._said.clear()

    def make(capability=(9, 0), xformers: str | None = "loads"):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        if xformers is None:
            monkeypatch.setitem(sys.modules, "xformers", None)  # import fails: not installed
            return
        fake = types.ModuleType("xformers")
        fake.__version__ = "0.0.35"
        fake._has_cpp_library = xformers == "loads"
        fake._cpp_lib = types.SimpleNamespace(
            _cpp_library_load_exception=None if xformers == "loads" else OSError(LIBCUDART)
        )
        monkeypatch.setitem(sys.modules, "xformers", fake)
        monkeypatch.setitem(sys.modules, "xformers.ops", types.ModuleType("xformers.ops"))
        fake.ops = sys.modules["xformers.ops"]

    yield make
    A.xformers_status.cache_clear()


def test_cpu_keeps_float32_and_no_graphs():
    path = FP.select_fast_path("cpu")
    assert (path.dtype, path.vae_dtype, path.attention, path.cuda_graphs) == (
        torch.float32,
        torch.float32,
        "sdpa",
        False,
    )


def test_hopper_with_xformers_loading(gpu):
    gpu((9, 0), "loads")
    path = FP.select_fast_path(CUDA)
    assert (path.dtype, path.vae_dtype, path.attention, path.cuda_graphs) == (
        torch.bfloat16,
        torch.bfloat16,
        "xformers",
        True,
    )


def test_xformers_that_cannot_load_is_said_once_and_sdpa_runs(gpu, caplog):
    gpu((9, 0), "broken")
    with caplog.at_level(logging.WARNING, logger=FP.__name__):
        paths = [FP.select_fast_path(CUDA) for _ in range(3)]
    assert {p.attention for p in paths} == {"sdpa"} and paths[0].dtype == torch.bfloat16
    said = [r.getMessage() for r in caplog.records if r.name == FP.__name__]
    assert len(said) == 1 and "libcudart.so.12" in said[0] and "flash" in said[0], said
    assert not A.xformers_available()  # the per-call processor agrees: no "xformers" that is not one


def test_no_xformers_and_no_native_bf16(gpu):
    gpu((7, 5), None)
    path = FP.select_fast_path(CUDA)
    assert (path.dtype, path.vae_dtype, path.attention) == (torch.float16, torch.float32, "sdpa")
    assert "not installed" in path.reason


@pytest.mark.parametrize("xformers", ["loads", "broken"])
def test_the_real_path_installs_what_it_selects(gpu, tmp_path, monkeypatch, xformers):
    """``prior_loss_term``'s SampleLoss, first used on a CUDA device: UNet and VAE dtypes and every
    UNet attention block's processor (the move to the device itself is mocked: no GPU here)."""
    gpu((9, 0), xformers)
    torch.manual_seed(0)
    ReconFusionPrior.tiny().save(str(tmp_path / "prior"))
    scene = select_views(synthetic_scene(6, 16, "360"), n_views=3)
    loss = prior_loss_term(str(tmp_path / "prior"), scene).fn
    monkeypatch.setattr(loss.prior, "to", lambda *a, **k: loss.prior)
    prior = loss._prior_on(CUDA)
    assert loss.path == FP.select_fast_path(CUDA) and loss.sampler.cuda_graph
    assert prior.unet.dtype == torch.bfloat16 and prior.vae.dtype == torch.bfloat16
    assert prior.pixelnerf.cfg and next(prior.pixelnerf.parameters()).dtype == torch.float32
    blocks = [m for m in prior.unet.modules() if isinstance(m, Attention)]
    want = "xformers" if xformers == "loads" else "sdpa"
    assert blocks and all(isinstance(m.processor, A.FastAttnProcessor) for m in blocks)
    assert {m.processor.backend for m in blocks} == {want}
