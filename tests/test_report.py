"""The README is filled from files runs wrote: tables under figures/ and benchmark results."""

from __future__ import annotations

import json

from repro.report import benchmark_summary, markdown_table, update_readme


def test_markdown_table_formats_floats_and_missing_cells():
    table = markdown_table([{"a": 0.12345, "b": "x"}, {"a": 2}], floatfmt=".2f")
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 0.12 | x |", "| 2 |  |"]


def test_update_readme_fills_blocks_from_files_and_leaves_others(tmp_path):
    figures, bench = tmp_path / "figures", tmp_path / "bench"
    figures.mkdir()
    bench.mkdir()
    (figures / "run_times.md").write_text("| notebook | seconds |\n|---|---|\n| 01 | 3 |\n")
    train = {"date": "2026-11-23T19:09:52+00:00", "profile": "default", "mode": "stylex", "resolution": 32,
             "channels": 64, "batch_size": 16, "iterations": 8, "device": "cpu (2 threads)",
             "sec_per_iter_median": 0.9, "peak_rss_mb": 1170.7}
    newer = train | {"date": "2026-11-24T10:00:00+00:00", "sec_per_iter_median": 0.8}
    (bench / "train_speed.jsonl").write_text(json.dumps(train) + "\n" + json.dumps(newer) + "\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:run_times -->\nold\n<!-- /results:run_times -->\n"
                      "<!-- results:benchmarks -->\nold\n<!-- /results:benchmarks -->\n"
                      "<!-- results:missing -->\nkept\n<!-- /results:missing -->\n")
    assert update_readme(readme, figures, bench) == ["run_times", "benchmarks"]
    text = readme.read_text()
    assert "| 01 | 3 |" in text and "kept" in text and text.count("old") == 0
    summary = benchmark_summary(bench)
    assert "0.8" in summary and "0.9 " not in summary  # only the newest row per (profile, mode, device)
    assert summary in text
    assert benchmark_summary(tmp_path / "nothing") == ""
