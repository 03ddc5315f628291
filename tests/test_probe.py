"""The attribute probe (repro.probe): normalised units, training, reuse and reading images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from repro import probe as pr
from repro.checkpoint import CheckpointError
from repro.config import DataConfig
from repro.data.synthetic import FACTORS, intervene, render, sample_factors

DATA = DataConfig(dataset="synthetic", task="synth-age", resolution=32, n_train=1024, n_val=128, n_test=256)


# ---------------------------------------------------------------------------------------------
# Units

def test_cyclic_factors_are_the_renderers_hues():
    assert set(pr.CYCLIC) == {f.name for f in FACTORS if "cyclic" in f.role}
    assert pr.PROBE_FACTORS == [f.name for f in FACTORS if f.name != "detail_seed"]


def test_factor_change_wraps_hues_and_scales_them_to_one():
    names = ["wrinkles", "bg_hue"]
    before = torch.tensor([[0.2, 0.95], [0.0, 0.0], [1.0, 0.25]])
    after = torch.tensor([[0.7, 0.05], [1.0, 0.5], [1.0, 0.25]])
    expected = torch.tensor([[0.5, 0.2], [1.0, 1.0], [0.0, 0.0]])  # 0.95 -> 0.05 is 0.1 round the circle
    assert torch.allclose(pr.factor_change(before, after, names), expected, atol=1e-6)


def test_normalise_factors_uses_each_range():
    rows = intervene(intervene(sample_factors(3, 0), "pos_x", -1.0), "scale", 1.1)
    norm = pr.normalise_factors(rows)
    assert norm.shape == (3, len(pr.PROBE_FACTORS))
    assert np.allclose(norm[:, pr.PROBE_FACTORS.index("pos_x")], 0.0)
    assert np.allclose(norm[:, pr.PROBE_FACTORS.index("scale")], 1.0)
    assert norm.min() >= 0 and norm.max() <= 1


# ---------------------------------------------------------------------------------------------
# The probe

@pytest.fixture(scope="module")
def trained_probe(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("probe")
    probe = pr.train_probe(DATA, run_dir, n_train=512, epochs=3, progress=False)
    return probe, run_dir


def test_probe_training_beats_the_mean_and_is_reused(trained_probe):
    probe, run_dir = trained_probe
    metrics = json.loads((run_dir / pr.PROBE_METRICS).read_text())
    assert set(metrics["factors"]) == set(pr.PROBE_FACTORS)
    # R^2 > 0 means better than predicting the mean; the hues and grey hair are easy to read
    for name in ("hair_grey", "bg_hue", "fur_hue"):
        assert metrics["factors"][name]["r2"] > 0.5, (name, metrics["factors"][name])
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]
    mtime = (run_dir / pr.PROBE_CHECKPOINT).stat().st_mtime_ns
    again = pr.train_probe(DATA, run_dir, n_train=512, epochs=3, progress=False)
    assert (run_dir / pr.PROBE_CHECKPOINT).stat().st_mtime_ns == mtime  # reused, not retrained
    for a, b in zip(probe.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="epochs"):
        pr.load_probe(run_dir, expected_config={"epochs": 5})


def test_fit_probe_is_train_probes_fit_and_leaves_the_global_rng(trained_probe):
    probe, run_dir = trained_probe
    config = json.loads((run_dir / "config.json").read_text())["probe"]
    images, targets = pr._render_split(512, config["seed"], "train", 32, False, "")
    state = torch.get_rng_state()
    fitted, history = pr.fit_probe(images, targets, resolution=32, epochs=3, seed=config["seed"],
                                   batch_size=config["batch_size"], progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(probe.state_dict().values(), fitted.state_dict().values()):
        assert torch.equal(a, b)  # train_probe is fit_probe on its own renders
    assert len(history) == 3 and not fitted.training
    # float images in [-1, 1] (generator output) fit as their uint8 originals do
    floats, _ = pr.fit_probe(images.float() / 127.5 - 1.0, targets, resolution=32, epochs=3, seed=config["seed"],
                             batch_size=config["batch_size"], progress=False)
    for a, b in zip(probe.state_dict().values(), floats.state_dict().values()):
        assert torch.equal(a, b)


def test_predict_uint8_shape_range_and_resize(trained_probe):
    probe, _ = trained_probe
    images = render(sample_factors(5, seed=9, split="test"), 32)
    out = probe.predict_uint8(images)
    assert out.shape == (5, len(probe.factor_names)) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        assert np.allclose(out, probe(x).numpy(), atol=1e-5)
    big = probe.predict_uint8(render(sample_factors(5, seed=9, split="test"), 64))
    assert big.shape == out.shape
    hue = probe.factor_names.index("bg_hue")  # a 64 px picture of the same faces reads about the same
    change = pr.factor_change(torch.from_numpy(out), torch.from_numpy(big), probe.factor_names)
    assert float(change[:, hue].mean()) < 0.25
    with pytest.raises(ValueError, match="uint8"):
        probe.predict_uint8(images.astype(np.float32))


def test_probe_metrics_read_uint8_and_float_images_alike(trained_probe):
    probe, _ = trained_probe
    factors = sample_factors(64, seed=3, split="test")
    images = torch.from_numpy(render(factors, 32)).permute(0, 3, 1, 2).contiguous()
    truth = pr.normalise_factors(factors)
    as_uint8 = pr.probe_metrics(probe, images, truth)
    as_float = pr.probe_metrics(probe, images.float() / 127.5 - 1.0, truth)
    for name in probe.factor_names:
        assert as_float[name]["r2"] == pytest.approx(as_uint8[name]["r2"], abs=1e-5)
    assert pr.mean_r2(as_uint8) == pytest.approx(np.mean([m["r2"] for m in as_uint8.values()]))
    noisy = pr.probe_metrics(probe, images.float() / 127.5 - 1.0 + 0.5 * torch.randn(images.shape), truth)
    assert pr.mean_r2(noisy) < pr.mean_r2(as_uint8)  # a worse picture reads worse


def test_degrade_blurs_and_adds_noise_reproducibly():
    x = torch.from_numpy(render(sample_factors(6, seed=2, split="test"), 32)).permute(0, 3, 1, 2).float() / 127.5 - 1
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.allclose(pr.degrade(x, gen(), blur=1e-6, noise=0.0), x, atol=1e-5)  # sigma ~ 0: unchanged
    blurred = pr.degrade(x, gen(), blur=2.0, noise=0.0)
    assert blurred.shape == x.shape and torch.equal(blurred, pr.degrade(x, gen(), blur=2.0, noise=0.0))

    def edges(img):  # mean |horizontal gradient|: blur lowers it
        return (img[..., 1:] - img[..., :-1]).abs().mean().item()

    assert edges(blurred) < edges(x)
    assert blurred.mean().item() == pytest.approx(x.mean().item(), abs=0.02)  # blur moves no brightness
    noisy = pr.degrade(x, gen(), blur=0.0, noise=0.3)
    assert 0.01 < (noisy - x).abs().mean().item() < 0.3 and noisy.min() >= -1 and noisy.max() <= 1


def test_probe_records_its_augmentation(tmp_path):
    probe = pr.train_probe(DATA, tmp_path / "aug", n_train=64, epochs=2, progress=False,
                           augment={"blur": 1.0, "noise": 0.2})
    assert json.loads((tmp_path / "aug" / "config.json").read_text())["probe"]["augment"] == {"blur": 1.0, "noise": 0.2}
    with pytest.raises(CheckpointError, match="augment"):
        pr.load_probe(tmp_path / "aug", expected_config={"augment": None})
    assert probe.predict(torch.zeros(2, 3, 32, 32)).shape == (2, len(pr.PROBE_FACTORS))


def test_probe_cyclic_outputs_round_trip():
    probe = pr.AttributeProbe(32)
    values = torch.rand(7, len(probe.factor_names))
    raw = probe.encode_targets(values)
    assert raw.shape == (7, probe.num_outputs) and probe.num_outputs == len(probe.factor_names) + len(pr.CYCLIC)
    assert torch.allclose(probe.decode(raw), values, atol=1e-5)


def test_probe_budget_scales_with_the_data_and_is_capped():
    def budget(n):
        return pr.probe_budget(DataConfig(dataset="synthetic", task="synth-age", resolution=32, n_train=n))

    assert budget(12_000) == (pr.MAX_PROBE_IMAGES, 8) == (32_768, 8)  # the default profile
    assert budget(1_024) == (4_096, 8)  # the quick profile
    assert budget(4) == (64, 8)
    assert budget(10**6)[0] == pr.MAX_PROBE_IMAGES
