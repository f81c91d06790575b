"""The occupancy-grid half of the nerfacc layer against real nerfacc 0.5.3 where its Python runs on
the CPU (intersection reference, _enlarge_aabb, _query, the estimator's constructor, buffers,
mark_invisible_cells and EMA update, camera distortion, private histogram helpers), and against
rfkernels' traversal where nerfacc needs CUDA (sampling)."""

import importlib
import math
import sys

import pytest
import torch

from rfkernels.compat import nerfacc as ours
from rfkernels.compat.nerfacc import cameras, grid
from rfkernels.compat.nerfacc.estimators import prop_net
from tests.helpers.occ_scenes import random_binaries, random_rays
from tests.helpers.peers import real_nerfacc

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def real():
    return real_nerfacc()[1]  # {"nerfacc.grid": module, ...}


@pytest.fixture(scope="module")
def real_cameras(real):
    """Real ``nerfacc.cameras`` (its package does not import it): imported with the real modules in place."""
    ours_now = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "nerfacc" or k.startswith("nerfacc.")}
    sys.modules.update(real)
    try:
        return importlib.import_module("nerfacc.cameras")
    finally:
        for k in [k for k in sys.modules if k == "nerfacc" or k.startswith("nerfacc.")]:
            del sys.modules[k]
        sys.modules.update(ours_now)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_intersection_and_grid_helpers_match_nerfacc(real):
    g = _gen(0)
    o, d = random_rays(300, g)
    lo = torch.rand(40, 3, generator=g)
    boxes = torch.cat([lo, lo + torch.rand(40, 3, generator=g) + 0.1], -1)
    want = real["nerfacc.grid"]._ray_aabb_intersect(o, d, boxes)
    for got in (grid.ray_aabb_intersect(o, d, boxes), grid._ray_aabb_intersect(o, d, boxes)):
        assert torch.equal(got[2], want[2])
        assert torch.allclose(got[0], want[0]) and torch.allclose(got[1], want[1])
    base = torch.tensor([-1.0, -2.0, -0.5, 1.0, 0.0, 1.5])
    assert torch.equal(grid._enlarge_aabb(base, 4.0), real["nerfacc.grid"]._enlarge_aabb(base, 4.0))
    data = random_binaries(3, (8, 6, 4), 0.5, g)
    x = torch.randn(500, 3, generator=g) * 3
    for a, b in zip(grid._query(x, data, base), real["nerfacc.grid"]._query(x, data, base)):
        assert torch.equal(a, b)


def test_traverse_grids_containers():
    g = _gen(1)
    o, d = random_rays(20, g)
    binaries = random_binaries(2, (8, 8, 8), 0.3, g)
    aabbs = torch.stack([grid._enlarge_aabb(torch.tensor([-1.0, -1, -1, 1, 1, 1]), 2**i) for i in range(2)])
    intervals, samples, planes = ours.traverse_grids(o, d, binaries, aabbs, step_size=0.05)
    t_starts, t_ends = intervals.vals[intervals.is_left], intervals.vals[intervals.is_right]
    assert torch.equal(samples.vals, (t_starts + t_ends) * 0.5)
    assert torch.equal(intervals.ray_indices[intervals.is_left], samples.ray_indices)
    # touching intervals share an edge: fewer edges than 2 per interval, and every edge is used
    assert intervals.vals.numel() < 2 * t_starts.numel() and bool((intervals.is_left | intervals.is_right).all())
    counts = samples.packed_info[:, 1]
    assert int(counts.sum()) == t_starts.numel() and torch.equal(samples.packed_info[1:, 0], counts.cumsum(0)[:-1])
    assert planes.shape == (20,)
    with pytest.raises(ValueError, match="traverse_steps_limit"):
        ours.traverse_grids(o, d, binaries, aabbs, over_allocate=True)


def test_estimator_buffers_state_dict_and_updates_match_nerfacc(real):
    kw = dict(roi_aabb=[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=[8, 6, 4], levels=2)
    mine, theirs = ours.OccGridEstimator(**kw), real["nerfacc"].OccGridEstimator(**kw)
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    for k, v in theirs.state_dict().items():
        assert torch.equal(mine.state_dict()[k], v), k
    K = torch.tensor([[[40.0, 0, 20], [0, 40, 20], [0, 0, 1]]])
    c2w = torch.tensor([[[-1.0, 0, 0, 0.2], [0, 1, 0, 0], [0, 0, -1, 2.5]]])
    mine.mark_invisible_cells(K, c2w, 40, 40, near_plane=0.5)
    theirs.mark_invisible_cells(K, c2w, 40, 40, near_plane=0.5)
    assert torch.equal(mine.occs, theirs.occs) and bool((mine.occs == -1).any())

    def density(x):
        return torch.exp(-4 * (x**2).sum(-1, keepdim=True))

    for step in (0, 16, 300, 316):  # warm-up (every cell), then uniform + occupied cells
        for est in (mine, theirs):
            torch.manual_seed(step)
            est.update_every_n_steps(step, density, occ_thre=0.05, warmup_steps=256)
        assert torch.equal(mine.occs, theirs.occs) and torch.equal(mine.binaries, theirs.binaries), step
    fresh = ours.OccGridEstimator(**kw)
    fresh.load_state_dict(theirs.state_dict())
    assert torch.equal(fresh.binaries, theirs.binaries)
    mine.eval()
    with pytest.raises(RuntimeError, match="only during training"):
        mine.update_every_n_steps(0, density)
    with pytest.raises(ValueError, match="contraction_type"):
        ours.OccGridEstimator(**kw, contraction_type="aabb")


def test_estimator_sampling():
    est = ours.OccGridEstimator([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=8, levels=2)
    est.binaries = random_binaries(2, (8, 8, 8), 0.5, _gen(2))
    est.occs.fill_(0.5)
    o, d = random_rays(32, _gen(3))
    t_min = torch.rand(32, generator=_gen(4))
    t_max = t_min + 1.0
    rays, ts, te = est.sampling(o, d, near_plane=0.1, far_plane=5.0, t_min=t_min, t_max=t_max, render_step_size=0.02)
    want = ours.traverse_grids(o, d, est.binaries, est.aabbs, t_min.clamp(min=0.1), t_max.clamp(max=5.0), 0.02)[0]
    assert torch.equal(ts, want.vals[want.is_left]) and torch.equal(te, want.vals[want.is_right])
    assert bool(((ts + te) / 2 >= t_min[rays]).all() and ((ts + te) / 2 < t_max[rays]).all())

    # culling by the user's density: an opaque first sample hides the rest of its ray
    def sigma_fn(t0, t1, r):
        return torch.full_like(t0, 1e4)

    every = est.sampling(o, d, render_step_size=0.02)[0]
    vis = est.sampling(o, d, sigma_fn=sigma_fn, render_step_size=0.02, early_stop_eps=1e-4)[0]
    assert torch.equal(vis, torch.unique(every))
    torch.manual_seed(0)
    strat = est.sampling(o, d, render_step_size=0.02, stratified=True)
    assert strat[1].numel() > 0 and not torch.equal(strat[1][:5], est.sampling(o, d, render_step_size=0.02)[1][:5])


def test_cameras_match_nerfacc(real_cameras):
    nf = real_cameras
    g = _gen(5)
    uv = torch.rand(3, 200, 2, generator=g) - 0.5
    for n in (1, 2, 4, 8):
        params = torch.rand(n, generator=g) * 0.02
        full = torch.nn.functional.pad(params, (0, 8 - n))
        assert torch.allclose(
            cameras._opencv_lens_distortion(uv, full), nf._opencv_lens_distortion(uv, full), atol=1e-6
        )
        want = nf._opencv_lens_undistortion(uv, params, 1e-6, 10)
        assert torch.allclose(cameras._opencv_lens_undistortion(uv, params, 1e-6, 10), want, atol=1e-6)
        got = cameras.opencv_lens_undistortion(uv, params, 1e-6, 10)
        assert torch.allclose(cameras._opencv_lens_distortion(got, full), uv, atol=1e-5)
    k = torch.rand(4, generator=g) * 0.02
    assert torch.allclose(cameras._opencv_lens_distortion_fisheye(uv, k), nf._opencv_lens_distortion_fisheye(uv, k))
    back = cameras._opencv_lens_distortion_fisheye(cameras.opencv_lens_undistortion_fisheye(uv, k), k)
    assert torch.allclose(back, uv, atol=1e-5)
    assert torch.equal(cameras.opencv_lens_undistortion(uv, torch.zeros(0)), uv)
    with pytest.raises(ValueError, match="params"):
        cameras.opencv_lens_undistortion(uv, torch.zeros(3))


def test_private_histogram_helpers_match_nerfacc(real):
    g = _gen(6)
    bins = torch.sort(torch.rand(4, 33, generator=g), -1).values
    w = torch.rand(4, 32, generator=g)
    a = ours.pdf._sample_from_weighted(bins, w, 16, False, 0.0, 1.0)
    b = real["nerfacc.pdf"]._sample_from_weighted(bins, w, 16, False, 0.0, 1.0)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))
    # an envelope covering the histogram: nerfacc's _lossfun_outer, exactly
    t_env = torch.cat(
        [bins[:, :1] - 0.01, torch.sort(torch.rand(4, 7, generator=g), -1).values, bins[:, -1:] + 0.01], -1
    )
    w_env = torch.rand(4, 8, generator=g)
    want = real["nerfacc.estimators.prop_net"]._lossfun_outer(bins, w, t_env, w_env)
    assert torch.allclose(prop_net._lossfun_outer(bins, w, t_env, w_env), want)
    # bins ending before the envelope starts overlap none of it (nerfacc: the first envelope bin)
    late = t_env + 0.5
    loss = prop_net._lossfun_outer(bins, w, late, w_env)
    before = bins[:, 1:] < late[:, :1]
    assert torch.allclose(loss[before], (w**2 / (w + torch.finfo(w.dtype).eps))[before])
    assert math.isfinite(float(loss.sum()))
