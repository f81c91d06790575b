"""The NeRF model on rfkernels, with two seams: samplers (:mod:`.samplers`) and encodings (:mod:`.encoding`)."""

from .contraction import contract, contract_scale, to_unit_cube, uncontract
from .encoding import Encoding, HashGridEncoder
from .samplers import SAMPLERS, ProposalSampler, Sampler, Samples, UniformSampler, make_sampler
from .zipnerf import NeRFField, RenderOutput, ZipNeRF

__all__ = [
    "Encoding",
    "HashGridEncoder",
    "NeRFField",
    "ProposalSampler",
    "RenderOutput",
    "SAMPLERS",
    "Sampler",
    "Samples",
    "UniformSampler",
    "ZipNeRF",
    "contract",
    "contract_scale",
    "make_sampler",
    "to_unit_cube",
    "uncontract",
]
