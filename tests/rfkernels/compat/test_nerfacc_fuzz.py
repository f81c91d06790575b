"""Differential fuzzing (hypothesis) of the nerfacc compat layer against real nerfacc 0.5.3, on the
padded paths whose nerfacc Python runs on the CPU (render_weight_from_density/_alpha,
accumulate_along_rays, the four scans), and of its refusals: inputs broken one way at a time give a
``ValueError`` naming a nerfacc argument, never a torch internal.

Derandomized by default (the same draws every run, as tests/rfkernels/test_fuzz.py);
``RFK_FUZZ_RANDOM=1 RFK_FUZZ_EXAMPLES=1000`` for a campaign on fresh draws.
"""

import os
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfkernels.compat import nerfacc as ours
from tests.helpers.numerics import assert_close
from tests.helpers.peers import real_nerfacc

pytestmark = pytest.mark.usefixtures("one_thread")

FUZZ = settings(
    max_examples=int(os.environ.get("RFK_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("RFK_FUZZ_RANDOM", "0") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NERFACC_ARGS = {
    "t_starts",
    "t_ends",
    "sigmas",
    "alphas",
    "weights",
    "values",
    "ray_indices",
    "n_rays",
    "packed_info",
    "prefix_trans",
    "inputs",
}


@pytest.fixture(scope="module")
def nf():
    return real_nerfacc()[0]


@st.composite
def padded_rays(draw):
    """float64 ``t_starts, t_ends, sigmas, alphas, values`` for ``R x S`` rays (0 and 1 included)."""
    R, S, D = draw(st.integers(0, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    deltas = torch.rand(R, S, generator=g, dtype=torch.float64) * draw(st.sampled_from([1e-3, 1.0, 10.0]))
    t_ends = deltas.cumsum(-1)
    sigmas = torch.rand(R, S, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.0, 1.0, 100.0]))
    alphas = torch.rand(R, S, generator=g, dtype=torch.float64)
    return t_ends - deltas, t_ends, sigmas, alphas, torch.randn(R, S, D, generator=g, dtype=torch.float64)


@FUZZ
@given(padded_rays(), st.booleans())
def test_padded_paths_agree_with_nerfacc(nf, rays, with_prefix):
    t0, t1, sigmas, alphas, values = rays
    prefix = torch.rand_like(sigmas) if with_prefix else None
    for a, e in zip(
        ours.render_weight_from_density(t0, t1, sigmas, prefix_trans=prefix),
        nf.render_weight_from_density(t0, t1, sigmas, prefix_trans=prefix),
    ):
        assert_close(a, e, rtol=1e-5, atol=1e-6)
    for a, e in zip(
        ours.render_weight_from_alpha(alphas, prefix_trans=prefix),
        nf.render_weight_from_alpha(alphas, prefix_trans=prefix),
    ):
        assert_close(a, e, rtol=1e-10, atol=1e-12)
    assert_close(
        ours.accumulate_along_rays(alphas, values), nf.accumulate_along_rays(alphas, values), rtol=1e-10, atol=1e-12
    )
    for name in ("inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"):
        assert_close(getattr(ours, name)(values[..., 0]), getattr(nf, name)(values[..., 0]), rtol=1e-10, atol=1e-12)


def _flat(draw):
    """A valid packed batch: ``weights [N]``, sorted ``ray_indices [N]``, ``n_rays``."""
    n_rays = draw(st.integers(1, 4))
    ids = sorted(draw(st.lists(st.integers(0, n_rays - 1), min_size=1, max_size=8)))
    return torch.rand(len(ids), dtype=torch.float64), torch.tensor(ids), n_rays


BREAKS = [
    "float ids",
    "negative id",
    "id >= n_rays",
    "short ids",
    "long ids",
    "0-d weights",
    "unsorted ids",
    "bad n_rays",
    "prefix shape",
    "packed_info float",
    "packed_info gap",
    "packed_info negative",
    "packed_info shape",
]


@st.composite
def broken_call(draw):
    """One valid packed call with exactly one argument broken; returns (description, thunk)."""
    w, ids, n_rays = _flat(draw)
    how = draw(st.sampled_from(BREAKS))
    pi = ours.pack_info(ids, n_rays)
    prefix = None
    if how == "float ids":
        ids = ids.float()
    elif how == "negative id":
        ids = ids.clone()
        ids[0] = -draw(st.integers(1, 3))
    elif how == "id >= n_rays":
        ids = ids.clone()
        ids[-1] = n_rays + draw(st.integers(0, 3))
    elif how == "short ids":
        ids = ids[:-1]
    elif how == "long ids":
        ids = torch.cat([ids, ids[-1:]])
    elif how == "0-d weights":
        w = w[0]
    elif how == "unsorted ids":
        ids = torch.cat([ids + 1, ids.new_zeros(1)])  # a ray-0 sample after the others
        w = torch.rand(ids.shape[0], dtype=torch.float64)
        n_rays = max(n_rays, int(ids.max()) + 1)
    elif how == "bad n_rays":
        n_rays = draw(st.sampled_from([-1, True, 2.5]))
    elif how == "prefix shape":
        prefix = torch.ones(w.shape[0] + draw(st.integers(1, 3)), dtype=w.dtype)
    elif how == "packed_info float":
        pi = pi.double()
    elif how == "packed_info gap":
        pi = pi.clone()
        pi[-1, 0] += draw(st.integers(1, 3))
    elif how == "packed_info negative":
        pi = torch.cat([pi, pi.new_tensor([[w.shape[0], -1]])])
    else:
        pi = pi[:, :1]
    fn = draw(st.sampled_from(["accumulate", "weight_from_alpha", "weight_from_density", "scan", "pack_info"]))
    uses_pi = how.startswith("packed_info")
    if fn == "accumulate" and not uses_pi and how not in ("unsorted ids", "prefix shape"):
        return how, lambda: ours.accumulate_along_rays(w, None, ids, n_rays)
    if fn == "pack_info" and how in ("float ids", "negative id", "unsorted ids", "bad n_rays", "id >= n_rays"):
        return how, lambda: ours.pack_info(ids, n_rays)
    if how != "prefix shape" and (fn == "scan" or (uses_pi and fn != "weight_from_density")):
        return how, lambda: ours.exclusive_prod(w, pi if uses_pi else ours.pack_info(ids, n_rays))
    if fn == "weight_from_density":
        kw = {"packed_info": pi} if uses_pi else {"ray_indices": ids, "n_rays": n_rays}
        t = w if w.dim() else w[None]
        return how, lambda: ours.render_weight_from_density(t * 0, t, w, prefix_trans=prefix, **kw)
    kw = {"packed_info": pi} if uses_pi else {"ray_indices": ids, "n_rays": n_rays}
    return how, lambda: ours.render_weight_from_alpha(w, prefix_trans=prefix, **kw)


@FUZZ
@given(broken_call())
def test_broken_input_names_a_nerfacc_argument(case):
    how, call = case
    with pytest.raises(ValueError) as info:
        call()
    named = set(re.findall(r"`([\w.]+)`", str(info.value)))
    assert named & NERFACC_ARGS, f"{how}: {info.value!r} names no nerfacc argument"
