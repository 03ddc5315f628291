"""Reduced-precision flags: validated, checked against fp32, and the same training step as fp32 within tolerance."""

from __future__ import annotations

import json

import pytest
import torch

from repro import precision
from repro.config import DataConfig, StylExConfig
from repro.losses import LossWeights
from repro.model import StylExModel, load_stylex
from repro.networks import build_classifier
from repro.training import train_stylex

CPU = torch.device("cpu")


def test_validate_names_the_flag_and_the_fix():
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of: fp32, tf32, bf16"):
        precision.validate("fp16", CPU)
    with pytest.raises(ValueError, match="'tf32' only changes CUDA .* use --precision fp32"):
        precision.validate("tf32", CPU)
    precision.validate("bf16", CPU)
    precision.validate("fp32", CPU)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return StylExModel("stylex", 16, 8, 16, 2).eval(), build_classifier(2).eval()


def test_bf16_render_is_close_to_fp32_but_not_identical(nets):
    check = precision.numerical_check(*nets, "bf16", CPU, batch=2)
    assert check["ok"], check
    assert 0 < check["image_mean_abs"] <= precision.IMAGE_TOLERANCE  # the check compares two real renders
    again = precision.numerical_check(*nets, "fp32", CPU, batch=2)
    assert again["image_max_abs"] == 0 and again["ok"]


def test_check_fails_and_stops_when_beyond_tolerance(nets, monkeypatch):
    monkeypatch.setattr(precision, "IMAGE_TOLERANCE", 1e-9)
    check = precision.numerical_check(*nets, "bf16", CPU, batch=2)
    assert not check["ok"]
    with pytest.raises(precision.PrecisionMismatch, match="precision 'bf16' differs from fp32 beyond tolerance.*--precision fp32"):
        precision.require_close(check)


def test_matmul_mode_restores_the_flags():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with precision.matmul_mode("tf32"):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    with precision.matmul_mode("fp32"):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_auto_is_bf16_only_where_the_device_has_it_natively(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert precision.native_bf16(CPU) and precision.resolve("auto", CPU) == "bf16"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert precision.resolve("auto", CPU) == "bf16"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f"})  # bf16 would be emulated
    assert not precision.native_bf16(CPU) and precision.resolve("auto", CPU) == "fp32"
    monkeypatch.setattr(precision, "_cpu_flags", set)  # no /proc/cpuinfo (macOS, Windows)
    assert precision.resolve("auto", CPU) == "fp32"
    for explicit in ("fp32", "bf16", "tf32"):  # an explicit choice is kept as it is
        assert precision.resolve(explicit, CPU) == explicit
    assert precision.resolve("auto", torch.device("meta")) == "fp32"
    precision.validate("auto", CPU)


def test_auto_training_records_what_it_resolved_to(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512_bf16"})
    _first_step_losses(tmp_path / "bf16", precision="auto")
    meta = json.loads((tmp_path / "bf16" / "metadata.json").read_text())
    assert (meta["precision"], meta["precision_requested"]) == ("bf16", "auto") and meta["precision_check"]["ok"]
    monkeypatch.setattr(precision, "_cpu_flags", set)
    _first_step_losses(tmp_path / "fp32", precision="auto")
    meta = json.loads((tmp_path / "fp32" / "metadata.json").read_text())
    assert (meta["precision"], meta["precision_requested"]) == ("fp32", "auto") and "precision_check" not in meta


def _first_step_losses(tmp_path, mode: str = "stylex", iterations: int = 1, **flags) -> dict[str, float]:
    data = DataConfig(task="synth-age", resolution=32, n_train=32, n_val=8, n_test=8,
                      cache_dir=str(tmp_path.parent / "cache"))
    config = StylExConfig(channels=8, latent_dim=16, batch_size=4, iterations=iterations, mapping_layers=2,
                          log_every=1, sample_every=100, checkpoint_every=100, losses=LossWeights(lpips=0.0), **flags)
    torch.manual_seed(0)
    classifier = build_classifier(2).eval()
    train_stylex(mode, data, config, classifier, tmp_path, device="cpu", progress=False)
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["precision"] == precision.resolve(config.precision, CPU) and meta["channels_last"] == config.channels_last
    assert meta.get("precision_requested") == (config.precision if config.precision == "auto" else None)
    if meta["precision"] != "fp32":
        assert meta["precision_check"]["ok"]
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    return {k: v for k, v in record.items() if k in ("d_adv", "adv", "img_l1", "latent_l1", "classifier_kl", "r1")}


def test_training_step_in_bf16_and_channels_last_matches_fp32(tmp_path):
    ref = _first_step_losses(tmp_path / "fp32")
    nhwc = _first_step_losses(tmp_path / "nhwc", channels_last=True)
    bf16 = _first_step_losses(tmp_path / "bf16", precision="bf16")
    assert set(ref) >= {"d_adv", "adv", "img_l1", "latent_l1", "classifier_kl"}
    for name, value in ref.items():
        assert nhwc[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name  # a layout change only
        assert bf16[name] == pytest.approx(value, rel=0.05, abs=0.02), name  # bf16: ~3 significant digits


@pytest.mark.parametrize("mode", ["stylegan2", "stylex-alt"])
def test_sampled_modes_train_in_bf16_as_in_fp32(tmp_path, mode):
    """The passes through the mapping network (every step of stylegan2, every alt_ratio-th of
    stylex-alt) in bf16: the mapping's running w average must not mix dtypes (it crashed)."""
    iterations = 1 if mode == "stylegan2" else 2  # stylex-alt's second step is its first z pass
    ref = _first_step_losses(tmp_path / "fp32", mode=mode, iterations=iterations)
    bf16 = _first_step_losses(tmp_path / "bf16", mode=mode, iterations=iterations, precision="bf16")
    assert "adv" in ref and set(bf16) == set(ref)
    for name, value in ref.items():
        assert bf16[name] == pytest.approx(value, rel=0.05, abs=0.02), name
    w_avg = load_stylex(tmp_path / "bf16").model.mapping.w_avg  # kept in fp32 whatever the step's precision
    assert w_avg.dtype == torch.float32 and torch.isfinite(w_avg).all()
