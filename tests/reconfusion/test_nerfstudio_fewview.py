"""Slow: ``ns-train reconfusion-fewview`` (the plugin of reconfusion/nerfstudio/, found by nerfstudio through
the package's entry point) on 3-view fern on the CPU, with nerfstudio 1.1.5 installed as a user would
(tests/helpers/nerfstudio_env.py). The plugin's rays are checked against reconfusion's own, then a
short run (100 iterations at a quarter of the resolution) trains and ``ns-eval`` scores the held-out views."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.nerfstudio_env import nerfstudio_or_skip
from tests.helpers.paths import SHARED_DATA

pytestmark = pytest.mark.slow

FERN = SHARED_DATA / "fern"

# nerfstudio's rays of a held-out camera (as ns-eval makes them) and of a training batch (as the
# datamanager's ray generator makes them), through the plugin, against reconfusion's rays of the same
# pixels; the dataset's images against the scene's
RAYS_SCRIPT = """
import json, sys, torch
from nerfstudio.model_components.ray_generators import RayGenerator
from reconfusion.nerfstudio.dataparser import FewViewDataParserConfig, SceneImages
from reconfusion.nerfstudio.model import scene_rays

parser = FewViewDataParserConfig(data=sys.argv[1], views=3).setup()
train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
scene = train.metadata["scene"]

def gap(mine, theirs):
    keys = ("origins", "directions", "radii", "near", "far")
    return max((getattr(mine, k) - getattr(theirs, k)).abs().max().item() for k in keys)

view = scene.test_ids[0]
held_out = scene_rays(scene, test.cameras[0:1].generate_rays(camera_indices=0, keep_shape=True))
pix = torch.tensor([[0, 0, 0], [1, 200, 300], [2, 377, 503]])  # (camera, row, column)
batch = scene_rays(scene, RayGenerator(train.cameras)(pix))
ours = [scene.view_rays(scene.train_ids[c], torch.tensor([r * scene.width + x])) for c, r, x in pix.tolist()]
batch_gap = max(gap(batch[i : i + 1], o) for i, o in enumerate(ours))
images = SceneImages(train)
image_gap = max((images[i]["image"] - scene.images[v]).abs().max().item() for i, v in enumerate(scene.train_ids))
print(json.dumps({"train": scene.train_ids, "test": scene.test_ids, "held_out": gap(held_out, scene.view_rays(view)),
                  "batch": batch_gap, "images": image_gap}))
"""


READ_PRIOR_LOSS = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps([[e.step, e.value] for e in acc.Scalars("Train Loss Dict/prior")]))
"""


@pytest.fixture(scope="module")
def nerfstudio_env(tmp_path_factory):
    return nerfstudio_or_skip(tmp_path_factory.mktemp("nerfstudio"), FERN)


def _run(cmd, ns, cwd):
    env = {**os.environ, "PYTHONPATH": ns.pythonpath, "OMP_NUM_THREADS": "1"}
    env.pop("RFKERNELS_COMPAT", None)
    run = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    return run


def test_plugin_rays_and_images_are_reconfusions(nerfstudio_env, tmp_path):
    out = _run([sys.executable, "-c", RAYS_SCRIPT, str(FERN)], nerfstudio_env, tmp_path).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert (got["train"], got["test"]) == ([1, 10, 19], [0, 8, 16])  # reconstruct's 3-view LLFF split
    assert got["held_out"] < 1e-5 and got["batch"] < 1e-5  # float32 rounding of nerfstudio's normalization
    assert got["images"] == 0.0


def test_ns_train_reconfusion_fewview_trains_and_evaluates(nerfstudio_env, tmp_path):
    ns = nerfstudio_env
    steps = ["--steps-per-eval-image", "1000", "--steps-per-eval-batch", "1000"]
    steps += ["--steps-per-eval-all-images", "100000", "--steps-per-save", "100000"]
    cmd = [*ns.command("ns-train"), "reconfusion-fewview", "--data", str(FERN), "--machine.device-type", "cpu"]
    cmd += ["--vis", "tensorboard", "--max-num-iterations", "100", *steps, "--output-dir", str(tmp_path / "out")]
    cmd += ["--pipeline.datamanager.dataparser.downscale", "4", "--timestamp", "run"]
    run = _run(cmd, ns, tmp_path)
    assert "Training Finished" in run.stdout + run.stderr
    config = tmp_path / "out" / "fern" / "reconfusion-fewview" / "run" / "config.yml"
    _run([*ns.command("ns-eval"), "--load-config", str(config), "--output-path", "eval.json"], ns, tmp_path)
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    assert results["psnr"] > mean_colour_psnr(4.0) + 1.0  # it learned more than the mean colour


def test_ns_train_reconfusion_fewview_with_a_diffusion_prior(nerfstudio_env, tmp_path):
    """--pipeline.model.prior DIR turns reconfusion's sample loss on (an untrained tiny prior: the term runs)."""
    import torch

    from reconfusion.prior.model import ReconFusionPrior

    torch.manual_seed(0)
    ReconFusionPrior.tiny().save(str(tmp_path / "prior"))
    ns = nerfstudio_env
    cmd = [*ns.command("ns-train"), "reconfusion-fewview", "--data", str(FERN), "--machine.device-type", "cpu"]
    cmd += ["--vis", "tensorboard", "--max-num-iterations", "6", "--logging.steps-per-log", "5"]
    cmd += ["--steps-per-eval-image", "1000", "--steps-per-eval-batch", "1000", "--steps-per-save", "100000"]
    cmd += ["--output-dir", str(tmp_path / "out"), "--timestamp", "run"]
    cmd += ["--pipeline.datamanager.dataparser.downscale", "4"]
    cmd += ["--pipeline.model.prior", str(tmp_path / "prior"), "--pipeline.model.prior-every", "5"]
    _run(cmd, ns, tmp_path)
    events = tmp_path / "out" / "fern" / "reconfusion-fewview" / "run"
    logged = json.loads(_run([sys.executable, "-c", READ_PRIOR_LOSS, str(events)], ns, tmp_path).stdout)
    assert [step for step, _ in logged] == [0, 5]  # every 5 steps, as asked
    assert all(value > 0 for _, value in logged)


def mean_colour_psnr(downscale: float) -> float:
    """PSNR on fern's 3-view held-out views of one flat image of the training views' mean colour."""
    from reconfusion.app.runs import load_split_scene
    from reconfusion.metrics import psnr

    scene, _ = load_split_scene(str(FERN), "auto", downscale, None, 3, None, None, "auto")
    mean = scene.images[scene.train_ids].reshape(-1, 3).mean(0)
    return sum(psnr(mean.expand_as(scene.images[i]), scene.images[i]) for i in scene.test_ids) / len(scene.test_ids)
