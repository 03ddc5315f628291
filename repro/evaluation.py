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
from repro.inference import classifier_probs, classify, classify_images
from repro.model import StylExModel

# Adam's step size of refine_latents. Ad hoc, synth-age seed 0, 128 test images: L1 0.188 (encoder)
# -> 0.119 after 50 steps and 0.108 after 100 at 0.03; 0.01 reached 0.098 only after 200 steps.
REFINE_LR = 0.03


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


def latents(model: StylExModel, classifier: nn.Module, images: ImageSet | None = None, *, n: int | None = None,
            seed: int = 0, batch_size: int = 256, refine_steps: int = 0, refine_lr: float = REFINE_LR,
            progress: bool | None = None) -> Latents:
    """Encode ``images`` (StylEx modes) or sample ``n`` w vectors (stylegan2), with fixed noise.

    ``refine_steps`` > 0 (StylEx modes): each encoding is then refined by :func:`refine_latents`
    against its own image, with the same fixed noise."""
    device = next(model.parameters()).device
    if model.encoder is not None:
        if images is None:
            raise ValueError(f"a {model.mode} model explains real images: pass the held-out images to encode")
        n = len(images) if n is None else min(n, len(images))
        with torch.no_grad():  # not inference_mode: a refinement differentiates through these tensors
            x = images.batch(slice(0, n), device)
            probs = classifier_probs(classifier, ImageSet(images.images[:n], images.labels[:n]), device)
            w = torch.cat([model.encode(x[i:i + batch_size], probs[i:i + batch_size])
                           for i in range(0, n, batch_size)])
        noise = fixed_noise(model, n, seed, device)
        if refine_steps > 0:
            w = refine_latents(model, classifier, x, w, noise, steps=refine_steps, lr=refine_lr,
                               progress=progress)
        return Latents(w, noise, "encoded", x, images.labels[:n].clone())
    if n is None:
        raise ValueError("a stylegan2 model has no encoder: give the number of samples n")
    with torch.inference_mode():
        z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        w = torch.cat([model.sample_w(z[i:i + batch_size]) for i in range(0, n, batch_size)])
        return Latents(w, fixed_noise(model, n, seed, device), "sampled")


def refine_latents(model: StylExModel, classifier: nn.Module, images: torch.Tensor, w: torch.Tensor,
                   noise: list[torch.Tensor], *, steps: int, lr: float = REFINE_LR, img_l1: float = 5.0,
                   classifier_kl: float = 1.0, batch_size: int = 128, progress: bool | None = None) -> torch.Tensor:
    """An encoding refined per image (GAN inversion from the encoder's guess): the encoder part of
    each w (its first ``latent_dim`` entries) is optimised by Adam for ``steps`` steps at ``lr``
    under StylEx's own reconstruction terms, ``img_l1 * L1(x, G(w)) + classifier_kl * KL(C(x) ||
    C(G(w)))``, through the frozen generator with each image's fixed noise. The class entries
    (softmax C(x)) stay as they are. The default weights are the default profile's training
    weights (``StylExConfig.losses``: img_l1 5, classifier_kl 1). Images are optimised in batches of ``batch_size``; the loss
    is the sum of the images' own losses, each involving only its own w, and Adam works per
    entry, so the result does not depend on the batching.

    Returns the refined w, detached. Deterministic: no randomness is drawn.
    """
    from repro.losses import classifier_kl as kl_term
    from repro.utils import progress_enabled, tqdm

    if model.encoder is None:
        raise ValueError(f"a {model.mode} model has no encoder: its w are sampled, nothing to refine")
    d = model.latent_dim
    out = []
    bar = tqdm(total=len(w) * steps, desc="refining latents", unit="img-step", enabled=progress_enabled(progress))
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, len(w), batch_size):
            sl = slice(start, start + batch_size)
            x, probs = images[sl].clone(), w[sl, d:].clone()
            nz = [t[sl].clone() for t in noise]
            target = classify(classifier, x).detach()
            code = w[sl, :d].clone().requires_grad_(True)
            opt = torch.optim.Adam([code], lr=lr)
            for _ in range(steps):
                g = model.generator(torch.cat([code, probs], 1), nz)
                # each image's own loss, summed: its gradient reaches only its own w, whatever the batch
                loss = len(x) * (img_l1 * (g - x).abs().mean() + classifier_kl * kl_term(target, classify(classifier, g)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(len(x))
            out.append(torch.cat([code.detach(), probs], 1))
    bar.close()
    return torch.cat(out)


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
                           observer: nn.Module | None = None, refine_steps: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Claim 1 of the paper, measured on held-out images.

    Returns (metrics, originals, reconstructions) where metrics has ``l1`` (mean absolute pixel
    error in [-1, 1] units), ``lpips`` (None when unavailable), ``agreement`` (share of images with
    argmax C(x) == argmax C(G(E(x), C(x)))), ``mean_abs_delta_prob`` (mean |p1(x) - p1(G(x))|; with K > 2
    classes the total variation of the two softmaxes) and ``n``,
    plus the classifier and second-observer accuracies of :func:`repro.observer.reconstruction_scores`
    (the ``*_Cprime`` ones None without an ``observer``). Reconstructions are clamped to [-1, 1]
    (as figures show them and AttFind classifies them) before every measure. ``refine_steps``: see
    :func:`latents`.
    """
    from repro.observer import reconstruction_scores

    lat = latents(model, classifier, images, n=n, seed=seed, refine_steps=refine_steps)
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
