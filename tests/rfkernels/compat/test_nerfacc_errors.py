"""Bad input to the nerfacc compat layer: a ValueError naming the nerfacc argument, raised before
any rfkernels op or torch internal sees it. Where real nerfacc's Python runs on the CPU and raises,
it must raise too (we only say it more clearly)."""

import math

import pytest
import torch

from rfkernels.compat import nerfacc as ours
from rfkernels.compat.nerfacc.data_specs import RayIntervals
from tests.helpers.peers import real_nerfacc

pytestmark = pytest.mark.usefixtures("one_thread")

W4 = torch.rand(4, generator=torch.Generator().manual_seed(0))
IDS = torch.tensor([0, 0, 1, 1])
L = torch.linspace(0.0, 1.0, 5)[None]

# (case id, call on a nerfacc module (ours or the real one), argument named, real nerfacc runs it on the CPU)
CASES = [
    ("acc float ray_indices", lambda nf: nf.accumulate_along_rays(W4, None, IDS.float(), 2), "ray_indices", True),
    (
        "acc negative ray_indices",
        lambda nf: nf.accumulate_along_rays(W4, None, torch.tensor([0, 0, -1, 1]), 2),
        "ray_indices",
        True,
    ),
    (
        "acc ray_indices >= n_rays",
        lambda nf: nf.accumulate_along_rays(W4, None, torch.tensor([0, 0, 5, 1]), 2),
        "ray_indices",
        True,
    ),
    ("acc ray_indices length", lambda nf: nf.accumulate_along_rays(W4, None, IDS[:3], 2), "ray_indices", True),
    (
        "acc 0-d weights",
        lambda nf: nf.accumulate_along_rays(torch.tensor(1.0), None, torch.tensor(0), 2),
        "weights",
        True,
    ),
    ("acc n_rays negative", lambda nf: nf.accumulate_along_rays(W4, None, IDS, -1), "n_rays", True),
    ("pack_info float", lambda nf: nf.pack_info(IDS.float()), "ray_indices", False),
    ("pack_info negative", lambda nf: nf.pack_info(torch.tensor([0, 0, -1])), "ray_indices", False),
    ("pack_info unsorted", lambda nf: nf.pack_info(torch.tensor([1, 0, 1])), "ray_indices", False),
    ("pack_info 0-d", lambda nf: nf.pack_info(torch.tensor(0)), "ray_indices", False),
    (
        "weight_from_density prefix_trans",
        lambda nf: nf.render_weight_from_density(
            torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2, 3), prefix_trans=torch.ones(5)
        ),
        "prefix_trans",
        True,
    ),
    (
        "weight_from_alpha prefix_trans",
        lambda nf: nf.render_weight_from_alpha(torch.rand(2, 3), prefix_trans=torch.ones(5)),
        "prefix_trans",
        True,
    ),
    ("weight_from_alpha 0-d", lambda nf: nf.render_weight_from_alpha(torch.tensor(0.5)), "alphas", True),
    (
        "weight_from_density ray_indices length",
        lambda nf: nf.render_weight_from_density(
            torch.zeros(3), torch.ones(3), torch.ones(3), ray_indices=torch.tensor([0, 1]), n_rays=2
        ),
        "ray_indices",
        False,
    ),
    (
        "weight_from_density ray_indices out of range",
        lambda nf: nf.render_weight_from_density(
            torch.zeros(3), torch.ones(3), torch.ones(3), ray_indices=torch.tensor([0, 1, 7]), n_rays=2
        ),
        "ray_indices",
        False,
    ),
    ("exclusive_sum 0-d", lambda nf: nf.exclusive_sum(torch.tensor(0.5)), "inputs", True),
    (
        "exclusive_sum packed_info overlapping",
        lambda nf: nf.exclusive_sum(torch.rand(4), torch.tensor([[0, 2], [1, 2]])),
        "packed_info",
        False,
    ),
    (
        "exclusive_sum packed_info float",
        lambda nf: nf.exclusive_sum(torch.rand(4), torch.tensor([[0.0, 2.0], [2.0, 2.0]])),
        "packed_info",
        False,
    ),
    (
        "exclusive_sum packed_info negative count",
        lambda nf: nf.exclusive_sum(torch.rand(4), torch.tensor([[0, 2], [2, -1], [1, 3]])),
        "packed_info",
        False,
    ),
    (
        "exclusive_prod packed_info past the end",
        lambda nf: nf.exclusive_prod(torch.rand(4), torch.tensor([[0, 2], [2, 5]])),
        "packed_info",
        False,
    ),
    (
        "importance_sampling decreasing cdfs",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L), L.flip(-1), 4),
        "cdfs",
        False,
    ),
    (
        "importance_sampling NaN cdfs",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L), L * math.nan, 4),
        "cdfs",
        False,
    ),
    (
        "importance_sampling float n",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L), L, 4.5),
        "n_intervals_per_ray",
        False,
    ),
    (
        "importance_sampling float n tensor",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L), L, torch.tensor([4.0])),
        "n_intervals_per_ray",
        False,
    ),
    (
        "importance_sampling decreasing edges",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L.flip(-1)), L, 4),
        "intervals.vals",
        False,
    ),
    (
        "importance_sampling inf edges",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L / 0), L, 4),
        "intervals.vals",
        False,
    ),
    (
        "importance_sampling bad packed_info",
        lambda nf: nf.importance_sampling(RayIntervals(vals=L[0], packed_info=torch.tensor([[0, 3]])), L[0], 4),
        "intervals.packed_info",
        False,
    ),
]


@pytest.mark.parametrize("call,argument", [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_nerfacc_argument(call, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        call(ours)


@pytest.mark.parametrize("call", [c[1] for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]])
def test_real_nerfacc_refuses_them_too(call):
    """Where nerfacc's own Python runs on the CPU, it raises on the same inputs (less clearly)."""
    nf = real_nerfacc()[0]
    with pytest.raises(Exception):
        call(nf)


def _sigma_fn(t0, t1):
    return torch.ones_like(t0)


@pytest.mark.parametrize(
    "near,far,kind,argument",
    [
        (0.0, 1.0, "lindisp", "near_plane"),
        (0.0, math.inf, "uniform", "far_plane"),
        (-math.inf, 1.0, "uniform", "near_plane"),
        (math.nan, 1.0, "lindisp", "near_plane"),
        (2.0, 1.0, "uniform", "far_plane"),
        (0.1, 1.0, "log", "sampling_type"),
    ],
)
def test_prop_net_planes_checked_up_front(near, far, kind, argument):
    called = []
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ours.PropNetEstimator().sampling(
            [lambda a, b: called.append(1) or _sigma_fn(a, b)],
            [8],
            4,
            3,
            near_plane=near,
            far_plane=far,
            sampling_type=kind,
        )
    assert not called, "the proposal network ran before the planes were checked"


@pytest.mark.parametrize("near,far,kind", [(0.1, math.inf, "lindisp"), (0.0, 1.0, "uniform")])
def test_prop_net_valid_planes_give_finite_intervals(near, far, kind):
    t0, t1 = ours.PropNetEstimator().sampling(
        [_sigma_fn], [8], 4, 3, near_plane=near, far_plane=far, sampling_type=kind
    )
    assert t0.shape == (3, 4) and bool(t0.isfinite().all()) and bool((t1 >= t0).all())


@pytest.mark.parametrize("bad", ["shape", "dtype"])
def test_rendering_names_rgbs_not_the_inner_ops_colors(bad):
    """A bad ``rgbs`` from the user's rgb_sigma_fn is reported under nerfacc's name, before volume_render."""
    from rfkernels.compat import nerfacc as ours

    t0 = torch.linspace(0, 1, 9)[:-1].repeat(2, 1)
    t1 = t0 + 0.125

    def rgb_sigma_fn(ts, te, ray_indices):
        rgb = torch.rand(2, 7, 3) if bad == "shape" else torch.randint(0, 2, (2, 8, 3))
        return rgb, torch.rand(2, 8)

    with pytest.raises(ValueError, match="rgbs must be") as info:
        ours.rendering(t0, t1, rgb_sigma_fn=rgb_sigma_fn)
    assert "colors" not in str(info.value)
