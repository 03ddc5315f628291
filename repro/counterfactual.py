"""Counterfactuals: render images with StyleSpace coordinates moved, as pictures and GIFs.

An edit is a ``(direction, index)`` pair of an attribute list (``repro.stylespace.Attributes``):
direction 0 moves coordinate ``index`` towards its minimum over the reference images, 1 towards
its maximum. ``amount`` is the shift size of the edit rule (:func:`repro.stylespace.edit_values`):
s_i <- s_i + amount * (target_i - s_i); amount 1 sets the coordinate to the target, as AttFind
and the flip rate do. :func:`repro.stylespace.toward_class` turns an edit of a "class 1 -> class 0"
list into the one that pushes an image of a given class to the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from repro.evaluation import Latents
from repro.figures import as_hwc_uint8
from repro.model import StylExModel
from repro.stylespace import apply_edits


@torch.inference_mode()
def edit_render(model: StylExModel, lat: Latents, edits: Sequence[tuple[int, int]], amount: float,
                style_min: torch.Tensor, style_max: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, R, R] of ``lat`` with every edit of ``edits`` applied by ``amount``."""
    conv, rgb = lat.styles(model)
    conv = apply_edits(conv, edits, amount, style_min, style_max)
    return model.generator.synthesis(conv, rgb, lat.noise).clamp(-1, 1)


@torch.inference_mode()
def sweep_frames(model: StylExModel, lat: Latents, edit: tuple[int, int], style_min: torch.Tensor,
                 style_max: torch.Tensor, steps: int = 8) -> np.ndarray:
    """Frames of one coordinate swept from its original value to the target and back.

    Returns uint8 [T, N, R, R, 3], T = 2 * steps (a loop for a GIF).
    """
    amounts = list(np.linspace(0.0, 1.0, steps)) + list(np.linspace(1.0, 0.0, steps))
    return np.stack([as_hwc_uint8(edit_render(model, lat, [edit], float(a), style_min, style_max))
                     for a in amounts])


def save_gif(frames: np.ndarray, path: str | Path, *, scale: int = 2, duration_ms: int = 90, pad: int = 2,
             colors: int | None = None) -> Path:
    """Write [T, N, H, W, 3] (N images side by side) or [T, H, W, 3] frames as a looping GIF.

    ``colors``: if set, every frame is mapped to one shared palette of that many colours without
    dithering (smaller files, no flicker between frames); by default each frame gets its own.
    """
    from PIL import Image

    frames = np.asarray(frames)
    if frames.ndim == 5:
        t, n, h, w, c = frames.shape
        canvas = np.full((t, h + 2 * pad, n * (w + pad) + pad, c), 255, np.uint8)
        for j in range(n):
            canvas[:, pad:pad + h, pad + j * (w + pad): pad + j * (w + pad) + w] = frames[:, j]
        frames = canvas
    images = [Image.fromarray(f) for f in frames]
    if colors is not None:
        palette = Image.fromarray(np.concatenate(list(frames), 0)).quantize(colors=colors)
        images = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
