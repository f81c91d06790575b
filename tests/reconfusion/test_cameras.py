"""Cameras, ray generation (both conventions, hand-computed), NDC and contraction round trips."""

import math

import pytest
import torch

from reconfusion import cameras
from reconfusion.field.contraction import contract, contract_scale, to_unit_cube, uncontract
from reconfusion.rays import (
    camera_directions,
    generate_rays,
    image_rays,
    ndc_rays,
    ndc_to_world,
    pixel_centers,
    world_to_ndc,
)

INTR = torch.tensor([2.0, 4.0, 1.5, 1.0])  # fx, fy, cx, cy of a 3x2 image


def rot_y(deg):
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def pose(rot, center):
    m = torch.eye(4)
    m[:3, :3], m[:3, 3] = rot, torch.tensor(center)
    return m


def test_pixel_centers():
    x, y = pixel_centers(2, 3)
    assert x.tolist() == [[0.5, 1.5, 2.5]] * 2
    assert y.tolist() == [[0.5] * 3, [1.5] * 3]


def test_camera_directions_by_hand():
    # pixel (row 0, col 0): centre (0.5, 0.5); u = (0.5 - 1.5)/2 = -0.5, v = (0.5 - 1)/4 = -0.125
    d_gl = camera_directions(torch.tensor(0.5), torch.tensor(0.5), INTR, "opengl")
    d_cv = camera_directions(torch.tensor(0.5), torch.tensor(0.5), INTR, "opencv")
    assert d_gl.tolist() == [-0.5, 0.125, -1.0]
    assert d_cv.tolist() == [-0.5, -0.125, 1.0]
    with pytest.raises(ValueError, match="convention"):
        camera_directions(torch.tensor(0.5), torch.tensor(0.5), INTR, "blender-ish")


def test_generate_rays_by_hand_both_conventions():
    # OpenGL camera at (1, 2, 3) turned 90 deg about +y: its -z (forward) axis points to world -x.
    c2w_gl = pose(rot_y(90), [1.0, 2.0, 3.0])
    o, d = generate_rays(c2w_gl, INTR, torch.tensor(1.5), torch.tensor(1.0), "opengl")  # principal point
    assert torch.allclose(o, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(d, torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)
    # pixel (0, 0): camera dir (-0.5, 0.125, -1) -> world: x_cam -> -z_world, z_cam -> +x_world
    o, d = generate_rays(c2w_gl, INTR, torch.tensor(0.5), torch.tensor(0.5), "opengl")
    assert torch.allclose(d, torch.tensor([-1.0, 0.125, 0.5]), atol=1e-6)
    # the same physical camera written in OpenCV axes gives the same world ray
    c2w_cv = cameras.opengl_to_opencv(c2w_gl)
    o2, d2 = generate_rays(c2w_cv, INTR, torch.tensor(0.5), torch.tensor(0.5), "opencv")
    assert torch.allclose(o, o2) and torch.allclose(d, d2, atol=1e-6)


def test_convention_conversion_is_involution():
    c2w = pose(rot_y(30), [0.5, -1.0, 2.0])
    cv = cameras.convert(c2w, "opengl", "opencv")
    assert torch.allclose(cv[:3, 3], c2w[:3, 3])
    assert torch.allclose(cv[:3, 1], -c2w[:3, 1]) and torch.allclose(cv[:3, 2], -c2w[:3, 2])
    assert torch.allclose(cameras.convert(cv, "opencv", "opengl"), c2w)
    with pytest.raises(ValueError, match="convention"):
        cameras.convert(c2w, "colmap", "opengl")


def test_llff_to_opengl():
    down, right, back = torch.tensor([0.0, -1, 0]), torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, 1])
    llff = torch.stack([down, right, back, torch.tensor([1.0, 2, 3])], dim=-1)  # [3, 4]
    gl = cameras.llff_to_opengl(llff)
    assert torch.equal(gl, torch.eye(4)[:3] + torch.tensor([[0, 0, 0, 1.0], [0, 0, 0, 2], [0, 0, 0, 3]]))


def test_image_rays_shape_and_center():
    c2w = torch.eye(4)
    intr = torch.tensor([10.0, 10.0, 2.0, 1.5])
    o, d = image_rays(c2w, intr, 3, 4)
    assert o.shape == d.shape == (3, 4, 3)
    # pixel centres straddle the principal point symmetrically
    assert torch.allclose(d[..., :2].mean((0, 1)), torch.zeros(2), atol=1e-6)


def test_recenter_and_normalize():
    torch.manual_seed(0)
    c2w = torch.stack([pose(rot_y(a), [a / 10, 1.0, 5.0 + a / 20]) for a in (-20.0, -5.0, 10.0, 25.0)])
    rec, transform = cameras.recenter_poses(c2w)
    avg = cameras.average_pose(rec)
    assert torch.allclose(avg, torch.eye(4), atol=1e-5)
    assert torch.allclose(rec, transform @ c2w)
    norm, _, scale = cameras.normalize_poses(c2w, target_radius=1.0)
    assert math.isclose(cameras.camera_centers(norm).norm(dim=-1).max().item(), 1.0, rel_tol=1e-5)
    assert scale > 0


def test_intrinsics_scaled():
    k = cameras.Intrinsics.from_focal(400.0, 504, 378).scaled(0.25)
    assert (k.width, k.height) == (126, 94)
    assert math.isclose(k.fx, 100.0) and math.isclose(k.fy, 400.0 * 94 / 378)
    assert torch.equal(k.matrix()[2], torch.tensor([0.0, 0.0, 1.0]))


def test_ndc_round_trip_and_rays():
    intr, W, H = torch.tensor([50.0, 50.0, 32.0, 24.0]), 64, 48
    torch.manual_seed(0)
    pts = torch.randn(100, 3) * torch.tensor([1.0, 1.0, 0.2]) + torch.tensor([0.0, 0.0, -3.0])
    assert torch.allclose(ndc_to_world(world_to_ndc(pts, intr, W, H), intr, W, H), pts, atol=1e-4)
    # a world ray maps to a straight NDC ray: o_ndc at z=-1 (near plane), t=1 at infinity (z=+1)
    o = torch.tensor([[0.1, -0.2, 0.0]])
    d = torch.tensor([[0.2, 0.1, -1.0]])
    o_n, d_n = ndc_rays(o, d, intr, W, H, near=1.0)
    assert math.isclose(o_n[0, 2].item(), -1.0, abs_tol=1e-6)
    assert math.isclose((o_n + d_n)[0, 2].item(), 1.0, abs_tol=1e-6)
    for t in (0.0, 0.3, 0.7, 0.95):
        w = ndc_to_world(o_n + t * d_n, intr, W, H)
        rel = w - o
        assert torch.allclose(torch.cross(rel, d, dim=-1), torch.zeros(1, 3), atol=1e-4)  # on the world ray


def test_contraction_round_trip_and_scale():
    torch.manual_seed(0)
    x = torch.randn(500, 3) * 3.0
    y = contract(x)
    assert bool((y.norm(dim=-1) < 2.0).all())
    inside = x.norm(dim=-1) <= 1
    assert torch.equal(y[inside], x[inside])
    assert torch.allclose(uncontract(y), x, rtol=1e-4, atol=1e-4)
    # contract_scale == det(Jacobian)^(1/3), checked with autograd at a point outside the ball
    p = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(contract, p)
    assert math.isclose(contract_scale(p).item(), torch.linalg.det(jac).item() ** (1 / 3), rel_tol=1e-6)
    assert contract_scale(torch.tensor([0.1, 0.2, 0.3])).item() == 1.0


def test_to_unit_cube_spaces():
    x = torch.tensor([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    u, s = to_unit_cube(x, "contract")
    assert torch.allclose(u[0], torch.full((3,), 0.5)) and u[1, 0] > 0.99
    u, s = to_unit_cube(torch.tensor([[-1.5, 0.0, 1.5]]), "box", torch.tensor([[-1.5] * 3, [1.5] * 3]))
    assert torch.allclose(u, torch.tensor([[0.0, 0.5, 1.0]])) and math.isclose(s.item(), 1 / 3, rel_tol=1e-6)
    u, _ = to_unit_cube(torch.tensor([[0.0, 0.0, -1.0]]), "ndc")
    assert torch.allclose(u, torch.tensor([[0.5, 0.5, 0.0]]))
    with pytest.raises(ValueError, match="space"):
        to_unit_cube(x, "sphere")
