"""The nerfstudio method plugin ``reconfusion-fewview`` (``ns-train reconfusion-fewview --data SCENE``).

Registered by ``setup.py`` under nerfstudio's entry-point group ``nerfstudio.method_configs`` as
:data:`reconfusion.nerfstudio.method.reconfusion_fewview`. The modules of this package import
nerfstudio; nothing else in ``reconfusion`` or ``rfkernels`` does, and this ``__init__`` imports
none of them, so the library works without nerfstudio installed.

- :mod:`.dataparser`: any scene ``reconfusion`` reads, with ``reconfusion reconstruct``'s few-view
  split, as nerfstudio's dataparser, dataset (the scene's own images) and datamanager.
- :mod:`.model`: a nerfstudio ``Model`` around reconfusion's model (:class:`~reconfusion.field.ZipNeRF`)
  and training objective (:func:`~reconfusion.losses.config_terms`, the diffusion sample loss).
- :mod:`.method`: the ``MethodSpecification``.
"""
