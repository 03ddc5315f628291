"""The embedded synthetic face data set: cartoon cat/dog faces whose causes are known.

Every image is drawn procedurally, with numpy, from one row of a float32 factor vector; the
factors are sampled deterministically from ``(seed, split, index)``. Because the ground truth is
known, an explainer's attributes can be checked against the factors that really decide a label,
and a classifier's shortcut can be planted on purpose.

Factors (columns of the ``[N, F]`` array, in this order; continuous ones are sampled uniformly on
``[low, high]``, binary ones are 0 or 1 with probability 1/2, all independently of each other):

================ ========== ============ ====================================================
name             kind       range        role and appearance
================ ========== ============ ====================================================
wrinkles         continuous 0 .. 1       causal for ``synth-age``: dark forehead lines, crow's
                                         feet and eye bags appear one group after another
hair_grey        continuous 0 .. 1       causal for ``synth-age``: the hair tuft and eyebrows
                                         go from dark (fur-coloured) to light grey
ear_pointiness   continuous 0 .. 1       causal for ``synth-species``: 0 = long floppy dark
                                         dog ears, 1 = upright pointed cat ears (pink inside)
snout_length     continuous 0 .. 1       causal for ``synth-species``: 0 = small muzzle and
                                         small pink cat nose, 1 = long wide dog muzzle with a
                                         big black nose
glasses          binary     0 / 1        spurious for ``synth-age`` (round black glasses);
                                         a nuisance unless planted
collar           binary     0 / 1        spurious for ``synth-species`` (red collar with a
                                         gold tag); a nuisance unless planted
fur_hue          continuous 0 .. 1       nuisance: hue of the fur (head, ears, body); cyclic,
                                         0 and 1 are the same hue
bg_hue           continuous 0 .. 1       nuisance: hue of the background; cyclic
eye_size         continuous 0 .. 1       nuisance: radius of the eyes
pos_x            continuous -1 .. 1      nuisance: horizontal shift (up to 4% of the width)
pos_y            continuous -1 .. 1      nuisance: vertical shift (up to 3% of the height)
scale            continuous 0.9 .. 1.1   nuisance: size of the whole figure
detail_seed      id         0 .. 2^24-1  no meaning: seeds the per-image fine detail (wrinkle
                                         jitter, hairline waves, fur stripes, gaze)
================ ========== ============ ====================================================

``detail_seed`` is an integer stored exactly in float32. All per-image randomness of the
renderer comes from it, so ``render(intervene(f, name, v))`` is the same picture as
``render(f)`` with only factor ``name`` changed.

Each split has its own streams (keyed by ``seed`` and the split's name), so ``train``, ``val``
and ``test`` never share images; row ``i`` of a split depends only on ``(seed, split, i)``.

Labels (deterministic functions of the causal factors; both classes have probability 1/2):

- ``synth-age`` (0 = young, 1 = old): ``old = 0.6 * wrinkles + 0.4 * hair_grey > 0.5``.
- ``synth-species`` (0 = cat, 1 = dog):
  ``dog = 0.5 * snout_length + 0.5 * (1 - ear_pointiness) > 0.5`` (i.e. snout_length > ear_pointiness).

Optional label noise flips each label with probability ``label_noise``, decided by a hash of
``(seed, task, detail_seed)``, so a row's noisy label does not depend on its neighbours.

Spurious planting: with ``spurious_p = p`` on the ``train`` split, the task's spurious factor
``s`` is made to agree with the noise-free label ``y`` (``s == y``) with probability ``p``: each
row, with probability ``|2p - 1|``, gets ``s = y`` (``p > 0.5``) or ``s = 1 - y`` (``p < 0.5``),
and otherwise keeps its independent draw. ``p = 0.5`` changes nothing; ``val`` and ``test``
are never planted, so there the spurious factor stays independent of the label.

Rendering: signed-distance shapes evaluated on a pixel grid for a whole batch at once, composited
back to front with analytic edge coverage, at ``SUPERSAMPLE`` times the output size, then
box-filtered down. Run ``python -m repro.data.synthetic`` to measure the speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.config import SPLITS
from repro.utils import atomic_write

RENDERER_VERSION = 1  # bump whenever the pictures or the factor streams change (invalidates caches)
SIZES = (32, 64, 128, 256)
SUPERSAMPLE = {32: 4, 64: 4, 128: 2, 256: 2}  # internal resolution = size * SUPERSAMPLE[size]
MAX_CHUNK_PIXELS = 1 << 19  # internal pixels drawn at once per worker: small enough to stay in cache
DETAIL_SEEDS = 1 << 24  # detail_seed is an integer below this (exact in float32)


@dataclass(frozen=True)
class Factor:
    """One generative factor: one column of the factor array.

    Parameters:
        name: column name, used by :func:`intervene`.
        kind: ``continuous`` (uniform on [low, high]), ``binary`` (0 or 1) or ``id`` (an integer
            seed of per-image detail, with no meaning of its own).
        low: smallest value.
        high: largest value.
        role: what the factor does to the picture and to the labels.
    """

    name: str
    kind: str
    low: float
    high: float
    role: str


@dataclass(frozen=True)
class TaskSpec:
    """A binary task: its label is ``score(factors) > threshold`` with a linear score.

    Parameters:
        name: task name (``synth-age`` / ``synth-species``).
        causal: the factors that decide the label.
        spurious: the binary factor that can be planted to agree with the label in train.
        negative_class_name: name of label 0.
        positive_class_name: name of label 1.
        weights: ``(factor, weight)`` pairs: ``score = offset + sum(weight * factor)``.
        offset: constant part of the score.
        threshold: label 1 where the score exceeds this.
        label_doc: the label function in words.
    """

    name: str
    causal: list[str]
    spurious: str
    negative_class_name: str
    positive_class_name: str
    weights: tuple[tuple[str, float], ...]
    offset: float
    threshold: float
    label_doc: str

    @property
    def class_names(self) -> tuple[str, str]:
        """Names of label 0 and label 1."""
        return (self.negative_class_name, self.positive_class_name)

    def score(self, factors: np.ndarray) -> np.ndarray:
        """The linear score whose threshold gives the noise-free label, float64 [n]."""
        factors = _check_factors(factors)
        total = np.full(len(factors), self.offset, dtype=np.float64)
        for name, weight in self.weights:
            total += weight * factors[:, FACTOR_NAMES.index(name)].astype(np.float64)
        return total


FACTORS: list[Factor] = [
    Factor("wrinkles", "continuous", 0.0, 1.0,
           "causal (synth-age): forehead lines, crow's feet and eye bags, more and darker as it grows"),
    Factor("hair_grey", "continuous", 0.0, 1.0,
           "causal (synth-age): hair tuft and eyebrows from dark to light grey"),
    Factor("ear_pointiness", "continuous", 0.0, 1.0,
           "causal (synth-species): 0 = long floppy dark dog ears, 1 = upright pointed cat ears"),
    Factor("snout_length", "continuous", 0.0, 1.0,
           "causal (synth-species): 0 = small muzzle, small pink nose; 1 = long muzzle, big black nose"),
    Factor("glasses", "binary", 0.0, 1.0,
           "spurious (synth-age): round black glasses; planted in train when spurious_p != 0.5"),
    Factor("collar", "binary", 0.0, 1.0,
           "spurious (synth-species): red collar with a gold tag; planted in train when spurious_p != 0.5"),
    Factor("fur_hue", "continuous", 0.0, 1.0, "nuisance: hue of the fur (cyclic: 0 and 1 are the same)"),
    Factor("bg_hue", "continuous", 0.0, 1.0, "nuisance: hue of the background (cyclic: 0 and 1 are the same)"),
    Factor("eye_size", "continuous", 0.0, 1.0, "nuisance: radius of the eyes"),
    Factor("pos_x", "continuous", -1.0, 1.0, "nuisance: horizontal shift, up to 4% of the width"),
    Factor("pos_y", "continuous", -1.0, 1.0, "nuisance: vertical shift, up to 3% of the height"),
    Factor("scale", "continuous", 0.9, 1.1, "nuisance: size of the whole figure"),
    Factor("detail_seed", "id", 0.0, float(DETAIL_SEEDS - 1),
           "none: seeds per-image fine detail (wrinkle jitter, hairline, fur stripes, gaze)"),
]
FACTOR_NAMES: list[str] = [f.name for f in FACTORS]
_COL = {name: i for i, name in enumerate(FACTOR_NAMES)}
_LOW = np.array([f.low for f in FACTORS], dtype=np.float32)
_HIGH = np.array([f.high for f in FACTORS], dtype=np.float32)

TASKS: dict[str, TaskSpec] = {
    "synth-age": TaskSpec(
        name="synth-age", causal=["wrinkles", "hair_grey"], spurious="glasses",
        negative_class_name="young", positive_class_name="old",
        weights=(("wrinkles", 0.6), ("hair_grey", 0.4)), offset=0.0, threshold=0.5,
        label_doc="old (1) if 0.6 * wrinkles + 0.4 * hair_grey > 0.5, else young (0)"),
    "synth-species": TaskSpec(
        name="synth-species", causal=["snout_length", "ear_pointiness"], spurious="collar",
        negative_class_name="cat", positive_class_name="dog",
        weights=(("snout_length", 0.5), ("ear_pointiness", -0.5)), offset=0.5, threshold=0.5,
        label_doc="dog (1) if 0.5 * snout_length + 0.5 * (1 - ear_pointiness) > 0.5, else cat (0)"),
}


@dataclass
class SyntheticSplit:
    """One rendered split.

    Parameters:
        images: uint8 [n, 3, H, W] (channels first).
        labels: int64 [n].
        factors: float32 [n, F], columns as in ``FACTOR_NAMES``.
    """

    images: np.ndarray
    labels: np.ndarray
    factors: np.ndarray


# ----------------------------------------------------------------------------------------------
# Validation


def _check_task(task: str) -> TaskSpec:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[task]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def _check_size(size: int) -> None:
    if size not in SIZES:
        raise ValueError(f"size {size!r} is not supported; size must be a power of two in "
                         f"[32, 256]: one of {', '.join(map(str, SIZES))}")


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _check_factors(factors: np.ndarray) -> np.ndarray:
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(FACTORS):
        raise ValueError(f"factors must have shape [n, {len(FACTORS)}] (columns {', '.join(FACTOR_NAMES)}), "
                         f"got {factors.shape}")
    return factors


# ----------------------------------------------------------------------------------------------
# Counter-based randomness: a value depends only on its key and its index, never on array length.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _key(*parts: str | int) -> np.uint64:
    """A 64-bit key from strings and integers (stable across runs, unlike ``hash``)."""
    parts = tuple(p if isinstance(p, str) else int(p) for p in parts)
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _uniform(key: np.uint64, index: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1), one per index: splitmix64 of ``index * golden + key``."""
    z = np.asarray(index, dtype=np.uint64).reshape(-1) * _GOLDEN + key
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


# ----------------------------------------------------------------------------------------------
# Factors, labels, interventions


def sample_factors(n: int, seed: int, split: str = "train", task: str | None = None,
                   spurious_p: float = 0.5, start: int = 0) -> np.ndarray:
    """Factors of images ``start .. start + n - 1`` of a split, float32 [n, F].

    Row ``i`` depends only on ``(seed, split, start + i)`` (and, when planting, on its own label).
    ``task`` and ``spurious_p`` plant the task's spurious factor on the train split (see the
    module docstring); other splits ignore ``spurious_p``.
    """
    _check_split(split)
    _check_probability("spurious_p", spurious_p)
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be >= 0, got n={n}, start={start}")
    if task is None and spurious_p != 0.5:
        raise ValueError(f"spurious_p={spurious_p} needs a task to plant against; choose one of: "
                         f"{', '.join(TASKS)}")
    spec = _check_task(task) if task is not None else None
    index = np.arange(start, start + n, dtype=np.uint64)
    factors = np.empty((n, len(FACTORS)), dtype=np.float32)
    for col, factor in enumerate(FACTORS):
        u = _uniform(_key("factor", seed, split, factor.name), index)
        if factor.kind == "binary":
            factors[:, col] = u < 0.5
        elif factor.kind == "id":
            factors[:, col] = np.floor(u * DETAIL_SEEDS)
        else:
            factors[:, col] = factor.low + (factor.high - factor.low) * u
    if spec is not None and split == "train" and spurious_p != 0.5:
        label = label_of(spec.name, factors)
        target = label if spurious_p > 0.5 else 1 - label
        planted = _uniform(_key("plant", seed, split, spec.name), index) < abs(2.0 * spurious_p - 1.0)
        col = _COL[spec.spurious]
        factors[:, col] = np.where(planted, target, factors[:, col])
    return factors


def label_of(task: str, factors: np.ndarray, label_noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Labels of a task, int64 [n]; each flipped with probability ``label_noise``.

    The flip of a row is decided by ``(seed, task, detail_seed)``, so it does not depend on the
    other rows.
    """
    spec = _check_task(task)
    _check_probability("label_noise", label_noise)
    factors = _check_factors(factors)
    labels = (spec.score(factors) > spec.threshold).astype(np.int64)
    if label_noise > 0:
        detail = factors[:, _COL["detail_seed"]].astype(np.uint64)
        flip = _uniform(_key("label_noise", seed, task), detail) < label_noise
        labels = np.where(flip, 1 - labels, labels)
    return labels


def spurious_agreement(task: str, factors: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose spurious factor (as 0/1) equals the label."""
    spec = _check_task(task)
    spurious = _check_factors(factors)[:, _COL[spec.spurious]] > 0.5
    return float(np.mean(spurious == np.asarray(labels).astype(bool)))


def intervene(factors: np.ndarray, name: str, value: float | np.ndarray) -> np.ndarray:
    """A copy of ``factors`` with column ``name`` set to ``value`` (a scalar or one value per row).

    Rendering the result gives the same pictures with only that factor changed. Values outside
    the factor's range are stored as given and clipped to the range when rendered.
    """
    if name not in _COL:
        raise ValueError(f"unknown factor name {name!r}; choose one of: {', '.join(FACTOR_NAMES)}")
    out = np.array(_check_factors(factors), dtype=np.float32, copy=True)
    out[:, _COL[name]] = value
    return out


# ----------------------------------------------------------------------------------------------
# Rendering
#
# Geometry lives in "head" coordinates: x to the right, y downwards, the canvas is [-1, 1]^2 at
# scale 1 and no shift. A canvas point (u, v) maps to head coordinates ((u - ox) / s, (v - oy) / s).


def _hsv_to_rgb(h: np.ndarray, s: float | np.ndarray, v: float | np.ndarray) -> np.ndarray:
    """HSV (each [n] or scalar, in [0, 1]) -> RGB float32 [n, 3]."""
    h = np.asarray(h, dtype=np.float32)
    k = (np.array([5.0, 3.0, 1.0], dtype=np.float32) + 6.0 * h[:, None]) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    s = np.asarray(s, dtype=np.float32).reshape(-1, 1)
    v = np.asarray(v, dtype=np.float32).reshape(-1, 1)
    return (v - v * s * ramp).astype(np.float32)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear blend of colours [n, 3] (or [3]) by t [n]: t = 0 -> a, t = 1 -> b."""
    t = t.reshape(-1, 1)
    return (a * (1.0 - t) + b * t).astype(np.float32)


class _Canvas:
    """Per-channel float canvases of a batch, painted layer by layer on sub-windows."""

    def __init__(self, n: int, res: int, ox: np.ndarray, oy: np.ndarray, scale: np.ndarray):
        self.res = res
        self.planes = np.empty((3, n, res, res), dtype=np.float32)
        self.grid = ((np.arange(res, dtype=np.float32) + 0.5) * (2.0 / res) - 1.0).astype(np.float32)
        self.ox, self.oy, self.scale = ox, oy, scale
        self.inv_scale = (1.0 / scale).reshape(-1, 1, 1).astype(np.float32)
        self.pixels_per_unit = (scale * (res / 2.0)).reshape(-1, 1, 1).astype(np.float32)

    def _span(self, offset: np.ndarray, low: float, high: float) -> slice:
        lo = float(np.min(offset + self.scale * low))
        hi = float(np.max(offset + self.scale * high))
        i0 = max(int(np.floor((lo + 1.0) * self.res / 2.0)) - 1, 0)
        i1 = min(int(np.ceil((hi + 1.0) * self.res / 2.0)) + 1, self.res)
        return slice(i0, max(i0, i1))

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
        """Pixel slices covering head-box [x0, x1] x [y0, y1] for every image, and the head
        coordinates X [n, 1, w] and Y [n, h, 1] of those pixels."""
        sx = self._span(self.ox, x0, x1)
        sy = self._span(self.oy, y0, y1)
        X = (self.grid[sx][None, None, :] - self.ox.reshape(-1, 1, 1)) * self.inv_scale
        Y = (self.grid[sy][None, :, None] - self.oy.reshape(-1, 1, 1)) * self.inv_scale
        return sy, sx, X, Y

    def coverage(self, d: np.ndarray, opacity: np.ndarray | float = 1.0) -> np.ndarray:
        """Edge coverage in [0, 1] of a signed distance d (head units, negative inside)."""
        a = 0.5 - d * self.pixels_per_unit
        np.clip(a, 0.0, 1.0, out=a)
        if not np.isscalar(opacity):
            a *= np.asarray(opacity, dtype=np.float32).reshape(-1, 1, 1)
        return a

    def paint(self, sy: slice, sx: slice, alpha: np.ndarray, colour: np.ndarray | list[np.ndarray]) -> None:
        """Composite ``colour`` ([3] for all images, [n, 3], or three arrays broadcastable to the
        window) over the window with coverage ``alpha``."""
        if isinstance(colour, np.ndarray) and colour.ndim == 2:
            colour = [colour[:, c].reshape(-1, 1, 1) for c in range(3)]
        for c in range(3):
            region = self.planes[c][:, sy, sx]
            target = colour[c]
            delta = target - region
            delta *= alpha
            region += delta

    def downsample(self, size: int) -> np.ndarray:
        """Box-filter to [n, size, size, 3] uint8."""
        f = self.res // size
        n = self.planes.shape[1]
        rows = self.planes.reshape(3, n, size, f, self.res)
        summed = sum(rows[:, :, :, i] for i in range(f)).reshape(3, n, size, size, f)
        small = sum(summed[..., i] for i in range(f)) * (255.0 / (f * f))
        return np.clip(np.rint(small.transpose(1, 2, 3, 0)), 0, 255).astype(np.uint8)


def _ellipse(X, Y, cx, cy, a, b) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse."""
    q = np.sqrt(((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2)
    q -= 1.0
    q *= np.minimum(a, b)
    return q


def _capsule_axis(X, Y, ax, ay, bx, by) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the segment (ax, ay)-(bx, by), and the position h in [0, 1] of the nearest point."""
    dx, dy = bx - ax, by - ay
    inv = 1.0 / (dx * dx + dy * dy)
    px, py = X - ax, Y - ay
    h = px * (dx * inv) + py * (dy * inv)
    np.clip(h, 0.0, 1.0, out=h)
    ex = px - h * dx
    ey = py - h * dy
    return np.sqrt(ex * ex + ey * ey), h


def _capsule(X, Y, ax, ay, bx, by, r1, r2) -> np.ndarray:
    """Approximate signed distance to a capsule from (ax, ay) radius r1 to (bx, by) radius r2."""
    d, h = _capsule_axis(X, Y, ax, ay, bx, by)
    d -= r1 + h * (r2 - r1)
    return d


def _arc(X, Y, cx, cy, curve, half_width, thickness) -> np.ndarray:
    """Signed distance (approximately) to a parabolic stroke y = cy + curve * (x - cx)^2, |x - cx| < half_width."""
    x = X - cx
    d = np.abs(Y - cy - curve * x * x)
    d -= thickness
    return np.maximum(d, np.abs(x) - half_width)


def _col(f: np.ndarray, name: str) -> np.ndarray:
    return f[:, _COL[name]]


def _p(x: np.ndarray | float) -> np.ndarray:
    """A per-image parameter [n] as float32 [n, 1, 1] (broadcasts against a window)."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1, 1)


def _detail(detail_seed: np.ndarray, name: str) -> np.ndarray:
    """The fine detail ``name`` of each image: a uniform in [0, 1) from its detail seed, [n, 1, 1]."""
    return _p(_uniform(_key("detail", name), detail_seed.astype(np.uint64)))


_WHITE = np.array([0.97, 0.97, 0.95], dtype=np.float32)
_BLACK = np.array([0.08, 0.07, 0.07], dtype=np.float32)
_PINK = np.array([0.93, 0.55, 0.62], dtype=np.float32)
_GREY = np.array([0.86, 0.86, 0.88], dtype=np.float32)
_RED = np.array([0.85, 0.08, 0.12], dtype=np.float32)
_GOLD = np.array([0.98, 0.80, 0.15], dtype=np.float32)

HEAD_CY, HEAD_A, HEAD_B = 0.10, 0.64, 0.60  # head ellipse (head coordinates)
EYE_X, EYE_Y = 0.26, 0.08  # eye centres at (+-EYE_X, EYE_Y)
BODY_CY, BODY_R = 1.45, 0.85  # shoulders: a circle below the head


def _render_chunk(f: np.ndarray, size: int) -> np.ndarray:
    """Draw factor rows (already clipped to their ranges) -> uint8 [n, size, size, 3].

    Left-right symmetric parts are drawn once, on |x|.
    """
    n = len(f)
    scale = _col(f, "scale").astype(np.float32)
    cv = _Canvas(n, size * SUPERSAMPLE[size], (0.08 * _col(f, "pos_x")).astype(np.float32),
                 (0.06 * _col(f, "pos_y")).astype(np.float32), scale)
    seeds = _col(f, "detail_seed")

    def detail(name: str) -> np.ndarray:
        return _detail(seeds, name)

    fur = _hsv_to_rgb(_col(f, "fur_hue"), 0.5, 0.8)
    fur_dark = _hsv_to_rgb(_col(f, "fur_hue"), 0.6, 0.42)
    hair = _mix(_hsv_to_rgb(_col(f, "fur_hue"), 0.55, 0.3), _GREY, _col(f, "hair_grey"))
    cat = _col(f, "ear_pointiness")

    # Background: the hue's colour, darker towards the bottom.
    bg = _hsv_to_rgb(_col(f, "bg_hue"), 0.35, 0.92)
    shade = 1.0 - 0.09 * (cv.grid + 1.0)
    for c in range(3):
        cv.planes[c] = bg[:, c, None, None] * shade[None, :, None]

    # Shoulders, and the collar around them with a gold tag.
    sy, sx, X, Y = cv.window(-BODY_R, BODY_R, BODY_CY - BODY_R, BODY_CY + BODY_R)
    body = np.sqrt(X * X + (Y - BODY_CY) ** 2) - BODY_R
    cv.paint(sy, sx, cv.coverage(body), fur * 0.88)
    collar = _col(f, "collar")
    band = np.maximum(_arc(X, Y, 0.0, 0.72, 0.25, 0.9, 0.075), body)
    tag = np.sqrt(X * X + (Y - 0.84) ** 2) - 0.085
    cv.paint(sy, sx, cv.coverage(band, collar), _RED)
    cv.paint(sy, sx, cv.coverage(tag, collar), _GOLD)

    # Head, with faint vertical fur stripes (their frequency and phase are per-image detail).
    sy, sx, X, Y = cv.window(-HEAD_A, HEAD_A, HEAD_CY - HEAD_B, HEAD_CY + HEAD_B)
    stripes = 1.0 + 0.05 * np.sin((18.0 + 8.0 * detail("stripe_frequency")) * X + detail("stripe_phase") * (2 * np.pi))
    head = _ellipse(X, Y, 0.0, HEAD_CY, HEAD_A, HEAD_B)
    cv.paint(sy, sx, cv.coverage(head), [_p(fur[:, c]) * stripes for c in range(3)])

    # Hair: the top of the head above a wavy hairline, and a tuft of three curls above it.
    sy, sx, X, Y = cv.window(-HEAD_A, HEAD_A, -0.78, -0.30)
    wave = 0.035 * np.sin(16.0 * X + detail("hairline_phase") * (2 * np.pi))
    cap = np.maximum(_ellipse(X, Y, 0.0, HEAD_CY, HEAD_A, HEAD_B), Y - (-0.39 + wave))
    tuft_x = 0.05 * (detail("tuft_shift") - 0.5)
    tuft = np.minimum(np.sqrt((X - tuft_x) ** 2 + (Y + 0.58) ** 2) - 0.15,
                      np.sqrt((np.abs(X - tuft_x) - 0.19) ** 2 + (Y + 0.50) ** 2) - 0.13)
    cv.paint(sy, sx, cv.coverage(np.minimum(cap, tuft)), hair)

    # Ears (both sides at once, on |x|): a tapered capsule from base to tip that morphs from a
    # long floppy dark dog ear (t = 0) to an upright pointed cat ear with a pink inside (t = 1).
    t = _p(cat)
    sy, sx, X, Y = cv.window(-1.02, 1.02, -0.95, 0.55)
    X = np.abs(X)
    ax, ay, bx, by = 0.50 - 0.12 * t, -0.30 - 0.08 * t, 0.80 - 0.22 * t, 0.32 - 1.20 * t
    axis, h = _capsule_axis(X, Y, ax, ay, bx, by)
    radius = (0.19 + 0.03 * t) + h * (0.01 - 0.21 * t)  # 0.19 -> 0.20 (dog), 0.22 -> 0.02 (cat)
    cv.paint(sy, sx, cv.coverage(axis - radius), _mix(fur_dark, fur, cat))
    cv.paint(sy, sx, cv.coverage(axis - 0.5 * radius + 0.03, cat), _PINK)

    # Muzzle, nose and mouth: a small cat face with a pink nose to a long dog snout, reaching
    # below the chin, with a big black nose.
    s = _p(_col(f, "snout_length"))
    sy, sx, X, Y = cv.window(-0.4, 0.4, 0.08, 0.82)
    muzzle = _ellipse(X, Y, 0.0, 0.40 + 0.09 * s, 0.16 + 0.20 * s, 0.11 + 0.20 * s)
    cv.paint(sy, sx, cv.coverage(muzzle), _mix(fur, _WHITE, np.full(n, 0.65, dtype=np.float32)))
    nose_cy, nose_b = 0.32 - 0.03 * s, 0.035 + 0.055 * s
    cv.paint(sy, sx, cv.coverage(_ellipse(X, Y, 0.0, nose_cy, 0.05 + 0.09 * s, nose_b)),
             _mix(_PINK, _BLACK, _col(f, "snout_length")))
    mouth_y = nose_cy + nose_b + 0.05 + 0.14 * s
    mouth = np.minimum(_arc(X, Y, 0.0, mouth_y, -2.5, 0.09 + 0.08 * s, 0.022),
                       _capsule(X, Y, 0.0, nose_cy, 0.0, mouth_y, 0.022, 0.022))
    cv.paint(sy, sx, cv.coverage(mouth), fur * 0.35)

    # Wrinkles: four groups that appear in turn as the factor grows (forehead line, crow's feet,
    # second forehead line, eye bags); their exact placement is per-image detail.
    strength = _col(f, "wrinkles") * 4.0
    eye_r = _p(0.075 + 0.06 * _col(f, "eye_size"))
    sy, sx, X, Y = cv.window(-0.66, 0.66, -0.40, 0.36)
    alpha = np.zeros((n, Y.shape[1], X.shape[2]), dtype=np.float32)
    for k, (y, group) in enumerate(((-0.33, 0), (-0.215, 2))):
        line = _arc(X, Y, 0.04 * (detail(f"line{k}_shift") - 0.5), y + 0.03 * (detail(f"line{k}_height") - 0.5),
                    0.35 + 0.3 * detail(f"line{k}_curve"), 0.36 - 0.05 * k, 0.036)
        np.maximum(alpha, cv.coverage(line, np.clip(strength - group, 0, 1)), out=alpha)
    X = np.abs(X)
    corner, spread = EYE_X + eye_r + 0.07, 0.08 + 0.06 * detail("crows_feet_spread")
    feet = np.minimum(_capsule(X, Y, corner, EYE_Y - 0.01, corner + 0.14, EYE_Y - 0.01 - spread, 0.03, 0.022),
                      _capsule(X, Y, corner, EYE_Y + 0.02, corner + 0.14, EYE_Y + 0.02 + spread, 0.03, 0.022))
    np.maximum(alpha, cv.coverage(feet, np.clip(strength - 1, 0, 1)), out=alpha)
    bags = _arc(X, Y, EYE_X, EYE_Y + eye_r + 0.06, -1.5, 0.11, 0.03)
    np.maximum(alpha, cv.coverage(bags, np.clip(strength - 3, 0, 1)), out=alpha)
    cv.paint(sy, sx, alpha, fur * 0.3)

    # Eyes (white, then a dark iris looking in a per-image direction) and eyebrows.
    sy, sx, X, Y = cv.window(-0.5, 0.5, -0.22, 0.26)
    gaze_x, gaze_y = (detail("gaze_x") - 0.5) * 0.5 * eye_r, (detail("gaze_y") - 0.5) * 0.3 * eye_r
    Xa = np.abs(X)
    cv.paint(sy, sx, cv.coverage(np.sqrt((Xa - EYE_X) ** 2 + (Y - EYE_Y) ** 2) - eye_r), _WHITE)
    iris = np.sqrt((Xa - EYE_X - np.sign(X) * gaze_x) ** 2 + (Y - EYE_Y - gaze_y) ** 2) - 0.62 * eye_r
    cv.paint(sy, sx, cv.coverage(iris), _BLACK)
    brows = _capsule(Xa, Y, 0.13, -0.125, 0.38, -0.145 - 0.03 * detail("brow_tilt"), 0.04, 0.032)
    cv.paint(sy, sx, cv.coverage(brows), hair)

    # Glasses: two rings, a bridge and the temples.
    sy, sx, X, Y = cv.window(-0.7, 0.7, -0.16, 0.30)
    X = np.abs(X)
    frame = np.abs(np.sqrt((X - EYE_X) ** 2 + (Y - EYE_Y) ** 2) - 0.165) - 0.03
    frame = np.minimum(frame, _arc(X, Y, 0.0, EYE_Y - 0.02, 0.0, 0.1, 0.028))
    frame = np.minimum(frame, _arc(X, Y, 0.53, EYE_Y - 0.03, 0.0, 0.12, 0.025))
    cv.paint(sy, sx, cv.coverage(frame, _col(f, "glasses")), _BLACK)

    return cv.downsample(size)


def _chunks(n: int, size: int, chunk: int) -> list[slice]:
    per_chunk = max(1, min(chunk, MAX_CHUNK_PIXELS // (size * SUPERSAMPLE[size]) ** 2))
    return [slice(i, min(i + per_chunk, n)) for i in range(0, n, per_chunk)]


def _render_iter(factors: np.ndarray, size: int, chunk: int) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, images) per chunk, in order; chunks are drawn on all CPU cores (numpy frees the GIL)."""
    factors = np.clip(_check_factors(factors).astype(np.float32), _LOW, _HIGH)
    factors[:, _COL["detail_seed"]] = np.floor(factors[:, _COL["detail_seed"]])
    parts = _chunks(len(factors), size, chunk)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(len(parts), cores, 8))
    if workers == 1:
        for part in parts:
            yield part, _render_chunk(factors[part], size)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from zip(parts, pool.map(lambda part: _render_chunk(factors[part], size), parts))


def render(factors: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """Draw the faces of factor rows: uint8 [n, size, size, 3].

    Each row's picture depends only on that row (factors are clipped to their ranges first).
    ``size`` is a power of two in [32, 256]. Each CPU core draws at most ``chunk`` images at once,
    fewer where their canvases would exceed ``MAX_CHUNK_PIXELS`` internal pixels (which keeps the
    working set in cache: about 32 images at 32 px, 8 at 64 px).
    """
    _check_size(size)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    images = np.empty((len(_check_factors(factors)), size, size, 3), dtype=np.uint8)
    for part, block in _render_iter(factors, size, chunk):
        images[part] = block
    return images


# ----------------------------------------------------------------------------------------------
# Splits


def _cache_path(cache_dir: Path, params: dict) -> Path:
    blob = json.dumps({**params, "renderer_version": RENDERER_VERSION}, sort_keys=True)
    return cache_dir / f"synth-{hashlib.sha256(blob.encode()).hexdigest()[:16]}.npz"


def make_split(task: str, split: str, n: int, size: int, seed: int = 0, spurious_p: float = 0.5,
               label_noise: float = 0.0, cache_dir: str | Path | None = None,
               progress: bool = False) -> SyntheticSplit:
    """Sample, label and render one split; cached in ``cache_dir`` (None: no caching).

    The cache file name hashes every argument that changes the result and ``RENDERER_VERSION``.
    """
    _check_task(task)
    _check_split(split)
    _check_size(size)
    _check_probability("spurious_p", spurious_p)
    _check_probability("label_noise", label_noise)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    params = dict(task=task, split=split, n=int(n), size=int(size), seed=int(seed),
                  spurious_p=float(spurious_p), label_noise=float(label_noise))
    path = None
    if cache_dir is not None:
        path = _cache_path(Path(cache_dir), params)
        if path.exists():
            with np.load(path) as data:
                return SyntheticSplit(data["images"], data["labels"], data["factors"])

    factors = sample_factors(n, seed, split, task=task, spurious_p=spurious_p)
    labels = label_of(task, factors, label_noise=label_noise, seed=seed)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    blocks = _render_iter(factors, size, chunk=512)
    if progress:
        from tqdm.auto import tqdm

        blocks = tqdm(blocks, total=len(_chunks(n, size, 512)), desc=f"rendering {task}/{split}", unit="chunk")
    for part, block in blocks:
        images[part] = block.transpose(0, 3, 1, 2)
    result = SyntheticSplit(images, labels, factors)

    if path is not None:
        with atomic_write(path) as fh:
            np.savez(fh, images=images, labels=labels, factors=factors)
    return result


def benchmark(sizes: tuple[int, ...] = (32, 64), n: int = 2048) -> dict[int, float]:
    """Rendering speed in images per second at each size (factors sampled beforehand)."""
    factors = sample_factors(n, seed=0)
    speeds = {}
    for size in sizes:
        render(factors[:64], size)  # warm up
        start = time.perf_counter()
        render(factors, size)
        speeds[size] = n / (time.perf_counter() - start)
    return speeds


if __name__ == "__main__":
    for size, speed in benchmark().items():
        print(f"{size:4d} px: {speed:8.0f} images/s")
