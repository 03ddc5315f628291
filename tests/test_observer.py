"""The second observer C' and the edit size (repro.observer): hand-made cases whose answers are known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.classifier import load_classifier, run_config
from repro.config import PROFILES, ClassifierConfig, get_profile
from repro.fliprate import EditRecorder, flip_rate, flip_rate_curve, pixel_change_255
from repro.networks import PlainCNN, build_classifier
from repro.observer import (reconstruction_scores, renderer_factor_change, renderer_factor_sizes, validity_curve,
                            validity_summary)
from test_fliprate import ToyClassifier, ToyGenerator, attrs, toy_styles


# -- C': another architecture, another seed, the same classifier stage --------------------------

@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_has_an_observer_of_another_architecture_and_seed(name):
    profile = get_profile(name)
    assert profile.observer.arch != profile.classifier.arch
    assert profile.observer.seed != profile.classifier.seed


def test_observer_architecture_trains_a_step_and_differs_from_the_classifier():
    torch.manual_seed(0)
    model = build_classifier(2, "cnn")
    assert isinstance(model, PlainCNN) and type(model) is not type(build_classifier(2))
    x = torch.randn(16, 3, 32, 32)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    resnet = build_classifier(2, "resnet18")
    assert isinstance(resnet.maxpool, nn.Identity) and resnet.conv1.stride == (1, 1)
    with torch.no_grad():
        for size in (32, 64):
            assert model.eval()(torch.zeros(1, 3, size, size)).shape == (1, 2)
    with pytest.raises(ValueError, match="unknown classifier architecture 'vgg'"):
        build_classifier(2, "vgg")
    with pytest.raises(ValueError, match="ClassifierConfig.arch 'vgg' is unknown"):
        ClassifierConfig(arch="vgg")


def test_classifier_runs_record_the_same_config_as_before_the_arch_choice():
    data = get_profile("quick").tasks[0].classifier_data
    assert "arch" not in run_config(data, ClassifierConfig())["classifier"]  # finished C runs stay valid
    assert run_config(data, ClassifierConfig(arch="cnn"))["classifier"]["arch"] == "cnn"


def test_train_observer_writes_its_own_run_and_loads(tmp_path):
    from repro.observer import load_observer, observer_dir, train_observer

    profile = get_profile("quick", run_root=str(tmp_path / "runs"))
    task = profile.tasks[0]
    data = task.classifier_data
    data.cache_dir = str(tmp_path / "cache")
    data.n_train, data.n_val, data.n_test = 128, 32, 32
    profile.observer.epochs = 1
    assert load_observer(profile, task) is None
    run = train_observer(profile, task, device="cpu", progress=False)
    assert run.run_dir == observer_dir(profile, task) == profile.run_dir(task.name, "observer")
    assert run.metrics["arch"] == "cnn" and run.metrics["seed"] == profile.observer.seed
    loaded = load_observer(profile, task)
    assert isinstance(loaded.model, PlainCNN) and isinstance(load_classifier(run.run_dir).model, PlainCNN)
    x = torch.zeros(2, 3, 32, 32)
    assert torch.allclose(loaded.model(x), run.model(x), atol=1e-5)
    same = get_profile("quick", run_root=str(tmp_path / "runs"))
    same.observer = ClassifierConfig(seed=same.classifier.seed)
    with pytest.raises(ValueError, match="the same network as profile.classifier"):
        train_observer(same, same.tasks[0], device="cpu")


# -- counterfactual validity: agreed-only flips, pixel sizes -------------------------------------

class ThresholdObserver(nn.Module):
    """Class 1 iff the mean grey exceeds ``t`` (ToyClassifier is this with t = 0)."""

    def __init__(self, t: float):
        super().__init__()
        self.register_buffer("t", torch.tensor(t))

    def forward(self, img):
        m = img.mean(dim=(1, 2, 3)) - self.t
        return torch.stack([-m, m], 1)


def test_agreed_only_flip_count_on_a_hand_made_case():
    """Grey levels v = 0.5 s_0: -0.475 ... 0.525 (C: class 1 iff v > 0; C': iff v > 0.1).

    C and C' disagree on one image (v = 0.081). The edit sends class 1 to s_0 = -1 (v = -0.5: both
    flip) and class 0 to s_0 = 0.1 (v = 0.05: C flips, C' stays at 0). So C flips all 10, and C'
    flips the 4 agreed class-1 images of the 9 agreed ones.
    """
    G, C = ToyGenerator(), ToyClassifier()
    conv, rgb, noise = toy_styles()
    v = conv[0][:, 0] * 0.5
    smin, smax = torch.full((5,), -1.0), torch.full((5,), 0.1)
    recorder = EditRecorder([ThresholdObserver(0.1)])
    res = flip_rate(G, C, conv, rgb, noise, attrs((0, 0)), k=1, style_min=smin, style_max=smax, recorder=recorder)
    plain = flip_rate(G, C, conv, rgb, noise, attrs((0, 0)), k=1, style_min=smin, style_max=smax)
    assert res.rate == plain.rate == 1.0 and torch.equal(res.flipped, plain.flipped)  # the recorder changes nothing
    summary = validity_summary(recorder, 1)
    assert summary["n_images"] == 10 and summary["flip_C"] == 1.0
    assert summary["n_agreed"] == 9 and summary["agreement"] == pytest.approx(0.9)
    assert summary["flip_C_agreed"] == 1.0
    assert summary["flip_Cprime"] == pytest.approx(4 / 9)
    assert summary["flip_ratio"] == pytest.approx(4 / 9)
    # pixel change: uniform grey, so per-image mean == max == |v_after - v_before| * 127.5
    after = torch.where(v > 0, torch.tensor(-0.5), torch.tensor(0.05))
    expected = (after - v).abs() * 127.5
    record = recorder.records[0]
    assert torch.allclose(record.pixel_mean_255[0], expected, atol=1e-4)
    assert torch.allclose(record.pixel_max_255[0], expected, atol=1e-4)
    assert summary["pixel_mean_255"] == pytest.approx(float(expected.mean()), abs=1e-4)
    assert summary["pixel_max_255_max"] == pytest.approx(float(expected.max()), abs=1e-4)
    # no observer: pixels only, C' fields None
    alone = EditRecorder()
    flip_rate(G, C, conv, rgb, noise, attrs((0, 0)), k=1, style_min=smin, style_max=smax, recorder=alone)
    s = validity_summary(alone, 1)
    assert s["flip_Cprime"] is None and s["n_agreed"] is None and s["pixel_mean_255"] == summary["pixel_mean_255"]


def test_classifier_as_its_own_observer_agrees_everywhere_on_a_tiny_generator():
    """On the fast path (resumed renders, BatchNorm-folded classifiers, repeats), C' = C must read
    every render exactly as C: all images agree and C' flips exactly where C does, at every k."""
    from repro.networks import Generator

    torch.manual_seed(0)
    G = Generator(32, 8).eval()
    torch.manual_seed(3)
    C = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 64, 2)).eval()
    with torch.no_grad():
        C[1].running_mean.normal_()
        conv, rgb = G.styles(torch.randn(12, 514, generator=torch.Generator().manual_seed(4)))
    noise = G.make_noise(12, generator=torch.Generator().manual_seed(5))
    a = attrs(*[(i % 2, 3 * i + 40) for i in range(6)])
    plain = flip_rate_curve(G, C, conv, rgb, noise, a, ks=[1, 3, 6], repeats=2)
    recorder = EditRecorder([C])
    curve = flip_rate_curve(G, C, conv, rgb, noise, a, ks=[1, 3, 6], repeats=2, recorder=recorder)
    assert curve.rates == plain.rates and curve.mean == plain.mean  # unchanged numbers
    assert len(recorder.records) == 2
    vc = validity_curve(recorder)
    assert vc["ks"] == [1, 3, 6] and vc["flip_C"] == pytest.approx(curve.mean)
    for k in (1, 3, 6):
        s = validity_summary(recorder, k)
        assert s["n_agreed"] == s["n_images"] == 12
        assert s["flip_Cprime"] == s["flip_C_agreed"] == pytest.approx(curve.at(k).mean)
        assert s["pixel_max_255"] >= s["pixel_mean_255"] > 0
    assert sorted(torch.cat([r.indices for r in recorder.records]).tolist()) == list(range(12))


def test_pixel_change_scale():
    minus = torch.full((2, 3, 4, 4), -1.0)
    mean, peak = pixel_change_255(minus, minus + 2.0)  # an edit of +2 in [-1, 1] units
    assert mean.tolist() == [255.0, 255.0] and peak.tolist() == [255.0, 255.0]
    one_level = minus.clone()
    one_level[0, 0, 0, 0] += 2.0 / 255.0
    mean, peak = pixel_change_255(minus, one_level)
    assert peak[0].item() == pytest.approx(1.0) and mean[0].item() == pytest.approx(1.0 / 48)
    assert peak[1].item() == 0.0
    mean, peak = pixel_change_255(minus, minus + 5.0)  # clamped first: still the full range
    assert peak.tolist() == [255.0, 255.0]


def test_reconstruction_scores_on_hand_made_images():
    C, observer = ToyClassifier(), ThresholdObserver(0.1)
    grey = torch.tensor([-0.5, -0.2, 0.05, 0.3, 0.6])
    originals = grey.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    reconstructions = (originals * 0.5).contiguous()  # halved contrast: both still read every image alike
    labels = torch.tensor([0, 0, 1, 1, 1])
    out = reconstruction_scores(C, originals, reconstructions, labels, observer)
    assert out["n"] == 5 and out["agreement_C"] == 1.0
    assert out["acc_C_originals"] == out["acc_C_reconstructions"] == 1.0
    # C' on originals: [0, 0, 0, 1, 1] -> 4/5 right; on reconstructions (0.025, 0.15, 0.3): [0, 0, 0, 1, 1]
    assert out["acc_Cprime_originals"] == pytest.approx(0.8)
    assert out["acc_Cprime_reconstructions"] == pytest.approx(0.8)
    assert out["acc_Cprime_ratio"] == pytest.approx(1.0)
    faded = originals * 0.1  # every grey within 0.06 of 0: C' reads class 0 everywhere
    out = reconstruction_scores(C, originals, faded, labels, observer)
    assert out["agreement_C"] == 1.0 and out["acc_Cprime_reconstructions"] == pytest.approx(0.4)
    assert reconstruction_scores(C, originals, faded, None, None)["acc_Cprime_originals"] is None
    assert reconstruction_scores(C, originals, faded, torch.full((5,), -1))["acc_C_originals"] is None


# -- the size of a real one-factor change -------------------------------------------------------

def test_renderer_one_factor_change_is_positive_for_a_factor_and_zero_for_an_identical_render():
    from repro.data.synthetic import sample_factors

    factors = sample_factors(4, seed=0, split="test")
    glasses = renderer_factor_change(factors, "glasses", 0.0, 1.0)
    assert glasses["n"] == 4 and glasses["pixel_mean_255"] > 0 and glasses["pixel_max_255"] > 32
    assert all(v > 0 for v in glasses["per_image_max_255"])
    same = renderer_factor_change(factors, "glasses", 1.0, 1.0)
    assert same["pixel_mean_255"] == 0.0 and same["pixel_max_255_max"] == 0.0
    sizes = renderer_factor_sizes(32, 4, names=["wrinkles", "glasses", "bg_hue"])
    assert set(sizes) == {"wrinkles", "glasses", "bg_hue"} and sizes["glasses"]["change"] == "0 -> 1"
    assert sizes["bg_hue"]["change"] == "0 -> 0.5" and sizes["bg_hue"]["pixel_mean_255"] > 0  # cyclic: not 0 -> 1
    assert sizes["glasses"]["pixel_mean_255"] == pytest.approx(glasses["pixel_mean_255"])
    assert sizes["wrinkles"]["pixel_max_255"] > 0
    with pytest.raises(ValueError, match=r"unknown factor\(s\) \['hat'\]"):
        renderer_factor_sizes(32, 4, names=["hat"])


# -- explain.json gains the fields -----------------------------------------------------------------

def _tiny_trained_run(tmp_path):
    """A quick-profile run root with an (untrained) tiny StylEx model, classifier and observer in place."""
    from fake_runs import fake_finished_run

    return fake_finished_run(tmp_path, ("stylex",), observer=True)


def test_explain_json_gains_the_observer_fields(tmp_path):
    from repro.explain import explain_model

    profile, task = _tiny_trained_run(tmp_path)
    obs_ckpt = profile.run_dir(task.name, "observer") / "classifier.pt"
    obs_ckpt.rename(obs_ckpt.with_suffix(".hidden"))  # first without C'
    first = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=2).results
    assert first["observer"]["available"] is False
    assert "python -m repro train-observer --profile quick --task synth-age" in first["observer"]["note"]
    for method, res in first["methods"].items():
        v = res["observer"]
        assert v["flip_C"] == pytest.approx(res["flip_rate"]["mean"])  # the flip rate's own number
        assert v["flip_Cprime"] is None and v["n_agreed"] is None
        assert v["pixel_max_255"] >= v["pixel_mean_255"] >= 0
        assert len(v["single"]) == 2 and v["curve"]["ks"] == res["curve"]["ks"]
    assert first["observer"]["reconstruction"]["acc_Cprime_originals"] is None
    assert first["observer"]["reconstruction"]["n"] == 32

    obs_ckpt.with_suffix(".hidden").rename(obs_ckpt)  # C' trained after: the results are recomputed
    second = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=2).results
    assert second["observer"]["available"] is True and second["observer"]["note"] is None
    assert second["observer"]["arch"] == "cnn"
    rec = second["observer"]["reconstruction"]
    assert {"agreement_C", "acc_Cprime_originals", "acc_Cprime_reconstructions"} <= set(rec)
    assert rec["acc_Cprime_originals"] is not None
    for method, res in second["methods"].items():
        v = res["observer"]
        assert {"flip_C", "flip_Cprime", "n_agreed", "pixel_mean_255", "pixel_max_255"} <= set(v)
        assert isinstance(v["n_agreed"], int) and 0 <= v["n_agreed"] <= v["n_images"]
        assert v["flip_Cprime"] is None if v["n_agreed"] == 0 else 0.0 <= v["flip_Cprime"] <= 1.0
        # existing numbers unchanged by the observer
        assert res["flip_rate"] == first["methods"][method]["flip_rate"]
        assert res["curve"] == first["methods"][method]["curve"]
        assert v["pixel_mean_255"] == pytest.approx(first["methods"][method]["observer"]["pixel_mean_255"])
    again = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=2).results
    assert again == second  # reused


def test_observer_rows_read_explain_results():
    from repro.observer import reconstruction_rows, renderer_rows, single_rows, validity_rows

    results = {("t", "stylex"): {"observer": {"reconstruction": {"n": 4, "agreement_C": 0.75}}, "methods": {
        "attfind": {"observer": {"k": 10, "flip_C": 0.9, "flip_Cprime": 0.5, "n_agreed": 70, "flip_C_agreed": 0.9,
                                 "pixel_mean_255": 2.0, "pixel_max_255": 20.0,
                                 "single": [{"coord": [1, 5], "pixel_mean_255": 1.0, "pixel_max_255": 9.0}]}},
        "wu": {}}}, ("t", "stylegan2"): {"methods": {}}}
    rows = validity_rows(results)
    assert rows[0]["flip_Cprime"] == 0.5 and rows[0]["method"] == "attfind" and rows[0]["pixel_max_255"] == 20.0
    assert rows[1]["flip_C"] is None  # results without the measures: Nones, no failure
    assert single_rows(results) == [{"task": "t", "model": "stylex", "method": "attfind", "rank": 1, "coord": (1, 5),
                                     "pixel_mean_255": 1.0, "pixel_max_255": 9.0, "pixel_max_255_max": None,
                                     "flip_C": None, "flip_Cprime": None, "n_agreed": None}]
    assert reconstruction_rows(results) == [{"task": "t", "model": "stylex", "n": 4, "agreement_C": 0.75}]
    sizes = {"glasses": {"change": "0 -> 1", "n": 2, "pixel_mean_255": 3.14159, "pixel_max_255": 200.0,
                         "pixel_max_255_max": 210.0}}
    assert renderer_rows(sizes)[0]["pixel_mean_255"] == 3.14


def test_write_observer_tables(tmp_path):
    from repro.observer import write_observer_tables

    results = {("t", "stylex"): {"observer": {"note": "no trained second observer in x", "reconstruction": None},
                                 "methods": {"attfind": {"observer": {"k": 4, "flip_C": 0.5, "single": []}}}}}
    out = write_observer_tables(results, tmp_path, renderer_size=32, renderer_n=2)
    assert set(out) == {"second_observer", "renderer_factor_size"}  # no rows: no table
    assert "* t/stylex: no trained second observer in x" in out["second_observer"]
    assert (tmp_path / "second_observer.csv").exists() and "glasses" in out["renderer_factor_size"]
