"""DDIM sampler: timesteps, guidance edge cases, batched CFG == separate branches, graph fallback."""

import logging

import pytest
import torch

from reconfusion.prior import ReconFusionPrior
from reconfusion.prior import sampler as SM
from tests.helpers.numerics import assert_close
from tests.helpers.prior_scenes import camera_batch

pytestmark = pytest.mark.usefixtures("one_thread")


S = 64


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny().eval()
    imgs, cams = torch.rand(2, 2, 3, S, S), camera_batch(2, 2, S)
    with torch.no_grad():
        cond = prior.condition(prior.encode_views(imgs), cams, (S, S))
        null = prior.condition(prior.null_views(imgs), cams, (S, S))
    return prior, cond, null


def test_ddim_timesteps():
    assert SM.ddim_timesteps(999, 10)[0] == (999, 899) and SM.ddim_timesteps(999, 10)[-1] == (100, -1)
    assert SM.ddim_timesteps(0, 3) == [(0, -1)]
    assert SM.ddim_timesteps(5, 10) == [(5, 4), (4, 3), (3, 2), (2, 1), (1, -1)]


@pytest.mark.parametrize("t_start", [0, 1, 2, 5, 9, 10, 11, 37, 998, 999])
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 50])
def test_ddim_timesteps_strictly_decrease(t_start, steps):
    """No (t, t) pairs when t * 999 < K: every pair is a real step, ending at the clean image."""
    pairs = SM.ddim_timesteps(t_start, steps)
    ts = [t for t, _ in pairs] + [-1]
    assert [p for _, p in pairs] == ts[1:]
    assert ts[0] == t_start and all(a > b for a, b in zip(ts, ts[1:]))
    assert len(pairs) == max(1, min(steps, t_start))


def test_ddim_timesteps_errors():
    with pytest.raises(ValueError, match="steps"):
        SM.ddim_timesteps(10, 0)


def test_guidance_modes():
    assert SM.guidance_mode(1.0) == "cond" and SM.guidance_mode(0.0) == "uncond" and SM.guidance_mode(3.0) == "cfg"


def _manual_ddim(prior, x, t_start, steps, branches):
    """Reference loop: separate UNet calls per branch, combined by the given function."""
    ac = prior.alphas_cumprod
    for t, tp in SM.ddim_timesteps(t_start, steps):
        a = ac[t]
        ap = ac[tp] if tp >= 0 else torch.tensor(1.0)
        tt = torch.full((x.shape[0],), t)
        out = branches(x, tt)
        x0, eps = prior.split_prediction(out, x, a)
        x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
    return x


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
def test_batched_cfg_matches_separate_calls(setup, guidance, seed):
    prior, cond, null = setup
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        got = SM.DDIMSampler(prior, guidance, cuda_graph=False).sample(x, 600, cond, null, 3)

        def branches(x, t):
            u = prior.denoise(x, t, null.features, null.tokens)
            c = prior.denoise(x, t, cond.features, cond.tokens)
            return u + guidance * (c - u)

        ref = _manual_ddim(prior, x, 600, 3, branches)
    assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_guidance_edge_cases_need_only_one_branch(setup):
    prior, cond, null = setup
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        a = SM.DDIMSampler(prior, 1.0, cuda_graph=False).sample(x, 300, cond, None, 2)
        b = SM.DDIMSampler(prior, 0.0, cuda_graph=False).sample(x, 300, None, null, 2)
    assert torch.isfinite(a).all() and torch.isfinite(b).all() and (a - b).abs().max() > 0
    with pytest.raises(ValueError, match="both"):
        SM.DDIMSampler(prior, 3.0, cuda_graph=False).sample(x, 300, cond, None, 2)


def _oracle(prior, x0):
    """A denoiser that knows the clean latent: predicts exactly the eps / v that lead back to x0."""

    def denoise(x_t, t, features, tokens):
        c = x0.repeat(x_t.shape[0] // x0.shape[0], 1, 1, 1)
        a = prior.alpha(t)
        eps = (x_t - a.sqrt() * c) / (1 - a).sqrt()
        return eps if prior.cfg.prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * c

    return denoise


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_regularize_recovers_clean_latent_with_oracle(setup, monkeypatch, prediction_type, t):
    """DDIM arithmetic: with an exact denoiser every t and guidance give back decode(encode(render))."""
    prior, cond, null = setup
    monkeypatch.setattr(prior.cfg, "prediction_type", prediction_type)
    render = torch.rand(2, 3, S, S)
    with torch.no_grad():
        z0 = prior.encode(render)
        roundtrip = prior.decode(z0)
    monkeypatch.setattr(prior, "denoise", _oracle(prior, z0))
    smp = SM.DDIMSampler(prior, 2.0)
    out = smp.regularize(render, cond, null, t=t, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == render.shape and smp.last_path == "eager"
    assert_close(out, roundtrip, atol=1e-4, rtol=1e-3)


def test_regularize_validates_t(setup):
    prior, cond, null = setup
    with pytest.raises(ValueError, match="`t`"):
        SM.DDIMSampler(prior, 2.0).regularize(torch.rand(1, 3, S, S), cond, null, t=1.5)


def test_graph_capture_failure_falls_back_to_eager(setup, monkeypatch, caplog):
    """The capture path: a failing capture logs once and runs eagerly with identical results."""
    prior, cond, null = setup
    x = torch.randn(2, 4, 16, 16)

    class Boom:
        def __init__(self, *a, **k):
            raise RuntimeError("capture not supported here")

    monkeypatch.setattr(SM, "CudaGraphStep", Boom)
    smp = SM.DDIMSampler(prior, 2.0, cuda_graph=True)
    inputs = dict(
        x=x,
        t=torch.full((2,), 5),
        a_t=torch.full((2, 1, 1, 1), 0.5),
        a_prev=torch.ones(2, 1, 1, 1),
        features=torch.cat([null.features, cond.features]),
        tokens=torch.cat([null.tokens, cond.tokens]),
        guidance=torch.tensor([2.0]),
    )
    with caplog.at_level(logging.WARNING, logger=SM.__name__), torch.no_grad():
        assert smp._graph("cfg", inputs) is None
        assert smp._graph("cfg", inputs) is None  # cached: no second attempt, no second log
        ref = SM.make_step_fn(prior, "cfg")(**inputs)
    assert caplog.text.count("running it eagerly") == 1
    assert_close(smp._fn("cfg")(**inputs), ref)


class FakeGraph:
    """Stands in for CudaGraphStep on the CPU with the same contract: static buffers captured once,
    every call copies into them and 'replays' the function on the static buffers."""

    built = 0

    def __init__(self, fn, inputs):
        FakeGraph.built += 1
        self.fn, self.static = fn, {k: v.clone() for k, v in inputs.items()}
        self.out = fn(**self.static)

    def __call__(self, **inputs):
        for k, v in inputs.items():
            self.static[k].copy_(v)
        self.out = self.fn(**self.static)
        return self.out.clone()


def test_graph_path_captures_once_per_shape_and_matches_eager(setup, monkeypatch):
    prior, cond, null = setup
    monkeypatch.setattr(SM, "CudaGraphStep", FakeGraph)
    monkeypatch.setattr(SM.DDIMSampler, "graph_supported", staticmethod(lambda x: True))
    FakeGraph.built = 0
    x = torch.randn(2, 4, 16, 16)
    smp = SM.DDIMSampler(prior, 2.0, cuda_graph=True)
    with torch.no_grad():
        a = smp.sample(x, 700, cond, null, 3)
        b = smp.sample(x, 400, cond, null, 2)  # other timesteps, same shapes: replay
        assert smp.last_path == "graph" and FakeGraph.built == 1
        c1 = type(cond)(cond.features[:1], cond.tokens[:1])
        n1 = type(null)(null.features[:1], null.tokens[:1])
        smp.sample(x[:1], 400, c1, n1, 1)  # a new shape: a second capture
        assert FakeGraph.built == 2
        eager = SM.DDIMSampler(prior, 2.0, cuda_graph=False)
        assert_close(a, eager.sample(x, 700, cond, null, 3), atol=1e-5, rtol=1e-5)
        assert_close(b, eager.sample(x, 400, cond, null, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_eager(setup):
    prior, cond, null = setup
    prior = prior.cuda()
    c = type(cond)(cond.features.cuda(), cond.tokens.cuda())
    n = type(null)(null.features.cuda(), null.tokens.cuda())
    x = torch.randn(2, 4, 16, 16, device="cuda")
    eager = SM.DDIMSampler(prior, 2.0, cuda_graph=False).sample(x, 700, c, n, 4)
    smp = SM.DDIMSampler(prior, 2.0, cuda_graph=True)
    g1 = smp.sample(x, 700, c, n, 4)
    assert smp.last_path == "graph"
    g2 = smp.sample(x, 500, c, n, 4)  # replay, other timesteps
    assert len(smp._graphs) == 1
    assert_close(g1, eager, atol=1e-3, rtol=1e-3)
    assert_close(g2, SM.DDIMSampler(prior, 2.0, cuda_graph=False).sample(x, 500, c, n, 4), atol=1e-3, rtol=1e-3)
    prior.cpu()


def test_benchmark_cases_run_quick():
    from benchmarks.bench_prior import cases

    cs = cases(torch.device("cpu"), "tiny")
    assert {c.backend for c in cs} == {"torch", "sdpa"}
    for c in cs:
        c.fn()
