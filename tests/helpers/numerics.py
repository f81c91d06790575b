"""Float64 closeness checks whose messages name the tensor and the worst error."""


def assert_close(actual, expected, atol=1e-5, rtol=1e-4, name=""):
    """allclose in float64 with a message naming the tensor and the worst error."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    err = (a - e).abs()
    tol = atol + rtol * e.abs()
    assert bool((err <= tol).all()), f"{name}: max abs err {err.max().item():.3g} (tol atol={atol} rtol={rtol})"


def assert_close_scaled(actual, expected, rel=2e-4, name=""):
    """Error bounded relative to the tensor's largest entry: the right check for float32 gradients
    that are sums of cancelling terms (e.g. suffix sums computed as total - prefix), whose rounding
    error scales with the magnitude of the whole ray, not of the entry."""
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    assert_close(actual, expected, atol=rel * scale + 1e-6, rtol=rel, name=name)
