"""Occupancy-grid marching: the reference against independent checks (point lookups of every step,
all-occupied / empty grids, planes, limits and resumption), every fused backend against the
reference bit for bit, edge cases, bad input."""

import math

import numpy as np
import pytest
import torch

from rfkernels import _dispatch, ray_aabb_intersect, traverse_grids
from rfkernels.occgrid import contract, ops
from tests.helpers.backends import DEVICE
from tests.helpers.occ_scenes import nested_aabbs, random_binaries, random_rays

FAMILY = "occgrid"  # fused_backend (conftest) also runs csrc/occgrid/kernels.cu on the host
pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _scene(seed, n_rays=8, levels=2, res=(6, 5, 4), p=0.4):
    g = _gen(seed)
    o, d = random_rays(n_rays, g, device=DEVICE)
    return o, d, random_binaries(levels, res, p, g, device=DEVICE), nested_aabbs(levels, device=DEVICE)


def _step_starts(near, n, step, cone=0.0):
    """The first n step starts from ``near`` with the float32 recurrence of the contract."""
    t, out = torch.tensor(near, dtype=torch.float32), []
    for _ in range(n):
        out.append(t)
        t = t + torch.clamp(t * cone, min=step, max=1e10)
    return torch.stack(out)


def _point_lookup(x, binaries, aabbs):
    """Occupancy at points [N, 3] from the innermost level containing them (float64), and the distance
    to the nearest cell plane of any level in cell units (small: the DDA may decide either way)."""
    x = x.double()
    occ = torch.zeros(x.shape[0], dtype=torch.bool)
    margin = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    res = torch.tensor(binaries.shape[1:], dtype=torch.float64)
    for lvl in range(aabbs.shape[0]):
        lo, hi = aabbs[lvl, :3].double(), aabbs[lvl, 3:].double()
        u = (x - lo) / (hi - lo) * res
        inside = ~done & ((u >= 0) & (u < res)).all(-1)
        idx = u.floor().long().clamp(min=0).minimum(res.long() - 1)
        occ = torch.where(inside, binaries[lvl][idx[:, 0], idx[:, 1], idx[:, 2]], occ)
        margin = torch.minimum(margin, (u - u.round()).abs().amin(-1))
        done |= inside
    return occ, margin


# --------------------------------------------------------------------------- intersections
def test_intersect_hits_contain_midpoints():
    g = _gen(1)
    o = torch.rand(200, 3, generator=g)
    d = torch.randn(200, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    lo = torch.rand(30, 3, generator=g)
    boxes = torch.cat([lo, lo + torch.rand(30, 3, generator=g) + 0.05], -1)
    t_mins, t_maxs, hits = ray_aabb_intersect(o, d, boxes, backend="torch")
    mid = ((t_mins + t_maxs) / 2).clamp(min=0)
    p = o[:, None] + mid[..., None] * d[:, None]
    inside = ((p >= boxes[:, :3] - 1e-5) & (p <= boxes[:, 3:] + 1e-5)).all(-1)
    assert torch.equal(hits, inside)
    assert bool((t_mins[~hits] == math.inf).all() and (t_maxs[hits] > 0).all())
    tn, tf, _ = ray_aabb_intersect(o, d, boxes, near_plane=0.2, far_plane=0.9, miss_value=-1.0, backend="torch")
    assert bool((tn[hits] >= 0.2).all() and (tf[hits] <= 0.9).all() and (tn[~hits] == -1).all())


def test_intersect_fused_matches_reference(fused_backend):
    g = _gen(2)
    o, d = random_rays(50, g, device=DEVICE)
    d[:5, 0] = 0.0  # axis-parallel rays
    boxes = nested_aabbs(3, device=DEVICE)
    for near, far, miss in ((-math.inf, math.inf, math.inf), (0.5, 3.0, -7.0)):
        want = ray_aabb_intersect(o, d, boxes, near, far, miss, backend="torch")
        got = ray_aabb_intersect(o, d, boxes, near, far, miss, backend=fused_backend)
        for a, b in zip(got, want):
            assert torch.equal(a.cpu(), b.cpu())


# --------------------------------------------------------------------- the reference, checked
def test_reference_every_step_by_point_lookup():
    """Each step of the march, classified by an independent float64 point lookup of its midpoint,
    is an interval iff its cell is occupied (steps within 1e-3 cell of a plane may go either way)."""
    o, d, binaries, aabbs = _scene(3, n_rays=12, levels=3, res=(8, 8, 8), p=0.5)
    step = 0.05
    out = traverse_grids(o, d, binaries, aabbs, step_size=step, backend="torch")
    for r in range(o.shape[0]):
        t = _step_starts(0.0, int(out.terminate_planes[r] / step) + 2, step)
        t = t[t < out.terminate_planes[r]]
        mid = t + step * 0.5
        occ, margin = _point_lookup(o[r].cpu() + mid[:, None] * d[r].cpu(), binaries.cpu(), aabbs.cpu())
        a, b = out.offsets[r], out.offsets[r + 1]
        emitted = torch.isin(t, out.t_starts[a:b].cpu())
        sure = margin > 1e-3
        assert torch.equal(emitted[sure], occ[sure]), f"ray {r}"


def test_reference_full_and_empty_grids():
    o, d, binaries, aabbs = _scene(4, n_rays=16, levels=1, res=(4, 4, 4))
    near = torch.full((16,), 0.3, device=DEVICE)
    step = 0.07
    full = traverse_grids(o, d, torch.ones_like(binaries), aabbs, near_planes=near, step_size=step, backend="torch")
    t_min, t_max, hit = ray_aabb_intersect(o, d, aabbs, backend="torch")
    for r in range(16):
        a, b = full.offsets[r], full.offsets[r + 1]
        if not hit[r, 0] or t_max[r, 0] <= 0.3 + step:
            continue
        ts, te = full.t_starts[a:b], full.t_ends[a:b]
        assert torch.equal(ts[1:], te[:-1]), "an all-occupied grid gives contiguous intervals"
        mids = (ts + te) / 2
        assert mids[0] >= max(t_min[r, 0], 0.3) and mids[0] - step < max(t_min[r, 0], 0.3)
        assert mids[-1] < t_max[r, 0] <= mids[-1] + step + 1e-6
    empty = traverse_grids(o, d, torch.zeros_like(binaries), aabbs, near_planes=near, step_size=step, backend="torch")
    assert empty.t_starts.numel() == 0 and torch.equal(empty.offsets, torch.zeros_like(empty.offsets))
    # an empty grid still marches to the end of the box: the terminate plane is the first step past it
    through = hit[:, 0] & (t_max[:, 0] > 0.3)
    assert bool((empty.terminate_planes[through] >= t_max[through, 0] - step / 2).all())


def test_reference_planes_cone_and_misses():
    o, d, binaries, aabbs = _scene(5, n_rays=24, levels=2, res=(5, 5, 5), p=0.7)
    o[0] = torch.tensor([5.0, 5.0, 5.0])  # points away from every box: misses
    d[0] = torch.tensor([1.0, 0.0, 0.0])
    near = torch.rand(24, generator=_gen(6)).to(DEVICE)
    far = near + 1.5
    out = traverse_grids(o, d, binaries, aabbs, near, far, step_size=0.05, cone_angle=0.2, backend="torch")
    assert out.offsets[1] == 0 and out.terminate_planes[0] == near[0]
    mids = (out.t_starts + out.t_ends) / 2
    assert bool((mids >= near[out.ray_indices]).all() and (mids < far[out.ray_indices]).all())
    dt = torch.clamp(out.t_starts * 0.2, min=0.05)
    assert torch.equal(out.t_ends, out.t_starts + dt)
    assert bool((out.t_starts[1:] >= out.t_ends[:-1])[out.ray_indices[1:] == out.ray_indices[:-1]].all())


def test_reference_limit_resumes_exactly():
    """Marching in pieces of `traverse_steps_limit` intervals from the terminate planes gives the
    whole march, interval for interval (nerfacc's test mode)."""
    o, d, binaries, aabbs = _scene(7, n_rays=10, levels=2, res=(6, 6, 6), p=0.6)
    kw = dict(step_size=0.04, cone_angle=0.05, backend="torch")
    whole = traverse_grids(o, d, binaries, aabbs, **kw)
    pieces = [[] for _ in range(10)]
    near, mask = None, None
    for _ in range(50):
        part = traverse_grids(o, d, binaries, aabbs, near_planes=near, rays_mask=mask, traverse_steps_limit=7, **kw)
        for r in range(10):
            pieces[r].append(part.t_starts[part.offsets[r] : part.offsets[r + 1]])
        mask = (part.offsets[1:] - part.offsets[:-1]) == 7
        near = part.terminate_planes
        if not bool(mask.any()):
            break
    for r in range(10):
        assert torch.equal(torch.cat(pieces[r]), whole.t_starts[whole.offsets[r] : whole.offsets[r + 1]]), f"ray {r}"


def test_reference_edge_cases():
    aabbs = nested_aabbs(1, device=DEVICE)
    binaries = torch.ones(1, 3, 3, 3, dtype=torch.bool, device=DEVICE)
    o = torch.tensor([[0.0, 0.0, 0.0], [-2.0, 0.1, 0.1], [-2.0, 1.5, 0.0]], device=DEVICE)  # inside, axis ray, miss
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], device=DEVICE)
    out = traverse_grids(o, d, binaries, aabbs, step_size=0.25, backend="torch")
    assert out.offsets.tolist() == [0, 4, 12, 12]  # from t=0 to the face at 1; 8 steps across 2 units
    assert out.t_starts[:4].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert out.terminate_planes[2] == 0.0
    none = traverse_grids(o[:0], d[:0], binaries, aabbs, backend="torch")
    assert none.offsets.tolist() == [0] and none.t_starts.numel() == 0


# ----------------------------------------------------------------- fused backends vs reference
def _cases(seed):
    """(scene, kwargs) pairs: levels, cone angle, per-ray planes, limit and mask."""
    g = _gen(seed)
    yield _scene(seed, levels=2, res=(4, 4, 4), p=0.6), dict(step_size=0.2)
    o, d, b, a = _scene(seed + 1, levels=3, res=(5, 4, 3), p=0.5)
    d[0, 1] = 0.0
    o[1] = 0.0
    yield (o, d, b, a), dict(step_size=0.3, cone_angle=0.1)
    near = (torch.rand(8, generator=g) * 2).to(DEVICE)
    mask = (torch.rand(8, generator=g) < 0.7).to(DEVICE)
    planes = dict(near_planes=near, far_planes=near + 2)
    yield _scene(seed + 2, p=0.7), dict(**planes, step_size=0.2, traverse_steps_limit=5, rays_mask=mask)


def test_fused_matches_reference(fused_backend):
    for (o, d, binaries, aabbs), kw in _cases(10):
        want = traverse_grids(o, d, binaries, aabbs, backend="torch", **kw)
        got = traverse_grids(o, d, binaries, aabbs, backend=fused_backend, **kw)
        for name, a, b in zip(want._fields, got, want):
            assert torch.equal(a.cpu(), b.cpu()), name


@pytest.mark.parametrize("levels, res", [(1, (1, 4, 3)), (2, (4, 1, 3)), (1, (3, 4, 1)), (2, (1, 1, 1))])
def test_fused_one_cell_wide_grids(fused_backend, levels, res):
    """Grids one cell wide along an axis (a real Triton launch would specialize a size of 1 as a
    constant: the kernel takes the sizes unspecialized)."""
    g = _gen(7)
    o, d = random_rays(16, g, device=DEVICE)
    binaries = random_binaries(levels, res, 0.6, g, device=DEVICE)
    aabbs = nested_aabbs(levels, device=DEVICE)
    want = traverse_grids(o, d, binaries, aabbs, step_size=0.1, backend="torch")
    got = traverse_grids(o, d, binaries, aabbs, step_size=0.1, backend=fused_backend)
    for name, a, b in zip(want._fields, got, want):
        assert torch.equal(a.cpu(), b.cpu()), name


def test_fused_fuzz(fused_backend, seed):
    """Fresh random scenes each run (the seed is printed on failure)."""
    g = _gen(seed)
    levels = int(torch.randint(1, 4, (1,), generator=g))
    res = tuple(int(v) for v in torch.randint(1, 6, (3,), generator=g))
    o, d = random_rays(6, g, device=DEVICE)
    d[torch.rand(6, 3, generator=g) < 0.15] = 0.0
    d[d.abs().sum(-1) == 0, 0] = 1.0
    binaries = random_binaries(levels, res, float(torch.rand(1, generator=g)), g, device=DEVICE)
    kw = dict(
        near_planes=(torch.rand(6, generator=g) * 2).to(DEVICE),
        step_size=float(torch.rand(1, generator=g)) * 0.2 + 0.05,
        cone_angle=float(torch.rand(1, generator=g) < 0.5) * 0.1,
        traverse_steps_limit=None if bool(torch.rand(1, generator=g) < 0.5) else 4,
    )
    aabbs = nested_aabbs(levels, device=DEVICE)
    want = traverse_grids(o, d, binaries, aabbs, backend="torch", **kw)
    got = traverse_grids(o, d, binaries, aabbs, backend=fused_backend, **kw)
    for name, a, b in zip(want._fields, got, want):
        assert torch.equal(a.cpu(), b.cpu()), f"{name} (seed {seed})"


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rays_o=torch.zeros(4, 2)), "rays_o"),
        (dict(rays_d=torch.full((4, 3), float("nan"))), "rays_d"),
        (dict(binaries=torch.ones(2, 3, 3, 3)), "binaries"),
        (dict(binaries=torch.ones(1, 3, 3, 3, dtype=torch.bool)), "binaries"),
        (dict(aabbs=torch.tensor([[1.0, 1, 1, -1, -1, -1]] * 2)), "aabbs"),
        (dict(near_planes=torch.tensor([0.0, math.inf, 0, 0])), "near_planes"),
        (dict(far_planes=torch.zeros(3)), "far_planes"),
        (dict(step_size=0.0), "step_size"),
        (dict(cone_angle=-0.1), "cone_angle"),
        (dict(traverse_steps_limit=0), "traverse_steps_limit"),
        (dict(rays_mask=torch.ones(4)), "rays_mask"),
    ],
)
def test_bad_input_names_the_argument(change, message):
    args = dict(
        rays_o=torch.zeros(4, 3),
        rays_d=torch.ones(4, 3),
        binaries=torch.ones(2, 3, 3, 3, dtype=torch.bool),
        aabbs=nested_aabbs(2),
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        traverse_grids(**args, backend="torch")
    with pytest.raises(ValueError, match="9 grid levels|1..8"):
        traverse_grids(torch.zeros(1, 3), torch.ones(1, 3), torch.ones(9, 1, 1, 1, dtype=torch.bool), nested_aabbs(9))


def test_registered():
    assert "occgrid" in _dispatch.families()
    assert set(_dispatch._FAMILIES["occgrid"].backends) == {"triton", "cuda"}


# ------------------------------------------------------------------------- registered operators
def test_registered_operators(fused_backend):
    """Schema, autograd registration (no gradients) and fake tensors (a dynamic interval count)."""
    o, d, binaries, aabbs = _scene(11, n_rays=3, levels=1, res=(2, 2, 2), p=0.6)
    near, far = torch.zeros(3, device=DEVICE), torch.full((3,), 9.0, device=DEVICE)
    mask = torch.ones(3, dtype=torch.bool, device=DEVICE)
    checks = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(ops.intersect, (o, d, aabbs, 0.0, 5.0, -1.0, fused_backend), test_utils=checks)
    args = (o, d, binaries, aabbs, near, far, mask, 0.5, 0.0, 0, fused_backend)
    torch.library.opcheck(ops.traverse, args, test_utils=checks)


def test_cuda_constants_match_the_contract():
    from tests.helpers.cuda_host import nvcc_missing_reason

    if nvcc_missing_reason():
        pytest.skip(nvcc_missing_reason())
    from tests.rfkernels.occgrid import cuda_host

    levels, eps, dt_max = cuda_host.constants()
    assert (levels, eps, dt_max) == (contract.MAX_LEVELS, np.float32(contract.DDA_EPS), np.float32(contract.DT_MAX))
