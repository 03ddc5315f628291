"""The README is filled from files runs wrote: tables under figures/ and benchmark results."""

from __future__ import annotations

import json

from repro.report import GPU_RECIPE_COMMAND, benchmark_summary, markdown_table, projected_hours, update_readme


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


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _train_record(**changes):
    base = {"date": "2026-11-23T19:09:52+00:00", "profile": "paper-afhq", "mode": "stylex", "resolution": 64,
            "channels": 512, "batch_size": 16, "iterations": 66, "timed_iterations": 64, "precision": "fp32",
            "channels_last": False, "device": "cpu: AMD EPYC (2 threads)", "device_type": "cpu",
            "sec_per_iter_median": 110.0, "sec_per_iter_mean": 112.0, "images_per_s": 16 / 112.0,
            "peak_rss_mb": 13000.0}
    return base | changes


def _table_rows(text, first_cell):
    """Cells of the markdown rows of ``text`` whose first cell is ``first_cell``."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first_cell} |")]


def test_gpu_recipe_without_a_cuda_record_says_none_was_measured(tmp_path):
    _write_jsonl(tmp_path / "train_speed.jsonl",
                 [_train_record(), _train_record(profile="default", device="NVIDIA H100 80GB HBM3", device_type="cuda")])
    summary = benchmark_summary(tmp_path)
    recipe = summary[summary.index("**GPU recipe, measured and projected**"):]
    assert "No GPU run has been measured yet" in recipe
    assert GPU_RECIPE_COMMAND in recipe  # the command that produces one
    assert "projected (h)" not in recipe and "H100 80GB" not in recipe  # a CUDA default-profile row is no recipe


def test_gpu_recipe_projects_the_paper_schedule_from_the_newest_cuda_record(tmp_path):
    gpu = "NVIDIA H100 80GB HBM3"
    ips = 123.4
    _write_jsonl(tmp_path / "train_speed.jsonl", [
        _train_record(device=gpu, device_type="cuda", precision="bf16", channels_last=True, images_per_s=50.0),
        _train_record(device=gpu, device_type="cuda", precision="bf16", channels_last=True, images_per_s=ips,
                      date="2026-11-24T10:00:00+00:00", peak_cuda_mb=20480.0),  # newer: replaces the 50.0 row
        _train_record(device=gpu, device_type="cuda", mode="stylegan2", images_per_s=999.0),  # not StylEx
        _train_record(),  # CPU
    ])
    assert projected_hours(ips) == 250_000 * 16 / ips / 3600
    assert projected_hours(ips, gpus=8) == 250_000 * 16 / ips / 3600 / 8
    summary = benchmark_summary(tmp_path)
    recipe = summary[summary.index("**GPU recipe, measured and projected**"):]
    assert "No GPU run has been measured" not in recipe
    assert "assumption, not a measurement" in recipe
    rows = _table_rows(recipe, gpu)
    assert len(rows) == 1
    header = [c.strip() for c in recipe.splitlines()[2].strip("|").split("|")]
    row = dict(zip(header, rows[0]))
    assert row["precision"] == "bf16 + channels-last"
    assert float(row["images/s (measured)"]) == round(ips, 1)
    assert float(row["1 GPU, projected (h)"]) == round(250_000 * 16 / ips / 3600, 1) == 9.0
    assert float(row["8 GPUs, projected, linear scaling assumed (h)"]) == round(250_000 * 16 / ips / 3600 / 8, 1) == 1.1
    assert "20480 CUDA" in summary  # peak memory on CUDA is max_memory_allocated


def test_benchmark_summary_flip_rate_table(tmp_path):
    record = {"date": "2026-11-24T10:00:00+00:00", "device": "cpu: AMD EPYC (2 threads)", "torch": "2",
              "config": {"resolution": 32, "channels": 64, "images": 256, "k": 10, "ks": 1, "curve": False,
                         "start_layer": 2, "resumed_layer": 2},
              "load_average": {"before": 0.5, "after": 1.5}, "edited_renders": 256,
              "fast": {"seconds": 1.0, "edited_renders_per_s": 256.0, "images_per_s": 256.0},
              "reference": {"seconds": 4.0, "edited_renders_per_s": 64.0, "images_per_s": 64.0},
              "ratio": 4.0, "max_abs_logit_diff": 3e-7, "max_abs_logit": 2.5, "flip_disagreements": 1, "base_class_disagreements": 0}
    _write_jsonl(tmp_path / "fliprate_speed.jsonl", [record])
    summary = benchmark_summary(tmp_path)
    row = _table_rows(summary, "cpu: AMD EPYC (2 threads)")[0]
    assert row[1:] == ["32 / 64", "256 x 1", "2 / 2", "256.0", "64.0", "256.0", "4.0", "3.0e-07 (2.5e+00)", "1", "0.5 / 1.5",
                       "2026-11-24"]
    assert "No GPU run has been measured yet" in summary


def test_attfind_projection_only_from_a_cuda_paper_size_record(tmp_path):
    record = {"date": "2026-11-24T10:00:00+00:00", "device": "cpu: AMD EPYC (2 threads)",
              "config": {"resolution": 64, "channels": 512, "images": 16, "coords": 512, "num_styles": 4608},
              "batched": {"renders_per_s": 3840.0}, "reference": {"renders_per_s": 100.0}, "ratio": 38.4}
    _write_jsonl(tmp_path / "attfind_speed.jsonl", [record])
    assert "AttFind (64 px, 512 channels, N = 250 images, all conv coordinates; target <= 10 minutes on one H100): " \
           "not measured on a GPU yet" in benchmark_summary(tmp_path)
    _write_jsonl(tmp_path / "attfind_speed.jsonl", [record, record | {"device": "NVIDIA H100 80GB HBM3"}])
    summary = benchmark_summary(tmp_path)
    assert "not measured on a GPU yet" not in summary
    minutes = 250 * 2 * 4608 / 3840.0 / 60  # = 10.0
    assert f"2,304,000 renders project to {minutes:.1f} minutes" in summary


def test_reliability_doc_names_real_tests():
    """Every test that docs/RELIABILITY.md cites exists, so the table cannot outlive its evidence."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "RELIABILITY.md").read_text()
    cited, current = [], None
    for file, name in re.findall(r"(tests/\w+\.py)?::(\w+)", doc):
        current = file or current
        cited.append((current, name))
    assert len(cited) >= 40
    for file, name in cited:
        assert f"def {name}(" in (root / file).read_text(), f"{file}::{name} is cited but does not exist"
    assert "docs/RELIABILITY.md" in (root / "README.md").read_text()
