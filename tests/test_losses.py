"""Loss terms on toy inputs, the combiner's bookkeeping, one optimisation step (LPIPS: test_perceptual.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repro.losses import (LossWeights, StylExLoss, classifier_kl, d_logistic_loss, d_r1_penalty,
                          g_nonsaturating_loss, g_path_length_penalty, image_l1, latent_l1)
from repro.networks import Discriminator, Generator


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def test_adversarial_losses_have_the_right_sign():
    hi, lo = torch.full((8,), 3.0), torch.full((8,), -3.0)
    good, bad = d_logistic_loss(hi, lo), d_logistic_loss(lo, hi)
    assert _finite(good) and _finite(bad) and 0 < good < bad
    assert 0 < g_nonsaturating_loss(hi) < g_nonsaturating_loss(lo)


def test_reconstruction_and_classifier_terms():
    x = torch.randn(4, 3, 8, 8)
    assert image_l1(x, x) == 0 and image_l1(x, x + 0.5).item() == pytest.approx(0.5)
    assert latent_l1(x[:, 0, 0], x[:, 0, 0] - 1).item() == pytest.approx(1.0)
    logits = torch.randn(4, 2)
    assert classifier_kl(logits, logits).abs() < 1e-6
    assert classifier_kl(logits, logits + torch.tensor([2.0, -2.0])) > 0
    assert classifier_kl(logits, logits + 7.0).abs() < 1e-6  # softmax is shift invariant
    assert _finite(classifier_kl(torch.tensor([[1e4, -1e4]]), torch.tensor([[-1e4, 1e4]])))


def test_r1_zero_for_a_blind_discriminator_positive_otherwise():
    img = torch.randn(4, 3, 8, 8).requires_grad_(True)
    bias = nn.Parameter(torch.ones(1))
    assert d_r1_penalty(bias.expand(4) * 1.0, img) == 0  # ignores its input
    assert d_r1_penalty(torch.zeros(4), img) == 0        # no graph at all
    conv = nn.Conv2d(3, 1, 3)
    r1 = d_r1_penalty(conv(img).mean(dim=[1, 2, 3]), img)
    assert _finite(r1) and r1 > 0
    r1.backward()  # create_graph=True: the penalty trains D
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_path_length_penalty_runs_and_updates_the_mean():
    torch.manual_seed(0)
    G = Generator(32, 8)
    w = torch.randn(2, 514, requires_grad=True)
    penalty, length, new_mean = g_path_length_penalty(G(w, G.zero_noise(2)), w, torch.zeros(()), decay=0.01)
    assert all(_finite(t) for t in (penalty, length, new_mean))
    assert length > 0 and new_mean.item() == pytest.approx(0.01 * length.item(), rel=1e-5)
    penalty.backward()
    assert G.layers[0].affine.weight.grad is not None


def test_combiner_reports_every_term_and_a_weighted_total():
    torch.manual_seed(0)
    wts = LossWeights()
    loss = StylExLoss(wts, lpips=None)
    x, gx = torch.rand(4, 3, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    fake, e_x, e_gx, lx, lgx = torch.randn(4), torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 2), torch.randn(4, 2)
    t = loss.generator_terms(x, gx, fake, e_x, e_gx, lx, lgx)
    assert set(t) == {"adv", "img_l1", "latent_l1", "classifier_kl", "total"}
    expected = (wts.adv * t["adv"] + wts.img_l1 * t["img_l1"] + wts.latent_l1 * t["latent_l1"]
                + wts.classifier_kl * t["classifier_kl"])
    assert torch.allclose(t["total"], expected)
    z_pass = loss.generator_terms(None, gx, fake, None, None, lx, lgx)
    assert set(z_pass) == {"adv", "classifier_kl", "total"}
    d = loss.discriminator_terms(torch.randn(4), fake)
    assert set(d) == {"d_adv", "total"} and torch.equal(d["total"], d["d_adv"])
    img = x.clone().requires_grad_(True)
    r1 = loss.r1_terms((img ** 2).sum(dim=[1, 2, 3]), img)
    assert torch.allclose(r1["total"], r1["r1"] * wts.r1_gamma / 2 * wts.r1_interval)



def test_lazy_totals_reach_every_parameter():
    """DistributedDataParallel needs every parameter in each backward graph, also for R1 (blind
    to the output bias) and path length (blind to the ToRGB biases)."""
    torch.manual_seed(0)
    loss = StylExLoss(LossWeights())
    D = Discriminator(32, 8)
    img = torch.randn(2, 3, 32, 32).requires_grad_(True)
    loss.r1_terms(D(img, torch.rand(2, 2)), img)["total"].backward()
    assert all(p.grad is not None for p in D.parameters())
    G = Generator(32, 8)
    w = torch.randn(2, 514, requires_grad=True)
    loss.path_length_terms(G(w, G.zero_noise(2)), w, 0.0)["total"].backward()
    assert all(p.grad is not None for p in G.parameters())

def test_one_adam_step_lowers_image_l1():
    torch.manual_seed(0)
    G = Generator(32, 8)
    w = torch.randn(4, 514)
    noise = G.make_noise(4, generator=torch.Generator().manual_seed(1))
    target = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    before = image_l1(G(w, noise), target)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = image_l1(G(w, noise), target)
    assert after < before

