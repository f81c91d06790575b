"""rfkernels.compat.tcnn's non-hash encodings against formulas derived here (tcnn cannot run on this
machine): spherical harmonics (closed forms of bands 0-2, orthonormality up to degree 8 by exact
quadrature), Frequency, TriangleWave, OneBlob (kernel mass per bin by quadrature), Identity,
Composite (slices, alignment padding, reductions), dense grids, and the padding inside
NetworkWithInputEncoding."""

import math

import numpy as np
import pytest
import torch

from rfkernels.compat import tcnn
from rfkernels.compat.tcnn_encodings import make_encoding
from tests.helpers.numerics import assert_close

pytestmark = pytest.mark.usefixtures("one_thread")


def _directions(n, gen, dtype=torch.float64):
    d = torch.randn(n, 3, generator=gen, dtype=dtype)
    return d / d.norm(dim=1, keepdim=True)


def test_spherical_harmonics_low_bands_closed_form():
    """Bands 0-2 written out (Condon-Shortley phase, m = -l..l); input = (d + 1) / 2."""
    d = _directions(64, torch.Generator().manual_seed(0))
    x, y, z = d.unbind(1)
    c0, c1 = 0.5 / math.sqrt(math.pi), math.sqrt(3 / (4 * math.pi))
    c2, c20, c22 = math.sqrt(15 / (4 * math.pi)), math.sqrt(5 / (16 * math.pi)), math.sqrt(15 / (16 * math.pi))
    expected = torch.stack(
        [
            torch.full_like(x, c0),
            -c1 * y,
            c1 * z,
            -c1 * x,
            c2 * x * y,
            -c2 * y * z,
            c20 * (3 * z * z - 1),
            -c2 * x * z,
            c22 * (x * x - y * y),
        ],
        1,
    )
    got = make_encoding(3, {"otype": "SphericalHarmonics", "degree": 3})((d + 1) / 2, torch.empty(0))
    assert_close(got, expected, atol=1e-12, name="SH degree 3")
    enc = tcnn.Encoding(3, {"otype": "SphericalHarmonics", "degree": 3})
    assert enc.n_output_dims == 9 and enc.params.numel() == 0
    assert_close(enc(((d + 1) / 2).float()), expected, atol=1e-6, name="tcnn.Encoding SH")


def test_spherical_harmonics_orthonormal_up_to_degree_8():
    """Gram matrix over the sphere by Gauss-Legendre in z (16 nodes: exact to z^31) times 32 equal
    steps in phi (exact to order 31): the identity, so every normalisation is right."""
    nodes, weights = np.polynomial.legendre.leggauss(16)
    zs, wz = torch.from_numpy(nodes), torch.from_numpy(weights)
    phi = torch.arange(32, dtype=torch.float64) * (2 * math.pi / 32)
    z, p = torch.meshgrid(zs, phi, indexing="ij")
    r = torch.sqrt(1 - z * z)
    d = torch.stack([r * torch.cos(p), r * torch.sin(p), z], -1).reshape(-1, 3)
    w = (wz[:, None] * (2 * math.pi / 32)).expand_as(z).reshape(-1)
    sh = make_encoding(3, {"otype": "SphericalHarmonics", "degree": 8})((d + 1) / 2, torch.empty(0))
    assert sh.shape == (d.shape[0], 64)
    gram = sh.t() @ (sh * w[:, None])
    assert_close(gram, torch.eye(64, dtype=torch.float64), atol=1e-10, name="SH Gram matrix")
    north = make_encoding(3, {"otype": "SphericalHarmonics", "degree": 8})(
        torch.tensor([[0.5, 0.5, 1.0]], dtype=torch.float64), torch.empty(0)
    )[0]
    for band in range(8):  # Y_l^0(north pole) = sqrt((2l+1)/(4pi)); every m != 0 vanishes there
        row = north[band * band : (band + 1) ** 2]
        assert abs(row[band] - math.sqrt((2 * band + 1) / (4 * math.pi))) < 1e-12
        assert float(row.abs().sum() - row[band].abs()) < 1e-12


def test_spherical_harmonics_gradient_and_errors():
    x = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    spec = make_encoding(3, {"otype": "SphericalHarmonics", "degree": 5})
    assert torch.autograd.gradcheck(lambda v: spec(v, torch.empty(0)), (x,))
    with pytest.raises(ValueError, match="degree"):
        make_encoding(3, {"otype": "SphericalHarmonics", "degree": 9})
    with pytest.raises(ValueError, match="n_input_dims"):
        make_encoding(2, {"otype": "SphericalHarmonics"})


def test_frequency_and_triangle_wave():
    x = torch.rand(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    freq = make_encoding(2, {"otype": "Frequency", "n_frequencies": 3})(x, torch.empty(0))
    expected = []
    for d in range(2):
        for k in range(3):
            expected += [torch.sin(2**k * math.pi * x[:, d]), torch.cos(2**k * math.pi * x[:, d])]
    assert_close(freq, torch.stack(expected, 1), atol=1e-12, name="Frequency")
    tri = make_encoding(2, {"otype": "TriangleWave", "n_frequencies": 4})(x, torch.empty(0))
    # a unit-period triangle wave, 1 at integers and -1 at half-integers: (2/pi) asin(cos(2 pi u))
    u = torch.stack([x[:, d] * 2.0 ** (k - 1) + k / 4 for d in range(2) for k in range(4)], 1)
    assert_close(tri, 2 / math.pi * torch.asin(torch.cos(2 * math.pi * u)), atol=1e-7, name="TriangleWave")


def test_one_blob_is_the_wrapped_kernel_mass_per_bin():
    n_bins, x = 8, torch.tensor([[0.03], [0.5], [0.61], [0.97]], dtype=torch.float64)
    got = make_encoding(1, {"otype": "OneBlob", "n_bins": n_bins})(x, torch.empty(0))
    assert_close(got.sum(1), torch.ones(4, dtype=torch.float64), atol=1e-12, name="OneBlob mass")
    t = (torch.arange(64000, dtype=torch.float64) + 0.5) / 64000  # midpoints over [0, 1]
    dist = torch.remainder(t - x + 0.5, 1.0) - 0.5  # wrapped distance to the centre
    u = dist * n_bins
    density = 15 / 16 * (1 - u * u).clamp(min=0) ** 2 * n_bins
    expected = (density / 64000).reshape(4, n_bins, -1).sum(-1)
    assert_close(got, expected, atol=1e-6, name="OneBlob bins")
    with pytest.raises(ValueError, match="n_bins"):
        make_encoding(1, {"otype": "OneBlob", "n_bins": 6})
    assert make_encoding(3, {}).n_output_dims == 48  # tcnn's default: OneBlob, 16 bins


def test_identity_and_padding():
    x = torch.rand(6, 3)
    enc = tcnn.Encoding(3, {"otype": "Identity", "scale": 2.0, "offset": -1.0})
    assert_close(enc(x), 2 * x - 1, atol=1e-7, name="Identity")
    padded = make_encoding(3, {"otype": "Identity"}, alignment=16)
    assert padded.padded_output_dims == 16
    assert torch.equal(padded(x, torch.empty(0))[:, 3:], torch.ones(6, 13))
    sh = make_encoding(3, {"otype": "SphericalHarmonics", "degree": 3}, alignment=16)
    out = sh(x, torch.empty(0))
    assert torch.equal(out[:, :7], torch.ones(6, 7))  # spherical harmonics pad in front
    assert_close(out[:, 7:], make_encoding(3, {"otype": "SphericalHarmonics", "degree": 3})(x, None), atol=0)


GRID = {"otype": "HashGrid", "n_levels": 2, "n_features_per_level": 2, "log2_hashmap_size": 8, "base_resolution": 4}


def test_composite_slices_alignment_and_reductions():
    cfg = {
        "otype": "Composite",
        "nested": [
            {"otype": "Identity", "n_dims_to_encode": 3},
            {**GRID, "n_dims_to_encode": 2},
            {"otype": "Frequency", "n_frequencies": 2},  # the remaining dimension
        ],
    }
    enc = tcnn.Encoding(6, cfg, seed=3)
    grid = tcnn.Encoding(2, {k: v for k, v in GRID.items()}, seed=3)
    assert enc.params.numel() == grid.params.numel()
    with torch.no_grad():
        grid.params.copy_(torch.randn_like(grid.params))
        enc.params.copy_(grid.params)
    x = torch.rand(9, 6)
    out = enc(x)
    # Identity 3 -> padded with one 1 so the grid (2 features per level) starts at column 4
    assert enc.n_output_dims == out.shape[1] == 4 + 4 + 4
    assert_close(out[:, :3], x[:, :3], atol=0, name="identity part")
    assert torch.equal(out[:, 3], torch.ones(9))
    assert_close(out[:, 4:8], grid(x[:, 3:5]), atol=1e-6, name="grid part")
    assert_close(out[:, 8:], make_encoding(1, cfg["nested"][2])(x[:, 5:], None), atol=1e-6, name="freq part")
    summed = {"otype": "Composite", "reduction": "Sum", "nested": [{"otype": "Identity", "n_dims_to_encode": 2}] * 2}
    y = torch.rand(4, 4)
    assert_close(tcnn.Encoding(4, summed)(y), y[:, :2] + y[:, 2:], atol=1e-7, name="Sum reduction")
    nrc = make_encoding(10, {"otype": "NRC", "n_frequencies": 3, "n_bins": 4})
    assert nrc.n_output_dims == 3 * 3 + 5 * 4 + 2
    with pytest.raises(ValueError, match="n_dims_to_encode"):
        make_encoding(4, {"otype": "Composite", "nested": [{"otype": "Identity"}, {"otype": "Frequency"}]})
    with pytest.raises(ValueError, match="nested"):
        make_encoding(4, {"otype": "Composite"})


def test_dense_grid_is_bilinear_interpolation_of_its_table():
    cfg = {"otype": "DenseGrid", "n_levels": 1, "n_features_per_level": 1, "base_resolution": 4}
    enc = tcnn.Encoding(2, cfg)
    assert enc.params.numel() == 16  # 4 x 4 vertices, x fastest
    with torch.no_grad():
        enc.params.copy_(torch.randn(16))
    x = torch.rand(30, 2, generator=torch.Generator().manual_seed(2))
    table = enc.params.detach()
    p = x * 3 + 0.5  # tcnn: scale = base_resolution - 1 cells per unit, vertices offset by half a cell
    i, f = p.floor().long(), p - p.floor()

    def vertex(dx, dy):  # row-major index x + 4 y, wrapped by the table size as tcnn's grid_index
        return table[(i[:, 0] + dx + 4 * (i[:, 1] + dy)) % 16]

    fx, fy = f[:, 0], f[:, 1]
    expected = (vertex(0, 0) * (1 - fx) + vertex(1, 0) * fx) * (1 - fy) + (
        vertex(0, 1) * (1 - fx) + vertex(1, 1) * fx
    ) * fy
    assert_close(enc(x)[:, 0], expected, atol=1e-6, name="dense grid")
    tiled = {**cfg, "otype": "Grid", "type": "Tiled", "n_levels": 3, "per_level_scale": 2.0}
    with pytest.raises(ValueError, match="type"):
        tcnn.Encoding(2, tiled)


def test_network_with_spherical_harmonics_input():
    """tcnn pads the encoding (SH: ones in front) to 16 and the network reads the padded width."""
    mlp = {"otype": "FullyFusedMLP", "n_neurons": 64, "n_hidden_layers": 1, "activation": "ReLU"}
    m = tcnn.NetworkWithInputEncoding(3, 4, {"otype": "SphericalHarmonics", "degree": 3}, mlp, seed=2)
    assert m.params.numel() == 64 * 16 + 16 * 64
    x = torch.rand(10, 3)
    sh = tcnn.Encoding(3, {"otype": "SphericalHarmonics", "degree": 3})(x)
    w0 = m.params.detach()[: 64 * 16].view(64, 16)
    w1 = m.params.detach()[64 * 16 :].view(16, 64)
    feats = torch.cat([torch.ones(10, 7), sh], 1)
    assert_close(m(x), (torch.relu(feats @ w0.t()) @ w1.t())[:, :4], atol=1e-5, name="NWIE(SH)")


def test_unknown_encoding_names_itself():
    with pytest.raises(ValueError, match="'Fourier'"):
        tcnn.Encoding(3, {"otype": "Fourier"})
    with pytest.raises(ValueError, match="'Wavelet'"):
        tcnn.NetworkWithInputEncoding(3, 1, {"otype": "Wavelet"}, {"otype": "CutlassMLP"})
