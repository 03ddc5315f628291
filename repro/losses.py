"""StylEx training losses: each term a small pure function, combined by ``StylExLoss``.

Terms (paper section 4 / the replication report):
- discriminator: non-saturating logistic loss; lazy R1 (gamma 10, every 16 steps);
- generator + encoder: non-saturating adversarial loss, 0.1 LPIPS(x, G(x)) + 0.1 L1(x, G(x)),
  1.0 L1(E(G(x)), E(x)) (latent reconstruction, our choice of weight), KL(C(x) || C(G(x))),
  lazy path-length regularisation (weight 2, decay 0.01, every 4 steps).

LPIPS is the real ``lpips`` package with an ImageNet backbone (``repro.perceptual`` finds it
offline). Without any backbone it is reported unavailable and left out; never a random network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from repro.perceptual import LPIPSLoss

__all__ = [
    "d_logistic_loss", "g_nonsaturating_loss", "d_r1_penalty", "g_path_length_penalty", "image_l1",
    "latent_l1", "classifier_kl", "LossWeights", "StylExLoss",
]


# ---------------------------------------------------------------------------------------------
# pure loss terms

def d_fake_loss(fake_logits: Tensor) -> Tensor:
    """The fakes' half of the discriminator loss: softplus(fake), batch mean."""
    return F.softplus(fake_logits).mean()


def d_real_loss(real_logits: Tensor) -> Tensor:
    """The reals' half of the discriminator loss: softplus(-real), batch mean."""
    return F.softplus(-real_logits).mean()


def d_logistic_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator non-saturating logistic loss: softplus(fake) + softplus(-real), batch mean."""
    return d_fake_loss(fake_logits) + d_real_loss(real_logits)


def g_nonsaturating_loss(fake_logits: Tensor) -> Tensor:
    """Generator non-saturating loss: softplus(-fake), batch mean."""
    return F.softplus(-fake_logits).mean()


def d_r1_penalty(real_logits: Tensor, real_img: Tensor) -> Tensor:
    """R1: squared gradient norm of D at real images (sum over pixels, mean over the batch).

    ``real_img`` must have had ``requires_grad_(True)`` before D saw it. The caller scales by
    gamma / 2 and the lazy interval. A D that ignores its input has zero penalty.
    """
    zero = real_img.new_zeros(())
    if not real_logits.requires_grad:
        return zero
    grad, = torch.autograd.grad(real_logits.sum(), real_img, create_graph=True, allow_unused=True)
    if grad is None:
        return zero
    return grad.square().reshape(grad.shape[0], -1).sum(dim=1).mean()


def g_path_length_penalty(fake_img: Tensor, ws: Tensor | Sequence[Tensor], mean_path_length: Tensor | float,
                          decay: float = 0.01) -> tuple[Tensor, Tensor, Tensor]:
    """Path-length regularisation (rosinality ``g_path_regularize``).

    Projects the image on random noise scaled by 1/sqrt(H*W), takes the gradient with respect to
    ``ws`` (the w tensor(s), with requires_grad, the image was generated from), and penalises
    the deviation of its norm per image from a running mean.

    Returns (penalty, mean path length of this batch, updated running mean (detached)).
    """
    ws = [ws] if isinstance(ws, Tensor) else list(ws)
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    grads = torch.autograd.grad((fake_img * noise).sum(), ws, create_graph=True)
    sq = 0
    for g in grads:  # [B, w_dim] or [B, num_ws, w_dim] (per-layer ws: mean over layers)
        sq = sq + (g.square().sum(dim=2).mean(dim=1) if g.ndim == 3 else g.square().reshape(g.shape[0], -1).sum(1))
    path_lengths = torch.sqrt(sq)
    mean = torch.as_tensor(mean_path_length, device=fake_img.device, dtype=path_lengths.dtype)
    path_mean = mean + decay * (path_lengths.mean().detach() - mean)
    penalty = (path_lengths - path_mean).square().mean()
    return penalty, path_lengths.mean().detach(), path_mean.detach()


def image_l1(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute pixel error."""
    return (x - y).abs().mean()


def latent_l1(e_x: Tensor, e_gx: Tensor) -> Tensor:
    """Mean absolute error between the encodings of an image and of its reconstruction."""
    return (e_x - e_gx).abs().mean()


def classifier_kl(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """KL(softmax C(x) || softmax C(G(x))), summed over classes, mean over the batch."""
    return F.kl_div(F.log_softmax(logits_fake, dim=1), F.log_softmax(logits_real, dim=1),
                    reduction="batchmean", log_target=True)


# ---------------------------------------------------------------------------------------------
# combination

@dataclass
class LossWeights:
    """Weights and lazy-regularisation intervals of every loss term.

    Parameters:
        adv: generator adversarial loss.
        lpips: LPIPS(x, G(x)) (the report: 0.1).
        lpips_net: LPIPS backbone of that term, ``alex`` or ``vgg`` (see ``repro.perceptual``).
        img_l1: L1(x, G(x)) (the report: 0.1; earlier code used 1.0).
        latent_l1: L1(E(G(x)), E(x)) (ours to choose).
        classifier_kl: KL(C(x) || C(G(x))).
        r1_gamma / r1_interval: R1 gamma and lazy interval.
        pl_weight / pl_interval / pl_decay: path-length weight, lazy interval, running-mean decay.
    """

    adv: float = 1.0
    lpips: float = 0.1
    lpips_net: str = "alex"
    img_l1: float = 0.1
    latent_l1: float = 1.0
    classifier_kl: float = 1.0
    r1_gamma: float = 10.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01


class StylExLoss:
    """Weighted sum of the loss terms; every method returns a dict of tensors by name + ``total``.

    Parameters:
        weights: the ``LossWeights``.
        lpips: an available ``LPIPSLoss`` (None or unavailable: the LPIPS term is left out).
    """

    def __init__(self,
                 weights: LossWeights | None = None,  # term weights and intervals
                 lpips: LPIPSLoss | None = None):     # LPIPS module (None: no LPIPS term)
        self.weights = weights or LossWeights()
        self.lpips = lpips if lpips is not None and lpips.available else None

    def generator_terms(self, x: Tensor | None, gx: Tensor, fake_logits: Tensor, e_x: Tensor | None,
                        e_gx: Tensor | None, logits_x: Tensor | None, logits_gx: Tensor | None) -> dict[str, Tensor]:
        """Generator/encoder terms. Terms whose inputs are None are left out (e.g. a z-pass has no
        x), as is ``lpips`` when unavailable or weighted 0. ``total`` = weighted sum."""
        w = self.weights
        terms = {"adv": (g_nonsaturating_loss(fake_logits), w.adv)}
        if x is not None:
            if self.lpips is not None and w.lpips > 0:
                terms["lpips"] = (self.lpips(x, gx).mean(), w.lpips)
            terms["img_l1"] = (image_l1(x, gx), w.img_l1)
        if e_x is not None and e_gx is not None:
            terms["latent_l1"] = (latent_l1(e_x, e_gx), w.latent_l1)
        if logits_x is not None and logits_gx is not None:
            terms["classifier_kl"] = (classifier_kl(logits_x, logits_gx), w.classifier_kl)
        return _with_total(terms)

    def discriminator_terms(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        """``d_adv`` and ``total`` (= d_adv)."""
        return _with_total({"d_adv": (d_logistic_loss(real_logits, fake_logits), 1.0)})

    def r1_terms(self, real_logits: Tensor, real_img: Tensor) -> dict[str, Tensor]:
        """``r1`` and ``total`` = r1 * gamma / 2 * r1_interval (lazy regularisation).

        ``total`` also carries ``0 * real_logits`` (as stylegan2-ada): R1 does not depend on
        parameters that only shift the logit (the output bias), and DistributedDataParallel
        needs every parameter in the backward graph."""
        w = self.weights
        out = _with_total({"r1": (d_r1_penalty(real_logits, real_img), w.r1_gamma / 2 * w.r1_interval)})
        out["total"] = out["total"] + 0.0 * real_logits.sum()
        return out

    def path_length_terms(self, fake_img: Tensor, ws: Tensor | Sequence[Tensor],
                          mean_path_length: Tensor | float) -> dict[str, Tensor]:
        """``pl`` (penalty), ``total`` = pl * pl_weight * pl_interval, and two diagnostics outside
        the total: ``path_length`` (batch mean) and ``new_mean`` (the updated running mean).
        ``total`` also carries ``0 * fake_img`` so that every generator parameter is in the
        backward graph (DistributedDataParallel; rosinality does the same)."""
        w = self.weights
        penalty, length, new_mean = g_path_length_penalty(fake_img, ws, mean_path_length, w.pl_decay)
        out = _with_total({"pl": (penalty, w.pl_weight * w.pl_interval)})
        out["total"] = out["total"] + 0.0 * fake_img.sum()
        out.update(path_length=length, new_mean=new_mean)
        return out


def _with_total(terms: dict[str, tuple[Tensor, float]]) -> dict[str, Tensor]:
    out = {name: value for name, (value, _) in terms.items()}
    out["total"] = sum(value * weight for value, weight in terms.values())
    return out
