"""benchmarks/results/README.md is generated from the committed records: it must equal the regenerated text."""

import json

from benchmarks.results_index import RESULTS, main, render


def test_committed_results_readme_equals_the_regenerated_one():
    assert (RESULTS / "README.md").read_text() == render(), "stale: run python -m benchmarks.results_index"
    assert main(["--check"]) == 0


def test_every_ablation_record_gets_one_row_with_its_rounded_metrics(tmp_path):
    records = [
        {
            "tag": "a",
            "scene": "fern",
            "views": 3,
            "seed": 0,
            "preset": "tiny",
            "overrides": {"x.y": False},
            "metrics": {"10": {"psnr": 18.004, "ssim": 0.5}, "2": {"psnr": 17.0, "ssim": 0.4}},
            "it_per_s": 9.96,
            "train_seconds": 12.4,
            "resolution": [8, 6],
        },
        {
            "tag": "b",
            "scene": "lego",
            "views": 8,
            "seed": 1,
            "preset": "tiny",
            "overrides": {},
            "metrics": {"5": {"psnr": 20.0, "ssim": 0.75}},
            "it_per_s": 1.0,
            "train_seconds": 5.0,
            "resolution": [4, 4],
            "preset_note": "tiny as of commit abc",
        },
    ]
    (tmp_path / "fewview_ablation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = render(tmp_path)
    assert "| a | fern | 3 | 8x6 | 0 | `x.y=false` | 2: 17.00 / 0.400; 10: 18.00 / 0.500 | 10.0 | 12 |" in text
    assert "### `tiny`: tiny as of commit abc" in text and "| b | lego | 8 | 4x4 | 1 | none |" in text
    assert "None committed" in text  # no kernel benchmark JSON in this folder
    (tmp_path / "sm90_report.json").write_text(json.dumps({"kernels": []}))  # another record: not a run
    assert "None committed" in render(tmp_path)
    run = {"env": {"device": "NVIDIA H200", "date": "2026-12-04"}, "copy_bandwidth_gb_per_s": 4000.0, "results": []}
    (tmp_path / "h200.json").write_text(json.dumps(run))
    assert "- [`h200.json`](h200.json): NVIDIA H200, 2026-12-04" in render(tmp_path)


def test_a_train_step_record_becomes_a_table_with_its_machine_threads_date_and_commit(tmp_path):
    record = {
        "config": {"n_rays": 256, "prop_samples": [32, 16], "num_samples": 16, "n_levels": 8, "steps_timed": 8},
        "env": {
            "machine": "cpu X, 2 cores",
            "threads": 1,
            "load_average_1min": 2.04,
            "date": "2026-12-03T14:00:00+00:00",
            "commit": "abc1234",
            "torch": "2.13",
            "rfkernels_auto_backend": "torch",
        },
        "results": [
            {"stack": "rfkernels", "ms_per_step_median": 100.04, "rays_per_s": 2559.0, "ms_over_rfkernels": 1.0},
            {"stack": "nerfacc", "ms_per_step_median": 150.0, "rays_per_s": 1706.7, "ms_over_rfkernels": 1.5},
        ],
    }
    (tmp_path / "train_step").mkdir()
    (tmp_path / "train_step" / "cpu.json").write_text(json.dumps(record))
    text = render(tmp_path)
    assert "cpu X, 2 cores, 1 thread(s), load average 2.0 at the start, 2026-12-03T14:00:00+00:00" in text
    assert "commit abc1234" in text
    assert "| rfkernels | 100.0 | 2559 | 1.00 |" in text and "| nerfacc | 150.0 | 1707 | 1.50 |" in text
