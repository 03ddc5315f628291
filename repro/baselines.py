"""Baselines for the flip-rate comparison: Wu et al.'s StyleSpace ranking and a random floor.

Both return :class:`repro.stylespace.Attributes` in AttFind's convention: ``(direction, index)``
pairs that move an image from class 1 towards class 0 (direction 0: the coordinate's minimum,
1: its maximum), so :func:`repro.fliprate.flip_rate` treats every method the same way.

Wu et al.'s statistics need each image's StyleSpace vector and its class probability, nothing
else: no effect tensor (the unstable-image filter is AttFind's step 3, spec 5, applied to the
effect tensor; spec 6, Wu, has none). :func:`wu_images` gathers them over ``EvalConfig.wu_images``
images (1,000 by default), many more than AttFind's effect tensor can afford, and disjoint from
the held-out flip-rate images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from repro.stylespace import Attributes, decode_indices

# StyleGAN2 models sample Wu's w vectors from this seed offset (EvalConfig.seed + it): the AttFind
# samples use EvalConfig.seed and the held-out ones EvalConfig.seed + 10,000 (repro.explain).
WU_SEED_OFFSET = 20_000
# Wu's own positive rule (the top 2 %), the fallback when no image passes the replication's threshold.
WU_TOP_SHARE = 0.02


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
        conv_styles_flat: [N, S] StyleSpace vectors of the images (:func:`wu_images`).
        probs: [N, 2] classifier softmax on the same images (:func:`wu_images`: the real images
            a StylEx model encoded, or a StyleGAN2's renders).
        target_class: the class whose positives define the ranking.
        k: number of coordinates returned.
        threshold: softmax above which an image is a positive (:func:`wu_positive_threshold`).
        style_dims: per-layer channels, to fill ``layers`` / ``channels`` (optional).
        effect: an AttFind effect tensor [N', 2, S, 2] to fill ``mean_effect`` (optional): a
            diagnostic beside AttFind's, over AttFind's own images; the ranking never reads it.
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


def wu_positive_threshold(probs: torch.Tensor | np.ndarray, threshold: float, target_class: int = 0) -> float:
    """The positive threshold Wu's ranking uses: the replication's ``threshold`` (softmax > 0.9)
    when any image passes it, else Wu's own rule, the top 2 % (the 98th percentile of the target
    class's softmax, less 1e-6 so that the images at it count); the caller records which."""
    p = torch.as_tensor(_numpy(probs))[:, target_class]
    if bool((p > threshold).any()):
        return float(threshold)
    return float(torch.quantile(p, 1.0 - WU_TOP_SHARE)) - 1e-6


@dataclass
class WuImages:
    """What Wu's statistics are computed from (:func:`wu_images`).

    Parameters:
        styles: [N, S] float32 CPU StyleSpace vectors (the conv layers', flattened).
        probs: [N, 2] float32 CPU classifier softmax of the same images.
        source: ``encoded`` (real images through a StylEx encoder) or ``sampled`` (w = mapping(z)).
        probs_of: ``real images`` or ``renders``: what the classifier looked at.
        data: where the images came from (per split, how many; or the sampling seed).
        requested: ``EvalConfig.wu_images``; ``len(self)`` is less only when the splits run out.
    """

    styles: torch.Tensor
    probs: torch.Tensor
    source: str
    probs_of: str
    data: dict[str, Any] = field(default_factory=dict)
    requested: int = 0

    def __len__(self) -> int:
        return int(self.styles.shape[0])

    def record(self) -> dict[str, Any]:
        """The explain.json entry (``wu_images``)."""
        return {"n": len(self), "requested": self.requested, "source": self.source, "probs_of": self.probs_of,
                **self.data}


@torch.inference_mode()
def wu_images(model: Any, classifier: torch.nn.Module, task: Any, ev: Any, *, batch_size: int = 256,
              progress: bool | None = None) -> WuImages:
    """StyleSpace vectors and class probabilities of ``ev.wu_images`` images for Wu's statistics.

    Wu's statistics (per-coordinate mean and std over all images, d of the positives) need only
    each image's styles and its class probability, so they are computed over many more images
    than AttFind's effect tensor (2S renders per image) can afford: ``EvalConfig.wu_images``
    (1,000 by default), never the held-out flip-rate images.

    * A model with an encoder (the StylEx modes) encodes real images: the validation split (the
      AttFind images are its first ``attfind_images``; the held-out images are the test split),
      topped up from the training split when the validation split has fewer than
      ``ev.wu_images``. Styles: encoder (refined per image where ``ev.refine_steps`` asks, as
      AttFind's images are) + ``generator.styles``, no render. Probabilities: the
      classifier's softmax on the **real images** -- the ones the encoder is conditioned on, so
      no render is needed. (Training images, where the top-up reaches them, are ones the
      classifier was fit to, so its softmax there is more confident; the record says how many.)
    * A StyleGAN2 has no real images: w = mapping(z) from a fresh seed (``ev.seed`` +
      :data:`WU_SEED_OFFSET`; the AttFind samples use ``ev.seed`` and the held-out ones ``ev.seed``
      + 10,000), and the probabilities are the classifier's softmax on the **renders** (one render
      per image with its fixed noise, batched: about a second per 1,000 images at 32 px on a CPU),
      as the replication classified renders.

    ``task`` is a :class:`repro.config.TaskConfig`, ``ev`` an :class:`repro.config.EvalConfig`.
    """
    from repro.data import ImageSet, load_split
    from repro.evaluation import latents, render
    from repro.inference import classify_images
    from repro.stylespace import flatten_styles

    n = int(ev.wu_images)
    if model.encoder is not None:
        val = load_split(task.stylex_data, "val")
        parts = [(val, min(len(val), n))]
        if len(val) < n:  # top up from the training split
            train = load_split(task.stylex_data, "train")
            parts.append((train, min(len(train), n - len(val))))
        images = ImageSet(torch.cat([p.images[:k] for p, k in parts]), torch.cat([p.labels[:k] for p, k in parts]),
                          None, " + ".join(f"{p.name} ({k})" for p, k in parts))
        if len(images) < n:
            warnings.warn(f"Wu et al.: EvalConfig.wu_images = {n} but {images.name} hold only {len(images)} "
                          f"images; Wu's statistics use those {len(images)}", stacklevel=2)
        data: dict[str, Any] = {"splits": {split: k for split, (_, k) in zip(("val", "train"), parts)}}
        lat = latents(model, classifier, images, n=len(images), seed=ev.seed, batch_size=batch_size,
                      refine_steps=ev.refine_steps, progress=progress)
        logits = classify_images(classifier, lat.images, batch_size)
        probs_of = "real images"
    else:
        seed = int(ev.seed) + WU_SEED_OFFSET
        data = {"seed": seed}
        lat = latents(model, classifier, n=n, seed=seed, batch_size=batch_size)
        logits = torch.cat([classify_images(classifier, render(model, lat.subset(slice(i, i + batch_size))), batch_size)
                            for i in range(0, n, batch_size)])
        probs_of = "renders"
    styles = flatten_styles(lat.styles(model, batch_size)[0]).float().cpu()
    probs = torch.softmax(logits.float(), dim=1).cpu()
    return WuImages(styles, probs, lat.source, probs_of, data, n)


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
