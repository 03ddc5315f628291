"""The per-image refinement of encodings (repro.evaluation.refine_latents, EvalConfig.refine_steps)."""

from __future__ import annotations

import pytest
import torch

from repro.config import EvalConfig
from repro.data import ImageSet
from repro.evaluation import fixed_noise, latents, refine_latents, render
from repro.model import StylExModel
from tests.tiny_nets import tiny_classifier


def _setup(n: int = 6):
    torch.manual_seed(0)
    model = StylExModel("stylex", 32, 8, 32, 2).eval().requires_grad_(False)
    images = ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(3)), torch.zeros(n, dtype=torch.long))
    return model, tiny_classifier(), images


def _loss(model, lat):
    return (render(model, lat) - lat.images).abs().flatten(1).mean(1)


def test_refinement_lowers_every_images_reconstruction_error_and_keeps_the_class_entries():
    model, classifier, images = _setup()
    plain = latents(model, classifier, images, seed=0)
    refined = latents(model, classifier, images, seed=0, refine_steps=20, progress=False)
    assert torch.equal(refined.w[:, model.latent_dim:], plain.w[:, model.latent_dim:])  # softmax C(x) as it was
    assert not torch.equal(refined.w[:, :model.latent_dim], plain.w[:, :model.latent_dim])
    assert bool((_loss(model, refined) < _loss(model, plain)).all())
    assert not refined.w.requires_grad
    for a, b in zip(refined.noise, plain.noise):  # the same fixed noise the refinement used
        assert torch.equal(a, b)


def test_no_refinement_is_the_encoders_w_and_refinement_does_not_depend_on_batching():
    model, classifier, images = _setup()
    plain = latents(model, classifier, images, seed=0)
    with torch.no_grad():
        x = images.batch(slice(0, len(images)))
        assert torch.allclose(plain.w[:, :model.latent_dim], model.encoder(x))
    noise = fixed_noise(model, len(images), 0)
    whole = refine_latents(model, classifier, plain.images, plain.w, noise, steps=5, batch_size=6, progress=False)
    split = refine_latents(model, classifier, plain.images, plain.w, noise, steps=5, batch_size=4, progress=False)
    assert torch.allclose(whole, split, atol=1e-5)


def test_refinement_refuses_a_model_without_encoder_and_a_negative_step_count():
    model, classifier, images = _setup()
    sampler = StylExModel("stylegan2", 32, 8, 32, 2).eval()
    w = torch.zeros(2, 32)
    with pytest.raises(ValueError, match="no encoder"):
        refine_latents(sampler, classifier, torch.zeros(2, 3, 32, 32), w, fixed_noise(sampler, 2, 0), steps=1)
    with pytest.raises(ValueError, match="refine_steps"):
        EvalConfig(refine_steps=-1)
