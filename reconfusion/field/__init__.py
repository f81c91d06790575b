"""The NeRF model on rfkernels."""
from .contraction import contract, contract_scale, to_unit_cube, uncontract
from .zipnerf import RenderOutput, ZipNeRF

__all__ = ["RenderOutput", "ZipNeRF", "contract", "contract_scale", "to_unit_cube", "uncontract"]
