"""Evaluation inputs and reconstruction metrics.

Everything evaluated (reconstructions, AttFind effects, flip rates, figures) uses **fixed noise**:
one stored noise tensor per image, drawn from a seeded generator, never re-sampled.

``latents(...)`` turns a model and a set of images into what AttFind needs: per image the w
vector, its StyleSpace styles and its noise. StylEx models encode held-out real images
(w = [E(x), softmax C(x)]); a plain StyleGAN2 has no encoder, so its "images" are samples
w = mapping(z) from a seeded z.

Every classifier decision on a render goes through :func:`repro.inference.classify_images` (images
clamped to [-1, 1], as AttFind and the flip rate see them, and as a figure shows them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repro.data import ImageSet
from repro.inference import classifier_probs, classify_images
from repro.model import StylExModel


@dataclass
class Latents:
    """What a model makes of a set of images, ready for StyleSpace work.

    Parameters:
        w: [N, w_dim] generator inputs.
        noise: per conv layer [N, 1, H, W], fixed.
        source: ``encoded`` (real images through the encoder) or ``sampled`` (mapping network).
        images: the real images that were encoded (float [-1, 1]); None when sampled.
        labels: their labels (long [N]; -1 where the data set has none); None when sampled.
    """

    w: torch.Tensor
    noise: list[torch.Tensor]
    source: str
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.w.shape[0]

    def subset(self, idx: torch.Tensor | slice) -> "Latents":
        return Latents(self.w[idx], [n[idx] for n in self.noise], self.source,
                       None if self.images is None else self.images[idx],
                       None if self.labels is None else self.labels[idx])

    def styles(self, model: StylExModel, batch_size: int = 256) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(conv_styles, rgb_styles) of every image, batched."""
        conv, rgb = [], []
        with torch.inference_mode():
            for start in range(0, len(self), batch_size):
                c, r = model.generator.styles(self.w[start:start + batch_size])
                conv.append(c)
                rgb.append(r)
        return [torch.cat(x) for x in zip(*conv)], [torch.cat(x) for x in zip(*rgb)]


def fixed_noise(model: StylExModel, n: int, seed: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """One noise tensor per image and conv layer, reproducible from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return [t.to(device) for t in model.generator.make_noise(n, generator=gen)]


@torch.inference_mode()
def latents(model: StylExModel, classifier: nn.Module, images: ImageSet | None = None, *, n: int | None = None,
            seed: int = 0, batch_size: int = 256) -> Latents:
    """Encode ``images`` (StylEx modes) or sample ``n`` w vectors (stylegan2), with fixed noise."""
    device = next(model.parameters()).device
    if model.encoder is not None:
        if images is None:
            raise ValueError(f"a {model.mode} model explains real images: pass the held-out images to encode")
        n = len(images) if n is None else min(n, len(images))
        x = images.batch(slice(0, n), device)
        probs = classifier_probs(classifier, ImageSet(images.images[:n], images.labels[:n]), device)
        w = torch.cat([model.encode(x[i:i + batch_size], probs[i:i + batch_size]) for i in range(0, n, batch_size)])
        return Latents(w, fixed_noise(model, n, seed, device), "encoded", x, images.labels[:n].clone())
    if n is None:
        raise ValueError("a stylegan2 model has no encoder: give the number of samples n")
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    w = torch.cat([model.sample_w(z[i:i + batch_size]) for i in range(0, n, batch_size)])
    return Latents(w, fixed_noise(model, n, seed, device), "sampled")


@torch.inference_mode()
def render(model: StylExModel, lat: Latents, batch_size: int = 256) -> torch.Tensor:
    """G(w) with the stored noise, batched."""
    out = []
    for start in range(0, len(lat), batch_size):
        sl = slice(start, start + batch_size)
        out.append(model.generator(lat.w[sl], [t[sl] for t in lat.noise]))
    return torch.cat(out)


@torch.inference_mode()
def reconstruction_metrics(model: StylExModel, classifier: nn.Module, images: ImageSet, *, n: int = 512,
                           seed: int = 0, lpips: nn.Module | None = None, batch_size: int = 128,
                           observer: nn.Module | None = None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Claim 1 of the paper, measured on held-out images.

    Returns (metrics, originals, reconstructions) where metrics has ``l1`` (mean absolute pixel
    error in [-1, 1] units), ``lpips`` (None when unavailable), ``agreement`` (share of images with
    argmax C(x) == argmax C(G(E(x), C(x)))), ``mean_abs_delta_prob`` (mean |p1(x) - p1(G(x))|; with K > 2
    classes the total variation of the two softmaxes) and ``n``,
    plus the classifier and second-observer accuracies of :func:`repro.observer.reconstruction_scores`
    (the ``*_Cprime`` ones None without an ``observer``). Reconstructions are clamped to [-1, 1]
    (as figures show them and AttFind classifies them) before every measure.
    """
    from repro.observer import reconstruction_scores

    lat = latents(model, classifier, images, n=n, seed=seed)
    rec = render(model, lat, batch_size).clamp(-1.0, 1.0)
    x = lat.images
    p_x = F.softmax(classify_images(classifier, x, batch_size), 1)
    p_rec = F.softmax(classify_images(classifier, rec, batch_size), 1)
    lp = None
    if lpips is not None:
        lp = torch.cat([lpips(x[i:i + batch_size], rec[i:i + batch_size]).flatten()
                        for i in range(0, len(x), batch_size)]).mean().item()
    metrics = {"n": len(x), "l1": (x - rec).abs().mean().item(), "lpips": lp,
               "agreement": (p_x.argmax(1) == p_rec.argmax(1)).float().mean().item(),
               # |p1(x) - p1(G(x))| of two classes; of K > 2, the total variation 0.5 sum_c |p_c(x) - p_c(G(x))|
               "mean_abs_delta_prob": ((p_x[:, 1] - p_rec[:, 1]).abs() if p_x.shape[1] == 2
                                       else 0.5 * (p_x - p_rec).abs().sum(1)).mean().item(),
               **reconstruction_scores(classifier, x, rec, lat.labels, observer, batch_size=batch_size)}
    return metrics, x.cpu(), rec.cpu()
