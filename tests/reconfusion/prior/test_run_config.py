"""train-prior's run config is checked as a whole against its schema before anything runs: every
wrong type or range (``true`` is no integer, ``"0.9"`` no number), unknown key and malformed data or
model entry is listed, on one line, naming the key."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconfusion.app.cli import main
from reconfusion.prior.config_schema import problems
from reconfusion.prior.run_config import TrainConfig

VALID = {"data": [{"format": "scene", "path": "s.npz"}], "model": {"tiny": True}, "steps": 2, "batch_size": 2}

BAD = {  # key -> values the issue reported or that sit just outside the range
    "batch_size": ["8", 2.0, True, 0],
    "steps": [None, -1, 1.5],
    "lr": ["abc", 0, -1e-4, float("inf")],
    "ema": ["0.9", 1.0, -0.1],
    "grad_clip": ["x", -1],
    "views": [2, [0, 2], [3, 2], [1, "2"]],
    "data": [
        "co3d:/x",
        [{"format": "co3d"}],
        [{"format": "tiff", "path": "x"}],
        [{"format": "co3d", "path": "x", "weight": 0}],
        [3],
    ],
    "model": [["tiny"], {"tiny": "yes"}, {"prediction_type": "x0"}, {"size": 3}],
    "epoch_size": [0, "10"],
    "device": ["tpu", "cuda:x", 0],
    "num_workers": [-1, True],
    "max_bad_examples": [-1, 1.0],
    "mixed_precision": ["fp8", None],
    "tensorboard": [1, "true"],
    "warmup_steps": [-1],
    "seed": [-1, "0"],
    "checkpoint_every": [0],
    "log_every": [0],
    "grad_accum": [0],
    "weight_decay": [-0.1],
}


@pytest.mark.parametrize("key,value", [(k, v) for k, vs in sorted(BAD.items()) for v in vs])
def test_each_bad_value_is_named(key, value):
    found = problems({**VALID, key: value})
    assert len(found) == 1 and found[0].startswith(f"`{key}"), found
    with pytest.raises(ValueError, match=f"1 problem: `{key}"):
        TrainConfig.from_dict({**VALID, key: value})


def test_all_problems_listed_and_unknown_keys():
    found = problems({**VALID, "batch_size": True, "lr": "abc", "stepz": 3})
    assert len(found) == 3 and any("`stepz`: unknown train config key" in p for p in found)


def test_the_defaults_and_a_full_config_are_valid():
    assert problems(TrainConfig().to_dict()) == []
    assert (
        problems(
            {
                **VALID,
                "views": [1, 3],
                "epoch_size": 64,
                "device": "cuda:1",
                "lr": 1,
                "ema": 0,
                "data": [{"format": "realestate", "path": "a", "frames": "b", "weight": 2.5}],
            }
        )
        == []
    )


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(
    st.sampled_from(sorted(BAD)),
    st.one_of(
        st.none(),
        st.booleans(),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    ),
)
def test_any_value_is_accepted_or_named(key, value):
    """A drawn value either builds a config or is reported against its key; nothing else is raised."""
    try:
        TrainConfig.from_dict({**VALID, key: value})
    except ValueError as exc:
        assert f"`{key}" in str(exc) and "\n" not in str(exc)


def test_cli_lists_every_problem_on_one_line(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({**VALID, "batch_size": "8", "steps": None, "device": "tpu"}))
    assert main(["train-prior", "--config", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3 problems" in err
    assert all(f"`{k}`" in err for k in ("batch_size", "steps", "device"))
    assert not (tmp_path / "out").exists()  # nothing ran
