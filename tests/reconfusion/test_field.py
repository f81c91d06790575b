"""The model's seams (samplers, encodings) and the decisions made once in config resolution."""

import pytest
import torch

import rfkernels
from reconfusion.config import Config, GridConfig, ProposalConfig, base, resolve, tiny
from reconfusion.data.scene import select_views
from reconfusion.field.encoding import Encoding, HashGridEncoder, frequency_mask
from reconfusion.field.samplers import ProposalSampler, Sampler, Samples, UniformSampler, annealed_s_range, make_sampler
from reconfusion.field.zipnerf import ZipNeRF
from reconfusion.losses import LossContext, config_terms
from reconfusion.reconstruct import build_model, train
from tests.helpers.recon_scenes import boxes_scene, small_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    return select_views(boxes_scene(n_views=6, size=16), train_ids=[0, 1, 2, 3, 5], test_ids=[4])


def uniform_config(**kw):
    return small_config(sampler="uniform", proposals=[], n_samples=(12,), interlevel_blurs=(), **kw)


# ------------------------------------------------------------------------------ samplers
def test_uniform_sampler_edges(scene):
    cfg = uniform_config()
    s = UniformSampler(cfg)
    rays = scene.view_rays(0)[:40]
    ev = s(rays, None, None)
    assert ev.histograms == [] and torch.allclose(ev.s_edges, torch.linspace(0, 1, 13).expand(40, 13))
    torch.manual_seed(0)
    tr = s(rays, None, 0.5).s_edges
    d = tr - torch.linspace(0, 1, 13)
    assert bool((tr[:, 0] == 0).all() and (tr[:, -1] == 1).all())
    assert bool((d[:, 1:-1].abs() <= 0.5 / 12 + 1e-7).all()) and d[:, 1:-1].abs().max() > 0.01
    assert torch.allclose(d[:, 1:-1], d[:, 1:2].expand(-1, 11), atol=1e-6)  # one shift per ray: stays sorted
    assert bool((tr[:, 1:] > tr[:, :-1]).all())


def test_sample_space_annealing(scene):
    """RegNeRF's schedule: the sampled s-range grows from around the midpoint to [0, 1] over the
    annealing steps; both samplers keep every edge inside it; evaluation always sees [0, 1]."""
    cfg = small_config(iterations=1000, sample_anneal_steps=100, sample_anneal_mid=0.75)
    assert annealed_s_range(cfg, None) == (0.0, 1.0) and annealed_s_range(cfg, 0.1) == (0.0, 1.0)
    lo, hi = annealed_s_range(cfg, 0.05)  # halfway through the annealing
    assert lo == pytest.approx(0.375) and hi == pytest.approx(0.875)
    lo0, hi0 = annealed_s_range(cfg, 0.0)
    assert 0.7499 < lo0 < hi0 < 0.7501
    assert annealed_s_range(cfg.replace(sample_anneal_steps=0), 0.0) == (0.0, 1.0)
    rays = scene.view_rays(0)[:30]
    for c in (uniform_config(iterations=1000, sample_anneal_steps=100, sample_anneal_mid=0.75), cfg):
        model = build_model(c, scene)
        for progress, (lo, hi) in ((0.05, (0.375, 0.875)), (None, (0.0, 1.0))):
            e = model(rays, progress=progress).s_edges
            assert float(e.min()) >= lo - 1e-6 and float(e.max()) <= hi + 1e-6
            assert float(e[:, 0].max()) < lo + 0.1 and float(e[:, -1].min()) > hi - 0.1, "the range is used"
    with pytest.raises(ValueError, match="sample_anneal_mid"):
        small_config(sample_anneal_mid=1.5)
    with pytest.raises(ValueError, match="sample_anneal_steps"):
        small_config(sample_anneal_steps=-1)


def test_uniform_sampler_trains_without_proposals(scene):
    res = train(scene, uniform_config(iterations=30), None, progress_bar=False)
    assert isinstance(res.model.sampler, UniformSampler) and not list(res.model.sampler.parameters())
    assert "interlevel" not in res.history[-1] and res.history[-1]["data"] < res.history[0]["data"]
    out = res.model(scene.view_rays(4)[:20])
    assert out.weights.shape == (20, 12) and out.proposals == []


def test_uniform_sampler_rejects_proposals():
    with pytest.raises(ValueError, match="proposals"):
        make_sampler(small_config(sampler="uniform"))
    with pytest.raises(ValueError, match="sampler"):
        make_sampler(small_config(sampler="grid"))


def test_custom_sampler_is_a_new_class_not_an_edit(scene):
    """A sampler written outside the package plugs into the unchanged model."""

    class Fixed(Sampler):
        def forward(self, rays, points, progress=None):
            e = torch.tensor([0.0, 0.25, 0.5, 1.0]).expand(len(rays), 4)
            t0, t1, u, scales = points(e)  # the model's point mapping is available to samplers
            assert u.shape == (len(rays) * 3, 3) and t0.shape == (len(rays), 3)
            return Samples(e, [])

    cfg = resolve(uniform_config(), scene.space)
    model = ZipNeRF(cfg, scene.space, scene.bbox, scene.background, sampler=Fixed())
    out = model(scene.view_rays(0)[:8], progress=0.2)
    assert out.s_edges.shape == (8, 4) and out.weights.shape == (8, 3)


def test_proposal_sampler_is_the_default(scene):
    model = build_model(small_config(), scene)
    assert isinstance(model.sampler, ProposalSampler) and len(model.sampler.proposals) == 1


# ------------------------------------------------------------------------------ encodings
def test_custom_encoding_plugs_into_the_field(scene):
    from reconfusion.field.zipnerf import NeRFField

    class Fourier(Encoding):
        def __init__(self):
            super().__init__()
            self.output_dim = 12

        def forward(self, u, scales=None, progress=None):
            return torch.cat([torch.sin(3.14 * u), torch.cos(3.14 * u), u, u * u], -1)

    cfg = resolve(small_config(), scene.space)
    model = ZipNeRF(cfg, scene.space, scene.bbox, scene.background, field=NeRFField(cfg.field, encoding=Fourier()))
    out = model(scene.view_rays(0)[:8], progress=0.2)
    out.rgb.sum().backward()
    assert model.field.density_mlp[0].weight.grad is not None


def test_hash_grid_encoder_coarse_to_fine_mask():
    g = GridConfig(4, 2, 10, 4, 32)
    enc = HashGridEncoder(g, freq_reg_fraction=0.5)
    with torch.no_grad():
        enc.grid.params.uniform_(0.5, 1.0)
    u = torch.rand(10, 3)
    full = enc(u)
    assert torch.equal(enc(u, progress=None), full) and torch.equal(enc(u, progress=0.6), full)
    early = enc(u, progress=0.0)  # only the coarsest level is on
    assert torch.equal(early[:, :2], full[:, :2]) and bool((early[:, 2:] == 0).all())
    half = enc(u, progress=0.25)  # progress / fraction = 0.5 -> levels 0..2 at 1, 1, 0
    assert torch.allclose(half, full * frequency_mask(4, 2, 0.5))
    assert frequency_mask(4, 2, 0.5).tolist() == [1, 1, 1, 1, 1, 1, 0, 0]


# ------------------------------------------------------------------------------ levels
def three_level_config(blurs):
    p = [ProposalConfig(GridConfig(4, 1, 12, 8, r), width=16) for r in (32, 64, 128)]
    return small_config(proposals=p, n_samples=(16, 16, 16, 12), interlevel_blurs=blurs)


def test_third_proposal_level_needs_its_own_blur():
    with pytest.raises(ValueError, match="interlevel_blurs"):
        three_level_config((0.03, 0.003))
    with pytest.raises(ValueError, match="interlevel_blurs"):
        tiny().replace(proposals=base().proposals, n_samples=(32, 32, 24))


def test_interlevel_loss_uses_each_levels_blur(scene):
    from reconfusion.losses import functions as reg

    def compute_losses(out, target, cfg):  # the config's interlevel term, weighted as the loop does
        term = {t.name: t for t in config_terms(cfg)}["interlevel"]
        ctx = LossContext(model, scene, 0, cfg, torch.device("cpu"), 0.3, out, target)
        return {"interlevel": term.weight * term.compute(ctx)}

    cfg = three_level_config((0.03, 0.01, 0.003))
    model = build_model(cfg, scene)
    out = model(scene.view_rays(0)[:32], progress=0.3)
    assert len(out.proposals) == 3
    got = compute_losses(out, torch.zeros(32, 3), cfg)["interlevel"]
    want = cfg.interlevel_weight * sum(
        reg.interlevel(out.s_edges, out.weights, e, w, b) for (e, w), b in zip(out.proposals, (0.03, 0.01, 0.003))
    )
    unblurred = cfg.interlevel_weight * sum(
        reg.interlevel(out.s_edges, out.weights, e, w, None) for e, w in out.proposals
    )
    assert torch.allclose(got, want) and not torch.allclose(got, unblurred)
    with pytest.raises(ValueError, match="interlevel_blurs"):
        compute_losses(
            out,
            torch.zeros(32, 3),
            cfg.replace(proposals=cfg.proposals[:2], n_samples=(16, 16, 12), interlevel_blurs=(0.03, 0.01)),
        )


# ------------------------------------------------------------------------------ resolution
def test_spacing_resolved_in_config_not_in_the_model(scene):
    assert resolve(base(), "ndc").spacing == "linear" and resolve(base(), "contract").spacing == "power"
    assert resolve(base().replace(spacing="inverse"), "box").spacing == "inverse"
    with pytest.raises(ValueError, match="spacing"):
        resolve(base().replace(spacing="power"), "ndc")
    with pytest.raises(ValueError, match="resolve"):
        ZipNeRF(small_config(), "box", scene.bbox)
    assert build_model(small_config(), scene).cfg.spacing == "power"


def test_warmup_capped_for_library_callers(scene):
    assert resolve(tiny().replace(iterations=50), "box").warmup_steps == 5
    assert resolve(tiny(), "box").warmup_steps == 100 and resolve(base(), "box") == base().replace(spacing="power")
    logs = []
    res = train(scene, small_config(iterations=4, warmup_steps=100), None, progress_bar=False, log=logs.append)
    assert res.config.warmup_steps == 1 and logs == ["warmup_steps 100 -> 1 (capped at a tenth of 4 iterations)"]


def test_config_rejects_bad_values_and_unknown_keys():
    for kw, name in [
        ({"batch_rays": 0}, "batch_rays"),
        ({"iterations": 0}, "iterations"),
        ({"eval_chunk": -1}, "eval_chunk"),
        ({"backend": "gpu"}, "backend"),
        ({"spacing": "log"}, "spacing"),
        ({"lr_init": float("nan")}, "lr_init"),
        ({"n_samples": (8,)}, "n_samples"),
        ({"data_loss": "l1"}, "data_loss"),
        ({"grid_decay_weight": -0.1}, "grid_decay_weight"),
        ({"grid_decay_weight": float("inf")}, "grid_decay_weight"),
    ]:
        with pytest.raises(ValueError, match=name):
            base().replace(**kw)
    d = {"preset": "x", "learning_rate": 3}
    with pytest.raises(ValueError, match="learning_rate"):
        Config.from_dict(d)
    import json

    d = json.loads(base().to_json())
    d["field"]["grid"]["levels"] = 3
    with pytest.raises(ValueError, match=r"levels.*config.field.grid"):
        Config.from_dict(d)


# ------------------------------------------------------------------------------ backend
def test_backend_from_config(scene, monkeypatch):
    """``Config.backend`` reaches every rfkernels op the model and the losses call: each is called
    without a backend and resolves it through train()'s ``rfkernels.use_backend`` scope."""
    import rfkernels.hashgrid.module as grid_module

    seen = []

    def spying(owner, name):
        real = getattr(owner, name)

        def spy(*a, **kw):
            seen.append((name, kw.get("backend") or rfkernels.get_backend()))  # the backend in effect
            return real(*a, **kw)

        monkeypatch.setattr(owner, name, spy)

    for name in ("sample_pdf", "render_weights", "volume_render", "interlevel_loss", "distortion_loss"):
        spying(rfkernels, name)
    spying(grid_module, "encode")  # what HashGridEncoding.forward calls
    train(scene, small_config(iterations=1, backend="torch"), None, progress_bar=False)
    assert {n for n, _ in seen} == {
        "sample_pdf",
        "render_weights",
        "volume_render",
        "interlevel_loss",
        "distortion_loss",
        "encode",
    }
    assert {b for _, b in seen} == {"torch"}
    with pytest.raises(rfkernels.BackendUnavailableError, match="cuda"):
        train(scene, small_config(iterations=1, backend="cuda"), None, progress_bar=False)


def test_view_independent_colour_ignores_the_direction():
    from reconfusion.config import FieldConfig
    from reconfusion.field.zipnerf import NeRFField

    torch.manual_seed(0)
    u, s = torch.rand(64, 3), torch.full((64,), 1e-3)
    d1 = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    d2 = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    for dependent in (True, False):
        field = NeRFField(FieldConfig(GridConfig(4, 2, 12, 4, 64), 16, 1, 7, 16, 1, 2, view_dependent=dependent))
        (s1, c1), (s2, c2) = field(u, d1, s), field(u, d2, s)
        assert torch.equal(s1, s2)
        assert torch.equal(c1, c2) != dependent


def test_ablation_overrides_reach_nested_settings():
    from reconfusion.config import parse_overrides, with_overrides

    cfg = with_overrides(
        tiny(), parse_overrides(["field.view_dependent=false", "proposals.0.width=8", "n_samples=[16,8]"])
    )
    assert cfg.field.view_dependent is False and cfg.proposals[0].width == 8 and cfg.n_samples == (16, 8)
    with pytest.raises(ValueError, match="field.nope"):
        with_overrides(tiny(), {"field.nope": 1})
