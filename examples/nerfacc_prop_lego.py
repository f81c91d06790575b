"""A nerfacc-style proposal-network NeRF with tcnn hash-grid fields, on Blender lego.

Written the way nerfacc's ``examples/train_ngp_nerf_prop.py`` users write it: ``PropNetEstimator``
samples along rays, ``nerfacc.rendering`` composites, tiny-cuda-nn modules are the fields. The
backend is chosen by ONE import line (marked ``<- the backend switch`` below):

    import nerfacc; import tinycudann as tcnn           # the originals (CUDA)
    from rfkernels.compat import nerfacc, tcnn          # rfkernels: any device, CPU included

(or keep the original line and call ``rfkernels.compat.install()`` / set ``RFKERNELS_COMPAT=1``).
Differences from nerfacc's example: the view direction goes to the colour MLP as raw
``(d + 1) / 2`` (the compat layer has no spherical-harmonics encoding), and the scene is read at
a reduced resolution. Run: ``python examples/nerfacc_prop_lego.py --steps 2000 --device cuda``
(on the CPU, ``--steps 101 --size 50 --rays 256`` reaches a loss of about 0.01, PSNR ~20).
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch
from PIL import Image

from rfkernels.compat import nerfacc, tcnn  # <- the backend switch (see the docstring)


def default_data() -> str | None:
    """``$RECONFUSION_DATA/lego``, else ``../shared/data/lego`` beside the checkout, if present."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = os.environ.get("RECONFUSION_DATA")
    for cand in ([os.path.join(env, "lego")] if env else []) + [
        os.path.join(os.path.dirname(root), "shared", "data", "lego")
    ]:
        if os.path.isfile(os.path.join(cand, "transforms_train.json")):
            return cand
    return None


# ------------------------------------------------------------------------------------------ data
def load_lego(root: str, size: int = 50, n_views: int = 100, device="cpu"):
    """Blender train split -> (images [V, H, W, 3] on white, c2w [V, 4, 4], focal) at ``size`` px."""
    with open(os.path.join(root, "transforms_train.json")) as f:
        meta = json.load(f)
    frames = meta["frames"][:n_views]
    imgs = []
    for fr in frames:
        im = Image.open(os.path.join(root, fr["file_path"] + ".png")).convert("RGBA").resize((size, size), Image.BOX)
        rgba = np.asarray(im, dtype=np.float32) / 255.0
        imgs.append(rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:]))  # composite on white
    c2w = torch.tensor(np.stack([fr["transform_matrix"] for fr in frames]), dtype=torch.float32)
    focal = 0.5 * size / math.tan(0.5 * meta["camera_angle_x"])
    return torch.tensor(np.stack(imgs), device=device), c2w.to(device), focal


def sample_rays(images, c2w, focal, n_rays, generator):
    """Random pixels of random views -> origins, unit directions [n_rays, 3], target rgb."""
    V, H, W, _ = images.shape
    dev = images.device
    v = torch.randint(0, V, (n_rays,), generator=generator).to(dev)
    y = torch.randint(0, H, (n_rays,), generator=generator).to(dev)
    x = torch.randint(0, W, (n_rays,), generator=generator).to(dev)
    cam = torch.stack(
        [(x + 0.5 - W / 2) / focal, -(y + 0.5 - H / 2) / focal, -torch.ones_like(x, dtype=torch.float32)], -1
    )
    d = (c2w[v, :3, :3] @ cam[..., None])[..., 0]
    return c2w[v, :3, 3], d / d.norm(dim=-1, keepdim=True), images[v, y, x]


# ----------------------------------------------------------------------------------------- model
AABB = 1.5  # lego fits in [-1.5, 1.5]^3


def grid_config(n_levels=8, log2_size=14, max_res=256):
    return {
        "otype": "HashGrid",
        "n_levels": n_levels,
        "n_features_per_level": 2,
        "log2_hashmap_size": log2_size,
        "base_resolution": 16,
        "per_level_scale": math.exp(math.log(max_res / 16) / max(n_levels - 1, 1)),
    }


MLP = {
    "otype": "FullyFusedMLP",
    "activation": "ReLU",
    "output_activation": "None",
    "n_neurons": 64,
    "n_hidden_layers": 1,
}


def _to_unit(x):
    return ((x + AABB) / (2 * AABB)).clamp(0.0, 1.0)


class ProposalField(torch.nn.Module):
    """Density-only hash-grid field (nerfacc's proposal networks)."""

    def __init__(self, n_levels=5, log2_size=12, max_res=128):
        super().__init__()
        self.net = tcnn.NetworkWithInputEncoding(3, 1, grid_config(n_levels, log2_size, max_res), MLP)

    def density(self, x):
        return torch.nn.functional.softplus(self.net(_to_unit(x).reshape(-1, 3)).float() - 1.0).reshape(x.shape[:-1])


class RadianceField(torch.nn.Module):
    """Hash-grid density + geometry features, then a colour MLP on (features, direction)."""

    def __init__(self, n_levels=8, log2_size=14, max_res=256):
        super().__init__()
        self.base = tcnn.NetworkWithInputEncoding(3, 16, grid_config(n_levels, log2_size, max_res), MLP)
        self.head = tcnn.Network(16 + 3, 3, {**MLP, "n_hidden_layers": 2, "output_activation": "Sigmoid"})

    def forward(self, x, d):
        h = self.base(_to_unit(x).reshape(-1, 3)).float()
        sigma = torch.nn.functional.softplus(h[:, 0] - 1.0)
        rgb = self.head(torch.cat([h, (d.reshape(-1, 3) + 1) / 2], -1)).float()
        return rgb.reshape(*x.shape[:-1], 3), sigma.reshape(x.shape[:-1])


# -------------------------------------------------------------------------------------- training
def train(
    data,
    steps=10,
    n_rays=256,
    prop_samples=(32, 16),
    num_samples=16,
    near=2.0,
    far=6.0,
    lr=1e-2,
    seed=0,
    device="cpu",
    log_every=0,
    n_levels=8,
    stratified=True,
):
    """Train for ``steps``; returns the per-step photometric losses (floats). ``n_levels``: hash-grid
    levels of the field (the proposals get ``max(n_levels - 3, 2)``)."""
    torch.manual_seed(seed)
    images, c2w, focal = data
    n_prop = max(n_levels - 3, 2)
    props = torch.nn.ModuleList([ProposalField(n_prop, 12, 128), ProposalField(n_prop, 12, 256)]).to(device)
    field = RadianceField(n_levels).to(device)
    prop_opt = torch.optim.Adam(props.parameters(), lr=lr, eps=1e-15)
    estimator = nerfacc.PropNetEstimator(prop_opt).to(device)
    opt = torch.optim.Adam(field.parameters(), lr=lr, eps=1e-15)
    requires_grad_fn = nerfacc.estimators.prop_net.get_proposal_requires_grad_fn()
    gen = torch.Generator().manual_seed(seed)
    bkgd = torch.ones(3, device=device)
    losses = []
    for step in range(steps):
        origins, dirs, target = sample_rays(images, c2w, focal, n_rays, gen)

        def prop_sigma_fn(t_starts, t_ends, prop):
            x = origins[:, None] + dirs[:, None] * ((t_starts + t_ends) / 2)[..., None]
            return prop.density(x)

        def rgb_sigma_fn(t_starts, t_ends, ray_indices):
            x = origins[:, None] + dirs[:, None] * ((t_starts + t_ends) / 2)[..., None]
            return field(x, dirs[:, None].expand_as(x))

        proposal_requires_grad = requires_grad_fn(step)
        t_starts, t_ends = estimator.sampling(
            prop_sigma_fns=[lambda s, e, p=p: prop_sigma_fn(s, e, p) for p in props],
            prop_samples=list(prop_samples),
            num_samples=num_samples,
            n_rays=n_rays,
            near_plane=near,
            far_plane=far,
            sampling_type="lindisp",
            stratified=stratified,
            requires_grad=proposal_requires_grad,
        )
        rgb, opacity, depth, extras = nerfacc.rendering(
            t_starts, t_ends, ray_indices=None, n_rays=None, rgb_sigma_fn=rgb_sigma_fn, render_bkgd=bkgd
        )
        estimator.update_every_n_steps(extras["trans"], proposal_requires_grad, loss_scaler=1024)
        loss = torch.nn.functional.mse_loss(rgb, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            print(f"step {step:5d}  loss {loss.item():.5f}  psnr {-10 * math.log10(max(loss.item(), 1e-10)):.2f}")
    return losses


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=default_data(), help="Blender lego folder (transforms_train.json)")
    p.add_argument("--size", type=int, default=100, help="image side in pixels (lego ships at 200)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--rays", type=int, default=1024)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    if a.data is None:
        p.error("lego not found: pass --data or set RECONFUSION_DATA")
    data = load_lego(a.data, a.size, device=a.device)
    losses = train(data, steps=a.steps, n_rays=a.rays, device=a.device, log_every=50)
    print(f"final loss {losses[-1]:.5f}")


if __name__ == "__main__":
    main()
