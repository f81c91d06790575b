"""The end-to-end training-step benchmark (benchmarks/train_step.py): its cameras, its per-step
timing, and a miniature run of every stack installed here."""

import math

import torch

from benchmarks import train_step


def test_orbit_cameras_look_at_the_origin_from_radius_four():
    images, c2w, focal = train_step.orbit_data(6, 10, torch.device("cpu"))
    assert images.shape == (6, 10, 10, 3) and focal > 0
    eye, forward = c2w[:, :3, 3], -c2w[:, :3, 2]  # cameras look down their -z
    assert torch.allclose(eye.norm(dim=-1), torch.full((6,), math.hypot(4, 1.5)))
    assert torch.allclose(torch.linalg.cross(forward, -eye), torch.zeros(6, 3), atol=1e-6)
    assert torch.allclose(c2w[:, :3, :3].transpose(1, 2) @ c2w[:, :3, :3], torch.eye(3).expand(6, 3, 3), atol=1e-6)


class _FakeExample:
    """``train`` draws one batch per step with ``sample_rays``, like the example."""

    def __init__(self):
        self.calls = 0

    def sample_rays(self):
        self.calls += 1

    def train(self, data, steps, device):
        for _ in range(steps):
            self.sample_rays()
        return [0.5] * steps


def test_step_seconds_times_each_step_between_two_batches_after_an_untimed_first():
    fake = _FakeExample()
    secs, losses = train_step.step_seconds(fake, None, 3, torch.device("cpu"))
    assert len(secs) == 3 and all(s >= 0 for s in secs) and len(losses) == 5 and fake.calls == 5


def test_a_miniature_run_times_every_stack_on_the_same_model(monkeypatch):
    monkeypatch.setitem(train_step.SCALES, "test", dict(n_rays=32, prop_samples=(8, 4), num_samples=4, n_levels=2))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = train_step.run("test", 2, torch.device("cpu"))
    finally:
        torch.set_num_threads(n)
    stacks = [r["stack"] for r in report["results"]]
    assert stacks[0] == "rfkernels" and "rfkernels backend=torch" not in stacks  # auto is torch on a CPU
    if train_step.real_nerfacc() is not None:
        assert stacks == ["rfkernels", "nerfacc 0.5.3 + torch hash grid"]
    for row in report["results"]:
        assert row["ms_per_step_median"] > 0 and 0 < row["final_loss"] < 1
    assert report["results"][0]["ms_over_rfkernels"] == 1.0
    assert report["env"]["threads"] == 1 and report["env"]["rfkernels_auto_backend"] == "torch"
