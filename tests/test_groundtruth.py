"""Ground-truth fidelity: true factor importance and what coordinates change (the probe: test_probe.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from repro import groundtruth as gt
from repro.config import DataConfig, get_profile
from repro.data.synthetic import intervene, render, sample_factors
from repro.evaluation import Latents, fixed_noise
from repro.explain import Explanation
from repro.model import StylExArch
from repro.probe import CYCLIC, FACTOR_BY_NAME, PROBE_FACTORS, AttributeProbe
from repro.stylespace import Attributes

DATA = DataConfig(dataset="synthetic", task="synth-age", resolution=32, n_train=1024, n_val=128, n_test=256)


# ---------------------------------------------------------------------------------------------
# Pure rules

def test_used_factors_rule():
    imp = {"wrinkles": 2.0, "hair_grey": 0.5, "glasses": 0.2, "bg_hue": 0.19}
    assert gt.used_factors(imp, 0.1) == ["wrinkles", "hair_grey", "glasses"]
    assert gt.used_factors(imp, 0.5) == ["wrinkles"]
    assert gt.used_factors(imp) == ["wrinkles", "hair_grey"]  # default: 25 % of the largest
    # The null importance (detail re-drawn) is a floor, never a factor: 2 x 0.15 excludes glasses.
    assert gt.used_factors(imp | {gt.NULL: 0.15}, 0.1) == ["wrinkles", "hair_grey"]
    assert gt.used_floor(imp | {gt.NULL: 0.15}, 0.1) == pytest.approx(0.3)
    assert gt.used_factors(imp | {gt.NULL: 5.0}) == []  # nothing moves the decision more than noise
    assert gt.used_factors({"wrinkles": 0.0}) == []
    assert gt.used_factors({"wrinkles": 0.004, "glasses": 0.003}) == []  # a constant classifier uses nothing
    assert gt.used_factors({"wrinkles": 0.004, "glasses": 0.003}, min_importance=0.0) == ["wrinkles", "glasses"]


def coord(dominant, total, d=0, i=0, signed=None):
    c = {"coord": (d, i), "dominant": dominant, "total": total, "purity": 1.0, "changes": {dominant: total}}
    return c if signed is None else c | {"signed": {dominant: signed}}


def test_precision_at_k_by_hand():
    coords = [coord("wrinkles", 0.4), coord("bg_hue", 0.9), coord("glasses", 0.3),
              coord("hair_grey", 0.01)]  # the last changes (almost) nothing: not a hit
    used = {"wrinkles", "hair_grey", "glasses"}
    assert gt.precision_at_k(coords, used, min_change=0.05) == pytest.approx(2 / 4)
    assert gt.precision_at_k(coords, used, min_change=0.0) == pytest.approx(3 / 4)
    assert gt.precision_at_k(coords[:1], used) == 1.0
    assert gt.precision_at_k([], used) == 0.0
    assert gt.spurious_exposed(coords, "glasses")
    assert not gt.spurious_exposed(coords, "collar")
    assert not gt.spurious_exposed([coord("glasses", 0.01)], "glasses", min_change=0.05)


def test_signed_counting_needs_the_move_towards_the_new_class():
    used = {"wrinkles", "glasses"}
    towards, too_small, backwards = (coord("wrinkles", 0.3, signed=v) for v in (0.08, 0.03, -0.08))
    assert gt.precision_at_k([towards, too_small, backwards], used, min_factor_change=0.05) == pytest.approx(1 / 3)
    assert gt.precision_at_k([too_small], used, min_factor_change=0.02) == 1.0  # the stated share decides
    assert not gt.moves_dominant(backwards, min_factor_change=0.0)  # the wrong way never counts
    assert gt.moves_dominant(coord("wrinkles", 0.3))  # unsigned results: judged by their total only
    assert not gt.moves_dominant(coord("wrinkles", 0.01, signed=0.5))  # nothing visible changed
    assert gt.spurious_exposed([coord("glasses", 0.3, signed=0.06)], "glasses")
    assert not gt.spurious_exposed([coord("glasses", 0.3, signed=-0.06)], "glasses")
    labels = [gt._dominant_label(c, {"min_change": 0.05, "min_factor_change": 0.05})
              for c in (towards, backwards, coord("bg_hue", 0.3))]
    assert labels == ["wrinkles +0.080", "(wrinkles -0.080)", "bg_hue"]


# ---------------------------------------------------------------------------------------------
# True importance on classifiers whose answer is known

class RegionReader(nn.Module):
    """margin = weight * mean over a pixel mask of the image (channels averaged)."""

    def __init__(self, mask: torch.Tensor, weight: float = 1.0, channel: int | None = None):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.weight, self.channel = weight, channel

    def forward(self, x):
        x = x.mean(1) if self.channel is None else x[:, self.channel]
        m = self.weight * (x * self.mask).sum((1, 2)) / self.mask.sum()
        return torch.stack([-m / 2, m / 2], 1)


def test_importance_of_a_background_reader_is_the_background_hue():
    # The top-left corner is background in every image: only bg_hue can move it. Its endpoints
    # must not be 0 and 1 (the same hue), or this importance would be 0.
    mask = torch.zeros(32, 32)
    mask[:3, :3] = 1
    imp = gt.factor_importance(RegionReader(mask, channel=0), DATA, n=24)
    assert list(imp) == PROBE_FACTORS + [gt.NULL]
    assert imp[gt.NULL] < 1e-3 * imp["bg_hue"]  # per-image detail never reaches the corner
    assert max(imp, key=imp.get) == "bg_hue"
    assert imp["bg_hue"] > 0.1
    assert all(v < 1e-3 * imp["bg_hue"] for name, v in imp.items() if name != "bg_hue")
    assert gt.used_factors(imp) == ["bg_hue"]


def test_importance_of_a_glasses_detector_is_glasses():
    rows = sample_factors(48, seed=5, split="val")
    on, off = (render(intervene(rows, "glasses", v), 32).astype(np.float32) for v in (1.0, 0.0))
    mask = torch.from_numpy((np.abs(on - off).mean(-1).mean(0) > 40))  # where the frames are drawn
    assert 10 < mask.sum() < 200
    effects = gt.factor_effects(RegionReader(mask, weight=-4.0), DATA, n=32)  # dark there -> class 1
    imp = effects["importance"]
    assert imp == gt.factor_importance(RegionReader(mask, weight=-4.0), DATA, n=32)
    assert effects["direction"]["glasses"] == 1  # black frames darken the region: towards class 1
    flipped = gt.factor_effects(RegionReader(mask, weight=4.0), DATA, n=32)["direction"]
    assert flipped["glasses"] == -1
    assert effects["direction"]["bg_hue"] == effects["direction"]["fur_hue"] == 0  # a circle has no "up"
    assert max(imp, key=imp.get) == "glasses"
    assert "glasses" in gt.used_factors(imp)
    assert imp["glasses"] > 2 * max(v for name, v in imp.items() if name != "glasses")
    with pytest.raises(ValueError, match="synthetic"):
        gt.factor_importance(RegionReader(mask), DataConfig(dataset="afhq"), n=4)


# ---------------------------------------------------------------------------------------------
# Coordinates of a tiny untrained model

class BrightnessClassifier(nn.Module):
    """Class 1 iff the image is brighter than a threshold (set so that both classes occur)."""

    def __init__(self, threshold: float = 0.0):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(threshold))

    def forward(self, x):
        m = x.mean((1, 2, 3)) - self.threshold
        return torch.stack([-m, m], 1) * 10


@pytest.fixture(scope="module")
def tiny_explanation():
    torch.manual_seed(0)
    model = StylExArch.of("stylex", 32, get_profile("quick").stylex).build().eval()
    n = 12
    w = torch.randn(n, model.generator.w_dim, generator=torch.Generator().manual_seed(1))
    lat = Latents(w, fixed_noise(model, n, 1), "encoded")
    with torch.no_grad():
        brightness = model.generator(w, lat.noise).clamp(-1, 1).mean((1, 2, 3))
    classifier = BrightnessClassifier(float(brightness.median())).eval()
    s = model.generator.num_styles
    attrs = {"attfind": Attributes("attfind", [(1, 3), (0, s // 2), (1, s - 1)], [0.3, 0.2, 0.1]),
             "wu": Attributes("wu", [(0, 5), (1, 7)], [1.0, 0.5]),
             "random": Attributes("random", [(0, s - 2), (1, 1), (0, 2)], [0.0, 0.0, 0.0])}
    return Explanation(model, classifier, lat, lat, attrs, {})


def check_coords(coords, names, k):
    assert len(coords) == k
    for c in coords:
        assert set(c) >= {"coord", "changes", "total", "dominant", "purity"}
        assert isinstance(c["coord"], tuple) and len(c["coord"]) == 2
        assert list(c["changes"]) == names
        assert all(v >= 0 for v in c["changes"].values())
        assert c["total"] == pytest.approx(sum(c["changes"].values()), rel=1e-5)
        assert c["dominant"] == max(c["changes"], key=c["changes"].get)
        assert 0.0 <= c["purity"] <= 1.0
        if c["total"] > 0:
            assert c["purity"] == pytest.approx(c["changes"][c["dominant"]] / c["total"], rel=1e-5)


def test_coordinate_factors_structure(tiny_explanation):
    probe = AttributeProbe(32).eval()
    attrs = tiny_explanation.attributes["attfind"]
    coords = gt.coordinate_factors(probe, tiny_explanation, attrs, k=2, n_images=10)
    check_coords(coords, probe.factor_names, 2)
    assert [c["coord"] for c in coords] == attrs.top(2)
    assert all(c["total"] > 0 for c in coords)  # an edit of the full range changes the probe's reading
    still = gt.coordinate_factors(probe, tiny_explanation, attrs, k=2, n_images=10, amount=0.0)
    assert all(c["total"] < 1e-5 for c in still)  # float noise only (the groups render as smaller batches)


def test_signed_changes_follow_the_directions(tiny_explanation):
    probe = AttributeProbe(32).eval()
    attrs = tiny_explanation.attributes["attfind"]
    up = {name: 1 for name in probe.factor_names}
    plus = gt.coordinate_factors(probe, tiny_explanation, attrs, k=2, n_images=10, directions=up)
    minus = gt.coordinate_factors(probe, tiny_explanation, attrs, k=2, n_images=10,
                                  directions={name: -1 for name in probe.factor_names})
    none = gt.coordinate_factors(probe, tiny_explanation, attrs, k=2, n_images=10,
                                 directions={name: 0 for name in probe.factor_names})
    for p, m, z in zip(plus, minus, none):
        assert p["changes"] == m["changes"] == z["changes"]
        for name in probe.factor_names:
            if name in CYCLIC:
                continue
            assert p["signed"][name] == pytest.approx(-m["signed"][name], abs=1e-6)
            assert abs(p["signed"][name]) <= p["changes"][name] + 1e-6  # |mean| <= mean |.|
        assert z["signed"] == pytest.approx(z["changes"])  # no direction: the unsigned change
    assert "signed" not in gt.coordinate_factors(probe, tiny_explanation, attrs, k=1, n_images=10)[0]


def test_probe_on_reconstructions(tiny_explanation, tmp_path):
    data = dataclasses.replace(DATA, n_train=64, n_val=16, n_test=24, cache_dir=str(tmp_path / "cache"))
    probe = AttributeProbe(32).eval()
    res = gt.probe_on_reconstructions(probe, tiny_explanation, data, n=16, refit_images=0)
    assert set(res) == {"originals", "reconstructions"}
    for part in res.values():
        assert list(part) == probe.factor_names
        assert all(np.isfinite(m["r2"]) and m["mae"] >= 0 for m in part.values())
    # an untrained generator reconstructs nothing: the probe's reading of it differs from the originals'
    assert res["originals"] != res["reconstructions"]
    rows = gt.probe_validation_rows({("synth-age", "stylex"): {"probe_validation": res},
                                     ("synth-age", "stylegan2"): {"probe_validation": None}})
    assert [r["factor"] for r in rows] == probe.factor_names + ["mean"]
    assert set(rows[0]) == {"factor", "synth-age originals", "synth-age/stylex"}
    assert rows[-1]["synth-age/stylex"] == pytest.approx(np.mean([m["r2"] for m in res["reconstructions"].values()]))
    sampled = dataclasses.replace(tiny_explanation, model=StylExArch.of("stylegan2", 32, get_profile("quick").stylex)
                                  .build().eval())
    assert gt.probe_on_reconstructions(probe, sampled, data, n=4) is None


def test_probe_refitted_to_reconstructions(tiny_explanation, tmp_path):
    data = dataclasses.replace(DATA, n_train=64, n_val=16, n_test=24, cache_dir=str(tmp_path / "cache"))
    probe = AttributeProbe(32).eval()
    state = torch.get_rng_state()
    res = gt.probe_on_reconstructions(probe, tiny_explanation, data, n=16, refit_images=48, refit_epochs=2)
    assert torch.equal(torch.get_rng_state(), state)  # the refits draw from their own seed only
    assert set(res) == {"originals", "reconstructions", "refit", "refit_originals"}
    for part in ("refit", "refit_originals"):
        assert list(res[part]) == probe.factor_names
        assert all(np.isfinite(m["r2"]) and m["mae"] >= 0 for m in res[part].values())
    # the refit reads the reconstructions with a probe fitted to them, not the one passed in
    assert res["refit"] != res["reconstructions"]
    # deterministic, and the originals' refit is fitted once per data set and budget
    again = gt.probe_on_reconstructions(probe, tiny_explanation, data, n=16, refit_images=48, refit_epochs=2)
    assert again["refit"] == res["refit"] and again["refit_originals"] is res["refit_originals"]
    rows = gt.probe_validation_rows({("synth-age", "stylex"): {"probe_validation": res}})
    assert list(rows[0]) == ["factor", "synth-age originals", "synth-age originals refit", "synth-age/stylex",
                             "synth-age/stylex refit"]
    assert rows[-1]["synth-age/stylex refit"] == pytest.approx(np.mean([m["r2"] for m in res["refit"].values()]))


def test_evaluate_rows_and_figures(tiny_explanation, tmp_path):
    profile = get_profile("quick")
    task = profile.tasks[0]
    probe = AttributeProbe(32).eval()
    importance = {name: 0.0 for name in PROBE_FACTORS} | {"wrinkles": 3.0, "glasses": 1.0, "bg_hue": 0.2}
    direction = {name: 0 if name in CYCLIC else 1 for name in PROBE_FACTORS}
    res = gt.evaluate(profile, task, "stylex", tiny_explanation, probe=probe, k=2, n_images=6, min_change=0.0,
                      min_factor_change=-1.0, effects={"importance": importance, "direction": direction},
                      validate_probe=False)
    assert res["used_factors"] == ["wrinkles", "glasses"]  # bg_hue: 0.2 / 3.0 < 25%
    assert res["used_floor"] == pytest.approx(0.75)
    assert res["spurious"] == "glasses" and res["spurious_used"]
    assert list(res["methods"]) == list(gt.METHODS)
    for method, m in res["methods"].items():
        check_coords(m["coords"], probe.factor_names, 2)
        assert m["precision_at_k"] == gt.precision_at_k(m["coords"], res["used_factors"], min_change=0.0,
                                                        min_factor_change=-1.0)
        assert m["spurious_exposed"] == any(c["dominant"] == "glasses" for c in m["coords"])
        assert all(set(c["signed"]) == set(PROBE_FACTORS) for c in m["coords"])
    assert res["direction"] == direction and res["probe_validation"] is None
    assert res["min_factor_change"] == -1.0
    results = {(task.name, "stylex"): res, (task.name, "stylegan2"): res}
    rows = gt.fidelity_rows(results)
    assert len(rows) == 6 and {r["model"] for r in rows} == {"stylex", "stylegan2"}
    assert rows[0]["dominant_factors"].count(",") == 1
    gt.plot_fidelity(results, tmp_path / "fidelity.png")
    gt.plot_importance({task.name: importance}, tmp_path / "importance.png")
    assert (tmp_path / "fidelity.png").stat().st_size > 1000
    assert (tmp_path / "importance.png").stat().st_size > 1000


def test_target_verdict():
    def res(p_att, p_wu, p_rand, exposed, purities):
        coords = [coord("wrinkles", 0.2) | {"purity": p} for p in purities]
        return {"methods": {"attfind": {"precision_at_k": p_att, "spurious_exposed": exposed, "coords": coords},
                            "wu": {"precision_at_k": p_wu}, "random": {"precision_at_k": p_rand}}}

    v = gt.target_verdict(res(1.0, 0.0, 0.25, True, [0.2, 0.3]), planted=True)
    assert v["met"] and v["mean_purity"] == pytest.approx(0.25)
    assert v["no_preference"] == pytest.approx(1 / len(PROBE_FACTORS))
    assert not gt.target_verdict(res(1.0, 0.0, 0.25, False, [0.2]), planted=True)["met"]  # shortcut not exposed
    assert gt.target_verdict(res(1.0, 0.0, 0.25, False, [0.2]), planted=False)["met"]     # nothing planted
    assert not gt.target_verdict(res(0.5, 0.0, 0.0, True, [0.2]), planted=True)["met"]    # below 0.75
    assert not gt.target_verdict(res(0.75, 0.75, 0.0, True, [0.2]), planted=True)["met"]  # not above Wu


def test_real_change_purity_reads_a_real_change_mostly_as_its_own_factor(tmp_path):
    """A real one-factor change of the renderer, read by a (briefly) trained probe: the easy factors
    dominate their own change; binary factors are read only at step 1; the table has every column."""
    from repro.probe import train_probe

    data = DataConfig(task="synth-age", resolution=32, n_train=64, n_val=16, n_test=64,
                      cache_dir=str(tmp_path / "cache"))
    probe = train_probe(data, tmp_path / "probe", n_train=512, epochs=3, progress=False)
    rows = gt.real_change_purity(probe, data, n=64)
    assert {r["step"] for r in rows} == {0.25, 1.0}
    binary = [r for r in rows if FACTOR_BY_NAME[r["factor"]].kind == "binary"]
    assert binary and all(r["step"] == 1.0 for r in binary)
    assert all(0.0 <= r["purity"] <= 1.0 and r["total"] > 0 for r in rows)
    full = {r["factor"]: r for r in rows if r["step"] == 1.0}
    for name in ("hair_grey", "bg_hue", "fur_hue"):  # the factors test_probe.py finds easy to read
        assert full[name]["dominant"] == name and full[name]["purity"] > 0.3, full[name]
    table = gt.real_change_rows(rows)
    assert {len(row) for row in table} == {5} and any(row["total @ 0.25"] == "-" for row in table)
    with pytest.raises(ValueError, match="synthetic"):
        gt.real_change_purity(probe, dataclasses.replace(data, dataset="folder"))
