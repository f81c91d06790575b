"""Models built on rfkernels compile whole (issue 22): ``torch.compile(fullgraph=True)`` (a graph break
fails the call) of one reconfusion training step, of examples/nerfacc_prop_lego.py's step through
``rfkernels.compat.nerfacc``, and of a ``rfkernels.compat.tcnn.NetworkWithInputEncoding`` forward +
backward, with validation at its default, for the torch backend and the fused Triton one (interpreted
here); losses and gradients match eager. ``torch.export`` of the field's forward (hash grid + MLP) and
of a rendering call round-trips through save/load.

Inductor compiles C++ on the CPU (tens of seconds per graph here): the compile tests are ``slow``."""

from __future__ import annotations

import importlib
import io
import sys

import pytest
import torch

import rfkernels
from rfkernels.compat import nerfacc, tcnn
from tests.helpers.paths import EXAMPLES

BACKENDS = [pytest.param("torch"), pytest.param("triton", marks=pytest.mark.slow)]


def _needs(backend):
    if backend not in rfkernels.available_backends("cpu"):
        pytest.skip(f"{backend} does not run here")


def _compiled_matches_eager(fn, params, *args, rtol=1e-4):
    """``fn(*args)`` -> scalar loss: eager and ``torch.compile(fullgraph=True)`` give the same loss
    and gradients w.r.t. ``params``."""
    results = []
    with torch._inductor.config.patch(fallback_random=True):  # the compiled graph draws eager's random numbers
        for run in (fn, torch.compile(fn, fullgraph=True)):
            torch.manual_seed(0)  # the same jitter in both runs
            loss = run(*args)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            results.append((loss.detach(), grads))
    (eager, g_eager), (compiled, g_compiled) = results
    torch.testing.assert_close(compiled, eager, rtol=rtol, atol=1e-6)
    for a, b in zip(g_compiled, g_eager):
        if b is not None:  # float32 sums in another order: relative to the largest entry
            torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * max(float(b.abs().max()), 1e-6))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_reconfusion_training_step_compiles(backend):
    """Forward + every active loss term of one step of the small config (depth smoothness off: its
    unseen patches need more views than this scene has)."""
    _needs(backend)
    from reconfusion.losses.terms import LossContext, config_terms
    from reconfusion.reconstruct import build_model
    from tests.helpers.recon_scenes import boxes_scene, small_config

    torch.manual_seed(0)
    scene = boxes_scene(n_views=2, size=16)
    cfg = small_config(batch_rays=64, depth_smoothness_weight=0.0, backend=backend)
    model = build_model(cfg, scene)
    terms = [t for t in config_terms(model.cfg, scene, None, print) if t.active(0)]
    rays, target = scene.view_rays(0)[:64], torch.rand(64, 3)

    def step_loss(rays, target):
        out = model(rays, progress=0.5)
        ctx = LossContext(model, scene, 0, model.cfg, torch.device("cpu"), 0.5, out, target)
        values = [(t.weight, t.compute(ctx)) for t in terms]
        return sum(w * v for w, v in values if v is not None)  # gradient-only terms give None

    with rfkernels.use_backend(backend):
        _compiled_matches_eager(step_loss, list(model.parameters()), rays, target)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_nerfacc_prop_example_step_compiles(backend):
    """examples/nerfacc_prop_lego.py's step (PropNetEstimator.sampling, nerfacc.rendering, mse) on
    rays through a small cube of space; proposal and radiance fields are the example's classes."""
    _needs(backend)
    sys.path.insert(0, str(EXAMPLES))
    example = importlib.import_module("nerfacc_prop_lego")
    torch.manual_seed(0)
    props = torch.nn.ModuleList([example.ProposalField(2, 10, 64), example.ProposalField(2, 10, 64)])
    field = example.RadianceField(3, 10, 64)
    estimator = nerfacc.PropNetEstimator(None)
    R = 32
    origins = torch.randn(R, 3) * 0.1 + torch.tensor([0.0, 0.0, 4.0])
    dirs = torch.nn.functional.normalize(torch.randn(R, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0]), dim=-1)
    target = torch.rand(R, 3)

    def step_loss(origins, dirs, target):
        def points(t_starts, t_ends):
            return origins[:, None] + dirs[:, None] * ((t_starts + t_ends) / 2)[..., None]

        t_starts, t_ends = estimator.sampling(
            prop_sigma_fns=[lambda s, e, p=p: p.density(points(s, e)) for p in props],
            prop_samples=[16, 8],
            num_samples=8,
            n_rays=R,
            near_plane=2.0,
            far_plane=6.0,
            sampling_type="lindisp",
            stratified=False,
            requires_grad=True,
        )
        rgb, _, _, extras = nerfacc.rendering(
            t_starts,
            t_ends,
            rgb_sigma_fn=lambda s, e, _ri: field(points(s, e), dirs[:, None].expand(-1, s.shape[1], -1)),
            render_bkgd=torch.ones(3),
        )
        return torch.nn.functional.mse_loss(rgb, target)

    with rfkernels.use_backend(backend):
        _compiled_matches_eager(step_loss, list(field.parameters()), origins, dirs, target)


def _tcnn_net():
    grid = {"otype": "HashGrid", "n_levels": 4, "n_features_per_level": 2, "log2_hashmap_size": 10}
    grid.update(base_resolution=4, per_level_scale=1.5)
    mlp = {"otype": "FullyFusedMLP", "activation": "ReLU", "output_activation": "None"}
    return tcnn.NetworkWithInputEncoding(3, 4, grid, {**mlp, "n_neurons": 16, "n_hidden_layers": 1})


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_tcnn_network_with_input_encoding_compiles(backend):
    _needs(backend)
    torch.manual_seed(0)
    net = _tcnn_net()
    x = torch.rand(64, 3)
    with rfkernels.use_backend(backend):
        _compiled_matches_eager(lambda x: net(x).float().square().sum(), list(net.parameters()), x)


# ------------------------------------------------------------------------------------------- export
def _round_trip(module, args, strict=True):
    """torch.export (strict: traced by dynamo; non-strict: the Python code run on fake tensors) -> save ->
    load; the loaded program and the module called eagerly afterwards both give the eager values (a
    per-device constant cached during the trace would hand fake tensors to later eager calls)."""
    expected = torch.utils._pytree.tree_leaves(module(*args))
    program = torch.export.export(module, args, strict=strict)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    loaded = torch.export.load(buf).module()
    for a, b, c in zip(
        torch.utils._pytree.tree_leaves(loaded(*args)), torch.utils._pytree.tree_leaves(module(*args)), expected
    ):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)
    return program


@pytest.mark.slow
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non-strict"])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_export_field_forward_round_trips(backend, strict):
    """The reconfusion field (hash grid + density/colour MLPs) exported with the backend in effect;
    the fused backend shows up as the registered operator in the graph."""
    _needs(backend)
    from reconfusion.config import FieldConfig, GridConfig
    from reconfusion.field.zipnerf import NeRFField

    torch.manual_seed(0)
    field = NeRFField(FieldConfig(GridConfig(4, 2, 10, 4, 64), density_width=16, bottleneck=7, color_width=16))
    u, dirs = torch.rand(50, 3), torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    with rfkernels.use_backend(backend):
        program = _round_trip(field, (u, dirs), strict=strict)
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert ("rfkernels.hashgrid_encode.default" in ops) == (backend != "torch"), ops


class _Render(torch.nn.Module):
    def forward(self, sigmas, colors, t_starts, t_ends):
        out = rfkernels.volume_render(sigmas, colors, t_starts, t_ends, background=1.0)
        return out.rgb, out.depth, out.weights


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.slow)])
def test_export_rendering_round_trips(backend):
    _needs(backend)
    g = torch.Generator().manual_seed(0)
    t = torch.sort(torch.rand(8, 13, generator=g), -1).values
    args = (torch.rand(8, 12, generator=g) * 5, torch.rand(8, 12, 3, generator=g), t[:, :-1], t[:, 1:])
    with rfkernels.use_backend(backend):
        _round_trip(_Render(), args)
