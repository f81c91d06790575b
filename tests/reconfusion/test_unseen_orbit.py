"""Unseen cameras around an object: they orbit the training cameras' focus point instead of cutting
through the object on the straight segment between two far-apart cameras."""

import math

import torch

from reconfusion.data.scene import select_views
from reconfusion.unseen import between_poses, orbit_center, unseen_patches
from tests.helpers.recon_scenes import boxes_scene, ring_poses


def test_orbit_centre_of_a_ring_is_its_focus_point():
    c2w = ring_poses(3)  # looking at the origin from 120 degrees apart
    torch.testing.assert_close(orbit_center(c2w), torch.zeros(3), atol=1e-5, rtol=0)


def test_no_orbit_centre_for_parallel_or_single_cameras():
    parallel = torch.eye(4).repeat(3, 1, 1)
    parallel[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0])
    assert orbit_center(parallel) is None
    assert orbit_center(ring_poses(1)) is None


def test_orbiting_cameras_keep_their_distance_and_stay_between_the_two():
    c2w = ring_poses(3)  # radius 4, 25 deg elevation: the chord between two cameras passes 2.48 from the centre
    g = torch.Generator().manual_seed(1)
    poses, src = between_poses(c2w, 300, g, center=torch.zeros(3))
    torch.testing.assert_close(poses[:, :3, 3].norm(dim=-1), torch.full((300,), 4.0), atol=1e-4, rtol=0)
    rot = poses[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(300, 3, 3), atol=1e-5, rtol=0)
    # the centre's azimuth lies between the start camera's and its neighbour's (120 degrees apart)
    ang = lambda u, v: torch.rad2deg(torch.acos((u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))))  # noqa: E731
    from_src = ang(poses[:, :3, 3], c2w[src, :3, 3])
    assert bool((from_src <= 120.0 + 1e-3).all()) and float(from_src.max()) > 100.0
    # the same draws without a centre: along the straight chord they come within 2.6 of the object
    g = torch.Generator().manual_seed(1)
    linear, _ = between_poses(c2w, 300, g)
    assert float(linear[:, :3, 3].norm(dim=-1).min()) < 2.6


def test_unseen_patches_orbit_outside_ndc():
    scene = select_views(boxes_scene(n_views=3, size=16), train_ids=[0, 1, 2], test_ids=[])
    ids = torch.tensor(scene.train_ids)
    rays = unseen_patches(scene, scene.c2w[ids], scene.intrinsics[ids], 200, 2, torch.Generator().manual_seed(0))
    radius = scene.c2w[0, :3, 3].norm()
    torch.testing.assert_close(rays.origins.norm(dim=-1), radius.expand(len(rays)), atol=1e-4, rtol=0)
    assert math.isclose(float(radius), 4.0, rel_tol=1e-5)
