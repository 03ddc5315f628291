"""The fidelity summary: means over seeds, verdicts against the targets, fidelity.json merging."""

from __future__ import annotations

import json

import pytest

from repro import fidelity
from repro.config import get_profile


def test_mean_std_over_seeds_is_field_wise_and_recursive():
    out = fidelity.mean_std([{"a": 1.0, "m": {"x": 0.2}, "name": "s", "gone": None},
                             {"a": 3.0, "m": {"x": 0.4}, "name": "s", "gone": 1.0}])
    assert out["a"] == 2.0 and out["a_std"] == pytest.approx(2 ** 0.5)
    assert out["m"]["x"] == pytest.approx(0.3) and "x_std" in out["m"]
    assert out["name"] == "s" and out["gone"] is None
    single = fidelity.mean_std([{"a": 1.0}])
    assert single == {"a": 1.0}  # no _std from one seed


def test_summarise_adds_seeds_and_the_observer_ratio():
    recs = [{"seed": 0, "acc_Cprime_originals": 0.9, "acc_Cprime_reconstructions": 0.81},
            {"seed": 1, "acc_Cprime_originals": 0.9, "acc_Cprime_reconstructions": 0.63}]
    s = fidelity.summarise(recs)
    assert s["seeds"] == [0, 1] and s["acc_Cprime_ratio"] == pytest.approx(0.8)


def test_verdicts_read_the_targets():
    rec = {"agreement_C": 0.96, "acc_Cprime_ratio": 0.5,
           "methods": {"attfind": {"flip_C": 0.9, "flip_Cprime": 0.6, "pixel_max_255": 20.0}}}
    v = fidelity.verdicts(rec)
    assert v["agreement_C"] and not v["acc_Cprime_ratio"]
    assert v["attfind_flip_C"] and v["attfind_flip_Cprime"]
    assert not v["attfind_flip_ratio"]  # 0.6 / 0.9 < 0.75
    assert not v["attfind_pixel_max_255"] and v["precision_at_4"] is None


def test_explanation_summary_averages_the_stylex_seeds_only():
    profile = get_profile("default")

    def res(c, cp):
        return {"methods": {"attfind": {"flip_rate": {"mean": c}, "observer": {"flip_Cprime": cp, "n_agreed": 10,
                                                                              "pixel_mean_255": 1.0, "pixel_max_255": 40.0}}}}

    primary = {("synth-age", "stylex"): res(0.8, 0.6), ("synth-age", "stylegan2"): res(0.5, 0.1)}
    others = {("synth-age", 1): res(0.6, 0.4), ("synth-species", 1): res(0.0, 0.0)}
    out = fidelity.explanation_summary(profile, primary, others)
    att = out["synth-age/stylex"]["methods"]["attfind"]
    assert att["flip_C"] == pytest.approx(0.7) and att["flip_Cprime"] == pytest.approx(0.5) and "flip_C_std" in att
    assert out["synth-age/stylex"]["explained_seeds"] == [0, 1]
    assert out["synth-age/stylegan2"]["methods"]["attfind"]["flip_C"] == 0.5
    assert out["synth-age/stylegan2"]["explained_seeds"] == [0]


def test_write_fidelity_merges_parts_and_records_targets(tmp_path):
    path = tmp_path / "fidelity.json"
    fidelity.write_fidelity({"t/stylex": {"agreement_C": 0.97}}, path)
    fidelity.write_fidelity({"t/stylex": {"methods": {"attfind": {"flip_C": 0.85}}}}, path)
    data = json.loads(path.read_text())
    rec = data["models"]["t/stylex"]
    assert rec["agreement_C"] == 0.97 and rec["methods"]["attfind"]["flip_C"] == 0.85
    assert rec["verdicts"]["agreement_C"] and rec["verdicts"]["attfind_flip_C"]
    assert data["targets"] == fidelity.TARGETS


def test_groundtruth_summary_over_stylex_seeds():
    def gt(p, purities, exposed):
        return {"k": 4, "methods": {"attfind": {"precision_at_k": p, "spurious_exposed": exposed,
                                                "coords": [{"purity": x} for x in purities]}}}

    out = fidelity.groundtruth_summary({("a", "stylex"): gt(1.0, [0.6, 0.4], True)},
                                       {("a", 1): gt(0.5, [0.2, 0.2], False), ("b", 1): gt(0.0, [1.0], False)})
    rec = out["a/stylex"]
    assert rec["precision_at_4"] == 0.75 and rec["purity"] == pytest.approx(0.35)
    assert rec["spurious_exposed"] == 0.5 and rec["groundtruth_seeds"] == 2 and "precision_at_4_std" in rec
    assert "probe_r2_reconstructions" not in rec  # no seed validated the probe


def test_groundtruth_record_carries_the_probe_validation():
    def reading(*r2):
        return {f"f{j}": {"r2": v, "mae": 0.1} for j, v in enumerate(r2)}

    result = {"k": 4, "probe_validation": {"originals": reading(0.9, 0.7), "reconstructions": reading(0.5, 0.1)},
              "methods": {"attfind": {"precision_at_k": 0.5, "spurious_exposed": False, "coords": [{"purity": 0.3}]}}}
    rec = fidelity.groundtruth_record(result)
    assert rec["probe_r2_originals"] == pytest.approx(0.8)
    assert rec["probe_r2_reconstructions"] == pytest.approx(0.3)
    assert "probe_r2_originals" not in fidelity.groundtruth_record({**result, "probe_validation": None})
    assert "probe_r2_refit" not in rec  # not measured: not reported
    refit = {**result["probe_validation"], "refit": reading(0.6, 0.2), "refit_originals": reading(1.0, 0.9)}
    rec = fidelity.groundtruth_record({**result, "probe_validation": refit})
    assert rec["probe_r2_refit"] == pytest.approx(0.4) and rec["probe_r2_refit_originals"] == pytest.approx(0.95)
