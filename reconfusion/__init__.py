"""reconfusion: few-view NeRF reconstruction on rfkernels (the diffusion prior plugs into
:class:`reconfusion.losses.LossTerm`, like every term of the objective).

Quick start::

    from reconfusion.data import load_scene, select_views
    from reconfusion.config import get_preset
    from reconfusion.reconstruct import train
    from reconfusion.evaluation import evaluate

    scene = select_views(load_scene("fern"), n_views=3)     # LLFF few-view protocol
    result = train(scene, get_preset("tiny"), "out/")
    print(evaluate(result.model, scene, "out/")["mean"])
"""

__version__ = "0.1.0"
