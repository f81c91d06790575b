"""One rank of the 2-process prior-training tests (launched by ``python -m torch.distributed.run``).

``python -m torch.distributed.run --nproc_per_node 2 tests/reconfusion/prior/ddp_worker.py OUT REPORT STEPS``: trains a
tiny prior on synthetic scenes with gloo, then writes ``REPORT/rank{r}.json`` (examples seen, losses)
and ``REPORT/rank{r}.safetensors`` (this rank's parameters).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from reconfusion.data.index import SceneIndex  # noqa: E402
from reconfusion.prior import ReconFusionPrior  # noqa: E402
from reconfusion.prior.dataset import PriorExamples  # noqa: E402
from reconfusion.prior.run_config import TrainConfig  # noqa: E402
from reconfusion.prior.train import init_distributed, train_prior  # noqa: E402
from tests.helpers.prior_scenes import synthetic_scene  # noqa: E402


def main(out: str, report: str, steps: int) -> None:
    torch.set_num_threads(1)
    device = init_distributed("cpu")
    rank = torch.distributed.get_rank()
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny(latent_size=8)
    torch.manual_seed(1000 * (rank + 1))  # different noise streams per rank
    scenes = [SceneIndex.from_scene(synthetic_scene(6, 32, seed=i)) for i in range(3)]
    ds = PriorExamples(scenes, 32, batch_size=2, views=(1, 2), seed=0)  # 18 examples: 4 global batches/epoch
    cfg = TrainConfig(
        steps=steps, batch_size=2, grad_accum=2, lr=2e-3, ema=0.9, checkpoint_every=2, log_every=1000, num_workers=0
    )
    seen = []
    res = train_prior(
        prior,
        ds,
        cfg,
        out,
        device,
        on_step=lambda s, used, loss: seen.extend([[int(b["epoch"]), e] for b in used for e in b["example"].tolist()]),
    )
    os.makedirs(report, exist_ok=True)
    with open(os.path.join(report, f"rank{rank}.json"), "w") as f:
        json.dump({"examples": seen, "losses": res.losses, "step": res.step, "resumed_from": res.resumed_from}, f)
    save_file(
        {k: v.detach().contiguous() for k, v in prior.state_dict().items()},
        os.path.join(report, f"rank{rank}.safetensors"),
    )
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
