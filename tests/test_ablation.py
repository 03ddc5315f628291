"""The recipe ablation's bookkeeping: row settings, merged records, the table notebook 02 shows."""

from __future__ import annotations

import pytest
import torch

from repro import ablation
from repro.config import get_profile


def test_rows_change_only_their_settings():
    base = get_profile("default").stylex
    landed = ablation.row_config(base, "landed")
    assert landed.losses.r1_gamma == 10.0 and landed.losses.pl_weight == 2.0 and landed.losses.lpips == 0.0
    assert landed.ema_rampup is None
    assert (landed.channels, landed.batch_size, landed.lr) == (base.channels, base.batch_size, base.lr)
    for row in ablation.ROWS:
        ablation.row_config(base, row)  # every row's settings exist
    with pytest.raises(ValueError, match="unknown ablation row"):
        ablation.row_config(base, "nope")


def test_the_default_recipe_is_one_of_the_rows():
    """The profile's settings are an ablation row, so notebook 02's table justifies them."""
    base = get_profile("default").stylex
    assert any(ablation.row_config(base, row) == base for row, settings in ablation.ROWS.items()
               if "iterations" not in settings)  # not the untrained control


def test_saved_rows_merge_by_task_and_row(tmp_path):
    path = tmp_path / "ablation.json"
    ablation.save_rows([{"task": "t", "row": "r1-0.2", "l1": 0.3}], path)
    ablation.save_rows([{"task": "t", "row": "landed", "l1": 0.5}, {"task": "t", "row": "r1-0.2", "l1": 0.2}], path)
    table = ablation.ablation_table(path, task="t")
    assert [r["row"] for r in table] == ["landed", "r1-0.2"]  # the order of ROWS
    assert table[1]["l1"] == 0.2 and set(table[0]) == set(ablation.ROW_COLUMNS)
    # older records: the settings they were measured with, "-" for measures they did not take
    assert table[0]["attfind_images"] == 32 and table[0]["precision"] == "fp32"
    assert table[0]["probe_r2_refit"] == "-" and table[0]["random_flip_C"] is None
    assert ablation.ablation_table(tmp_path / "missing.json") == []


def test_measured_models_keep_the_newest_record_per_model_and_average_over_seeds(tmp_path):
    import json

    def record(seed, ratio_rec, flip, iterations=1500, run=None):
        return {"task": "synth-age", "run_dir": run or f"runs/s{seed}", "seed": seed, "iterations": iterations,
                "train_step": 1, "lpips_vgg": 0.4, "l1": 0.2, "agreement_C": 0.97,
                "acc_Cprime_originals": 0.8, "acc_Cprime_reconstructions": ratio_rec,
                "attfind_flip_C": flip, "attfind_flip_Cprime": 0.5, "attfind_pixel_max_255": 80.0,
                "random_flip_C": 0.0, "random_flip_Cprime": 0.0}

    lines = [record(0, 0.1, 0.1),            # replaced by the newer record of the same model below
             record(0, 0.6, 0.7), record(1, 0.8, 0.9),
             record(0, 0.72, 0.8, iterations=3000, run="runs/s0"),  # the same folder trained longer
             # the same model measured with AttFind on 128 images: a row of its own, not a replacement
             {**record(0, 0.72, 0.9, iterations=3000, run="runs/s0"), "attfind_images": 128},
             {**record(5, 0.7, 0.6, iterations=3000, run="runs/bf16"), "precision": "bf16"},
             # and with screened AttFind on 250 images, flip rates over 400 images per repeat
             {**record(0, 0.72, 0.95, iterations=3000, run="runs/s0"), "attfind_images": 250,
              "attfind_screen": 0.1, "flip_images": 400}]
    path = tmp_path / "measures.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    per_model, over_seeds = ablation.measured_models(path)
    assert [(r["seed"], r["iterations"], r["precision"], r["attfind_images"], r["flip_images"])
            for r in per_model] == [
        (0, 1500, "fp32", 32, 80), (1, 1500, "fp32", 32, 80), (5, 3000, "bf16", 32, 80), (0, 3000, "fp32", 32, 80),
        (0, 3000, "fp32", 128, 80), (0, 3000, "fp32", 250, 400)]
    short, bf16, long, long128, long250 = over_seeds
    assert (long250["attfind_screen"], long250["flip_images"], long250["attfind_flip_C"]) == (0.1, 400, "0.950")
    assert long128["attfind_screen"] is None and long128["flip_images"] == 80
    assert (short["iterations"], short["seeds"], long["seeds"]) == (1500, "0, 1", "0")
    assert (bf16["precision"], bf16["seeds"]) == ("bf16", "5") and long128["attfind_flip_C"] == "0.900"
    assert (long["precision"], long["attfind_images"], long128["attfind_images"]) == ("fp32", 32, 128)
    assert short["attfind_flip_C"] == "0.800 ± 0.141"        # mean and sample std of 0.7 and 0.9
    assert short["acc_Cprime_ratio"] == "0.875 ± 0.177"       # (0.6 / 0.8, 0.8 / 0.8)
    assert short["agreement_C"] == "0.970 ± 0.000"
    assert long["acc_Cprime_ratio"] == "0.900" and long["attfind_pixel_max_255"] == "80.0"
    # records made before measure took the ground truth show "-" there; newer ones their mean ± std
    assert short["purity"] == "-" and per_model[0]["single_pixel_max_255_min"] == "-"
    assert ablation.measured_models(tmp_path / "missing.jsonl") == ([], [])
    gt = {"precision_at_4": 0.75, "purity": 0.25, "spurious_exposed": 1.0, "single_pixel_max_255": 24.0,
          "single_pixel_max_255_min": 16.0}
    path.write_text("".join(json.dumps({**record(s, 0.72, 0.8, iterations=3000), **gt,
                                        "purity": 0.25 + 0.05 * s, "single_pixel_max_255_min": 16.0 + s}) + "\n"
                            for s in (0, 1)))
    (row,) = ablation.measured_models(path)[1]
    assert (row["purity"], row["precision_at_4"]) == ("0.275 ± 0.035", "0.750 ± 0.000")
    assert row["single_pixel_max_255_min"] == "16.5 ± 0.7"
    # a learning-rate schedule or another ground-truth rule is another recipe / measurement: its own row
    path.write_text(path.read_text() + json.dumps({**record(0, 0.72, 0.8, iterations=3000), **gt,
                                                   "lr_rampdown": 0.5, "gt_rule": "signed >= 0.05"}) + "\n")
    old_rule, ramped = ablation.measured_models(path)[1]
    assert (old_rule["lr_rampdown"], old_rule["gt_rule"], old_rule["seeds"]) == (None, "unsigned", "0, 1")
    assert (ramped["lr_rampdown"], ramped["gt_rule"], ramped["seeds"]) == (0.5, "signed >= 0.05", "0")


def test_measure_model_reads_the_explanation_and_records_the_fidelity_measures(tmp_path):
    import json

    from fake_runs import fake_finished_run

    from repro.explain import explain_model
    from repro.model import load_stylex

    profile, task = fake_finished_run(tmp_path, ("stylex",), observer=True)
    run_dir = profile.model_dir(task.name, "stylex")
    (run_dir / "log.jsonl").write_text(json.dumps({"iteration": 12, "sec_per_iter": 0.5}) + "\n")
    record = ablation.measure_model(profile, task, run_dir, device="cpu", progress=False, n_reconstructions=16,
                                    ground_truth=False)
    exp = explain_model(profile, task, "stylex", device="cpu", progress=False).results  # reused, not recomputed
    observed, attfind = exp["observer"]["reconstruction"], exp["methods"]["attfind"]["observer"]
    assert (record["iterations"], record["sec_per_iter"], record["k"]) == (12, 0.5, profile.eval.k)
    assert (record["precision"], record["attfind_images"]) == ("fp32", exp["attfind_images"]["n"])
    assert (record["attfind_screen"], record["flip_images"]) == (profile.eval.attfind_screen,
                                                                 profile.eval.images_per_repeat)
    assert record["acc_Cprime_reconstructions"] == observed["acc_Cprime_reconstructions"]
    assert record["attfind_flip_C"] == attfind["flip_C"] and record["attfind_flip_Cprime"] == attfind["flip_Cprime"]
    assert record["random_pixel_max_255"] == exp["methods"]["random"]["observer"]["pixel_max_255"]
    assert record["l1"] > 0 and (record["lpips_vgg"] is None) == ("unavailable" in record["lpips_source"])
    # a fresh generator's noise strengths are all 0 (StyleGAN2 initialises them so), one per conv layer
    assert record["noise_strength"] == [0.0] * len(load_stylex(run_dir).model.generator.layers)
    assert "purity" not in record  # ground_truth=False


def test_a_refined_measure_keeps_its_explanation_beside_the_encoders_and_says_so(tmp_path):
    import dataclasses
    import json

    from fake_runs import fake_finished_run

    from repro.data import load_split
    from repro.evaluation import reconstruction_metrics
    from repro.explain import RESULTS, explain_model

    profile, task = fake_finished_run(tmp_path, ("stylex",), observer=True)
    run_dir = profile.model_dir(task.name, "stylex")
    (run_dir / "log.jsonl").write_text(json.dumps({"iteration": 12, "sec_per_iter": 0.5}) + "\n")
    plain = explain_model(profile, task, "stylex", device="cpu", progress=False)
    before = (run_dir / RESULTS).read_bytes()
    refined = dataclasses.replace(profile, eval=dataclasses.replace(profile.eval, refine_steps=2))
    record = ablation.measure_model(refined, task, run_dir, device="cpu", progress=False, n_reconstructions=8,
                                    ground_truth=False)
    assert record["refine_steps"] == 2
    assert (run_dir / RESULTS).read_bytes() == before  # the encoder's own explanation is untouched
    results = json.loads((run_dir / "refine-2" / RESULTS).read_text())
    assert results["eval_config"]["refine_steps"] == 2 and "refine_steps" not in plain.results["eval_config"]
    assert record["attfind_flip_C"] == results["methods"]["attfind"]["observer"]["flip_C"]
    # the reconstructions measured are the refined ones: closer to their originals than the encoder's
    unrefined, _, _ = reconstruction_metrics(plain.model, plain.classifier, load_split(task.stylex_data, "test"), n=8)
    assert record["l1"] < unrefined["l1"]


def test_measure_model_records_the_reports_ground_truth_measures(tmp_path, monkeypatch):
    import json

    from fake_runs import fake_finished_run

    from repro import groundtruth, probe as probe_module
    from repro.explain import explain_model
    from repro.fidelity import groundtruth_record
    from repro.probe import PROBE_CHECKPOINT, AttributeProbe, probe_dir
    from repro.weights import sha256_file

    profile, task = fake_finished_run(tmp_path, ("stylex",), observer=True)
    torch.manual_seed(0)
    probe = AttributeProbe(32).eval()  # an untrained probe: the test checks the plumbing, not the model
    probe_file = probe_dir(profile, task) / PROBE_CHECKPOINT

    def untrained_probe(*args, **kwargs):
        probe_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(probe.state_dict(), probe_file)
        return probe

    monkeypatch.setattr(probe_module, "load_or_train_probe", untrained_probe)
    run_dir = profile.model_dir(task.name, "stylex")
    (run_dir / "log.jsonl").write_text(json.dumps({"iteration": 12, "sec_per_iter": 0.5}) + "\n")
    record = ablation.measure_model(profile, task, run_dir, device="cpu", progress=False, n_reconstructions=16)
    exp = explain_model(profile, task, "stylex", device="cpu", progress=False)
    expected = groundtruth_record(groundtruth.evaluate(profile, task, "stylex", exp, probe=probe, device="cpu"))
    assert record["precision_at_4"] == expected["precision_at_4"] and record["purity"] == expected["purity"]
    planted = task.classifier_data.planted
    assert record["spurious_exposed"] == (expected["spurious_exposed"] if planted else None)
    single = [s["pixel_max_255"] for s in exp.results["methods"]["attfind"]["observer"]["single"]]
    assert len(single) >= 1 and record["single_pixel_max_255_min"] == min(single)
    assert record["single_pixel_max_255"] == pytest.approx(sum(single) / len(single))
    assert record["probe_sha256"] == sha256_file(probe_file)[:12]
    assert record["gt_rule"] == groundtruth.GT_RULE
    assert record["probe_r2_reconstructions"] == pytest.approx(expected["probe_r2_reconstructions"])


def test_copy_last_grid_takes_the_newest_training_grid(tmp_path):
    samples = tmp_path / "run" / "samples"
    samples.mkdir(parents=True)
    for it in (200, 1000, 400):
        (samples / f"iter-{it:07d}.png").write_bytes(f"grid {it}".encode())
    dest = ablation.copy_last_grid(tmp_path / "run", tmp_path / "figures" / "grid.png")
    assert dest.read_bytes() == b"grid 1000"
    assert ablation.copy_last_grid(tmp_path / "empty", tmp_path / "none.png") is None


def test_refine_grid_shows_originals_over_both_reconstructions_and_needs_refine_steps(tmp_path):
    from fake_runs import fake_finished_run

    profile, task = fake_finished_run(tmp_path, ("stylex",))
    run_dir = profile.model_dir(task.name, "stylex")
    with pytest.raises(ValueError, match="steps must be above 0"):
        ablation.refine_grid(profile, task, run_dir, tmp_path / "grid.png", steps=0, n=2, device="cpu")
    out = ablation.refine_grid(profile, task, run_dir, tmp_path / "figs" / "grid.png", steps=2, n=2, device="cpu")
    assert out == tmp_path / "figs" / "grid.png" and out.stat().st_size > 0
