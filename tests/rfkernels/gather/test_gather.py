"""Feature gather: fused backends vs the grid_sample reference (values + gradients, every
reduction), camera conventions, a known camera, edge cases, float64 gradcheck, bad input."""

import pytest
import torch

import rfkernels
from rfkernels import gather_features
from rfkernels.gather import reference
from tests.helpers.gather_scenes import random_scene
from tests.helpers.numerics import assert_close, assert_close_scaled

REDUCTIONS = ["none", "mean", "mean_var", "max"]
IMAGE = (24, 30)  # the intrinsics' image; feature maps are smaller and of another aspect ratio
FEAT_HW = (6, 9)


FAMILY = "gather"  # fused_backend (conftest) also runs csrc/gather/kernels.cu on the host


def _run(backend, points, features, K, E, upstream=None, **kw):
    """-> (GatherOutput, grads of (points, features)) for a fixed random upstream gradient."""
    p = points.detach().clone().requires_grad_()
    f = features.detach().clone().requires_grad_()
    out = gather_features(p, f, K, E, backend=backend, **kw)
    if upstream is None:
        gen = torch.Generator().manual_seed(1234)
        upstream = [
            torch.randn(t.shape, generator=gen).to(t.device) for t in (out.features, out.camera_coords) if t is not None
        ]
    loss = (out.features * upstream[0]).sum()
    if out.camera_coords is not None:
        loss = loss + 0.1 * (out.camera_coords * upstream[1]).sum()
    g_p, g_f = torch.autograd.grad(loss, (p, f))
    return out, (g_p, g_f)


def _smooth_points(points, K, E, feat_hw=FEAT_HW, image=IMAGE, tol=1e-4):
    """[B, N] bool: no valid view of the point lies within ``tol`` feature pixels of a bilinear cell
    line, where d sample / d point jumps (float32 rounding may pick either side there)."""
    grid, valid = reference.project(reference.camera_coords(points, E), K, image, "opencv", 1e-4)
    H, W = feat_hw
    xy = (grid + 1) / 2 * grid.new_tensor([W, H]) - 0.5  # feature pixel coords, centres at integers
    near_line = ((xy - xy.round()).abs() < tol).any(dim=-1) & valid
    return ~near_line.any(dim=-1)


def _compare(a, b, grads_a, grads_b, smooth=None):
    """``smooth`` [B, N]: points whose gradient is compared (default: all)."""
    assert a.features.shape == b.features.shape
    assert torch.equal(a.mask, b.mask), f"{(a.mask != b.mask).sum().item()} mask entries differ"
    assert_close(a.features, b.features, atol=2e-5, name="features")
    if b.camera_coords is not None:
        assert_close(a.camera_coords, b.camera_coords, atol=1e-5, name="camera_coords")
    keep = (lambda g: g[smooth]) if smooth is not None else (lambda g: g)  # noqa: E731
    assert_close_scaled(keep(grads_a[0]), keep(grads_b[0]), rel=1e-4, name="grad_points")
    assert_close_scaled(grads_a[1], grads_b[1], rel=1e-4, name="grad_features")


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("C", [1, 16, 64])
@pytest.mark.parametrize("V", [1, 3, pytest.param(9, marks=pytest.mark.slow)])  # V=9: 5-15 s each interpreted
def test_matches_reference(fused_backend, device, seed, reduce, C, V):
    points, features, K, E = random_scene(2, 37, V, C, *FEAT_HW, IMAGE, device)
    kw = dict(image_size=IMAGE, reduce=reduce, return_camera_coords=True)
    ref, ref_g = _run("torch", points, features, K, E, **kw)
    fus, fus_g = _run(fused_backend, points, features, K, E, **kw)
    assert 0 < ref.mask.sum() < ref.mask.numel()  # the scene has valid and invalid views
    _compare(fus, ref, fus_g, ref_g, _smooth_points(points, K, E))


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_opengl_convention_and_4x4(backend, fused_backend, device, seed):
    be = fused_backend if backend == "fused" else "torch"
    points, features, K, E = random_scene(1, 29, 3, 4, *FEAT_HW, IMAGE, device)
    flip = torch.tensor([1.0, -1.0, -1.0], device=device)
    E_gl = E * flip[:, None]  # same cameras: opengl camera space = (x, -y, -z) of opencv's
    E44 = torch.cat([E_gl, torch.tensor([0.0, 0.0, 0.0, 1.0], device=device).expand(1, 3, 1, 4)], dim=2)
    kw = dict(image_size=IMAGE, reduce="mean_var", return_camera_coords=True, backend=be)
    cv = gather_features(points, features, K, E, **kw)
    gl = gather_features(points, features, K, E44, convention="opengl", **kw)
    assert torch.equal(cv.mask, gl.mask)
    assert_close(gl.features, cv.features, atol=2e-5, name="features")
    assert_close(gl.camera_coords, cv.camera_coords * flip, atol=1e-5, name="camera_coords")


def _known_camera(device, f=16.0, image=(24, 32)):
    """Identity extrinsics, fx = fy = f, principal point at the image centre."""
    H_img, W_img = image
    K = torch.tensor([[f, 0.0, W_img / 2], [0.0, f, H_img / 2], [0.0, 0.0, 1.0]], device=device).expand(1, 1, 3, 3)
    E = torch.eye(4, device=device)[:3].expand(1, 1, 3, 4)
    return K.contiguous(), E.contiguous()


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_known_camera_geometry(backend, fused_backend, device):
    be = fused_backend if backend == "fused" else "torch"
    H, W = 6, 8  # feature map; the image is (24, 32): 4 image pixels per feature pixel
    features = torch.arange(H * W, dtype=torch.float32, device=device).view(1, 1, 1, H, W)
    K, E = _known_camera(device)
    pts = torch.tensor(
        [
            [
                [0.0, 0.0, 3.0],  # optical axis -> principal point (image centre) = corner of 4 feature pixels
                [-14.0 / 16, -10.0 / 16, 1.0],  # u = 2, v = 2: centre of feature pixel (0, 0)
                [1.0, 0.0, 1.0],  # u = 32 = W_img: right image edge, still valid, half zero-padded
                [1.01, 0.0, 1.0],  # just outside the image
                [0.0, 0.0, -2.0],  # behind the camera
                [0.0, 0.0, 1e-5],  # in front but closer than near_eps
            ]
        ],
        device=device,
    )
    out = gather_features(pts, features, K, E, image_size=(24, 32), backend=be, return_camera_coords=True)
    f = features[0, 0, 0]
    centre = (f[2, 3] + f[2, 4] + f[3, 3] + f[3, 4]) / 4
    expected = torch.stack([centre, f[0, 0], 0.5 * (f[2, 7] + f[3, 7]) / 2, *torch.zeros(3, device=device)])
    assert out.mask[0, :, 0].tolist() == [True, True, True, False, False, False]
    assert_close(out.features[0, :, 0, 0], expected, atol=1e-5, name="features")
    assert_close(out.camera_coords[0, :, 0], pts[0], atol=0, name="camera_coords")  # identity extrinsics


def test_reference_equals_grid_sample_at_projected_pixels(device, seed):
    """The documented formula: grid = (2u/W_img - 1, 2v/H_img - 1) with (u, v) = K x / z."""
    points, features, K, E = random_scene(1, 40, 2, 3, *FEAT_HW, IMAGE, device)
    out = gather_features(points, features, K, E, image_size=IMAGE, backend="torch")
    cam = torch.einsum("vij,nj->nvi", E[0, :, :, :3], points[0]) + E[0, :, :, 3]
    uv = torch.einsum("vij,nvj->nvi", K[0], cam)
    u, v = uv[..., 0] / uv[..., 2], uv[..., 1] / uv[..., 2]
    for view in range(2):
        for n in range(40):
            if not out.mask[0, n, view]:
                continue
            g = torch.stack([2 * u[n, view] / IMAGE[1] - 1, 2 * v[n, view] / IMAGE[0] - 1]).view(1, 1, 1, 2)
            want = torch.nn.functional.grid_sample(features[0, view : view + 1], g, align_corners=False)
            assert_close(out.features[0, n, view], want.view(-1), atol=1e-5, name="sample")


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_no_valid_view_gives_zeros(fused_backend, device, reduce):
    points, features, K, E = random_scene(1, 5, 3, 4, *FEAT_HW, IMAGE, device)
    for be in ("torch", fused_backend):  # every point is closer than the near plane of every camera
        out, (g_p, g_f) = _run(be, points, features, K, E, image_size=IMAGE, reduce=reduce, near_eps=1e3)
        assert not out.mask.any()
        assert not out.features.any() and not g_p.any() and not g_f.any()


def test_camera_coords_only_gradient(fused_backend, device, seed):
    points, features, K, E = random_scene(1, 11, 3, 2, *FEAT_HW, IMAGE, device)
    grads = []
    for be in ("torch", fused_backend):
        p = points.clone().requires_grad_()
        out = gather_features(p, features, K, E, image_size=IMAGE, return_camera_coords=True, backend=be)
        grads.append(torch.autograd.grad(out.camera_coords.square().sum(), p)[0])
    assert_close(grads[1], grads[0], atol=1e-4, name="grad_points")


def test_empty_points_and_noncontiguous_inputs(fused_backend, device, seed):
    points, features, K, E = random_scene(2, 0, 3, 5, *FEAT_HW, IMAGE, device)
    for be in ("torch", fused_backend):
        out = gather_features(points, features, K, E, image_size=IMAGE, reduce="mean_var", backend=be)
        assert out.features.shape == (2, 0, 10) and out.mask.shape == (2, 0, 3)
    points, features, K, E = random_scene(2, 13, 3, 5, *FEAT_HW, IMAGE, device)
    pts_nc = points.transpose(1, 2).contiguous().transpose(1, 2)  # same values, strided
    feat_nc = features.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    K_nc = K.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert not (pts_nc.is_contiguous() or feat_nc.is_contiguous() or K_nc.is_contiguous())
    ref, ref_g = _run("torch", points, features, K, E, image_size=IMAGE, reduce="none")
    fus, fus_g = _run(fused_backend, pts_nc, feat_nc, K_nc, E, image_size=IMAGE, reduce="none")
    _compare(fus, ref, fus_g, ref_g, _smooth_points(points, K, E))


def test_float64_inputs_keep_dtype(fused_backend, device, seed):
    points, features, K, E = random_scene(1, 17, 3, 4, *FEAT_HW, IMAGE, device, dtype=torch.float64)
    ref = gather_features(points, features, K, E, image_size=IMAGE, reduce="mean", backend="torch")
    fus = gather_features(points, features, K, E, image_size=IMAGE, reduce="mean", backend=fused_backend)
    assert fus.features.dtype == torch.float64
    assert_close(fus.features, ref.features, atol=2e-5, name="features")


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_reference_gradcheck_float64(reduce):
    """On the CPU (deterministic grid_sample backward; the reference is device-agnostic)."""
    torch.manual_seed(0)
    points, features, K, E = random_scene(1, 6, 3, 2, 4, 5, (8, 10), "cpu", dtype=torch.float64, box=0.6)
    points.requires_grad_()
    features.requires_grad_()

    def fn(p, f):
        out = gather_features(p, f, K, E, image_size=(8, 10), reduce=reduce, return_camera_coords=True, backend="torch")
        return out.features, out.camera_coords

    assert torch.autograd.gradcheck(fn, (points, features), eps=1e-6, atol=1e-5, fast_mode=True)


def test_auto_backend_on_cpu_is_torch(device):
    points, features, K, E = random_scene(1, 4, 2, 3, *FEAT_HW, IMAGE, device)
    a = gather_features(points, features, K, E, image_size=IMAGE, reduce="max", backend="auto")
    b = gather_features(points, features, K, E, image_size=IMAGE, reduce="max", backend="torch")
    assert torch.equal(a.features, b.features)


def test_bad_input_errors(device):
    points, features, K, E = random_scene(2, 5, 3, 4, *FEAT_HW, IMAGE, device)
    call = lambda **kw: gather_features(
        **{
            **dict(
                points=points,
                features=features,
                intrinsics=K,  # noqa: E731
                extrinsics=E,
                image_size=IMAGE,
            ),
            **kw,
        }
    )
    with pytest.raises(ValueError, match="`points`"):
        call(points=points[..., :2])
    with pytest.raises(ValueError, match="`points`"):
        call(points=points[:1])  # batch mismatch
    with pytest.raises(ValueError, match="`features`"):
        call(features=features[0])
    with pytest.raises(ValueError, match="`intrinsics`"):
        call(intrinsics=K[:, :2])  # V mismatch
    with pytest.raises(ValueError, match="`extrinsics`"):
        call(extrinsics=E[:, :2])
    with pytest.raises(ValueError, match="`extrinsics`"):
        call(extrinsics=E[..., :3])
    with pytest.raises(ValueError, match="singular"):
        K_bad = K.clone()
        K_bad[1, 2, 0, 0] = 0.0
        call(intrinsics=K_bad)
    with pytest.raises(ValueError, match="last row"):
        K_bad = K.clone()
        K_bad[0, 0, 2, 0] = 0.5
        call(intrinsics=K_bad)
    with pytest.raises(ValueError, match="reduce"):
        call(reduce="sum")
    with pytest.raises(ValueError, match="convention"):
        call(convention="blender")
    for bad in [(0, 10), 24, (24, 30, 1), ("a", 3)]:
        with pytest.raises(ValueError, match="image_size"):
            call(image_size=bad)
    with pytest.raises(ValueError, match="`points`"):
        call(points=points.long())
    with pytest.raises(ValueError, match="backend"):
        call(backend="numpy")


def test_fused_refuses_camera_gradients(fused_backend, device):
    points, features, K, E = random_scene(1, 5, 2, 4, *FEAT_HW, IMAGE, device)
    with pytest.raises(ValueError, match="extrinsics"):
        gather_features(points, features, K, E.requires_grad_(), image_size=IMAGE, backend=fused_backend)


def test_triton_refuses_cpu_without_interpreter(device, monkeypatch):
    if device.type != "cpu":
        pytest.skip("CPU-only check")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    points, features, K, E = random_scene(1, 3, 1, 2, *FEAT_HW, IMAGE, device)
    with pytest.raises(rfkernels.BackendUnavailableError):
        gather_features(points, features, K, E, backend="triton")


def test_many_channels_span_channel_blocks(fused_backend, device, seed):
    """C = 150 > the Triton channel block (128): several programs per point, atomics for d/dpoints."""
    points, features, K, E = random_scene(1, 9, 2, 150, *FEAT_HW, IMAGE, device)
    for reduce in ("none", "mean_var"):
        kw = dict(image_size=IMAGE, reduce=reduce, return_camera_coords=True)
        ref, ref_g = _run("torch", points, features, K, E, **kw)
        fus, fus_g = _run(fused_backend, points, features, K, E, **kw)
        _compare(fus, ref, fus_g, ref_g, _smooth_points(points, K, E))


@pytest.mark.parametrize("reduce", ["none", "mean_var"])
def test_deterministic_fixed_point_backward(fused_backend, device, seed, reduce, monkeypatch):
    """deterministic=True: int64 fixed-point feature gradient, equal to the reference within float
    rounding and bitwise identical between runs; deterministic=None follows torch's global flag."""
    from rfkernels.gather import ops

    points, features, K, E = random_scene(2, 37, 3, 16, *FEAT_HW, IMAGE, device)
    kw = dict(image_size=IMAGE, reduce=reduce, return_camera_coords=True)
    ref, ref_g = _run("torch", points, features, K, E, **kw)
    runs = [_run(fused_backend, points, features, K, E, deterministic=True, **kw) for _ in range(2)]
    _compare(runs[0][0], ref, runs[0][1], ref_g, _smooth_points(points, K, E))
    assert torch.equal(runs[0][1][1], runs[1][1][1]) and torch.equal(runs[0][1][0], runs[1][1][0])
    calls = []
    real = ops.fixed_point_scale
    monkeypatch.setattr(ops, "fixed_point_scale", lambda *a: calls.append(1) or real(*a))
    _run(fused_backend, points, features, K, E, **kw)
    assert not calls
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        _run(fused_backend, points, features, K, E, **kw)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert calls


def test_fixed_point_scale_bounds_the_sum():
    from rfkernels.gather import fixed_point_scale

    g = torch.randn(2, 5, 8) * 1e-6
    feats = torch.randn(1, 2, 3, 3, 4)
    for reduce in ("mean", "mean_var"):
        scale = fixed_point_scale(g, feats, reduce)
        k = torch.log2(scale)
        assert scale.shape == (1,) and k == k.round()  # a power of two
        bound = (
            g.abs().sum()
            if reduce == "mean"
            else g[..., :4].abs().sum() + 4 * g[..., 4:].abs().sum() * feats.abs().max()
        )
        assert bound * scale.double() <= 2.0**61 and bound * scale.double() > 2.0**59
    assert torch.isfinite(fixed_point_scale(torch.zeros(3, 4), feats, "none")).all()
