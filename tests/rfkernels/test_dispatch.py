"""The implementation registry (rfkernels._dispatch) and the package's import graph."""

import types

import pytest
import torch

import rfkernels
from rfkernels import _dispatch
from tests.helpers.paths import ROOT  # noqa: E402

FAMILIES = tuple(_dispatch.families())


# ----------------------------------------------------------------------------------------- registry
def test_every_family_registers_three_backends():
    for fam in FAMILIES:
        assert _dispatch.implementation(fam, "torch", torch.zeros(1)) is not None
        entry = _dispatch._FAMILIES[fam]
        assert set(entry.backends) == {"triton", "cuda"}, fam


def test_unknown_names_raise():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="backend must be one of"):
        _dispatch.implementation("volrend", "cdua", x)  # no silent fallback to cuda
    with pytest.raises(ValueError, match="unknown op family 'volrender'"):
        _dispatch.implementation("volrender", "torch", x)
    with pytest.raises(ValueError, match="backend must be one of"):
        rfkernels.distortion_loss(torch.rand(2, 3), torch.zeros(2, 3), torch.ones(2, 3), backend="Torch")
    with pytest.raises(ValueError, match="fused backends are"):
        _dispatch.register("volrend", "torch", object(), override=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_unavailable_backend_message_unchanged():
    with pytest.raises(rfkernels.BackendUnavailableError, match="backend='cuda' is unavailable: .*CUDA tensors"):
        _dispatch.implementation("volrend", "cuda", torch.zeros(1))


class _CountingVolrend:
    """A stand-in volrend backend: the reference math through the VolrendKernels contract."""

    def __init__(self):
        import tests.rfkernels.volrend.cuda_host as host  # same signatures as the CUDA backend

        self.host, self.calls = host, []

    def __getattr__(self, name):
        fn = getattr(self.host, name)
        return lambda *a: self.calls.append(name) or fn(*a)


def test_registered_plugs_in_and_restores():
    from tests.helpers import cuda_host

    if cuda_host.nvcc_missing_reason():
        pytest.skip("needs nvcc for the host emulation")
    before = _dispatch._FAMILIES["volrend"].backends["cuda"]
    fake = _CountingVolrend()
    x = torch.rand(4, 5, requires_grad=True)
    ts = torch.linspace(0, 1, 6).expand(4, 6)
    with pytest.raises(ValueError, match="override=True"):
        _dispatch.register("volrend", "cuda", fake)
    with _dispatch.registered("volrend", "cuda", fake, available=lambda d: None):
        out = rfkernels.render_weights(x, ts[:, :-1], ts[:, 1:], backend="cuda")[0]
        out.sum().backward()
    assert fake.calls == ["composite_forward", "composite_backward"]
    assert _dispatch._FAMILIES["volrend"].backends["cuda"] is before
    ref = rfkernels.render_weights(x, ts[:, :-1], ts[:, 1:], backend="torch")[0]
    torch.testing.assert_close(out, ref)


def test_contract_is_checked_on_first_use():
    broken = types.SimpleNamespace(composite_forward=None)  # lacks the other three functions
    with _dispatch.registered("volrend", "cuda", broken, available=lambda d: None):
        with pytest.raises(TypeError, match="VolrendKernels: missing .*composite_backward"):
            _dispatch.implementation("volrend", "cuda", torch.zeros(1))


def test_version_spelled_once():
    import importlib.metadata as md

    text = (ROOT / "setup.py").read_text()
    assert '"0.1.0"' not in text and "_version.py" in text
    assert rfkernels.__version__ == rfkernels.info()["rfkernels"]
    try:
        installed = md.version("rfkernels")
    except md.PackageNotFoundError:
        installed = None
    assert installed in (None, rfkernels.__version__)


# ----------------------------------------------------------------------------------- scoped default
def test_use_backend_scopes_nest_and_restore():
    before = rfkernels.get_backend()
    with rfkernels.use_backend("torch"):
        assert rfkernels.get_backend() == "torch"
        with rfkernels.use_backend(None):  # None keeps the current choice
            assert rfkernels.get_backend() == "torch"
        with pytest.raises(ValueError, match="backend must be one of"):
            with rfkernels.use_backend("tpu"):
                pass
        assert rfkernels.get_backend() == "torch"
    assert rfkernels.get_backend() == before


def test_use_backend_reaches_ops_called_without_a_backend(monkeypatch):
    """An op called with backend=None resolves through the scope (what reconfusion's loop relies on)."""
    seen = []
    real = _dispatch.resolve_backend

    def spy(backend, *tensors, family=None):
        name = real(backend, *tensors, family=family)
        seen.append((family, name))
        return name

    monkeypatch.setattr(_dispatch, "resolve_backend", spy)
    sig, t = torch.rand(2, 4), torch.linspace(0, 1, 5).expand(2, 5)
    with rfkernels.use_backend("torch"):
        rfkernels.render_weights(sig, t[:, :-1], t[:, 1:])
    assert seen and all(name == "torch" for _, name in seen)
    if _dispatch.triton_unavailable_reason(torch.device("cpu")) is None:
        seen.clear()
        with rfkernels.use_backend("triton"):
            rfkernels.render_weights(sig, t[:, :-1], t[:, 1:])
        assert seen and all(name == "triton" for _, name in seen)
