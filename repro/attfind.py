"""AttFind: the StyleSpace coordinates that move a classifier (Lang et al. 2021, section 5 of the spec).

The algorithm has two halves with very different costs:

1. **Effects** (expensive, :func:`compute_effects`): for every image ``n``, every StyleSpace
   coordinate ``i`` and both directions ``d`` (0: to the coordinate's minimum over the images,
   1: to its maximum), render the image with the edit rule ``s_i <- s_i + shift * (target - s_i)``
   (:func:`repro.stylespace.edit_values`, targets from :func:`repro.stylespace.style_range`), classify it
   and record the change of both logits. That is ``N x 2S`` renders. The fast path takes the
   synthesis state at the input of layer ``l`` once per image and resumes from it for all the
   edits of layer ``l`` in large batches, so the early layers are never recomputed, the edited
   layer costs no convolution per edit, and the generator and classifier run their inference
   forms (``repro.networks.InferenceSynthesis``, BatchNorm folded, channels_last);
   :func:`compute_effects_reference` is the plain one-render-per-edit loop it is tested against.
2. **Selection** (cheap, :func:`run_attfind`): the authors' notebook semantics on the effect
   tensor: drop unstable images (the authors' 750 of 2 x 2 x 5,760 effect entries, kept as that
   share of the 4S entries: :data:`UNSTABLE_MAX_SHARE`), greedily pick coordinates per class
   with soft image removal, combine the two classes into one ranked list of
   ``(direction, index)`` pairs that reads as "directions that move class 1 to class 0" (apply
   the other direction to move class 0 to 1).

**Screened AttFind** (:func:`screened_attfind`, an option; exact AttFind is the default) renders
fewer edits: one forward and backward pass per image estimates every edit's effect to first order
(:func:`first_order_effects`: the gradient of each logit with respect to the styles times the
edit's shift), only each image's most promising share of its 2S edits is rendered (the others
keep the estimate), and every coordinate the selection picks, or ranks among the few next best
at a greedy step, is then rendered for all images before the selection runs again, until it
chooses among exact columns only. Share 1 is exact AttFind, bit for bit.

Every render uses the fixed per-image noise it is given; images are clamped to [-1, 1] before
the classifier, as the authors' ``call_synthesis`` does.

Typical use (``style_range`` and ``flatten_styles`` from :mod:`repro.stylespace`)::

    conv, rgb = G.styles(w)
    smin, smax = style_range(flatten_styles(conv))
    effects = compute_effects(G, classifier, conv, rgb, noise, smin, smax)
    attributes = run_attfind(effects, PRESETS["authors"])
    # or screened, rendering 14-20% of the edits on the default size (benchmarks/attfind_screened.py):
    attributes, effects = screened_attfind(G, classifier, conv, rgb, noise, smin, smax, PRESETS["authors"])
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from repro.inference import classify, eval_mode, fast_classifier, prepare_inputs
from repro.networks import Generator, InferenceSynthesis
from repro.stylespace import Attributes, check_range, decode_index, decode_indices, edit_targets, edit_values
from repro.utils import progress_enabled, tqdm

VARIANTS = ("two-class", "one-vs-all", "image-fraction")

# The unstable-image filter (spec 5, step 3) as a share of an image's effect entries. The authors'
# notebook drops an image with more than 750 entries |effect| > 2 in its 256 px StyleGAN2, whose conv
# StyleSpace has S = 5,760 coordinates (channels 512 x 10 + 256 x 2 + 128: one conv at 4 px, two per
# resolution above); an image has 2 directions x S coordinates x 2 logits = 4 x 5,760 = 23,040
# entries, so 750 is a share of 750 / 23,040 = 3.26 %. Kept as that share, the filter means the same
# at any S: 58 entries at this package's S = 448 (32 px, default width), 750 again at S = 5,760.
AUTHORS_UNSTABLE_COUNT = 750
AUTHORS_NUM_STYLES = 5760
UNSTABLE_MAX_SHARE = AUTHORS_UNSTABLE_COUNT / (2 * 2 * AUTHORS_NUM_STYLES)


def unstable_max_count(num_styles: int, share: float = UNSTABLE_MAX_SHARE) -> int:
    """The unstable filter's count at S = ``num_styles``: ``floor(share x 2 x S x 2)`` entries.

    An image is unstable when *more* than this many of its 4S entries exceed the threshold, so
    rounding down keeps "more than share x 4S" exact for integer counts. With the authors' share
    (750 / (2 x 2 x 5,760)) this is ``floor(750 x S / 5,760)``: 750 at S = 5,760, 375 at 2,880, 58
    at 448. (The 1e-9 guards the float product at the authors' own S, 749.99999... -> 750.)
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the unstable share must lie in [0, 1] (a share of an image's 4S effect entries), got {share!r}")
    return int(np.floor(share * 2 * int(num_styles) * 2 + 1e-9))


# check(effect [N, 2, S, 2] after the unstable filter, class_index, index, image_indices) -> keep?
# A veto on coordinates during selection (the authors' notebook had a discriminator filter here).
CoordinateCheck = Callable[[np.ndarray, int, int, np.ndarray], bool]


# ---------------------------------------------------------------------------------------------
# Configuration

@dataclass
class AttFindConfig:
    """The selection half of AttFind (the effect tensor does not depend on it, except shift_size).

    Parameters:
        num_indices: coordinates selected per class (the authors' notebook: 8; the replication: 10).
        effect_threshold: logit change that counts as an effect; sets the default image cap.
        max_image_effect: an image leaves the greedy pool once the summed positive effect of the
            coordinates already selected reaches this; None means ``5 * effect_threshold``.
        unstable_threshold: |effect| above which an entry counts towards instability.
        unstable_max_count: an image with more such entries than this is zeroed out; None (the
            default) means :func:`unstable_max_count` of ``unstable_max_share`` at the effect
            tensor's S. Set it to fix a count whatever S is (e.g. the notebook's literal 750).
        unstable_max_share: the same limit as a share of an image's 2 x S x 2 entries: the
            authors' 750 of 2 x 2 x 5,760 at 256 px (:data:`UNSTABLE_MAX_SHARE`, 3.26 %), so the
            filter means the same at any S.
        shift_size: s_i <- s_i + shift_size * (target - s_i) when effects are computed.
        variant: ``two-class`` (the notebook's "combined" cell), ``one-vs-all`` (its one-vs-all
            cell, threshold 0.1 there) or ``image-fraction`` (its
            ``find_significant_styles_image_fraction``); see :func:`run_attfind`.
        min_changed_images_fraction: ``image-fraction`` only: a coordinate must move at least this
            fraction of the images by more than ``effect_threshold``.
        discriminator_threshold: the authors' notebook could reject a coordinate whose edit moves
            the discriminator's output by more than this (it used 0.2; no cell of it turns the filter
            on). This package ships no such filter: when set, :func:`run_attfind` requires a
            ``check`` (a :data:`CoordinateCheck` the caller writes) and the value is recorded in
            the results' config.
    """

    num_indices: int = 8
    effect_threshold: float = 0.2
    max_image_effect: float | None = None
    unstable_threshold: float = 2.0
    unstable_max_count: int | None = None
    unstable_max_share: float = UNSTABLE_MAX_SHARE
    shift_size: float = 1.0
    variant: str = "two-class"
    min_changed_images_fraction: float = 0.03
    discriminator_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown AttFind variant {self.variant!r}; choose one of {VARIANTS}")
        if self.num_indices < 1:
            raise ValueError(f"num_indices must be >= 1, got {self.num_indices}")
        unstable_max_count(1, self.unstable_max_share)  # a share outside [0, 1] fails here

    def unstable_limit(self, num_styles: int) -> int:
        """The unstable filter's count at S = ``num_styles``: ``unstable_max_count`` when set, else
        :func:`unstable_max_count` of ``unstable_max_share``."""
        if self.unstable_max_count is not None:
            return int(self.unstable_max_count)
        return unstable_max_count(num_styles, self.unstable_max_share)

    @property
    def image_effect_cap(self) -> float:
        """``max_image_effect``, defaulting to 5 x ``effect_threshold`` as in the notebook."""
        return 5 * self.effect_threshold if self.max_image_effect is None else self.max_image_effect

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, AttFindConfig] = {
    "authors": AttFindConfig(),
    "replication": AttFindConfig(num_indices=10, effect_threshold=0.5),
    "authors-one-vs-all": AttFindConfig(variant="one-vs-all", effect_threshold=0.1),
    "authors-image-fraction": AttFindConfig(variant="image-fraction"),
}


def get_preset(name: str) -> AttFindConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown AttFind preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name])


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class EffectResult:
    """The effect tensor and what it was computed from.

    Parameters:
        effect: float32 CPU tensor [N, 2, S, 2]; ``effect[n, d, i, c]`` is the change of logit ``c``
            of image ``n`` when StyleSpace coordinate ``i`` (flat index over the conv layers'
            styles, layer-major: see ``style_dims``) is moved towards its minimum (``d = 0``) or
            maximum (``d = 1``) over the N images: ``s_i <- s_i + shift_size * (target - s_i)``.
            Same layout as the authors' ``style_change_effect``. Coordinates not computed are 0.
        base_logits: float32 CPU tensor [N, 2], the classifier's logits on the unedited renders.
        style_dims: channels of each conv layer (flat index ``i`` belongs to the layer whose
            cumulative range contains it).
        style_min / style_max: [S] the targets used.
        computed: bool [S], which coordinates were computed (all unless ``coords`` was given).
        shift_size: the shift used.
        exact: screened effects only (None: every computed entry was rendered): bool [N, 2, S],
            the entries that are exact (rendered, or null edits); the others hold the screen's
            fill (the first-order estimate, or 0).
        screen: screened effects only: how they were made (share, ranking logit, fill,
            candidates = N x 2 x computed coordinates, renders made, verification rounds and
            the coordinates verified, seconds of the gradient pass).
    """

    effect: torch.Tensor
    base_logits: torch.Tensor
    style_dims: list[int] | None = None
    style_min: torch.Tensor | None = None
    style_max: torch.Tensor | None = None
    computed: torch.Tensor | None = None
    shift_size: float = 1.0
    exact: torch.Tensor | None = None
    screen: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n, two, s, c = self.effect.shape
        if two != 2 or c != 2:
            raise ValueError(f"effect must be [N, 2, S, 2], got {tuple(self.effect.shape)}")
        if tuple(self.base_logits.shape) != (n, 2):
            raise ValueError(f"base_logits must be [{n}, 2], got {tuple(self.base_logits.shape)}")
        if self.style_dims is not None and sum(self.style_dims) != s:
            raise ValueError(f"style_dims sum to {sum(self.style_dims)} but effect has S = {s}")
        if self.exact is not None and tuple(self.exact.shape) != (n, 2, s):
            raise ValueError(f"exact must be [{n}, 2, {s}], got {tuple(self.exact.shape)}")

    @property
    def num_images(self) -> int:
        return self.effect.shape[0]

    @property
    def num_styles(self) -> int:
        return self.effect.shape[2]

    def save(self, path: str | Path) -> Path:
        """Write as a dict of tensors and plain values (loadable with ``weights_only=True``), atomically."""
        from repro.utils import atomic_write

        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        with atomic_write(path) as f:
            torch.save(state, f)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "EffectResult":
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


# ---------------------------------------------------------------------------------------------
# Small helpers

# Largest generator activation per pass on CPU: cache-friendly, and below glibc's 32 MiB mmap
# threshold, above which each new tensor is mapped (and page-faulted in) afresh.
_CPU_PASS_BYTES = 8 * 2 ** 20


# Synthesis states (and the edited layer's conv output) of one chunk of images: at most this much.
_STATE_BYTES = 2 ** 30


def _rows_per_pass(G: Generator, device: torch.device, batch_size: int) -> int:
    """Edit renders per generator pass: ``batch_size``, capped on CPU so that one activation
    [rows, channels, resolution, resolution] (float32) stays within ``_CPU_PASS_BYTES``."""
    if device.type != "cpu":
        return batch_size
    return max(1, min(batch_size, _CPU_PASS_BYTES // (4 * G.channels * G.resolution ** 2)))


def _slices(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def _coordinate_mask(coords: Iterable[int] | None, num_styles: int) -> torch.Tensor:
    mask = torch.zeros(num_styles, dtype=torch.bool)
    if coords is None:
        mask[:] = True
    else:
        idx = torch.as_tensor(list(coords), dtype=torch.long)
        if idx.numel() and (idx.min() < 0 or idx.max() >= num_styles):
            raise IndexError(f"coords must lie in [0, {num_styles})")
        mask[idx] = True
    return mask


# ---------------------------------------------------------------------------------------------
# The effect tensor

class _EffectRenderer:
    """The batched renderer behind :func:`compute_effects`: renders any set of effect entries.

    Built once per generator, classifier and image set (styles and fixed noise on the generator's
    device, the base renders' logits in ``base_logits``); :meth:`render` renders the entries of a
    bool mask [N, 2, S] and writes their logit changes into an effect tensor. The exact path
    renders every computed entry in one call; screening renders a chosen few, then the columns
    its selection picked.
    """

    def __init__(self, G: Generator, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                 rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None, style_min: torch.Tensor,
                 style_max: torch.Tensor, shift_size: float, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not isinstance(G, Generator):
            raise TypeError(f"compute_effects needs a repro.networks.Generator, got {type(G).__name__}")
        self.G, self.classifier = G, classifier
        self.conv, self.rgb, self.noise, self.device = prepare_inputs(G, conv_styles, rgb_styles, noise)
        self.n_images = self.conv[0].shape[0]
        self.dims = [c.shape[1] for c in self.conv]
        self.num_styles = sum(self.dims)
        self.offsets = [int(o) for o in np.cumsum([0, *self.dims])]
        self.smin, self.smax = check_range(style_min, style_max, self.num_styles, self.device, self.conv[0].dtype)
        self.shift_size, self.batch_size = float(shift_size), batch_size
        self.rows_per_pass = _rows_per_pass(G, self.device, batch_size)
        # images whose synthesis states (and the edited layer's conv output) fit in _STATE_BYTES
        state_bytes = 4 * G.channels * sum(2 * l.resolution ** 2 for l in G.layers)
        self.max_chunk = max(1, _STATE_BYTES // state_bytes)
        with eval_mode(G, classifier), torch.inference_mode():
            self.synthesis = InferenceSynthesis(G)
            self.classify = fast_classifier(classifier)
            base_images = torch.cat([self.synthesis.synthesis([c[part] for c in self.conv], [r[part] for r in self.rgb],
                                                              [t[part] for t in self.noise])
                                     for part in _slices(self.n_images, self.rows_per_pass)])
            self.base_logits = torch.zeros(self.n_images, 2, device=self.device)
            for part in _slices(self.n_images, batch_size):
                self.base_logits[part] = self.classify(base_images[part])

    def render(self, mask: torch.Tensor, effect: torch.Tensor, bar: Any = None) -> int:
        """Render the entries of ``mask`` (bool [N, 2, S] on the device) and write each one's logit
        change into ``effect`` ([N, 2, S, 2] on the device); null edits are not rendered (their
        effect is exactly 0, as in the reference). Returns the number of renders.

        Images go in chunks sized so that the mean edits per image of the busiest layer fill a
        classifier batch (every computed entry: the exact path's chunks), capped by the memory
        their synthesis states take. Rows run image-major, then direction, then channel."""
        n_images, dims, offsets = self.n_images, self.dims, self.offsets
        rows_per_image = torch.stack([mask[:, :, offsets[l]:offsets[l + 1]].sum(dim=(1, 2)) for l in range(len(dims))], 1)
        max_rows = math.ceil(float(rows_per_image.double().mean(0).max()))
        image_chunk = max(1, min(n_images, self.batch_size // max(1, max_rows), self.max_chunk))
        renders = 0
        with eval_mode(self.G, self.classifier), torch.inference_mode():
            for start in range(0, n_images, image_chunk):
                stop = min(start + image_chunk, n_images)
                n = stop - start
                if not mask[start:stop].any():
                    if bar is not None:
                        bar.update(n * len(dims))
                    continue
                conv_c, rgb_c = [c[start:stop] for c in self.conv], [r[start:stop] for r in self.rgb]
                noise_c = [t[start:stop] for t in self.noise]
                _, states = self.synthesis.synthesis(conv_c, rgb_c, noise_c, return_states=True)
                for layer in range(len(dims)):
                    image, direction, channel = torch.nonzero(mask[start:stop, :, offsets[layer]:offsets[layer + 1]],
                                                              as_tuple=True)
                    flat = channel + offsets[layer]
                    current = conv_c[layer][image, channel]
                    value = edit_values(current, edit_targets(direction, flat, self.smin, self.smax), self.shift_size)
                    # a null edit (the image holds the target already: with style_range targets, one
                    # image per coordinate and direction) renders the base image; its effect stays 0
                    moved = value != current
                    image, direction, channel, flat, value = (t[moved] for t in (image, direction, channel, flat, value))
                    if len(image):
                        images = self.synthesis.render_edits(layer, states[layer], conv_c, rgb_c, noise_c, image,
                                                             channel, value, rows_per_pass=self.rows_per_pass)
                        for rows in _slices(len(image), self.batch_size):
                            img_i = image[rows] + start
                            effect[img_i, direction[rows], flat[rows]] = (self.classify(images[rows])
                                                                          - self.base_logits[img_i])
                        renders += len(image)
                    if bar is not None:
                        bar.update(n)
        return renders

    def result(self, effect: torch.Tensor, computed: torch.Tensor, exact: torch.Tensor | None = None,
               screen: dict[str, Any] | None = None) -> EffectResult:
        return EffectResult(effect.cpu().clone(), self.base_logits.cpu().clone(), list(self.dims),
                            self.smin.float().cpu().clone(), self.smax.float().cpu().clone(), computed.clone(),
                            self.shift_size, None if exact is None else exact.cpu().clone(),
                            None if screen is None else dict(screen))


def compute_effects(G: Generator, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                    rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                    style_min: torch.Tensor, style_max: torch.Tensor, *, shift_size: float = 1.0,
                    batch_size: int = 256, coords: Iterable[int] | None = None,
                    progress: bool | None = True, screen: float | None = None,
                    screen_logit: int | None = None, screen_fill: str = "estimate") -> EffectResult:
    """The AttFind effect tensor, batched (the fast path); exact unless ``screen`` is given.

    Args:
        G: a ``repro.networks.Generator``.
        classifier: images in [-1, 1] -> logits [B, 2].
        conv_styles / rgb_styles: per layer [N, C_l] styles of the N images (``G.styles(w)``).
        noise: per conv layer [N, ...] fixed noise, one per image (None: zero noise).
        style_min / style_max: [S] edit targets (usually :func:`repro.stylespace.style_range` of these images).
        shift_size: s_i <- s_i + shift_size * (target - s_i).
        batch_size: renders per classifier call; the generator renders them in passes of at
            most this many rows (fewer on CPU, see :func:`_rows_per_pass`).
        coords: flat indices to compute (default: all); the others stay 0 in the result.
        progress: tqdm bar over images x layers (None: the REPRO_PROGRESS default).
        screen: None (the default): every entry is rendered. A share in (0, 1]: **screened**
            effects (:func:`first_order_effects` everywhere, and per image only the
            ``ceil(screen * 2S)`` entries with the largest |estimate| on ``screen_logit`` are
            rendered and replace their estimate); ``result.exact`` marks the rendered entries.
            Share 1 gives the exact tensor bit for bit. Use :func:`screened_attfind` for AttFind
            with screening: it also renders every coordinate its selection picks.
        screen_logit: the logit whose estimate ranks an image's entries: None, the other class
            than the image's prediction (the one two-class selection raises on it), or 0 / 1 for
            every image (``one-vs-all`` selects on logit 0).
        screen_fill: what the entries screening does not render hold: ``estimate`` (their
            first-order estimate) or ``zero``.

    Returns:
        :class:`EffectResult` whose ``effect[n, d, i, c]`` (float32, CPU, [N, 2, S, 2]) is
        logits_c(render with s_i moved towards min (d=0) / max (d=1)) - base_logits[n, c].

    How: renders go through :class:`repro.networks.InferenceSynthesis` (one shared-weight conv
    per layer over the whole batch instead of a grouped conv with a weight per image) and the
    classifier through an inference copy (:func:`repro.inference.fast_classifier`). For a chunk of images one
    render records the synthesis state at the input of every conv layer; an edit of layer ``l``
    leaves layers < l untouched, so its render resumes from that state, and the edited layer
    itself costs no convolution per edit (``InferenceSynthesis.render_edits``): only layers > l
    and the classifier run per edit. Images are chunked so that one layer's edits (every image
    of the chunk, both directions, every selected channel) fill a classifier batch. Edits that
    leave the style unchanged are not rendered: their effect is exactly 0, as in the reference.
    """
    renderer = _EffectRenderer(G, classifier, conv_styles, rgb_styles, noise, style_min, style_max, shift_size,
                               batch_size)
    computed = _coordinate_mask(coords, renderer.num_styles)
    n_images, num_styles = renderer.n_images, renderer.num_styles
    bar = tqdm(total=n_images * len(renderer.dims), desc="AttFind effects" + (" (screened)" if screen else ""),
               unit="img-layer", enabled=progress_enabled(progress))
    try:
        if screen is None:
            effect = torch.zeros(n_images, 2, num_styles, 2, device=renderer.device)  # filled on the device, copied once
            renderer.render(computed.to(renderer.device).expand(n_images, 2, num_styles), effect, bar)
            return renderer.result(effect, computed)
        effect, exact, info = _screened_effects(renderer, computed, screen, screen_logit, screen_fill, bar)
        return renderer.result(effect, computed, exact, info)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# Screening: a first-order estimate of every entry, exact renders of the most promising

SCREEN_FILLS = ("estimate", "zero")
# The defaults of screened_attfind: render each image's top tenth of its 2S candidate edits, and
# verify the pick and the 10 next best coordinates of every greedy step. On 7 checkpoints of the
# default profile's runs (4 ablation recipes at 1,500 iterations and one at 500, the default
# model's run at 1,800, the untrained-generator control; 32 images, the replication preset) 6
# runners-up kept at least 9 of exact AttFind's top 10 while rendering 14-20% of the edits, 3
# missed 2 on one of them, and 10 missed none at 16-22% (benchmarks/attfind_screened.py). On the
# nine 3,000-iteration default models 6 kept only 8 of 10 on two (synth-species stylex and
# stylegan2); replayed on their exact tensors, 10 kept 10 and 9 of 10 at 20-21% rendered.
SCREEN_SHARE = 0.1
SCREEN_RUNNERS_UP = 10


def _first_order(G: Generator, classifier: nn.Module, conv: Sequence[torch.Tensor], rgb: Sequence[torch.Tensor],
                 noise: Sequence[torch.Tensor], smin: torch.Tensor, smax: torch.Tensor, shift_size: float,
                 batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(estimate [N, 2, S, 2], moved [N, 2, S]) on the inputs' device (prepared by
    :func:`repro.inference.prepare_inputs`); see :func:`first_order_effects`. ``moved`` is False
    for a null edit (the coordinate holds its target already)."""
    n_images, device = conv[0].shape[0], conv[0].device
    # normal tensors, also when the inputs are inference tensors (styles made under inference_mode)
    with eval_mode(G, classifier), torch.inference_mode(False), torch.enable_grad():
        flat = torch.cat(conv, 1).clone()[:, None, :]
        value = edit_values(flat, torch.stack([smin, smax]).clone()[None], shift_size)
        delta, moved = value - flat, value != flat  # [N, 2, S]: each edit's shift of its coordinate
        grads = torch.empty(n_images, 2, flat.shape[2], device=device)  # [N, logit, S]
        for part in _slices(n_images, batch_size):
            styles = [c[part].clone().requires_grad_(True) for c in conv]
            logits = classify(classifier, G.synthesis(styles, [r[part].clone() for r in rgb],
                                                      [t[part].clone() for t in noise]))
            for c in (0, 1):
                grad = torch.autograd.grad(logits[:, c].sum(), styles, retain_graph=c == 0)
                grads[part, c] = torch.cat(grad, 1).detach()
        estimate = delta[:, :, :, None] * grads.transpose(1, 2)[:, None]  # [N, 2, S, 2]
        return torch.where(moved[..., None], estimate, torch.zeros((), device=device)), moved


def first_order_effects(G: Generator, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                        rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                        style_min: torch.Tensor, style_max: torch.Tensor, *, shift_size: float = 1.0,
                        batch_size: int = 32) -> torch.Tensor:
    """First-order estimate of the whole effect tensor from one backward pass per image and logit.

    ``estimate[n, d, i, c] = d logit_c / d s_i (image n) * (edit_values(s_i, target_d_i) - s_i)``:
    the gradient of each class logit with respect to the styles (through ``G.synthesis`` and
    :func:`repro.inference.classify`, clamp included, in eval mode, with the images' fixed noise)
    times the shift that edit makes. Null edits are exactly 0, as in the effect tensor.
    Returns float32 CPU [N, 2, S, 2], the layout of :attr:`EffectResult.effect`; ``batch_size``
    images per forward / backward pass.
    """
    if not isinstance(G, Generator):
        raise TypeError(f"first_order_effects needs a repro.networks.Generator, got {type(G).__name__}")
    conv, rgb, noise_t, device = prepare_inputs(G, conv_styles, rgb_styles, noise)
    smin, smax = check_range(style_min, style_max, sum(c.shape[1] for c in conv), device, conv[0].dtype)
    return _first_order(G, classifier, conv, rgb, noise_t, smin, smax, float(shift_size), batch_size)[0].cpu()


def _check_screen(screen: float, fill: str) -> None:
    if isinstance(screen, bool) or not isinstance(screen, (int, float)) or not 0.0 < screen <= 1.0:
        raise ValueError(f"screen is the share of each image's 2S candidate edits rendered exactly: a number in "
                         f"(0, 1], got {screen!r} (None renders every one)")
    if fill not in SCREEN_FILLS:
        raise ValueError(f"screen_fill must be one of {SCREEN_FILLS}, got {fill!r}")


def _screen_mask(estimate: torch.Tensor, base_logits: torch.Tensor, computed: torch.Tensor, share: float,
                 logit: int | None) -> torch.Tensor:
    """bool [N, 2, S]: per image the ``ceil(share * 2S')`` computed entries (S' computed coordinates)
    with the largest |estimate| on the ranking logit (``logit``, or the other class than the image's)."""
    n_images, _, num_styles, _ = estimate.shape
    device = estimate.device
    candidates = computed.to(device).expand(n_images, 2, num_styles)
    total = 2 * int(computed.sum())
    k = min(total, math.ceil(share * total - 1e-9))  # 0.3 x 10 is 3.0000000000000004 in floats
    if k >= total:
        return candidates.clone()
    cls = (1 - base_logits.argmax(1)) if logit is None else torch.full((n_images,), int(logit), device=device)
    score = estimate.gather(3, cls.view(-1, 1, 1, 1).expand(n_images, 2, num_styles, 1)).squeeze(3).abs()
    score = score.masked_fill(~candidates, -1.0)
    top = score.flatten(1).topk(k, dim=1).indices
    mask = torch.zeros(n_images, 2 * num_styles, dtype=torch.bool, device=device)
    return mask.scatter_(1, top, True).view(n_images, 2, num_styles)


def _screened_effects(renderer: _EffectRenderer, computed: torch.Tensor, share: float, logit: int | None,
                      fill: str, bar: Any = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(effect, exact, record) on the device: the screen of :func:`compute_effects`."""
    _check_screen(share, fill)
    if logit not in (None, 0, 1):
        raise ValueError(f"screen_logit must be None (the other class), 0 or 1, got {logit!r}")
    start = time.perf_counter()
    estimate, moved = _first_order(renderer.G, renderer.classifier, renderer.conv, renderer.rgb, renderer.noise,
                                   renderer.smin, renderer.smax, renderer.shift_size)
    on = computed.to(renderer.device)
    estimate[:, :, ~on] = 0
    if renderer.device.type == "cuda":
        torch.cuda.synchronize(renderer.device)
    gradient_seconds = time.perf_counter() - start
    mask = _screen_mask(estimate, renderer.base_logits, computed, share, logit)
    effect = estimate if fill == "estimate" else torch.zeros_like(estimate)
    renders = renderer.render(mask, effect, bar)
    exact = (mask | ~moved) & on  # null edits are exact (0) without a render
    record = {"share": float(share), "logit": "other" if logit is None else int(logit), "fill": fill,
              "candidates": renderer.n_images * 2 * int(computed.sum()), "screened_renders": renders,
              "renders": renders, "rounds": 0, "verified_coordinates": [],
              "gradient_seconds": round(gradient_seconds, 4)}
    return effect, exact, record


def compute_effects_reference(G: nn.Module, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                              rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                              style_min: torch.Tensor, style_max: torch.Tensor, *, shift_size: float = 1.0,
                              batch_size: int = 256, coords: Iterable[int] | None = None,
                              progress: bool | None = True) -> EffectResult:
    """Same contract as :func:`compute_effects`, computed the plain way: one full render per edit.

    A Python loop over images, coordinates and directions, each a batch-1 render from the
    first layer. It is the parity reference for the fast path and the benchmark's baseline;
    ``batch_size`` is accepted for signature compatibility and ignored.
    """
    del batch_size
    conv, rgb, noise_t, device = prepare_inputs(G, conv_styles, rgb_styles, noise)
    n_images = conv[0].shape[0]
    dims = [c.shape[1] for c in conv]
    num_styles = sum(dims)
    smin, smax = check_range(style_min, style_max, num_styles, device, conv[0].dtype)
    computed = _coordinate_mask(coords, num_styles)
    flat_indices = torch.nonzero(computed).flatten().tolist()

    effect = torch.zeros(n_images, 2, num_styles, 2)
    base_logits = torch.zeros(n_images, 2)
    bar = tqdm(total=n_images * len(flat_indices), desc="AttFind effects (reference)", unit="coord",
               enabled=progress_enabled(progress))
    with eval_mode(G, classifier), torch.inference_mode():
        for n in range(n_images):
            conv_n, rgb_n = [c[n:n + 1] for c in conv], [r[n:n + 1] for r in rgb]
            noise_n = [t[n:n + 1] for t in noise_t]
            base = classify(classifier, G.synthesis(conv_n, rgb_n, noise_n))[0]
            base_logits[n] = base.cpu()
            for flat in flat_indices:
                layer, channel = decode_index(flat, dims)
                for direction in (0, 1):
                    styles = [c.clone() for c in conv_n]
                    current = styles[layer][0, channel]
                    styles[layer][0, channel] = edit_values(current, edit_targets(direction, flat, smin, smax),
                                                            shift_size)
                    logits = classify(classifier, G.synthesis(styles, rgb_n, noise_n))[0]
                    effect[n, direction, flat] = (logits - base).cpu()
                bar.update(1)
    bar.close()
    return EffectResult(effect.clone(), base_logits.clone(), dims, smin.float().cpu().clone(),
                        smax.float().cpu().clone(), computed, float(shift_size))


# ---------------------------------------------------------------------------------------------
# Selection (the authors' notebook semantics)

def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def filter_unstable(effect: torch.Tensor | np.ndarray, threshold: float = 2.0,
                    max_count: int | None = None, *,
                    max_share: float = UNSTABLE_MAX_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Zero out images whose classifier reacts to too many edits (spec step 3).

    An image with more than ``max_count`` entries where |effect| > ``threshold`` (over both
    directions, all coordinates and both logits: 4S entries) is unstable. ``max_count`` None
    means ``unstable_max_count(S, max_share)``: the authors' 750 of 2 x 2 x 5,760 entries as a
    share (3.26 %), so the filter means the same at any S. Returns (a float64 copy of the
    effect with those images zeroed, bool mask [N] of the unstable images). Zeroed images stay
    in the tensor, so they still count in the means of later steps, as in the notebook.
    """
    eff = _as_numpy(effect).copy()
    if eff.ndim != 4 or eff.shape[1] != 2 or eff.shape[3] != 2:
        raise ValueError(f"effect must be [N, 2, S, 2], got {eff.shape}")
    if max_count is None:
        max_count = unstable_max_count(eff.shape[2], max_share)
    unstable = (np.abs(eff) > threshold).sum(axis=(1, 2, 3)) > max_count
    eff[unstable] = 0
    return eff, unstable


def _greedy(effect: np.ndarray, images: np.ndarray, cls: int, num_indices: int, cap: float,
            check: CoordinateCheck | None, contenders: set[int] | None = None,
            runners_up: int = 0) -> tuple[list[int], list[float]]:
    """Spec step 5 on the given images; returns flat picks into [2S] and each pick's mean gain.

    ``contenders`` (screening's verification): a set that collects, at every step, the flat
    column (into [2S]) of the pick and of the ``runners_up`` next best columns with a positive mean.

    Deviations only where the notebook degenerates: it stops when no image is left under the
    cap (the notebook would take the mean of an empty set, get NaN and return index 0; the
    paper's Algorithm 1 stops when the image set is empty) or when no remaining coordinate has a
    positive mean effect (the notebook would return index 0 again); and already picked or
    rejected columns are masked rather than only zeroed, which selects the same column whenever
    the maximum is positive. The notebook's ``if sindex == 0: break`` guard is therefore moot.
    """
    num_styles = effect.shape[2]
    E = np.maximum(0.0, effect[images, :, :, cls].reshape(len(images), 2 * num_styles))
    images_effect = np.zeros(len(images))
    available = np.ones(2 * num_styles, dtype=bool)
    picks: list[int] = []
    gains: list[float] = []
    while len(picks) < num_indices and available.any():
        remaining = images_effect < cap
        if not remaining.any():
            break
        means = E[remaining].mean(axis=0)
        means[~available] = -np.inf
        nxt = int(np.argmax(means))
        if contenders is not None:
            top = np.argsort(-means, kind="stable")[:1 + runners_up]
            contenders.update(int(p) for p in top if means[p] > 0)
        if not means[nxt] > 0:
            break
        available[nxt] = False
        if check is not None and not check(effect, cls, nxt % num_styles, images):
            E[:, nxt] = 0
            continue
        picks.append(nxt)
        gains.append(float(means[nxt]))
        images_effect += E[:, nxt]
        E[:, nxt] = 0
    return picks, gains


def _image_fraction(effect: np.ndarray, images: np.ndarray, cls: int, config: AttFindConfig,
                    check: CoordinateCheck | None, contenders: set[int] | None = None,
                    runners_up: int = 0) -> tuple[list[int], list[float]]:
    """The notebook's ``find_significant_styles_image_fraction`` on the given images.

    Counts, per (direction, coordinate), the images whose class-``cls`` logit rises by more than
    ``effect_threshold``; walks the 2 x ``num_indices`` highest counts, stops at the first count
    below ``min_changed_images_fraction`` x (number of images), skips coordinates the check
    rejects. Ties in the count go to the higher flat index (the notebook's reversed argsort,
    made stable). The "gain" reported is the fraction of images moved. ``contenders`` collects
    every flat column (into [2S]) whose count reaches that of the ``runners_up``-th column after
    the last one walked (ties included).
    """
    num_styles = effect.shape[2]
    if len(images) == 0:
        return [], []
    counts = (effect[images, :, :, cls] > config.effect_threshold).sum(axis=0).reshape(-1)
    order = np.argsort(counts, kind="stable")[::-1]
    picks: list[int] = []
    gains: list[float] = []
    walked = 0
    for walked, flat in enumerate(order[:2 * config.num_indices]):
        if counts[flat] < config.min_changed_images_fraction * len(images):
            break
        if check is not None and not check(effect, cls, int(flat) % num_styles, images):
            continue
        picks.append(int(flat))
        gains.append(float(counts[flat]) / len(images))
        if len(picks) == config.num_indices:
            break
    if contenders is not None and len(order):
        # ties in the count are common (integers): every column tied with the runners-up contends
        bar = max(1, counts[order[min(walked + runners_up, len(order) - 1)]])
        contenders.update(int(p) for p in np.nonzero(counts >= bar)[0])
    return picks, gains


def _check_num_indices(config: AttFindConfig, num_styles: int) -> None:
    """``num_indices`` may not exceed the 2 x S (direction, coordinate) pairs a class can pick from."""
    if config.num_indices > 2 * num_styles:
        raise ValueError(f"AttFindConfig.num_indices = {config.num_indices} asks for more coordinates than exist: "
                         f"the effect tensor has S = {num_styles} style coordinates, i.e. {2 * num_styles} "
                         f"(direction, coordinate) pairs per class; set num_indices to at most {2 * num_styles} "
                         f"(the presets use 8 or 10)")


def _check_discriminator(config: AttFindConfig, check: CoordinateCheck | None) -> None:
    if config.discriminator_threshold is not None and check is None:
        raise ValueError("config.discriminator_threshold is set: pass check=, a CoordinateCheck that applies "
                         "the discriminator filter with that threshold (none is built in)")


def _class_images(base_logits: np.ndarray, cls: int) -> np.ndarray:
    """The images class ``cls``'s selection runs on (spec step 4): those predicted as the other class."""
    return np.nonzero(np.argmax(base_logits, axis=1) == 1 - cls)[0]


def _select(effect: np.ndarray, base_logits: np.ndarray, cls: int, config: AttFindConfig,
            images: np.ndarray | None, check: CoordinateCheck | None, contenders: set[int] | None = None,
            runners_up: int = 0) -> tuple[list[tuple[int, int]], list[float]]:
    num_styles = effect.shape[2]
    _check_num_indices(config, num_styles)
    if images is None:
        images = _class_images(base_logits, cls)
    if config.variant == "image-fraction":
        picks, gains = _image_fraction(effect, images, cls, config, check, contenders, runners_up)
    else:
        picks, gains = _greedy(effect, images, cls, config.num_indices, config.image_effect_cap, check,
                               contenders, runners_up)
    return [(p // num_styles, p % num_styles) for p in picks], gains


def select_class(effect: torch.Tensor | np.ndarray, base_logits: torch.Tensor | np.ndarray, cls: int,
                 config: AttFindConfig, *, images: np.ndarray | None = None,
                 check: CoordinateCheck | None = None) -> list[tuple[int, int]]:
    """Coordinates that raise class ``cls``'s logit, found on the images predicted as the other class.

    Spec steps 4-5 (the notebook's ``find_significant_styles``): E = max(0, effect[:, :, :, cls])
    as [n, 2S] over the images whose argmax(base_logits) is ``1 - cls`` (or ``images``, given as
    indices); greedy: the column with the highest mean of E over the images whose accumulated
    effect is still below ``config.image_effect_cap`` is taken, its column is added to every
    image's accumulated effect and zeroed. A flat pick ``p`` decodes as (direction = p // S,
    index = p % S). The ``image-fraction`` variant swaps in :func:`_image_fraction`. Pass the
    effect after :func:`filter_unstable`. ``check`` (a :data:`CoordinateCheck`)
    can veto a coordinate.
    """
    eff = _as_numpy(effect)
    return _select(eff, _as_numpy(base_logits), cls, config, images, check)[0]


def pair_scores(effect: torch.Tensor | np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[float]:
    """Spec step 6 score of each (direction, index): mean(effect[:, d, i, 0]) + mean(effect[:, 1-d, i, 1])."""
    eff = _as_numpy(effect)
    return [float(eff[:, d, i, 0].mean() + eff[:, 1 - d, i, 1].mean()) for d, i in pairs]


def combine(effect: torch.Tensor | np.ndarray, sel0: Sequence[tuple[int, int]],
            sel1: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spec step 6: one ranked list of directions that move class 1 to class 0.

    ``sel0`` raises class 0 (found on class-1 images), ``sel1`` raises class 1 (found on class-0
    images). Class-1 pairs get their direction flipped (moving away from class 1) and are dropped
    if their index is already in class 0's list; the joined list (flipped class-1 pairs first, as
    the notebook builds it) is ranked by :func:`pair_scores` over all images, highest first.
    Ties keep the notebook's reversed-argsort order (the later entry first), made deterministic.
    """
    index0 = {i for _, i in sel0}
    joined = [(1 - d, i) for d, i in sel1 if i not in index0] + [(d, i) for d, i in sel0]
    scores = pair_scores(effect, joined)
    order = np.argsort(np.asarray(scores), kind="stable")[::-1]
    return [joined[o] for o in order]


def run_attfind(effect_result: EffectResult, config: AttFindConfig | None = None, *,
                check: CoordinateCheck | None = None) -> Attributes:
    """AttFind's selection half on a computed effect tensor.

    Variants (``config.variant``):
        two-class: the notebook's "combined" cell: unstable filter, greedy per class
            (:func:`select_class` for class 0 and 1), :func:`combine`. Scores: :func:`pair_scores`.
        one-vs-all: the notebook's one-vs-all cell with ``class_index_to = 0`` and
            ``split_by_class = False``: the greedy for class 0 over *all* images (both predicted
            classes) with the cap 5 x ``effect_threshold`` (0.1 in that cell: preset
            ``authors-one-vs-all``); no combination step, so the list keeps the greedy order and
            the scores are each pick's mean gain. It reads "directions that move any image
            towards class 0", the same convention as two-class.
        image-fraction: the notebook's ``find_significant_styles_image_fraction`` (defined there
            as a drop-in for the greedy, though no cell calls it) used per class in place of the
            greedy, then combined and scored as two-class.

    ``check`` (a :data:`CoordinateCheck`, e.g. a discriminator filter as in the authors' notebook,
    which this package does not ship) can veto coordinates; it is required when
    ``config.discriminator_threshold`` is set.
    """
    config = config or AttFindConfig()
    _check_discriminator(config, check)
    _check_num_indices(config, int(effect_result.effect.shape[2]))  # before any work
    unstable_limit = config.unstable_limit(int(effect_result.effect.shape[2]))
    effect, unstable = filter_unstable(effect_result.effect, config.unstable_threshold, unstable_limit)
    base = _as_numpy(effect_result.base_logits)
    labels = np.argmax(base, axis=1)
    details: dict[str, Any] = {
        "num_images": int(effect.shape[0]),
        "images_per_class": [int((labels == 0).sum()), int((labels == 1).sum())],
        "unstable_images": np.nonzero(unstable)[0].tolist(),
        # the count the filter used: more than this many of an image's 4S entries -> unstable
        "unstable_max_count": unstable_limit, "unstable_entries_per_image": 4 * int(effect.shape[2]),
    }
    if config.variant == "one-vs-all":
        pairs, scores = _select(effect, base, 0, config, np.arange(effect.shape[0]), check)
        details["class_0"] = [list(p) for p in pairs]
    else:
        sel0, _ = _select(effect, base, 0, config, None, check)
        sel1, _ = _select(effect, base, 1, config, None, check)
        pairs = combine(effect, sel0, sel1)
        scores = pair_scores(effect, pairs)
        details["class_0"] = [list(p) for p in sel0]
        details["class_1"] = [list(p) for p in sel1]
    mean_effect = [(float(effect[:, d, i, 0].mean()), float(effect[:, 1 - d, i, 1].mean())) for d, i in pairs]
    if effect_result.screen is not None:
        details["screen"] = dict(effect_result.screen)
    layers = channels = None
    if effect_result.style_dims is not None:
        layers, channels = decode_indices(pairs, effect_result.style_dims)
    return Attributes("attfind", pairs, scores, mean_effect, layers, channels, config.to_dict(), details)


def _contenders(result: EffectResult, config: AttFindConfig, check: CoordinateCheck | None,
                runners_up: int) -> torch.Tensor:
    """bool [N, 2, S]: the entries of ``result.effect`` the selection on it reads for its choices.

    Per class (as :func:`run_attfind` selects): every column (direction, coordinate) the
    selection picks, vetoes or ranks among the ``runners_up`` next best at any step, on the
    images that class's selection runs on (the images predicted as the other class; all images
    for ``one-vs-all``), since a step compares columns only there; and both directions of every
    picked coordinate on every image, which its score and mean effect average over. The rest of
    a contender's column (the other direction, the other class's images) never decides a step.
    """
    effect, _ = filter_unstable(result.effect, config.unstable_threshold,
                                config.unstable_limit(int(result.effect.shape[2])))  # as run_attfind filters
    base = _as_numpy(result.base_logits)
    n_images, _, num_styles, _ = effect.shape
    if config.variant == "one-vs-all":
        runs = [(0, np.arange(n_images))]
    else:
        runs = [(cls, _class_images(base, cls)) for cls in (0, 1)]
    needed = np.zeros((n_images, 2, num_styles), dtype=bool)
    for cls, images in runs:
        columns: set[int] = set()
        pairs, _ = _select(effect, base, cls, config, images, check, columns, runners_up)
        for p in columns:
            needed[images, p // num_styles, p % num_styles] = True
        for _, i in pairs:
            needed[:, :, i] = True
    return torch.from_numpy(needed)


def screened_attfind(G: Generator, classifier: nn.Module, conv_styles: Sequence[torch.Tensor],
                     rgb_styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None,
                     style_min: torch.Tensor, style_max: torch.Tensor, config: AttFindConfig | None = None, *,
                     screen: float = SCREEN_SHARE, runners_up: int = SCREEN_RUNNERS_UP, fill: str = "estimate",
                     batch_size: int = 256, check: CoordinateCheck | None = None,
                     progress: bool | None = True) -> tuple[Attributes, EffectResult]:
    """AttFind with screened effects: (attributes, the effect tensor they were selected on).

    1. **Screen** (:func:`compute_effects` with ``screen``): one forward and one backward pass
       per image and logit give the first-order estimate of all 2S candidate edits of every
       image (:func:`first_order_effects`); per image the ``ceil(screen * 2S)`` candidates with
       the largest |estimate| on the logit the selection raises on that image (the other class;
       logit 0 for ``one-vs-all``) are rendered exactly. The rest keep their estimate (``fill``
       ``estimate``, the default: a coordinate that moves many images a little, each time below
       their top candidates, can still rank on its estimates and is then verified) or 0
       (``zero``: only rendered entries count).
    2. **Verify** (the margin): the authors' selection (:func:`run_attfind`'s, with ``config``)
       runs on that tensor; at every greedy step the pick and the ``runners_up`` next best
       columns (vetoed ones included) are collected, and what the selection reads of them and is
       not exact yet is rendered (:func:`_contenders`): each such column on the images its class's
       selection runs on, and both directions of every picked coordinate on all images. Repeat
       until all of it is exact, then select. Each greedy step then chooses among exact columns:
       the picks, their scores and mean effects come from exact renders, and the choice is exact
       AttFind's (up to ties) unless the exact winner of a step is a column that screening left
       below the ``runners_up`` next best (its unrendered entries' fill too low).

    ``screen`` 1.0 renders everything: the exact effect tensor, bit for bit, and exact AttFind.
    ``result.exact`` marks the exact entries; ``result.screen`` (also
    ``attributes.details["screen"]``) records the share, the renders made (``renders``, against
    ``candidates`` = N x 2S), the rounds and the coordinates verified. The shift size is
    ``config.shift_size``. Measured against exact AttFind in ``benchmarks/attfind_screened.py``.
    """
    config = config or AttFindConfig()
    _check_discriminator(config, check)
    if runners_up < 0:
        raise ValueError(f"runners_up must be >= 0, got {runners_up}")
    renderer = _EffectRenderer(G, classifier, conv_styles, rgb_styles, noise, style_min, style_max, config.shift_size,
                               batch_size)
    _check_num_indices(config, renderer.num_styles)
    computed = _coordinate_mask(None, renderer.num_styles)
    bar = tqdm(total=renderer.n_images * len(renderer.dims), desc="AttFind effects (screened)", unit="img-layer",
               enabled=progress_enabled(progress))
    try:
        logit = 0 if config.variant == "one-vs-all" else None
        effect, exact, record = _screened_effects(renderer, computed, screen, logit, fill, bar)
        record["runners_up"] = int(runners_up)
        while True:
            result = renderer.result(effect, computed, exact, record)
            mask = _contenders(result, config, check, runners_up).to(renderer.device) & ~exact
            if not bool(mask.any()):
                return run_attfind(result, config, check=check), result
            bar.total += renderer.n_images * len(renderer.dims)
            record["renders"] += renderer.render(mask, effect, bar)
            exact |= mask
            record["rounds"] += 1
            todo = torch.nonzero(mask.any(1).any(0)).flatten().tolist()
            record["verified_coordinates"] = sorted(set(record["verified_coordinates"]) | set(todo))
    finally:
        bar.close()
