"""The examples/ trainer (nerfacc-style proposal NeRF with tcnn fields on lego) runs a few steps
with the real nerfacc and with rfkernels.compat.nerfacc, and the losses agree.

On the CPU, nerfacc's two CUDA-only kernels used by ``PropNetEstimator`` (``importance_sampling``,
``searchsorted``) are replaced in the real nerfacc's estimator by the compat ones (tested against a
transcription of nerfacc's kernel in test_compat_nerfacc.py); everything else on that run (the
estimator's Python, its transmittance and loss, ``rendering``) is nerfacc's own. With CUDA nothing
is replaced (and sampling is not stratified, as the random streams differ). Both runs use the
tcnn-free compat fields (tiny-cuda-nn cannot be installed here)."""

import importlib
import os
import sys

import pytest
import torch

from rfkernels.compat import nerfacc as compat_nerfacc
from tests.helpers.backends import DEVICE
from tests.helpers.paths import EXAMPLES, SHARED_DATA

sys.path.insert(0, str(EXAMPLES))
example = importlib.import_module("nerfacc_prop_lego")

# $RECONFUSION_DATA/lego or ../shared/data/lego beside the checkout; git worktrees of this machine
# live one level deeper, so also look two levels up
_TWO_UP = str(SHARED_DATA / "lego")
LEGO = example.default_data() or (_TWO_UP if os.path.isfile(os.path.join(_TWO_UP, "transforms_train.json")) else None)


@pytest.mark.skipif(LEGO is None, reason="Blender lego not found (set RECONFUSION_DATA)")
def test_example_losses_match_real_nerfacc(monkeypatch):
    from tests.helpers.peers import real_nerfacc as _real_nerfacc

    real, _ = _real_nerfacc()
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = example.load_lego(LEGO, size=25, n_views=20, device=DEVICE)
        kw = dict(
            steps=8,
            n_rays=96,
            prop_samples=(16, 8),
            num_samples=8,
            n_levels=4,
            device=DEVICE,
            stratified=DEVICE.type == "cpu",
        )
        monkeypatch.setattr(example, "nerfacc", compat_nerfacc)
        ours = example.train(data, **kw)
        if DEVICE.type == "cpu":
            monkeypatch.setattr(real.estimators.prop_net, "importance_sampling", compat_nerfacc.importance_sampling)
            monkeypatch.setattr(real.estimators.prop_net, "searchsorted", compat_nerfacc.searchsorted)
        monkeypatch.setattr(example, "nerfacc", real)
        theirs = example.train(data, **kw)
    finally:
        torch.set_num_threads(n)
    assert len(ours) == len(theirs) == 8
    assert all(0.0 < x < 1.0 for x in ours)
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(theirs), rtol=1e-3, atol=1e-5)
