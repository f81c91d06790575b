"""The side-by-side table of ``benchmarks.fewview_360`` records."""

import json

from benchmarks.fewview_360 import table


def test_table_has_one_column_per_run_kind(tmp_path):
    runs = (("ndc_3views", 3, 12.06), ("contract_3views_res2048", 3, 13.5), ("contract_9views_res2048", 9, 18.0))
    for name, n, p in runs:
        (tmp_path / f"{name}.json").write_text(json.dumps({"n_views": n, "mean": {"psnr": p, "ssim": 0.75}}))
    lines = table(str(tmp_path)).splitlines()
    assert lines[0] == "| Views | contract_res2048 PSNR / SSIM | ndc PSNR / SSIM |"
    assert lines[2] == "| 3 | 13.50 / 0.750 | 12.06 / 0.750 |"
    assert lines[3] == "| 9 | 18.00 / 0.750 | – |"
