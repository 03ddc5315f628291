"""Baselines for the flip-rate comparison: Wu et al.'s StyleSpace ranking and a random floor.

Both return :class:`repro.stylespace.Attributes` in AttFind's convention: ``(direction, index)``
pairs that move an image from class 1 towards class 0 (direction 0: the coordinate's minimum,
1: its maximum), so :func:`repro.fliprate.flip_rate` treats every method the same way.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from repro.stylespace import Attributes, decode_indices


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def wu_attributes(conv_styles_flat: torch.Tensor | np.ndarray, probs: torch.Tensor | np.ndarray,
                  target_class: int, k: int, threshold: float = 0.9, *,
                  style_dims: Sequence[int] | None = None,
                  effect: torch.Tensor | np.ndarray | None = None) -> Attributes:
    """Wu et al.'s class-specific StyleSpace coordinates, as the replication ran them (spec 6).

    Positives: the images whose softmax for ``target_class`` exceeds ``threshold`` (the
    replication's 0.9 instead of Wu's top 2 %). Per coordinate, d = (s_pos - mean_all) / std_all
    (mean and population std over all N images); relevance = |mean(d)| / std(d) over the
    positives; the top ``k`` by relevance are returned, best first, with ``scores`` = relevance.
    Coordinates that do not vary (std 0) get relevance 0.

    Direction convention: Wu's direction is 1 (towards the maximum) if mean(d) > 0, else 0: the
    way that makes an image look more like the positives, i.e. *towards* ``target_class``.
    AttFind's lists move class 1 towards class 0, so ``target_class = 0`` gives that convention
    as is (the natural choice for the flip rate); for ``target_class = 1`` the directions are
    flipped before returning, so the result always reads "move class 1 towards class 0".
    ``details['wu_direction']`` keeps Wu's own directions (towards the target class).

    Args:
        conv_styles_flat: [N, S] StyleSpace vectors of the images.
        probs: [N, 2] classifier softmax on the same images (on the renders, for the replication).
        target_class: the class whose positives define the ranking.
        k: number of coordinates returned.
        threshold: softmax above which an image is a positive.
        style_dims: per-layer channels, to fill ``layers`` / ``channels`` (optional).
        effect: an AttFind effect tensor [N', 2, S, 2] to fill ``mean_effect`` (optional).
    """
    if target_class not in (0, 1):
        raise ValueError(f"target_class must be 0 or 1, got {target_class}")
    styles = _numpy(conv_styles_flat)
    p = _numpy(probs)
    if styles.ndim != 2 or p.shape != (styles.shape[0], 2):
        raise ValueError(f"expected styles [N, S] and probs [N, 2], got {styles.shape} and {p.shape}")
    num_styles = styles.shape[1]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= num_styles:
        raise ValueError(f"Wu baseline: k = {k!r} is outside [1, {num_styles}] (the styles have S = {num_styles} "
                         f"coordinates); ask for 1 to {num_styles} coordinates (EvalConfig.k_max)")
    positives = p[:, target_class] > threshold
    if not positives.any():
        raise ValueError(f"no image has softmax[{target_class}] > {threshold}; lower the threshold or use more images")
    mean_all = styles.mean(axis=0)
    std_all = styles.std(axis=0)
    safe_std = np.where(std_all > 0, std_all, 1.0)
    d = (styles[positives] - mean_all) / safe_std
    mean_d = d.mean(axis=0)
    std_d = d.std(axis=0)
    relevance = np.where((std_all > 0) & (std_d > 0), np.abs(mean_d) / np.where(std_d > 0, std_d, 1.0), 0.0)
    # A single positive (std_d = 0) still ranks by |mean(d)|, so the method degrades gracefully.
    if positives.sum() == 1:
        relevance = np.where(std_all > 0, np.abs(mean_d), 0.0)
    order = np.argsort(-relevance, kind="stable")[:k]
    wu_direction = [int(mean_d[i] > 0) for i in order]
    directions = wu_direction if target_class == 0 else [1 - x for x in wu_direction]
    coords = [(dir_, int(i)) for dir_, i in zip(directions, order)]
    layers, channels = decode_indices(coords, style_dims) if style_dims is not None else (None, None)
    return Attributes(
        method="wu", coords=coords, scores=[float(relevance[i]) for i in order],
        mean_effect=None if effect is None else mean_effects(effect, coords),
        layers=layers, channels=channels,
        config={"target_class": target_class, "k": k, "threshold": threshold,
                "convention": "directions move class 1 towards class 0"},
        details={"num_positives": int(positives.sum()), "num_images": int(styles.shape[0]),
                 "wu_direction": wu_direction})


def random_attributes(num_styles: int, k: int, seed: int, *, style_dims: Sequence[int] | None = None) -> Attributes:
    """``k`` distinct coordinates with random directions: the floor a method must beat.

    Deterministic per ``seed`` (NumPy ``default_rng``); scores are all 0 (there is no ranking).
    """
    if not 0 < k <= num_styles:
        raise ValueError(f"random baseline: k = {k} is outside [1, {num_styles}] (there are S = {num_styles} "
                         f"style coordinates to draw from); ask for 1 to {num_styles} (EvalConfig.k_max)")
    rng = np.random.default_rng(seed)
    indices = rng.choice(num_styles, size=k, replace=False)
    directions = rng.integers(0, 2, size=k)
    coords = [(int(d), int(i)) for d, i in zip(directions, indices)]
    layers, channels = decode_indices(coords, style_dims) if style_dims is not None else (None, None)
    return Attributes("random", coords, [0.0] * k, None, layers, channels,
                      {"num_styles": num_styles, "k": k, "seed": seed})


def mean_effects(effect: torch.Tensor | np.ndarray, coords: Sequence[tuple[int, int]]) -> list[tuple[float, float]]:
    """Per pair (mean effect[:, d, i, 0], mean effect[:, 1-d, i, 1]), as in ``Attributes.mean_effect``."""
    eff = _numpy(effect)
    return [(float(eff[:, d, i, 0].mean()), float(eff[:, 1 - d, i, 1].mean())) for d, i in coords]
