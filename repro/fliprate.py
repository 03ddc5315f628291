"""Flip rate: how often editing the top-k coordinates changes the classifier's decision.

For each evaluation image, b = argmax C(G(s)) (fixed noise). The top-k ``(direction, index)``
pairs of a class-1-to-class-0 list (:class:`repro.stylespace.Attributes`) are applied all at once,
s_i <- target_i (the edit rule at amount 1, set to exactly the target:
:func:`repro.stylespace.edit_values` with ``exact=True``), with direction ``d`` for images of
class 1 and ``1 - d`` for images of class 0 (:func:`repro.stylespace.class_direction`: every
image is pushed towards the other class). The image flipped if argmax C(G(s')) != b.
Targets are the per-coordinate min / max over the evaluation images themselves, recomputed for
each repeat as the replication did, unless given.

**Held-out images.** These functions evaluate whatever styles they are given. Pass images that
AttFind (or the baseline) did *not* use to choose its coordinates, e.g. encodings of the held-out
split or fresh seeds for a StyleGAN2 (drawing them from the training loader, as earlier code did,
inflates the numbers).

Images are clamped to [-1, 1] before the classifier (:func:`repro.inference.classify`), as in AttFind.

**Beyond the classifier's decision.** Pass an :class:`EditRecorder` (``recorder=``) to any of the
functions below and it also scores the very renders the flip rate makes: the decisions of extra
observers (the second observer C', :mod:`repro.observer`) on the unedited and edited renders, and
the pixel change of each edit (:func:`pixel_change_255`). The recorder is passive: the flip rates
are the same numbers with or without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from repro.inference import classify, eval_mode, fast_classifier, prepare_inputs
from repro.networks import Generator, InferenceSynthesis, SynthesisState
from repro.stylespace import (Attributes, check_range, class_direction, decode_index, edit_targets, edit_values,
                              style_range)
from repro.utils import progress_enabled, tqdm, write_atomic

AttributesOrFactory = Attributes | Callable[[int], Attributes]


@dataclass
class FlipResult:
    """Flip rate of one method at one k on one set of images.

    Parameters:
        rate: flipped / N.
        flipped: bool [N], per image.
        base_class: long [N], argmax of the classifier on the unedited renders.
        per_class: flip rate among the images of base class 0 and of class 1 (None if none).
        k: edits requested; k_used: edits applied (fewer if the list is shorter).
        num_images: N.
    """

    rate: float
    flipped: torch.Tensor
    base_class: torch.Tensor
    per_class: list[float | None]
    k: int
    k_used: int
    num_images: int

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "per_class": self.per_class, "k": self.k, "k_used": self.k_used,
                "num_images": self.num_images, "flipped": self.flipped.tolist(),
                "base_class": self.base_class.tolist()}


@dataclass
class RepeatResult:
    """Flip rate over repeats on disjoint random subsets.

    Parameters:
        k: edits per image.
        mean / std: over repeats (population std, ``numpy.std``).
        rates: one rate per repeat.
        per_class_mean: mean over repeats of the per-class rates (repeats without images of a
            class are skipped for that class).
        images_per_repeat / repeats / seed: the sampling.
    """

    k: int
    mean: float
    std: float
    rates: list[float]
    per_class_mean: list[float | None]
    images_per_repeat: int
    repeats: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FlipCurve:
    """Flip rate as a function of k (mean and std over repeats; std 0 for one repeat).

    Parameters:
        ks: the k values.
        mean / std: per k.
        rates: [repeats][len(ks)].
        per_class_mean: per k, mean over repeats of the class-0 and class-1 rates.
        images_per_repeat / repeats / seed: the sampling.
    """

    ks: list[int]
    mean: list[float]
    std: list[float]
    rates: list[list[float]]
    per_class_mean: list[list[float | None]]
    images_per_repeat: int
    repeats: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def at(self, k: int) -> RepeatResult:
        """The curve's column at ``k`` as a :class:`RepeatResult` (same images and repeats)."""
        if k not in self.ks:
            raise ValueError(f"k = {k} is not on the curve (ks = {self.ks})")
        j = self.ks.index(k)
        col = np.array([r[j] for r in self.rates])
        return RepeatResult(k, float(col.mean()), float(col.std()), col.tolist(), list(self.per_class_mean[j]),
                            self.images_per_repeat, self.repeats, self.seed)


# ---------------------------------------------------------------------------------------------
# Core: flipped[k, n] for several k in one pass over the images

# Resume edited renders from the first edited layer's stored input only while those inputs take
# at most this much memory (else every edited render starts from the constant): 512 MiB on a CPU,
# a quarter of the free memory on a GPU (64 px x 512 channels x 1,000 images at layer 8 is 8 GiB).
_MAX_STATE_BYTES = 512 * 2 ** 20


def _state_budget(device: torch.device) -> int:
    if device.type == "cuda":
        return max(_MAX_STATE_BYTES, torch.cuda.mem_get_info(device)[0] // 4)
    return _MAX_STATE_BYTES


def pixel_change_255(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (mean, max) of |after - before| over pixels and channels, in /255 units.

    Both are float images [N, C, H, W] in [-1, 1] (clamped here, as the classifier sees them and
    a figure shows them); [-1, 1] spans 255 levels, so a change of 2 is 255 and one level is
    2/255. Returns two float32 tensors [N] (on the inputs' device).
    """
    delta = (after.clamp(-1.0, 1.0).float() - before.clamp(-1.0, 1.0).float()).abs().flatten(1) * 127.5
    return delta.mean(1), delta.amax(1)


@dataclass
class EditRecord:
    """What an :class:`EditRecorder` saw in one flip-rate pass (one repeat) over N images.

    Parameters:
        ks: the k values of the pass (rows of the [K, N] tensors).
        base_class: long [N], the classifier's argmax on the unedited renders.
        flipped: bool [K, N], the classifier's flips (the flip rate's own numbers).
        observer_base: long [O, N], each extra observer's argmax on the unedited renders.
        observer_edited: long [O, K, N], each extra observer's argmax on the edited renders.
        pixel_mean_255 / pixel_max_255: float [K, N], per image mean and max |pixel change| of the
            edit in /255 (:func:`pixel_change_255`); None when the recorder skips pixels.
        indices: long [N], the images' positions in the full set given to a repeat function
            (``arange(N)`` for a single pass).
    """

    ks: list[int]
    base_class: torch.Tensor
    flipped: torch.Tensor
    observer_base: torch.Tensor
    observer_edited: torch.Tensor
    pixel_mean_255: torch.Tensor | None
    pixel_max_255: torch.Tensor | None
    indices: torch.Tensor


class EditRecorder:
    """Scores every render of the flip-rate passes it is given to, beyond the classifier's flip.

    ``observers``: extra classifiers (logits [B, 2]) on the generator's device, e.g. the second
    observer C'; each sees the clamped unedited and edited renders (BatchNorm-folded on the fast
    path, as the classifier is). ``pixels``: also keep the unedited renders and measure each
    edit's pixel change. One recorder collects every pass in order: ``records`` holds one
    :class:`EditRecord` per pass (per repeat of :func:`flip_rate_curve`). It changes no flip rate.
    """

    def __init__(self, observers: Sequence[nn.Module] = (), *, pixels: bool = True):
        self.observers = list(observers)
        self.pixels = pixels
        self.records: list[EditRecord] = []

    # -- hooks called by _flip_matrix -----------------------------------------------------------
    def _start(self, n_images: int, ks: Sequence[int], device: torch.device, fast: bool) -> None:
        self._ks = [int(k) for k in ks]
        self._classify = [fast_classifier(o) if fast else (lambda img, o=o: classify(o, img)) for o in self.observers]
        n_obs, n_ks = len(self.observers), len(self._ks)
        self._obs_base = torch.empty(n_obs, n_images, dtype=torch.long, device=device)
        self._obs_edit = torch.empty(n_obs, n_ks * n_images, dtype=torch.long, device=device)
        self._base_img: torch.Tensor | None = None
        self._pix = torch.empty(2, n_ks * n_images, device=device) if self.pixels else None
        self._n = n_images

    def _base(self, sl: slice, img: torch.Tensor) -> None:
        for j, fn in enumerate(self._classify):
            self._obs_base[j, sl] = fn(img).argmax(1)
        if self.pixels:
            if self._base_img is None:
                self._base_img = torch.empty(self._n, *img.shape[1:], device=img.device)
            self._base_img[sl] = img.clamp(-1.0, 1.0)

    def _edited(self, rows: torch.Tensor, n_i: torch.Tensor, img: torch.Tensor) -> None:
        for j, fn in enumerate(self._classify):
            self._obs_edit[j, rows] = fn(img).argmax(1)
        if self.pixels:
            mean, peak = pixel_change_255(self._base_img[n_i], img)
            self._pix[0, rows], self._pix[1, rows] = mean, peak

    def _finish(self, flipped: torch.Tensor, base_class: torch.Tensor) -> None:
        n_ks, n = len(self._ks), self._n
        pix = None if self._pix is None else self._pix.reshape(2, n_ks, n).cpu()
        self.records.append(EditRecord(
            self._ks, base_class, flipped, self._obs_base.cpu(), self._obs_edit.reshape(-1, n_ks, n).cpu(),
            None if pix is None else pix[0], None if pix is None else pix[1], torch.arange(n)))
        self._base_img = self._pix = None


def _flip_matrix(G: nn.Module, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                 rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                 coords: Sequence[tuple[int, int]], ks: Sequence[int], style_min: torch.Tensor | None,
                 style_max: torch.Tensor | None, batch_size: int, progress: bool | None,
                 fast: bool = True, recorder: EditRecorder | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(flipped bool [len(ks), N], base_class [N]); edits for every k share the base renders.

    With ``fast`` and a :class:`repro.networks.Generator`, renders go through
    :class:`repro.networks.InferenceSynthesis` and the BatchNorm-folded classifier (as AttFind's
    effects do), and edited renders resume from the stored input of the first layer any of the
    top coordinates lives in. Otherwise (or for any other generator) ``G.synthesis`` and
    :func:`repro.inference.classify` render every image from the start: the reference path.
    A ``recorder`` sees every unedited and edited render (and the result) and changes nothing.
    """
    conv, rgb, noise_t, device = prepare_inputs(G, conv_styles, rgb_styles, noise)
    dims = [c.shape[1] for c in conv]
    flat = torch.cat(conv, 1)
    n_images, num_styles = flat.shape
    if style_min is None or style_max is None:
        style_min, style_max = style_range(flat)
    smin, smax = check_range(style_min, style_max, num_styles, device, flat.dtype)
    k_max = max(ks)
    top = list(coords[:k_max])
    if any(not 0 <= i < num_styles or d not in (0, 1) for d, i in top):
        raise ValueError(f"coordinates must be (0|1, index in [0, {num_styles})), got {top}")
    k_values = torch.as_tensor([min(k, len(top)) for k in ks], device=device)

    rows_total = len(ks) * n_images
    bar = tqdm(total=n_images + rows_total, desc="flip rate", unit="render", enabled=progress_enabled(progress))
    observers = recorder.observers if recorder is not None else []
    with eval_mode(G, classifier, *observers), torch.inference_mode():
        fast = fast and isinstance(G, Generator)
        if recorder is not None:
            recorder._start(n_images, ks, device, fast)
        if fast:
            synthesis, classify_fn = InferenceSynthesis(G).synthesis, fast_classifier(classifier)
            start_layer = min((decode_index(i, dims)[0] for _, i in top), default=0)
        else:
            synthesis, classify_fn, start_layer = G.synthesis, (lambda img: classify(classifier, img)), 0
        base_class = torch.empty(n_images, dtype=torch.long, device=device)
        parts: list[SynthesisState] = []
        for start in range(0, n_images, batch_size):
            sl = slice(start, min(start + batch_size, n_images))
            args = ([c[sl] for c in conv], [r[sl] for r in rgb], [t[sl] for t in noise_t])
            if start_layer > 0:
                img, states = synthesis(*args, return_states=True)
                parts.append(states[start_layer])
                per_image = sum(t.numel() * t.element_size() for t in (parts[0].x, parts[0].img) if t is not None)
                if per_image / parts[0].batch * n_images > _state_budget(device):
                    start_layer, parts = 0, []  # too big to keep: edited renders start from the constant
            else:
                img = synthesis(*args)
            base_class[sl] = classify_fn(img).argmax(1)
            if recorder is not None:
                recorder._base(sl, img)
            bar.update(sl.stop - sl.start)
        state = None
        if start_layer > 0:
            state = SynthesisState(torch.cat([p.x for p in parts]),
                                   None if parts[0].img is None else torch.cat([p.img for p in parts]))
        flipped = torch.empty(rows_total, dtype=torch.bool, device=device)
        for start in range(0, rows_total, batch_size):
            rows = torch.arange(start, min(start + batch_size, rows_total), device=device)
            k_i, n_i = rows // n_images, rows % n_images
            s = flat[n_i].clone()
            b = base_class[n_i]
            for p, (d, i) in enumerate(top):  # in list order: a repeated index takes its later edit
                active = p < k_values[k_i]
                target = edit_targets(class_direction(d, b), i, smin, smax)
                s[:, i] = torch.where(active, edit_values(s[:, i], target, 1.0, exact=True), s[:, i])
            args = (list(torch.split(s, dims, 1)), [r[n_i] for r in rgb], [t[n_i] for t in noise_t])
            if start_layer > 0:
                img = synthesis(*args, start_layer=start_layer, state=state.index(n_i))
            else:
                img = synthesis(*args)
            flipped[rows] = classify_fn(img).argmax(1) != b
            if recorder is not None:
                recorder._edited(rows, n_i, img)
            bar.update(len(rows))
    bar.close()
    flipped, base_class = flipped.reshape(len(ks), n_images).cpu(), base_class.cpu()
    if recorder is not None:
        recorder._finish(flipped, base_class)
    return flipped, base_class


def _per_class(flipped: torch.Tensor, base_class: torch.Tensor) -> list[float | None]:
    out: list[float | None] = []
    for c in (0, 1):
        mask = base_class == c
        out.append(float(flipped[mask].float().mean()) if mask.any() else None)
    return out


def _check_k(ks: Sequence[int], available: int, num_styles: int) -> None:
    """k must be in [1, S]; a list shorter than k only warns (AttFind may stop early)."""
    if min(ks) < 1:
        raise ValueError(f"k must be >= 1, got {list(ks)}; the flip rate edits the top k coordinates together")
    if max(ks) > num_styles:
        raise ValueError(f"k = {max(ks)} asks to edit more coordinates than exist: the styles have "
                         f"S = {num_styles} coordinates; ask for k <= {num_styles} (EvalConfig.k, k_max, curve_ks)")
    if max(ks) > available:
        warnings.warn(f"asked for k up to {max(ks)} but the list has only {available} coordinates; "
                      f"larger k apply all {available}", stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Public API

def flip_rate(G: nn.Module, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
              rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None, attributes: Attributes,
              k: int = 10, style_min: torch.Tensor | None = None, style_max: torch.Tensor | None = None, *,
              batch_size: int = 256, progress: bool | None = False,
              recorder: EditRecorder | None = None) -> FlipResult:
    """Flip rate of the top-``k`` pairs of ``attributes`` on the given (held-out) images.

    Args:
        G / classifier: generator (``synthesis(conv, rgb, noise)``) and classifier (logits [B, 2]).
        conv_styles / rgb_styles: per layer [N, C] styles of the evaluation images.
        noise: their fixed per-image noise (None: zero noise).
        attributes: a class-1-to-class-0 list (AttFind, :func:`repro.baselines.wu_attributes`, ...).
        k: number of pairs applied together.
        style_min / style_max: [S] targets; default: min / max over these images.
        recorder: an :class:`EditRecorder` that also scores the renders (extra observers, pixels).
    """
    _check_k([k], len(attributes), sum(c.shape[1] for c in conv_styles))
    flipped, base = _flip_matrix(G, classifier, conv_styles, rgb_styles, noise, attributes.coords, [k],
                                 style_min, style_max, batch_size, progress, recorder=recorder)
    f = flipped[0]
    return FlipResult(float(f.float().mean()), f, base, _per_class(f, base), k, min(k, len(attributes)), len(f))


def _subsets(n_images: int, repeats: int, images_per_repeat: int | None, seed: int) -> tuple[list[np.ndarray], int]:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if images_per_repeat is None:
        images_per_repeat = n_images // repeats
    if images_per_repeat < 1 or repeats * images_per_repeat > n_images:
        raise ValueError(f"{repeats} disjoint repeats of {images_per_repeat} images need "
                         f"{repeats * images_per_repeat} images; got {n_images}. Lower repeats or "
                         f"images_per_repeat (EvalConfig.repeats / images_per_repeat), or pass more images")
    perm = np.random.default_rng(seed).permutation(n_images)
    return [np.sort(perm[r * images_per_repeat:(r + 1) * images_per_repeat]) for r in range(repeats)], images_per_repeat


def _repeat_curve(G, classifier, conv_styles, rgb_styles, noise, attributes: AttributesOrFactory, ks: list[int],
                  repeats: int, images_per_repeat: int | None, seed: int, batch_size: int,
                  progress: bool | None, recorder: EditRecorder | None = None
                  ) -> tuple[np.ndarray, list[list[list[float | None]]], int]:
    """rates [repeats, K] and per-class rates [repeats][K][2] over disjoint subsets."""
    n_images = conv_styles[0].shape[0]
    subsets, per = _subsets(n_images, repeats, images_per_repeat, seed)
    rates = np.zeros((repeats, len(ks)))
    per_class: list[list[list[float | None]]] = []
    warned = False
    for r, subset in enumerate(subsets):
        attrs = attributes(r) if callable(attributes) else attributes
        if not warned:
            _check_k(ks, len(attrs), sum(c.shape[1] for c in conv_styles))
            warned = True
        idx = torch.as_tensor(subset, dtype=torch.long)
        pick = lambda ts: None if ts is None else [t[idx.to(t.device)] for t in ts]  # noqa: E731
        flipped, base = _flip_matrix(G, classifier, pick(conv_styles), pick(rgb_styles), pick(noise),
                                     attrs.coords, ks, None, None, batch_size, progress, recorder=recorder)
        if recorder is not None:
            recorder.records[-1].indices = idx
        rates[r] = flipped.float().mean(1).numpy()
        per_class.append([_per_class(f, base) for f in flipped])
    return rates, per_class, per


def _mean_skip_none(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def flip_rate_repeats(G: nn.Module, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                      rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                      attributes: AttributesOrFactory, k: int = 10, *, repeats: int = 10,
                      images_per_repeat: int | None = None, seed: int = 0, batch_size: int = 256,
                      progress: bool | None = False, recorder: EditRecorder | None = None) -> RepeatResult:
    """Flip rate mean +- std over ``repeats`` disjoint random subsets of the given (held-out) images.

    Each repeat takes ``images_per_repeat`` images (default: N // repeats) from one seeded
    permutation and recomputes the style min / max on them (the replication: 10 x 1,000).
    ``attributes`` may be a callable ``repeat -> Attributes``: for the random floor pass
    ``lambda r: random_attributes(S, k, seed=r)`` so the repeats also vary the random draw.
    A ``recorder`` (:class:`EditRecorder`) gets one record per repeat.
    """
    rates, per_class, per = _repeat_curve(G, classifier, conv_styles, rgb_styles, noise, attributes, [k],
                                          repeats, images_per_repeat, seed, batch_size, progress, recorder)
    col = rates[:, 0]
    return RepeatResult(k, float(col.mean()), float(col.std()), col.tolist(),
                        [_mean_skip_none(pc[0][c] for pc in per_class) for c in (0, 1)], per, repeats, seed)


def flip_rate_curve(G: nn.Module, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                    rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                    attributes: AttributesOrFactory, ks: Iterable[int] = range(1, 21), *, repeats: int = 1,
                    images_per_repeat: int | None = None, seed: int = 0, batch_size: int = 256,
                    progress: bool | None = False, recorder: EditRecorder | None = None) -> FlipCurve:
    """Flip rate for every k in ``ks``, all k in one pass over each subset's base renders.

    With ``repeats = 1`` and ``images_per_repeat = None`` it uses every image (in a seeded
    order that does not change the result) and equals :func:`flip_rate` at each k with the min /
    max of all the images. With more repeats it follows :func:`flip_rate_repeats`. A ``recorder``
    (:class:`EditRecorder`) gets one record per repeat, every k of the curve in each.
    """
    ks = [int(k) for k in ks]
    rates, per_class, per = _repeat_curve(G, classifier, conv_styles, rgb_styles, noise, attributes, ks,
                                          repeats, images_per_repeat, seed, batch_size, progress, recorder)
    per_class_mean = [[_mean_skip_none(pc[j][c] for pc in per_class) for c in (0, 1)] for j in range(len(ks))]
    return FlipCurve(ks, rates.mean(0).tolist(), rates.std(0).tolist(), rates.tolist(), per_class_mean,
                     per, repeats, seed)


# ---------------------------------------------------------------------------------------------
# JSON

def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return _jsonable(obj.to_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results`` as JSON, atomically (:func:`repro.utils.write_atomic`).

    Values may be :class:`~repro.stylespace.Attributes` (coordinates, directions, scores, per-
    coordinate effects), flip-rate results, dataclasses, tensors, arrays or plain values;
    non-finite floats become ``null``. Read back with :func:`load_results` (plain dicts;
    ``Attributes.from_dict`` rebuilds an attribute list).
    """
    return write_atomic(path, json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n")


def load_results(path: str | Path) -> dict[str, Any]:
    """The dict written by :func:`save_results`."""
    return json.loads(Path(path).read_text())
