"""Ground truth on the synthetic data: does an explanation name the factors the classifier really uses?

The synthetic renderer (``repro.data.synthetic``) draws every image from known factors, so two
things the paper could only ask people about can be measured here:

1. **What the classifier truly uses** (:func:`factor_importance`): re-render held-out images
   with one factor changed and everything else (the per-image detail included) kept, and measure
   how much the classifier's decision margin moves. This includes the task's spurious factor,
   which a classifier trained on planted data may have learned as a shortcut. The same
   measurement with only the meaningless per-image detail re-drawn is the noise floor: a factor
   is *used* only when it moves the decision clearly more than that (:func:`used_factors`).
2. **What an explanation's coordinates change** (:func:`coordinate_factors`): an
   :class:`AttributeProbe` (a small CNN trained on freshly rendered images to read every factor
   back) is applied to held-out images before and after a StyleSpace edit; the factor that moves
   most is the coordinate's *dominant* factor, and its share of the total change its *purity*.

:func:`evaluate` puts the two together per model and method: precision@k is the share of the
top-k coordinates whose dominant factor is one the classifier truly uses, and "spurious exposed"
says whether some top-k coordinate is dominated by the planted spurious factor.

Units. Every factor is measured in *normalised units*: its value scaled to 0..1 by its range
(``(v - low) / (high - low)``); binary factors are 0 / 1. The two cyclic hues (``fur_hue``,
``bg_hue``) are compared on the circle: the distance of two hues is twice their circular
distance, so that in every factor a change of 1 is the largest change possible (the whole range,
a flipped binary factor, the opposite hue). ``detail_seed`` has no meaning and is left out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from repro.classifier import predict_logits
from repro.config import DataConfig, Profile, TaskConfig, save_config, to_dict
from repro.counterfactual import edit_render
from repro.data.synthetic import FACTORS, TASKS, intervene, render, sample_factors
from repro.explain import METHODS, Explanation
from repro.inference import classify
from repro.networks import assert_shape
from repro.stylespace import Attributes, flatten_styles, style_range, toward_class
from repro.utils import seed_everything, tqdm

PROBE_CHECKPOINT = "probe.pt"
PROBE_METRICS = "metrics.json"
# The factors with a meaning (detail_seed only seeds per-image detail).
PROBE_FACTORS: list[str] = [f.name for f in FACTORS if f.kind != "id"]
CYCLIC = ("fur_hue", "bg_hue")  # hues: 0 and 1 are the same colour
PROBE_SEED_OFFSET = 1_000_003  # the probe's renders use data.seed + this: never the classifier's images
MAX_PROBE_IMAGES = 8_192  # probe training images at most (the data set's n_train below that)
PROBE_PASSES = 32_768  # image passes of probe training; epochs = PROBE_PASSES // n_train, within [2, 4]
USED_THRESHOLD = 0.25  # a factor is "used" when its importance is >= this share of the largest,
NULL_RATIO = 2.0  # ... >= this multiple of the null importance (only the per-image detail re-drawn),
USED_MIN_IMPORTANCE = 0.01  # ... and at least this (logits): a constant classifier uses nothing
NULL = "null (detail re-drawn)"  # the key of the null importance in factor_importance's result
MIN_CHANGE = 0.05  # an edit whose summed factor change is below this (normalised units) changes nothing

_FACTOR = {f.name: f for f in FACTORS}
_COLUMN = {f.name: j for j, f in enumerate(FACTORS)}


# ---------------------------------------------------------------------------------------------
# Normalised units

def normalise_factors(factors: np.ndarray, names: Sequence[str] = PROBE_FACTORS) -> np.ndarray:
    """Raw factor rows [N, len(FACTORS)] -> the named columns scaled to 0..1 by their ranges, float32 [N, F].

    Values outside a range are clipped to it, as the renderer clips them before drawing.
    """
    factors = np.asarray(factors, dtype=np.float64)
    out = np.empty((len(factors), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        f = _FACTOR[name]
        out[:, j] = np.clip((factors[:, _COLUMN[name]] - f.low) / (f.high - f.low), 0.0, 1.0)
    return out


def factor_change(before: torch.Tensor, after: torch.Tensor, names: Sequence[str] = PROBE_FACTORS) -> torch.Tensor:
    """Per-image, per-factor change [N, F] between two normalised readings, in 0..1.

    ``|after - before|`` for every factor except the cyclic hues, whose change is twice the
    circular distance (the opposite hue is a change of 1, like a flipped binary factor).
    """
    assert_shape(after, list(before.shape), "after")
    delta = (after - before).abs()
    for j, name in enumerate(names):
        if name in CYCLIC:
            d = torch.remainder(delta[:, j], 1.0)
            delta[:, j] = 2.0 * torch.minimum(d, 1.0 - d)
    return delta


# ---------------------------------------------------------------------------------------------
# 1. The classifier's true factor importance

def _endpoints(factors: np.ndarray, name: str) -> tuple[np.ndarray | float, np.ndarray | float]:
    """The two values factor ``name`` is set to when its importance is measured (see factor_importance)."""
    f = _FACTOR[name]
    if name in CYCLIC:
        own = factors[:, _COLUMN[name]]
        return own, np.remainder(own + 0.5, 1.0)
    return f.low, f.high


def factor_importance(classifier: nn.Module, data: DataConfig, *, n: int = 512, device: str | torch.device = "cpu",
                      seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """The classifier's true importance of every factor (``PROBE_FACTORS``, the spurious one included).

    Rule: take the factor rows ``seed * n .. seed * n + n - 1`` of the data's test split (seed 0:
    the first ``n`` test images, the ones the classifier is evaluated on). For each factor, render
    every row twice with only that factor changed, all others (and the per-image detail) as drawn:

    - continuous: at the low and at the high end of its range;
    - binary: 0 and 1 (the factor flipped);
    - cyclic hue: at the image's own hue and at the opposite hue (+0.5), since 0 and 1 are equal.

    Importance = mean over the ``n`` images of ``|m(b) - m(a)|`` where ``m = logit[1] - logit[0]``
    is the classifier's decision margin: the largest change of the decision that factor alone can
    cause. Units: logits. The classifier must already be on ``device``.

    The result also holds, under the key ``NULL``, the same measurement for a change that means
    nothing: every image re-rendered with another image's ``detail_seed`` (wrinkle jitter,
    hairline, stripes, gaze). A classifier is never perfectly invariant, so every factor moves its
    margin a little; the null says how much "a little" is for this classifier.
    """
    if data.dataset != "synthetic":
        raise ValueError(f"factor importance needs the synthetic data set (known factors), not {data.dataset!r}")
    factors = sample_factors(n, data.seed, "test", start=seed * n)
    dev = torch.device(device)

    def margin(rows: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(render(rows, data.resolution)).permute(0, 3, 1, 2)
        logits = predict_logits(classifier, images.float() / 127.5 - 1.0, batch_size=batch_size, device=dev)
        return logits[:, 1] - logits[:, 0]

    importance = {}
    for name in PROBE_FACTORS:
        a, b = _endpoints(factors, name)
        change = margin(intervene(factors, name, b)) - margin(intervene(factors, name, a))
        importance[name] = float(change.abs().mean())
    detail = factors[:, _COLUMN["detail_seed"]]
    change = margin(intervene(factors, "detail_seed", np.roll(detail, 1))) - margin(factors)
    importance[NULL] = float(change.abs().mean())
    return importance


def used_floor(importance: Mapping[str, float], threshold: float = USED_THRESHOLD, *,
               null_ratio: float = NULL_RATIO, min_importance: float = USED_MIN_IMPORTANCE) -> float:
    """The importance a factor needs to count as used: the largest of ``threshold`` x the largest
    factor importance, ``null_ratio`` x the null importance (``importance[NULL]``, 0 if absent)
    and ``min_importance`` logits."""
    top = max((v for f, v in importance.items() if f != NULL), default=0.0)
    return max(threshold * top, null_ratio * importance.get(NULL, 0.0), min_importance)


def used_factors(importance: Mapping[str, float], threshold: float = USED_THRESHOLD, *,
                 null_ratio: float = NULL_RATIO, min_importance: float = USED_MIN_IMPORTANCE) -> list[str]:
    """The factors the classifier truly uses, most important first: importance >= :func:`used_floor`.

    The three parts of the floor each exclude one kind of non-use: a factor far weaker than the
    main ones (``threshold``, 25 %), one that moves the decision no more than re-drawing
    meaningless detail does (``null_ratio``, 2x), and everything for a classifier whose decision
    nothing moves (``min_importance``, e.g. one that always answers the same class). The two
    ratios are choices, not calibrated constants; ``evaluate`` records them with its results.
    """
    floor = used_floor(importance, threshold, null_ratio=null_ratio, min_importance=min_importance)
    return sorted((f for f, v in importance.items() if f != NULL and v >= floor), key=lambda f: -importance[f])


# ---------------------------------------------------------------------------------------------
# 2. The attribute probe

class AttributeProbe(nn.Module):
    """A small CNN that reads every factor back from an image, in normalised units.

    Stride-2 4x4 convolutions (BatchNorm, ReLU) halve the image down to 4x4, then two linear
    layers regress one output per factor, two (cos, sin of the angle) per cyclic hue, so the
    hue's wrap-around costs nothing. :meth:`forward` decodes them: non-cyclic factors clamped to
    [0, 1], hues as ``atan2(sin, cos) / 2 pi`` in [0, 1).

    Parameters:
        resolution: input image size (square, a power of two >= 8).
        width: channels of the first convolution (doubled per stage, at most 4 x width).
        factor_names: the factors read, in output order (default ``PROBE_FACTORS``).
    """

    def __init__(self,
                 resolution: int = 32,                        # input size in pixels
                 width: int = 32,                             # first conv's channels
                 factor_names: Sequence[str] | None = None):  # output factors
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.resolution = resolution
        self.width = width
        self.factor_names: list[str] = list(factor_names or PROBE_FACTORS)
        unknown = [f for f in self.factor_names if f not in PROBE_FACTORS]
        if unknown:
            raise ValueError(f"the probe cannot read {unknown}; choose from {PROBE_FACTORS}")
        layers: list[nn.Module] = []
        channels, size = 3, resolution
        for stage in range(int(math.log2(resolution // 4))):
            out = width * min(2 ** stage, 4)
            layers += [nn.Conv2d(channels, out, 4, 2, 1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels, size = out, size // 2
        self.trunk = nn.Sequential(*layers)
        self.num_outputs = sum(2 if f in CYCLIC else 1 for f in self.factor_names)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 256), nn.ReLU(inplace=True),
                                  nn.Linear(256, self.num_outputs))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Undecoded outputs [N, num_outputs] of float images in [-1, 1] (what training fits)."""
        assert_shape(x, [None, 3, self.resolution, self.resolution], "probe input")
        return self.head(self.trunk(x))

    def encode_targets(self, normalised: torch.Tensor) -> torch.Tensor:
        """Normalised factors [N, F] -> the raw outputs a perfect probe gives [N, num_outputs]."""
        cols = []
        for j, name in enumerate(self.factor_names):
            v = normalised[:, j]
            cols += [torch.cos(2 * math.pi * v), torch.sin(2 * math.pi * v)] if name in CYCLIC else [v]
        return torch.stack(cols, 1)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs [N, num_outputs] -> normalised factors [N, F]."""
        cols, k = [], 0
        for name in self.factor_names:
            if name in CYCLIC:
                cols.append(torch.remainder(torch.atan2(raw[:, k + 1], raw[:, k]) / (2 * math.pi), 1.0))
                k += 2
            else:
                cols.append(raw[:, k].clamp(0.0, 1.0))
                k += 1
        return torch.stack(cols, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Float images [N, 3, R, R] in [-1, 1] -> factors [N, F] in normalised units."""
        return self.decode(self.raw(x))

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Factors [N, F] (on CPU) of float images [N, 3, H, W] in [-1, 1], resized to the probe's
        resolution if needed; batched, in eval mode."""
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            out = []
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device).float().clamp(-1, 1)
                if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
                    x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                                      antialias=True, align_corners=False)
                out.append(self(x.contiguous()).cpu())
            return torch.cat(out) if out else torch.empty(0, len(self.factor_names))
        finally:
            self.train(was_training)

    def predict_uint8(self, images: np.ndarray) -> np.ndarray:
        """Factors float32 [N, F] of uint8 images [N, H, W, 3] (e.g. GIF frames), resized if needed."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.predict(x).numpy()


# ---------------------------------------------------------------------------------------------
# 3-4. Training and loading the probe

def probe_budget(data: DataConfig) -> tuple[int, int]:
    """Default (n_train, epochs) of the probe for a data config.

    n_train: the data set's own training-split size, at most ``MAX_PROBE_IMAGES``;
    epochs: ``PROBE_PASSES // n_train`` within [2, 4]. Default profile (12,000 train images):
    8,192 images x 4 epochs; quick profile (1,024): 1,024 x 4.
    """
    n_train = max(64, min(data.n_train, MAX_PROBE_IMAGES))
    return n_train, max(2, min(4, PROBE_PASSES // n_train))


def _render_split(n: int, seed: int, split: str, size: int, progress: bool | None,
                  desc: str) -> tuple[torch.Tensor, np.ndarray]:
    """(uint8 images [n, 3, R, R], normalised factors [n, F]) of a fresh, unplanted stream."""
    factors = sample_factors(n, seed, split)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = 1024
    for start in tqdm(range(0, n, chunk), desc=desc, unit="chunk", enabled=progress):
        images[start:start + chunk] = render(factors[start:start + chunk], size)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), normalise_factors(factors)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination over all columns of [N, C] (C = 2 for a hue's cos, sin)."""
    residual = (pred - target).square().sum()
    total = (target - target.mean(0)).square().sum()
    return float(1.0 - residual / total.clamp_min(1e-12))


def probe_metrics(probe: AttributeProbe, images: torch.Tensor, normalised: np.ndarray) -> dict[str, dict[str, float]]:
    """Per factor on held-out images: ``r2`` (of the raw outputs: value, or the hue's cos / sin)
    and ``mae`` (mean :func:`factor_change` between reading and truth, normalised units)."""
    x = images.float() / 127.5 - 1.0
    truth = torch.from_numpy(normalised)
    with torch.inference_mode():
        device = next(probe.parameters()).device
        probe.eval()
        raw = torch.cat([probe.raw(x[s:s + 256].to(device)).cpu() for s in range(0, len(x), 256)])
    target = probe.encode_targets(truth)
    mae = factor_change(probe.decode(raw), truth, probe.factor_names).mean(0)
    out, k = {}, 0
    for j, name in enumerate(probe.factor_names):
        width = 2 if name in CYCLIC else 1
        out[name] = {"r2": _r2(raw[:, k:k + width], target[:, k:k + width]), "mae": float(mae[j])}
        k += width
    return out


def load_probe(run_dir: str | Path, *, device: str | torch.device = "cpu",
               expected_config: dict[str, Any] | None = None) -> AttributeProbe:
    """Load ``run_dir/probe.pt`` (eval mode, gradients off); ``CheckpointError`` when it is
    missing, damaged or written with another configuration."""
    state = load_checkpoint(Path(run_dir) / PROBE_CHECKPOINT, expected_config=expected_config)
    cfg = state["config"]
    probe = AttributeProbe(cfg["resolution"], cfg["width"], cfg["factor_names"])
    probe.load_state_dict(state["model"])
    return probe.to(device).eval().requires_grad_(False)


def train_probe(data: DataConfig, run_dir: str | Path, *, device: str | torch.device = "cpu", force: bool = False,
                progress: bool | None = None, n_train: int | None = None, epochs: int | None = None) -> AttributeProbe:
    """Train (or reuse) the attribute probe for the synthetic data ``data`` describes.

    Training images are rendered afresh from the renderer's own factor stream (seed
    ``data.seed + PROBE_SEED_OFFSET``, split ``train``; held-out: split ``val``, 1/4 as many,
    at least 256), unplanted, so every factor is independent of the others and none is the
    classifier's image. Sizes default to :func:`probe_budget`; batches of ``n_train // 32``
    images within [32, 128] (at least 32 steps per epoch). Loss: per output, the squared error
    divided by the target's variance (a mean of 1 - R^2), Adam with a one-cycle schedule.

    Writes ``run_dir/config.json``, ``probe.pt`` (state_dict + config, atomic) and
    ``metrics.json`` (per-factor held-out R^2 and MAE, timing). A finished run with the same
    configuration is reused unless ``force``.
    """
    if data.dataset != "synthetic":
        raise ValueError(f"the attribute probe needs the synthetic data set (known factors), not {data.dataset!r}")
    default_n, default_epochs = probe_budget(data)
    n_train = n_train or default_n
    epochs = epochs or default_epochs
    seed = data.seed + PROBE_SEED_OFFSET
    config = {"resolution": data.resolution, "seed": seed, "n_train": n_train, "epochs": epochs, "width": 32,
              "batch_size": max(32, min(128, n_train // 32)), "lr": 3e-3, "factor_names": list(PROBE_FACTORS)}
    run_dir = Path(run_dir)
    if not force and (run_dir / PROBE_CHECKPOINT).exists():
        try:
            return load_probe(run_dir, device=device, expected_config=config)
        except CheckpointError as err:
            print(f"not reusing {run_dir / PROBE_CHECKPOINT}: {err}; training again")
    save_config({"data": to_dict(data), "probe": config}, run_dir)

    start = time.perf_counter()
    images, targets = _render_split(n_train, seed, "train", data.resolution, progress, "rendering probe images")
    held_images, held_targets = _render_split(max(256, n_train // 4), seed, "val", data.resolution, progress,
                                              "rendering probe held-out images")
    seconds_render = time.perf_counter() - start

    seed_everything(seed)
    probe = AttributeProbe(data.resolution, config["width"], config["factor_names"]).to(device)
    target = probe.encode_targets(torch.from_numpy(targets))
    weight = 1.0 / target.var(0).clamp_min(1e-6)
    opt = torch.optim.Adam(probe.parameters(), lr=config["lr"])
    bs = config["batch_size"]
    steps_per_epoch = max(1, n_train // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config["lr"], total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(total=epochs * steps_per_epoch, desc="attribute probe", enabled=progress)
    probe.train()
    for epoch in range(epochs):
        order = torch.randperm(n_train, generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            x = (images[idx].float() / 127.5 - 1.0).to(device)
            loss = ((probe.raw(x) - target[idx].to(device)).square() * weight.to(device)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / (step + 1):.3f}")
        history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch})
    bar.close()
    probe.eval().requires_grad_(False)
    per_factor = probe_metrics(probe, held_images, held_targets)
    metrics = {"factors": per_factor, "mean_r2": float(np.mean([m["r2"] for m in per_factor.values()])),
               "n_train": n_train, "n_heldout": len(held_images), "epochs": epochs, "history": history,
               "seconds": {"render": seconds_render, "total": time.perf_counter() - start}, "device": str(device)}
    save_checkpoint(run_dir / PROBE_CHECKPOINT, {"model": probe.state_dict(), "config": config})
    (run_dir / PROBE_METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
    return probe


def load_or_train_probe(profile: Profile, task: TaskConfig, *, device: str | torch.device = "cpu",
                        force: bool = False, progress: bool | None = None) -> AttributeProbe:
    """The probe of a task's StylEx data (the images its generators imitate); trained on first use.

    The probe reads factors, not labels, and its training images depend only on the resolution
    and the data seed, so tasks that share those share one probe:
    ``runs/<profile>/probe-<R>px-seed<S>``.
    """
    data = task.stylex_data
    run_dir = Path(profile.run_root) / profile.name / f"probe-{data.resolution}px-seed{data.seed}"
    return train_probe(data, run_dir, device=device, force=force, progress=progress)


# ---------------------------------------------------------------------------------------------
# 5. What each coordinate changes

@torch.inference_mode()
def coordinate_factors(probe: AttributeProbe, explanation: Explanation, attributes: Attributes, k: int, *,
                       n_images: int = 64, amount: float = 1.0) -> list[dict[str, Any]]:
    """What each of the top-``k`` coordinates of ``attributes`` changes, read by the probe.

    On the first ``n_images`` held-out images (``explanation.eval_set``), each coordinate is
    applied as the flip rate applies it: direction ``d`` to images the classifier puts in class 1,
    ``1 - d`` to class 0, i.e. towards the other class, by ``amount``. Both the unedited and the
    edited renders are read by the probe.

    The edit targets are the style min / max over these ``n_images`` evaluation images
    themselves, as the flip rate takes them over the images of each repeat, and not the
    explanation's ``targets`` (the AttFind images' range, which the figures, GIFs, explorer and
    user study use): the probe reads the kind of edit whose flips the flip rate counts.

    Returns one dict per coordinate: ``coord`` (d, i); ``changes`` {factor: mean over images of
    :func:`factor_change`} (normalised units); ``total`` (their sum); ``dominant`` (the factor
    with the largest change); ``purity`` (its share of the total, in [0, 1]; 0 when nothing
    changes).
    """
    model, lat = explanation.model, explanation.eval_set
    lat = lat.subset(slice(0, min(n_images, len(lat))))
    conv, _ = lat.styles(model)
    smin, smax = style_range(flatten_styles(conv))
    before = edit_render(model, lat, [], 0.0, smin, smax)
    base_class = classify(explanation.classifier, before).argmax(1).cpu()
    groups = []  # (base class, its image indices, its latents)
    for c in (0, 1):
        idx = torch.nonzero(base_class == c).flatten().to(before.device)
        if len(idx):
            groups.append((c, idx, lat.subset(idx.to(lat.w.device))))
    read_before = probe.predict(before)
    names = probe.factor_names
    out = []
    for coord in attributes.top(k):
        after = torch.empty_like(before)
        for c, idx, sub in groups:
            after[idx] = edit_render(model, sub, [toward_class(coord, c)], amount, smin, smax)
        change = factor_change(read_before, probe.predict(after), names).mean(0)
        total = float(change.sum())
        j = int(change.argmax())
        out.append({"coord": tuple(coord), "changes": {n: float(v) for n, v in zip(names, change)},
                    "total": total, "dominant": names[j], "purity": float(change[j]) / total if total > 0 else 0.0})
    return out


# ---------------------------------------------------------------------------------------------
# 6. Per model and method

def precision_at_k(coords: Sequence[Mapping[str, Any]], used: Collection[str], *,
                   min_change: float = MIN_CHANGE) -> float:
    """Share of ``coords`` (the top-k, as :func:`coordinate_factors` returns them) whose dominant
    factor is one the classifier truly uses, counting only edits that visibly change something
    (``total >= min_change``). 0 for an empty list."""
    if not coords:
        return 0.0
    hits = sum(1 for c in coords if c["total"] >= min_change and c["dominant"] in used)
    return hits / len(coords)


def spurious_exposed(coords: Sequence[Mapping[str, Any]], spurious: str, *, min_change: float = MIN_CHANGE) -> bool:
    """Whether some coordinate of ``coords`` (the top-k) visibly changes the image
    (``total >= min_change``) with the spurious factor as its dominant factor."""
    return any(c["total"] >= min_change and c["dominant"] == spurious for c in coords)


def evaluate(profile: Profile, task: TaskConfig, mode: str, explanation: Explanation, *,
             probe: AttributeProbe | None = None, importance: Mapping[str, float] | None = None, k: int = 4,
             device: str | torch.device = "cpu", used_threshold: float = USED_THRESHOLD, n_images: int = 64,
             min_change: float = MIN_CHANGE) -> dict[str, Any]:
    """Ground-truth fidelity of one model's explanations (AttFind, Wu et al., random).

    ``importance`` defaults to :func:`factor_importance` of the explanation's classifier on the
    task's classifier data, ``probe`` to :func:`load_or_train_probe` (pass both to reuse them
    across models). Used factors: importance >= ``used_threshold`` x the largest, >= ``NULL_RATIO``
    x the null importance and >= ``USED_MIN_IMPORTANCE`` logits (:func:`used_factors`); the
    spurious factor counts as used when the classifier uses it, since then a coordinate changing
    it explains the classifier faithfully. Per method, its top-``k`` coordinates go through
    :func:`coordinate_factors`; ``precision_at_k`` and ``spurious_exposed`` (over the same top-k)
    follow the functions of those names.

    Returns {"task", "mode", "k", "used_threshold", "null_ratio", "used_floor", "min_change",
    "importance", "used_factors", "spurious", "spurious_used",
    "methods": {method: {"coords", "precision_at_k", "spurious_exposed"}}}.
    """
    if importance is None:
        importance = factor_importance(explanation.classifier, task.classifier_data, device=device)
    if probe is None:
        probe = load_or_train_probe(profile, task, device=device)
    used = used_factors(importance, used_threshold)
    spurious = TASKS[task.classifier_data.task].spurious
    methods = {}
    for method in METHODS:
        if method not in explanation.attributes:
            continue
        coords = coordinate_factors(probe, explanation, explanation.attributes[method], k, n_images=n_images)
        methods[method] = {"coords": coords, "precision_at_k": precision_at_k(coords, used, min_change=min_change),
                           "spurious_exposed": spurious_exposed(coords, spurious, min_change=min_change)}
    return {"task": task.name, "mode": mode, "k": k, "used_threshold": used_threshold, "null_ratio": NULL_RATIO,
            "used_floor": used_floor(importance, used_threshold), "min_change": min_change,
            "importance": dict(importance), "used_factors": used, "spurious": spurious,
            "spurious_used": spurious in used, "methods": methods}


TARGET_PRECISION = 0.75  # the project's target for AttFind on StylEx models (issue: ground truth)


def target_verdict(result: Mapping[str, Any], planted: bool, target: float = TARGET_PRECISION) -> dict[str, Any]:
    """AttFind against the project's ground-truth target, from one :func:`evaluate` result:
    precision@k >= ``target`` and above every other method, and, where the spurious factor was
    planted, exposed among AttFind's top-k. Also the mean purity of AttFind's top-k coordinates
    (1 / number of factors would be no preference at all), the evidence for a miss.

    Returns {"met", "precision", "others", "spurious_ok", "mean_purity", "no_preference"}.
    """
    methods = result["methods"]
    precision = methods["attfind"]["precision_at_k"]
    others = {m: v["precision_at_k"] for m, v in methods.items() if m != "attfind"}
    spurious_ok = methods["attfind"]["spurious_exposed"] or not planted
    coords = methods["attfind"]["coords"]
    return {"met": precision >= target and all(precision > p for p in others.values()) and spurious_ok,
            "precision": precision, "others": others, "spurious_ok": spurious_ok,
            "mean_purity": float(np.mean([c["purity"] for c in coords])) if coords else float("nan"),
            "no_preference": 1.0 / len(PROBE_FACTORS)}


# ---------------------------------------------------------------------------------------------
# 7. Tables and figures

def fidelity_rows(results: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, model, method) for ``repro.report.markdown_table``: precision@k, whether
    the spurious factor was exposed, the dominant factor of each top-k coordinate (rank order; in
    brackets when the edit changes nothing visible) and the factors the classifier uses."""
    rows = []
    for (task, mode), res in results.items():
        for method, m in res["methods"].items():
            dominant = [c["dominant"] if c["total"] >= res["min_change"] else f"({c['dominant']})" for c in m["coords"]]
            rows.append({"task": task, "model": mode, "method": method, "k": res["k"],
                         "precision_at_k": float(m["precision_at_k"]),
                         "spurious_exposed": "yes" if m["spurious_exposed"] else "no",
                         "dominant_factors": ", ".join(dominant), "used_factors": ", ".join(res["used_factors"])})
    return rows


def _importance_bars(ax, importance: Mapping[str, float], spurious: str | None, threshold: float) -> None:
    """Horizontal bars of true importance: blue if used, grey if not; the spurious factor hatched."""
    from matplotlib.patches import Patch

    names = list(importance)
    used = set(used_factors(importance, threshold))
    colours = ["white" if n == NULL else "tab:blue" if n in used else "lightgray" for n in names]
    bars = ax.barh(range(len(names)), [importance[n] for n in names], color=colours, edgecolor="k", linewidth=0.5)
    if NULL in names:
        bars.patches[names.index(NULL)].set_linestyle("--")
    ax.axvline(used_floor(importance, threshold), color="k", ls=":", lw=1)
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="mean |change of logit margin| (full-range change)")
    handles = [Patch(color="tab:blue", label="used"), Patch(color="lightgray", label="not used"),
               Patch(facecolor="white", edgecolor="k", hatch="///", label="spurious")]
    if spurious in names:
        bars.patches[names.index(spurious)].set_hatch("///")
        ax.get_yticklabels()[names.index(spurious)].set_color("tab:red")
    ax.legend(handles=handles, fontsize=7, loc="lower right",
              title=f"used: >= {threshold:.0%} of max and >= {NULL_RATIO:g}x null", title_fontsize=7)
    ax.invert_yaxis()


def plot_importance(importance: Mapping[str, Mapping[str, float]], path: str | Path,
                    threshold: float = USED_THRESHOLD):
    """One bar chart per task of the classifier's true factor importance (blue: used, red: the
    task's spurious factor, grey: unused)."""
    from repro.figures import _mpl, _save

    plt = _mpl()
    fig, axes = plt.subplots(1, len(importance), figsize=(4.2 * len(importance), 3.8), squeeze=False)
    for ax, (task, imp) in zip(axes[0], importance.items()):
        _importance_bars(ax, imp, TASKS[task].spurious if task in TASKS else None, threshold)
        ax.set_title(f"{task}: what the classifier uses")
    fig.tight_layout()
    return _save(fig, path)


def plot_fidelity(results: Mapping[tuple[str, str], Mapping[str, Any]], path: str | Path):
    """Per task: the classifier's true factor importance (left) next to precision@k of each
    method, grouped by model (right), each bar labelled with its value and an asterisk where the
    method exposed the spurious factor."""
    from repro.figures import _mpl, _save

    plt = _mpl()
    tasks = list(dict.fromkeys(task for task, _ in results))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.8 * len(tasks)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.3]})
    for row, task in zip(axes, tasks):
        runs = {mode: res for (t, mode), res in results.items() if t == task}
        first = next(iter(runs.values()))
        _importance_bars(row[0], first["importance"], first["spurious"], first["used_threshold"])
        row[0].set_title(f"{task}: what the classifier uses")
        methods = list(dict.fromkeys(m for res in runs.values() for m in res["methods"]))
        width = 0.8 / max(1, len(methods))
        for j, method in enumerate(methods):
            xs = np.arange(len(runs)) + (j - (len(methods) - 1) / 2) * width
            stats = [res["methods"].get(method, {}) for res in runs.values()]
            vals = [m.get("precision_at_k", np.nan) for m in stats]
            bars = row[1].bar(xs, vals, width, label=method)
            row[1].bar_label(bars, labels=[f"{v:.2f}" + ("*" if m.get("spurious_exposed") else "") if m else ""
                                           for v, m in zip(vals, stats)], fontsize=8, padding=2)
        row[1].set(xticks=range(len(runs)), xticklabels=list(runs), ylim=(0, 1.15),
                   ylabel=f"precision@{first['k']}",
                   title=f"top-{first['k']} coordinates dominated by a factor the classifier uses\n"
                         f"(* = a coordinate exposes {first['spurious']})")
        row[1].grid(axis="y", alpha=0.3)
        row[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
