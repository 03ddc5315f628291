"""Tiny networks shared by the AttFind tests: a small classifier and a random-init generator's
styles, noise and style range (what AttFind and its screened form take)."""

from __future__ import annotations

import torch
from torch import nn

from repro.networks import Generator
from repro.stylespace import style_range


def tiny_classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        net[-1].weight.mul_(20.0)  # a random-init generator moves images little: amplify the logits
    return net.eval()


def tiny_setup(*, inference_tensors: bool = False):
    """(G, C, conv styles, rgb styles, noise, style min, style max) of 3 images at 32 px, 8 channels.
    ``inference_tensors``: styles made under ``torch.inference_mode`` (as repro.explain makes them)."""
    torch.manual_seed(0)
    G = Generator(32, 8).eval()
    w = torch.randn(3, 514, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode() if inference_tensors else torch.no_grad():
        conv, rgb = G.styles(w)
    noise = G.make_noise(3, generator=torch.Generator().manual_seed(2))
    smin, smax = style_range(torch.cat(conv, 1))
    return G, tiny_classifier(), conv, rgb, noise, smin, smax
