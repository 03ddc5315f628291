"""The attribute probe: a small CNN that reads the synthetic renderer's factors back from an image.

The ground truth (``repro.groundtruth``) and the user study's simulated observer
(``repro.userstudy``) use it to see which factors an edit changes. :class:`AttributeProbe` is
trained on freshly rendered, unplanted images (:func:`train_probe`, a stage of its own under
``runs/<profile>/probe-<R>px-seed<S>``, see :func:`load_or_train_probe`), and
:func:`probe_metrics` measures how well it reads each factor on held-out renders.

Units. Every factor is measured in *normalised units*: its value scaled to 0..1 by its range
(``(v - low) / (high - low)``, :func:`normalise_factors`); binary factors are 0 / 1. The two
cyclic hues (``fur_hue``, ``bg_hue``) are compared on the circle: the distance of two hues is
twice their circular distance (:func:`factor_change`), so that in every factor a change of 1 is
the largest change possible (the whole range, a flipped binary factor, the opposite hue).
``detail_seed`` has no meaning and is left out.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.checkpoint import load_checkpoint, save_checkpoint
from repro.config import DataConfig, Profile, TaskConfig, to_dict
from repro.data.synthetic import FACTORS, render, sample_factors
from repro.networks import assert_shape
from repro.stage import StageDir
from repro.utils import seed_everything, tqdm, write_atomic

PROBE_CHECKPOINT = "probe.pt"  # the completion marker
PROBE_METRICS = "metrics.json"
# The factors with a meaning (detail_seed only seeds per-image detail).
PROBE_FACTORS: list[str] = [f.name for f in FACTORS if f.kind != "id"]
CYCLIC = ("fur_hue", "bg_hue")  # hues: 0 and 1 are the same colour
PROBE_SEED_OFFSET = 1_000_003  # the probe's renders use data.seed + this: never the classifier's images
# The probe's budget (probe_budget): 4 x the data set's training split in images, at most
# MAX_PROBE_IMAGES, for PROBE_PASSES image passes (2-8 epochs). Measured ad hoc (issue 14's notes,
# 2026-11-29), the default profile's 32,768 x 8 epochs against the earlier 8,192 x 4: held-out R^2
# on renders 0.994 from 0.974 (mean error 0.015 from 0.032 of a factor's range); a real one-factor
# change of a quarter of its range read at purity 0.70 from 0.56 (its whole range 0.80 from 0.67):
# a truer reference. AttFind's top-4 edits of the shipped seed-0 models read about as before (0.27 /
# 0.24 from 0.24 / 0.23): what keeps their purity low is the edits, not the probe's noise.
MAX_PROBE_IMAGES = 32_768
PROBE_PASSES = 262_144
PROBE_WIDTH = 32  # channels of the probe's first convolution

FACTOR_BY_NAME = {f.name: f for f in FACTORS}  # factor name -> its synthetic.Factor (range, kind)
FACTOR_COLUMN = {f.name: j for j, f in enumerate(FACTORS)}  # factor name -> its column in a factor row


# ---------------------------------------------------------------------------------------------
# Normalised units

def normalise_factors(factors: np.ndarray, names: Sequence[str] = PROBE_FACTORS) -> np.ndarray:
    """Raw factor rows [N, len(FACTORS)] -> the named columns scaled to 0..1 by their ranges, float32 [N, F].

    Values outside a range are clipped to it, as the renderer clips them before drawing.
    """
    factors = np.asarray(factors, dtype=np.float64)
    out = np.empty((len(factors), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        f = FACTOR_BY_NAME[name]
        out[:, j] = np.clip((factors[:, FACTOR_COLUMN[name]] - f.low) / (f.high - f.low), 0.0, 1.0)
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
# The probe

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
# Training and loading it

def probe_budget(data: DataConfig) -> tuple[int, int]:
    """Default (n_train, epochs) of the probe for a data config.

    n_train: 4 x the data set's own training-split size, at most ``MAX_PROBE_IMAGES``;
    epochs: ``PROBE_PASSES // n_train`` within [2, 8]. Default profile (12,000 train images):
    32,768 images x 8 epochs; quick profile (1,024): 4,096 x 8.
    """
    n_train = max(64, min(4 * data.n_train, MAX_PROBE_IMAGES))
    return n_train, max(2, min(8, PROBE_PASSES // n_train))


def degrade(x: torch.Tensor, generator: torch.Generator, *, blur: float, noise: float) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1], each blurred by a Gaussian of its own sigma ~ U(0, ``blur``)
    px (separable, reflect-padded; sigma near 0 leaves it sharp) and given additive Gaussian noise
    of its own std ~ U(0, ``noise``). ``generator`` (CPU) draws every random number."""
    n, c = x.shape[:2]
    if blur > 0:
        radius = max(1, math.ceil(2 * blur))
        sigma = torch.rand(n, generator=generator) * blur
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.device, x.dtype)  # [N*C, K]
        y = F.pad(x.reshape(1, n * c, *x.shape[2:]), (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, kernel[:, None, :, None], groups=n * c)
        y = F.conv2d(y, kernel[:, None, None, :], groups=n * c)
        x = y.reshape(x.shape)
    if noise > 0:
        std = (torch.rand(n, generator=generator) * noise).to(x.device, x.dtype)
        x = x + std[:, None, None, None] * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x.clamp(-1, 1)


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
    """Per factor on held-out images (uint8 [N, 3, R, R], or float in [-1, 1] such as generator
    output): ``r2`` (of the raw outputs: value, or the hue's cos / sin) and ``mae`` (mean
    :func:`factor_change` between reading and truth, normalised units)."""
    x = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float().clamp(-1, 1)
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


def mean_r2(per_factor: dict[str, dict[str, float]]) -> float:
    """The mean over factors of a :func:`probe_metrics` result's ``r2``."""
    return float(np.mean([m["r2"] for m in per_factor.values()]))


def load_probe(run_dir: str | Path, *, device: str | torch.device = "cpu",
               expected_config: dict[str, Any] | None = None) -> AttributeProbe:
    """Load ``run_dir/probe.pt`` (eval mode, gradients off); ``CheckpointError`` when it is
    missing, damaged or written with another configuration."""
    state = load_checkpoint(Path(run_dir) / PROBE_CHECKPOINT, expected_config=expected_config)
    cfg = state["config"]
    probe = AttributeProbe(cfg["resolution"], cfg["width"], cfg["factor_names"])
    probe.load_state_dict(state["model"])
    return probe.to(device).eval().requires_grad_(False)


def fit_probe(images: torch.Tensor, normalised: np.ndarray, *, resolution: int, epochs: int, seed: int,
              width: int = PROBE_WIDTH, lr: float = 3e-3, batch_size: int | None = None,
              augment: dict[str, float] | None = None, device: str | torch.device = "cpu",
              progress: bool | None = None) -> tuple[AttributeProbe, list[dict[str, float]]]:
    """A fresh :class:`AttributeProbe` fitted to ``images`` (uint8 [N, 3, R, R], or float in
    [-1, 1]) and their ``normalised`` factors; returns it (eval mode, gradients off) and the loss
    per epoch. Loss: per output, the squared error divided by the target's variance (a mean of
    1 - R^2), Adam with a one-cycle schedule, ``batch_size`` (default ``N // 32`` within [32, 128])
    images per step. ``seed`` draws the initialisation, the batch order and ``augment``'s
    :func:`degrade`; the global RNG is left as it was."""
    n = len(images)
    bs = batch_size or max(32, min(128, n // 32))
    steps_per_epoch = max(1, n // bs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = AttributeProbe(resolution, width, list(PROBE_FACTORS)).to(device)
    target = probe.encode_targets(torch.from_numpy(np.asarray(normalised)))
    weight = 1.0 / target.var(0).clamp_min(1e-6)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(total=epochs * steps_per_epoch, desc="attribute probe", enabled=progress)
    probe.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * bs:(step + 1) * bs]
            x = images[idx]
            x = (x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()).to(device)
            if augment:
                x = degrade(x, gen, **augment)
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
    return probe.eval().requires_grad_(False), history


def train_probe(data: DataConfig, run_dir: str | Path, *, device: str | torch.device = "cpu", force: bool = False,
                progress: bool | None = None, n_train: int | None = None, epochs: int | None = None,
                width: int = PROBE_WIDTH, augment: dict[str, float] | None = None) -> AttributeProbe:
    """Train (or reuse) the attribute probe for the synthetic data ``data`` describes.

    Training images are rendered afresh from the renderer's own factor stream (seed
    ``data.seed + PROBE_SEED_OFFSET``, split ``train``; held-out: split ``val``, 1/4 as many,
    at least 256), unplanted, so every factor is independent of the others and none is the
    classifier's image. Sizes default to :func:`probe_budget`; :func:`fit_probe` fits it.

    ``augment`` ({"blur", "noise"}): train on :func:`degrade`-d renders, for a probe that must read
    softer or noisier images than the renderer's. Off by default: measured ad hoc on the shipped
    seed-0 stylex models (issue 14's notes, 2026-11-29), blur 1 with noise 0.1 or 0.3 left the
    probe's mean R^2 on their reconstructions where the clean probe has it (0.02-0.04 against
    0.02 / 0.01; 0.96-0.97 on renders either way): what the probe cannot read there is missing
    from the reconstructions, not a gap in its training.

    Writes ``run_dir/config.json``, ``metrics.json`` (per-factor held-out R^2 and MAE, timing)
    and, last, ``probe.pt`` (state_dict + config, atomic), the stage's completion marker
    (``repro.stage``): a finished run with the same configuration is reused unless ``force``.
    """
    if data.dataset != "synthetic":
        raise ValueError(f"the attribute probe needs the synthetic data set (known factors), not {data.dataset!r}")
    default_n, default_epochs = probe_budget(data)
    n_train = n_train or default_n
    epochs = epochs or default_epochs
    seed = data.seed + PROBE_SEED_OFFSET
    config = {"resolution": data.resolution, "seed": seed, "n_train": n_train, "epochs": epochs, "width": width,
              "batch_size": max(32, min(128, n_train // 32)), "lr": 3e-3, "factor_names": list(PROBE_FACTORS)}
    if augment:  # recorded only when used, so that probes trained without it stay valid
        config["augment"] = dict(augment)
    run_dir = Path(run_dir)
    stage = StageDir(run_dir, PROBE_CHECKPOINT, config)
    done = stage.reuse(lambda: load_probe(run_dir, device=device, expected_config=config), force=force)
    if done is not None:
        return done
    stage.begin({"data": to_dict(data), "probe": config})

    start = time.perf_counter()
    images, targets = _render_split(n_train, seed, "train", data.resolution, progress, "rendering probe images")
    held_images, held_targets = _render_split(max(256, n_train // 4), seed, "val", data.resolution, progress,
                                              "rendering probe held-out images")
    seconds_render = time.perf_counter() - start

    seed_everything(seed)
    probe, history = fit_probe(images, targets, resolution=data.resolution, epochs=epochs, seed=seed,
                               width=config["width"], lr=config["lr"], batch_size=config["batch_size"],
                               augment=augment, device=device, progress=progress)
    per_factor = probe_metrics(probe, held_images, held_targets)
    metrics = {"factors": per_factor, "mean_r2": mean_r2(per_factor),
               "n_train": n_train, "n_heldout": len(held_images), "epochs": epochs, "history": history,
               "seconds": {"render": seconds_render, "total": time.perf_counter() - start}, "device": str(device)}
    write_atomic(run_dir / PROBE_METRICS, json.dumps(metrics, indent=2) + "\n")
    save_checkpoint(stage.result, {"model": probe.state_dict(), "config": config})  # the marker, last
    return probe


def load_or_train_probe(profile: Profile, task: TaskConfig, *, device: str | torch.device = "cpu",
                        force: bool = False, progress: bool | None = None) -> AttributeProbe:
    """The probe of a task's StylEx data (the images its generators imitate); trained on first use.

    The probe reads factors, not labels, and its training images depend only on the resolution
    and the data seed, so tasks that share those share one probe:
    ``runs/<profile>/probe-<R>px-seed<S>``.
    """
    return train_probe(task.stylex_data, probe_dir(profile, task), device=device, force=force, progress=progress)


def probe_dir(profile: Profile, task: TaskConfig) -> Path:
    """Where :func:`load_or_train_probe` keeps a task's probe: ``runs/<profile>/probe-<R>px-seed<S>``."""
    data = task.stylex_data
    return Path(profile.run_root) / profile.name / f"probe-{data.resolution}px-seed{data.seed}"

