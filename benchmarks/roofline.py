"""The roofline of every benchmarked op: minimum traffic from the op's sizes and dtypes, and the H200
time it bounds. One function per op; the benchmark cases (``bench_<family>.py``) take their traffic
from here and nowhere else.

Three counts per call (:class:`Traffic`):

* ``hbm_bytes``: the compulsory HBM traffic: every input read once, every output written once
  (and, for a backward, the output gradients read and the input gradients written once).
  Intermediates that a fused kernel keeps on chip are not counted.
* ``l2_gathers``: data-dependent reads that hit L2 rather than streaming from HBM: one 32-byte
  sector per gathered element group (a hash-grid corner's F features, a feature-map texel's C
  channels in 32-byte sectors). Their working set (a hash table level, a 64x64 feature map) is
  assumed L2-resident, which makes the count a lower bound on time, not on bytes.
* ``atomics``: accumulating reductions into gathered locations (the backward of a gather); the
  minimum is one vector reduction per 32-byte sector touched (paired ``f16x2``/``float2`` atomics:
  one per hash-grid corner), so scalar atomics issue up to F (or C) times this count.

Predicted time = max(HBM bytes / HBM bandwidth, (L2 gathers + atomics) x 32 B / L2 bandwidth): the
op is bound by whichever resource it saturates first. Both rates are for an H200 SXM:

* HBM: 4.8 TB/s (NVIDIA H200 product specification).
* L2: a **yardstick**, not a measurement. NVIDIA publishes no Hopper L2 bandwidth; its A100
  architecture whitepaper gives 5120 bytes/clock of L2 read bandwidth. We apply that width at the
  H200 SXM boost clock of 1.98 GHz: 10.1 TB/s, i.e. 3.2e11 32-byte sectors per second, and count each
  atomic as one sector transaction at the same rate. Random single-sector gathers rarely reach the
  full width, so measured hash-grid times are expected above this bound; the fraction achieved is
  what to compare across kernels and runs.
"""

from __future__ import annotations

from dataclasses import dataclass

HBM_BYTES_PER_S = 4.8e12  # H200 SXM HBM3e (NVIDIA product specification)
L2_BYTES_PER_CLOCK = 5120  # A100 whitepaper's L2 read bandwidth; no Hopper figure is published
H200_BOOST_HZ = 1.98e9
SECTOR_BYTES = 32  # the L2 access granularity
L2_SECTORS_PER_S = L2_BYTES_PER_CLOCK / SECTOR_BYTES * H200_BOOST_HZ  # the gather yardstick
INDEX_BYTES = 8  # int64 offsets of packed layouts
F32 = 4


def _sectors(nbytes: int) -> int:
    """32-byte sectors an aligned group of ``nbytes`` contiguous bytes occupies."""
    return -(-nbytes // SECTOR_BYTES)


@dataclass(frozen=True)
class Traffic:
    """Minimum traffic of one call; ``items`` (rays, points) sets the per-item figures."""

    hbm_bytes: int
    items: int
    l2_gathers: int = 0
    atomics: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        """Traffic of two passes over the same items (e.g. forward then backward)."""
        if self.items != other.items:
            raise ValueError(f"cannot add the traffic of {self.items} and {other.items} items")
        return Traffic(
            self.hbm_bytes + other.hbm_bytes,
            self.items,
            self.l2_gathers + other.l2_gathers,
            self.atomics + other.atomics,
        )

    def scaled(self, k: int) -> Traffic:
        """``k`` passes of this one (a chain of identical calls)."""
        return Traffic(k * self.hbm_bytes, self.items, k * self.l2_gathers, k * self.atomics)

    @property
    def hbm_seconds(self) -> float:
        return self.hbm_bytes / HBM_BYTES_PER_S

    @property
    def l2_seconds(self) -> float:
        return (self.l2_gathers + self.atomics) / L2_SECTORS_PER_S

    @property
    def bound(self) -> str:
        """The resource that bounds the predicted time: ``"HBM"`` or ``"L2"``."""
        return "L2" if self.l2_seconds > self.hbm_seconds else "HBM"

    @property
    def predicted_ms(self) -> float:
        """Lower bound on an H200's time for one call, in milliseconds."""
        return 1e3 * max(self.hbm_seconds, self.l2_seconds)

    def per_item(self) -> dict:
        n = max(self.items, 1)
        return {
            "bytes_per_item": self.hbm_bytes / n,
            "l2_gathers_per_item": self.l2_gathers / n,
            "atomics_per_item": self.atomics / n,
        }

    def record(self) -> dict:
        """The JSON fields of a benchmark row."""
        return {
            "min_bytes": self.hbm_bytes,
            "l2_gathers": self.l2_gathers,
            "atomics": self.atomics,
            **self.per_item(),
            "bound": self.bound,
            "predicted_h200_ms": self.predicted_ms,
        }


# ---------------------------------------------------------------- volume rendering
def volume_render(R: int, N: int, C: int, packed: bool, backward: bool) -> Traffic:
    """Fused render of ``N`` samples on ``R`` rays (``N = R*S`` padded): reads sigma, t0, t1, C colors
    per sample (+ offsets when packed), writes rgb [R, C], depth, opacity and the weights [N]. The
    backward reads the inputs and both outputs again with their gradients, writes sigma's and the
    colors' gradients; no atomics (each ray's team reduces in registers)."""
    idx = INDEX_BYTES * (R + 1) if packed else 0
    fwd = F32 * (N * (3 + C) + R * (C + 2) + N) + idx
    if not backward:
        return Traffic(fwd, R)
    bwd = F32 * (N * (3 + C) + 2 * R * (C + 2) + N * (1 + C)) + idx
    return Traffic(fwd + bwd, R)


def distortion_loss(R: int, S: int) -> Traffic:
    """Forward + backward of Mip-NeRF 360's distortion loss on padded [R, S]: weights, t0, t1 read
    twice (forward and backward), the weights' gradient written, the per-ray loss written and its
    gradient read."""
    return Traffic(F32 * (R * S * 7 + 2 * R), R)


# ---------------------------------------------------------------- proposal sampling
def sample_pdf(R: int, S: int, n: int, return_edges: bool) -> Traffic:
    """Inverse-CDF sampling of ``n`` samples (``n + 1`` edges) from an S-bin histogram per ray: read
    S + 1 edges and S weights, write the samples."""
    out = n + 1 if return_edges else n
    return Traffic(F32 * R * ((S + 1) + S + out), R)


def interlevel_loss(R: int, S: int, P: int) -> Traffic:
    """Forward + backward of the proposal loss of S fine intervals against a P-bin proposal: both
    histograms (edges + weights) read in the forward and again in the backward, the per-ray loss
    written, the proposal weights' gradient (P + 1 counted with its edges' slot) written."""
    fine = (S + 1) + S
    proposal = (P + 1) + P
    return Traffic(F32 * R * (2 * fine + 3 * proposal + 1), R)


# ---------------------------------------------------------------- hash grid
def hash_grid_encode(
    N: int,
    L: int,
    F: int,
    D: int,
    n_params: int,
    param_bytes: int,
    out_bytes: int = F32,
    backward: str | None = None,
) -> Traffic:
    """Multiresolution hash encoding of N points (D coordinates, fp32) with L levels of F features.

    Forward: read the points, write N x L x F outputs of ``out_bytes``; gather ``2**D`` corners per
    (point, level) from L2, one sector each (F x ``param_bytes`` <= 32 bytes).
    ``backward="table"``: read the points and the output gradient, one paired atomic per corner into
    a gradient table of ``n_params`` entries of ``param_bytes`` that is zeroed (written) once and
    written back once. ``backward="table+x"``: also gathers the corners again (the points' gradient
    needs the table values) and writes the points' gradient. The forward of a fwd+bwd is included.
    """
    if F * param_bytes > SECTOR_BYTES:
        raise ValueError(f"F={F} features of {param_bytes} bytes span more than one {SECTOR_BYTES}-byte sector")
    corners = N * L * (1 << D)
    points, outputs = F32 * N * D, N * L * F * out_bytes
    fwd = Traffic(points + outputs, N, l2_gathers=corners)
    if backward is None:
        return fwd
    if backward not in ("table", "table+x"):
        raise ValueError(f"backward must be None, 'table' or 'table+x', got {backward!r}")
    table = Traffic(points + outputs + 2 * n_params * param_bytes, N, atomics=corners)
    if backward == "table":
        return fwd + table
    return fwd + table + Traffic(points, N, l2_gathers=corners)


# ---------------------------------------------------------------- feature gather
def gather_features(N: int, V: int, C: int, H: int, W: int, reduce_width: int, backward: bool) -> Traffic:
    """Bilinear gather of N points from V channels-last feature maps [H, W, C] (fp32, L2-resident):
    read the points (+ the cameras, negligible) and the maps once, write ``reduce_width`` features
    and a validity byte per (point, view); 4 texels x ceil(C x 4 / 32) sectors per (point, view)
    gathered. The backward reads the output gradient, zeroes and writes back the maps' gradient and
    scatters one vector atomic per texel sector."""
    maps = F32 * V * C * H * W
    texel_sectors = N * V * 4 * _sectors(C * F32)
    fwd = Traffic(12 * N + maps + F32 * N * reduce_width + N * V, N, l2_gathers=texel_sectors)
    if not backward:
        return fwd
    return fwd + Traffic(12 * N + F32 * N * reduce_width + 2 * maps, N, atomics=texel_sectors)
