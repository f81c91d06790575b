"""rfkernels.compat.tcnn against tiny-cuda-nn's documented layout and defaults (tcnn itself cannot
be installed here): parameter counts of known configs, level scales, init ranges, the flat
params layout, activations, dtypes, second derivatives, and errors naming the config key.
Also rfkernels.compat.install()."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import rfkernels
from rfkernels.compat import tcnn
from tests.helpers.backends import DEVICE
from tests.helpers.numerics import assert_close

pytestmark = pytest.mark.usefixtures("one_thread")

NGP_GRID = {
    "otype": "HashGrid",
    "n_levels": 16,
    "n_features_per_level": 2,
    "log2_hashmap_size": 19,
    "base_resolution": 16,
    "per_level_scale": 1.5,
}
SMALL_GRID = {
    "otype": "Grid",
    "type": "Hash",
    "n_levels": 6,
    "n_features_per_level": 2,
    "log2_hashmap_size": 10,
    "base_resolution": 4,
    "per_level_scale": 1.7,
}
MLP = {
    "otype": "FullyFusedMLP",
    "activation": "ReLU",
    "output_activation": "None",
    "n_neurons": 64,
    "n_hidden_layers": 1,
}


def _tcnn_grid_layout(D, cfg):
    """tcnn's GridEncoding sizes (grid.h), in float32 like tcnn: scale_l = 2^(l log2 s) * N0 - 1,
    resolution = ceil(scale) + 1, entries = min(next_multiple(res^D, 8), 2^T)."""
    L, T = cfg.get("n_levels", 16), cfg.get("log2_hashmap_size", 19)
    N0, s = cfg.get("base_resolution", 16), cfg.get("per_level_scale", 2.0)
    scales, entries = [], []
    for lvl in range(L):
        scale = np.float32(
            np.exp2(np.float32(lvl) * np.float32(np.log2(np.float32(s)))) * np.float32(N0) - np.float32(1)
        )
        res = int(np.ceil(scale)) + 1
        n = min(res**D, 2**31 - 1)
        n = (n + 7) // 8 * 8
        entries.append(min(n, 2**T))
        scales.append(float(scale))
    return scales, sum(entries) * cfg.get("n_features_per_level", 2)


@pytest.mark.parametrize(
    "D,cfg",
    [
        (3, NGP_GRID),
        (3, SMALL_GRID),
        (2, {"otype": "HashGrid"}),
        (3, {**NGP_GRID, "per_level_scale": 1.4472692012786865}),
    ],
)
def test_encoding_layout_matches_tcnn(D, cfg):
    enc = tcnn.Encoding(D, cfg, dtype=torch.float32)
    scales, n_params = _tcnn_grid_layout(D, cfg)
    assert enc.params.numel() == n_params
    assert enc.n_output_dims == cfg.get("n_levels", 16) * cfg.get("n_features_per_level", 2)
    assert enc.n_input_dims == D
    np.testing.assert_allclose(enc.grid.level_scales, scales, rtol=1e-6)
    p = enc.params.detach()
    assert float(p.abs().max()) <= 1e-4 and float(p.std()) > 3e-5  # U(-1e-4, 1e-4)


def test_encoding_known_param_count():
    """Instant-NGP's NeRF grid (16 levels x 2 features, 2^19 entries, base 16, scale 1.5, 3-D):
    levels 0-3 are dense (16^3, 24^3, 36^3, 54^3 entries: scale 16 * 1.5^l - 1, plus 1), the
    rest hashed (2^19 entries each: 81^3 > 2^19)."""
    enc = tcnn.Encoding(3, NGP_GRID)
    dense = [(r**3 + 7) // 8 * 8 for r in (16, 24, 36, 54)]
    assert enc.params.numel() == 2 * (sum(dense) + 12 * 2**19)


def test_encoding_values_dtype_seed(seed):
    enc = tcnn.Encoding(3, SMALL_GRID, seed=7)
    assert enc.dtype == torch.float32 and enc.params.dtype == torch.float32
    assert torch.equal(enc.params, tcnn.Encoding(3, SMALL_GRID, seed=7).params)
    assert not torch.equal(enc.params, tcnn.Encoding(3, SMALL_GRID, seed=8).params)
    ref = rfkernels.HashGridEncoding.from_tcnn_config(3, SMALL_GRID)
    with torch.no_grad():
        ref.params.copy_(torch.randn_like(ref.params))
        enc.params.copy_(ref.params)
    x = torch.rand(50, 3, device=DEVICE)
    enc, ref = enc.to(DEVICE), ref.to(DEVICE)
    assert_close(enc(x), ref(x), atol=0, rtol=0, name="encoding == HashGridEncoding")
    half = tcnn.Encoding(3, SMALL_GRID, dtype=torch.float16).to(DEVICE)
    assert half.params.dtype == torch.float16 and half(x).dtype == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        tcnn.Encoding(3, SMALL_GRID, dtype=torch.bfloat16)


@pytest.mark.parametrize(
    "n_in,n_out,cfg,expected",
    [
        (32, 16, MLP, 64 * 32 + 16 * 64),  # instant-ngp density MLP: 3072
        (32, 3, {**MLP, "n_hidden_layers": 2}, 64 * 32 + 64 * 64 + 16 * 64),  # colour MLP: 7168
        (5, 1, {"otype": "CutlassMLP", "n_neurons": 100, "n_hidden_layers": 3}, 100 * 16 + 2 * 100 * 100 + 16 * 100),
        (20, 20, {"otype": "FullyFusedMLP", "n_neurons": 16, "n_hidden_layers": 1}, 16 * 32 + 32 * 16),
    ],
)
def test_network_param_count(n_in, n_out, cfg, expected):
    net = tcnn.Network(n_in, n_out, cfg)
    assert net.params.numel() == expected
    assert net(torch.rand(7, n_in)).shape == (7, n_out)


def test_network_layout_init_and_forward(seed):
    """params = bias-free [out, in] row-major matrices in order; input padded with ones to 16;
    output rows padded to 16 and sliced; Xavier-uniform init per (padded) matrix."""
    cfg = {
        "otype": "FullyFusedMLP",
        "activation": "Tanh",
        "output_activation": "Sigmoid",
        "n_neurons": 32,
        "n_hidden_layers": 2,
    }
    net = tcnn.Network(5, 3, cfg, seed=3)
    shapes = [(32, 16), (32, 32), (16, 32)]
    p, mats, start = net.params.detach(), [], 0
    for o, i in shapes:
        w = p[start : start + o * i].view(o, i)
        bound = (6.0 / (o + i)) ** 0.5
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.8 * bound
        mats.append(w)
        start += o * i
    assert start == p.numel()
    x = torch.randn(9, 5)
    h = torch.cat([x, torch.ones(9, 11)], 1)
    h = torch.tanh(h @ mats[0].t())
    h = torch.tanh(h @ mats[1].t())
    ref = torch.sigmoid(h @ mats[2].t())[:, :3]
    assert_close(net(x), ref, atol=1e-6, name="forward")


@pytest.mark.parametrize(
    "name,fn",
    [
        ("None", lambda x: x),
        ("ReLU", torch.relu),
        ("LeakyReLU", lambda x: torch.where(x > 0, x, 0.01 * x)),
        ("Exponential", torch.exp),
        ("Sine", torch.sin),
        ("Sigmoid", torch.sigmoid),
        ("Tanh", torch.tanh),
        ("Softplus", lambda x: torch.log(torch.exp(10 * x) + 1) / 10),  # tcnn: K_ACT = 10
        ("Squareplus", lambda x: 0.5 * (10 * x + torch.sqrt(100 * x * x + 4)) / 10),
    ],
)
def test_output_activations(name, fn):
    net = tcnn.Network(
        16,
        16,
        {"otype": "CutlassMLP", "n_neurons": 16, "n_hidden_layers": 1, "activation": name, "output_activation": name},
    )
    x = torch.randn(6, 16) * 0.5
    w0, w1 = net.params.detach().view(2, 16, 16)
    assert_close(net(x), fn(fn(x @ w0.t()) @ w1.t()), atol=1e-5, name=name)


def test_network_with_input_encoding_layout(seed):
    """One flat params: network weights first, then the grid table; equals Encoding -> Network."""
    m = tcnn.NetworkWithInputEncoding(3, 4, SMALL_GRID, MLP, seed=5)
    enc, net = tcnn.Encoding(3, SMALL_GRID), tcnn.Network(12, 4, MLP)
    assert m.params.numel() == net.params.numel() + enc.params.numel()
    table = m.params.detach()[net.params.numel() :]
    assert float(table.abs().max()) <= 1e-4
    with torch.no_grad():
        enc.params.copy_(torch.randn_like(enc.params))
        net.params.copy_(torch.randn_like(net.params) * 0.2)
        # the 4 padded input columns: tcnn pads a grid's output with zeros, a Network's input with ones
        net.params[: 64 * 16].view(64, 16)[:, 12:] = 0
        m.params.copy_(torch.cat([net.params, enc.params]))
    x = torch.rand(40, 3, device=DEVICE)
    m, enc, net = m.to(DEVICE), enc.to(DEVICE), net.to(DEVICE)
    assert_close(m(x), net(enc(x)), atol=1e-5, name="NWIE == Network(Encoding)")


def test_second_derivatives_network():
    net = tcnn.Network(
        3,
        2,
        {
            "otype": "CutlassMLP",
            "activation": "Softplus",
            "output_activation": "Tanh",
            "n_neurons": 8,
            "n_hidden_layers": 2,
        },
    ).double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda x, p: torch.func.functional_call(net, {"params": p}, (x,)),
        (x, net.params.detach().clone().requires_grad_(True)),
    )


def test_second_derivatives_through_whole_model(seed):
    """Eikonal-style loss |d y / d x|^2 through the hash grid and the MLP: float64 gradgradcheck
    (torch backend) and the default backend's d loss / d params against it."""
    cfg = {
        "otype": "HashGrid",
        "n_levels": 2,
        "n_features_per_level": 2,
        "log2_hashmap_size": 6,
        "base_resolution": 3,
        "per_level_scale": 2.0,
    }
    net_cfg = {"otype": "CutlassMLP", "activation": "Tanh", "n_neurons": 8, "n_hidden_layers": 1}
    m = tcnn.NetworkWithInputEncoding(3, 1, cfg, net_cfg)
    with torch.no_grad():
        m.params[m.mlp.n_params :].uniform_(-1, 1)
    x = (torch.rand(6, 3) * 0.8 + 0.1).to(DEVICE)

    def eikonal(model, x):
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return (g.norm(dim=-1) - 1).pow(2).mean()

    m = m.to(DEVICE)
    loss = eikonal(m, x)
    (g_fast,) = torch.autograd.grad(loss, m.params)
    old = rfkernels.get_backend()
    rfkernels.set_backend("torch")
    try:
        m64 = m.double()
        (g_ref,) = torch.autograd.grad(eikonal(m64, x.double()), m64.params)
        p = m64.params.detach().clone().requires_grad_(True)
        xx = x.double().requires_grad_(True)
        assert torch.autograd.gradgradcheck(
            lambda x, p: torch.func.functional_call(m64, {"params": p}, (x,)), (xx, p), atol=1e-5
        )
    finally:
        rfkernels.set_backend(old)
    assert float(g_ref[: m64.mlp.n_params].abs().sum()) > 0 and float(g_ref[m64.mlp.n_params :].abs().sum()) > 0
    assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-3, name="d eikonal / d params")


@pytest.mark.parametrize(
    "kind,cfg,key",
    [
        ("enc", {"otype": "Fourier", "n_frequencies": 4}, "otype.*Fourier"),  # Frequency/Dense are supported
        ("enc", {"otype": "Grid", "type": "Octree"}, "type"),
        ("enc", {"otype": "HashGrid", "hash": "Prime"}, "hash"),
        ("enc", {"otype": "HashGrid", "n_levels": 4, "stochastic_interpolation": True}, "stochastic_interpolation"),
        ("net", {"otype": "CutlassResNet"}, "otype"),
        ("net", {"otype": "FullyFusedMLP", "n_neurons": 48}, "n_neurons"),
        ("net", {"otype": "FullyFusedMLP", "activation": "Gelu"}, "activation"),
        ("net", {"otype": "FullyFusedMLP", "output_activation": "Softmax"}, "output_activation"),
        ("net", {"otype": "FullyFusedMLP", "bias": True}, "bias"),
        ("net", {"otype": "CutlassMLP", "n_hidden_layers": 0}, "n_hidden_layers"),
        ("net", {"otype": "CutlassMLP", "n_hidden_layers": True}, "n_hidden_layers"),
        ("net", {"otype": "CutlassMLP", "n_neurons": "abc"}, "n_neurons"),
        ("net", {"otype": "FullyFusedMLP", "activation": None}, "activation"),
        ("enc", {"otype": "HashGrid", "per_level_scale": "abc"}, "per_level_scale"),
        ("enc", {"otype": "HashGrid", "per_level_scale": float("inf")}, "per_level_scale"),
        ("enc", {"otype": "HashGrid", "n_levels": 2.5}, "n_levels"),
        ("enc", {"otype": "HashGrid", "log2_hashmap_size": True}, "log2_hashmap_size"),
    ],
)
def test_unsupported_configs_name_the_key(kind, cfg, key):
    with pytest.raises(ValueError, match=key):
        if kind == "enc":
            tcnn.Encoding(3, cfg)
        else:
            tcnn.Network(8, 2, cfg)


@pytest.mark.parametrize(
    "n_in,n_out,bad",
    [
        (0, 2, "n_input_dims"),
        (-3, 2, "n_input_dims"),
        (8, 0, "n_output_dims"),
        (8, -1, "n_output_dims"),
        (True, 2, "n_input_dims"),
        ("8", 2, "n_input_dims"),
    ],
)
def test_bad_dimensions_are_named(n_in, n_out, bad):
    with pytest.raises(ValueError, match=bad):
        tcnn.Network(n_in, n_out, {"otype": "CutlassMLP"})
    if bad == "n_input_dims":
        with pytest.raises(ValueError, match=bad):
            tcnn.Encoding(n_in, {"otype": "HashGrid", "n_levels": 2})


def test_install_registers_modules():
    from rfkernels import compat

    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("nerfacc", "tinycudann")}
    try:
        compat.install()
        import nerfacc
        import tinycudann
        from nerfacc.estimators.prop_net import PropNetEstimator
        from nerfacc.volrend import rendering

        assert nerfacc is compat.nerfacc and tinycudann is compat.tcnn
        assert PropNetEstimator is compat.nerfacc.PropNetEstimator and rendering is compat.nerfacc.rendering
        assert tinycudann.NetworkWithInputEncoding is tcnn.NetworkWithInputEncoding
        compat.uninstall()
        assert sys.modules.get("nerfacc") is not compat.nerfacc and "tinycudann" not in sys.modules
        with pytest.raises(ValueError, match="which"):
            compat.install(which=("tensorflow",))
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("nerfacc", "tinycudann")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_env_var_installs_at_import():
    code = (
        "import rfkernels.compat, nerfacc, tinycudann as tcnn; "
        "assert nerfacc.__name__ == 'rfkernels.compat.nerfacc', nerfacc.__name__; "
        "assert tcnn.Encoding.__module__ == 'rfkernels.compat.tcnn'; print('ok')"
    )
    env = {
        **os.environ,
        "RFKERNELS_COMPAT": "1",
        "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_runner_runs_an_unmodified_script(tmp_path):
    """`python -m rfkernels.compat script.py args` runs a script that only imports nerfacc/tinycudann."""
    script = tmp_path / "user_train.py"
    script.write_text(
        "import sys, torch, nerfacc, tinycudann as tcnn\n"
        "w, t, a = nerfacc.render_weight_from_density(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2))\n"
        "enc = tcnn.Encoding(3, {'otype': 'HashGrid', 'n_levels': 2, 'n_features_per_level': 2,\n"
        "                        'log2_hashmap_size': 8, 'base_resolution': 4, 'per_level_scale': 2.0})\n"
        "print(nerfacc.__name__, enc.n_output_dims, sys.argv[1:])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RFKERNELS_COMPAT", None)
    out = subprocess.run(
        [sys.executable, "-m", "rfkernels.compat", str(script), "--lr", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["rfkernels.compat.nerfacc", "4", "['--lr',", "'1']"], out.stdout
    bare = subprocess.run(
        [sys.executable, "-m", "rfkernels.compat"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bare.returncode == 2 and "python -m rfkernels.compat" in bare.stdout
