"""The shared figure helpers and the general figures.

The helpers (matplotlib set-up, uint8 image grids, saving a figure) serve every module that
draws. The figures here are the general ones: data examples, the renderer's one-factor
interventions, classifier histories and confusion matrices, training logs and reconstructions.
A figure of one topic lives with its topic: AttFind's attributes and effects in
``repro.attribute_figures``, flip-rate curves in ``repro.tables``, the ground truth in
``repro.groundtruth``, the user study's accuracy in ``repro.userstudy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _mpl():
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def as_hwc_uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """[N,3,H,W] float in [-1,1] or uint8 (CHW or HWC) -> uint8 [N,H,W,3]."""
    if isinstance(images, torch.Tensor):
        if images.is_floating_point():
            images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        images = images.cpu().numpy()
    if images.ndim == 4 and images.shape[1] == 3 and images.shape[-1] != 3:
        images = images.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images)


def image_grid(images: np.ndarray | torch.Tensor, nrow: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile images into one uint8 [H, W, 3] array, ``nrow`` images per row."""
    imgs = as_hwc_uint8(images)
    n, h, w, c = imgs.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, img in enumerate(imgs):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = img
    return grid


def save_image_grid(images: np.ndarray | torch.Tensor, path: str | Path, nrow: int = 8, scale: int = 1) -> Path:
    """Write an image grid as PNG (nearest-neighbour ``scale`` up for small images)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, nrow=nrow)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return path


def plot_classifier_history(histories: dict[str, Sequence[dict[str, float]]], path: str | Path):
    """Loss and accuracy per epoch, one line per task."""
    plt = _mpl()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, hist in histories.items():
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["loss"] for h in hist], marker="o", label=name)
        ax_acc.plot(epochs, [h["train_accuracy"] for h in hist], marker="o", ls="--", label=f"{name} train")
        ax_acc.plot(epochs, [h["val_accuracy"] for h in hist], marker="o", label=f"{name} val")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusions(confusions: dict[str, tuple[list[list[int]], Sequence[str]]], path: str | Path):
    """One confusion matrix per task (rows: true class, columns: predicted class)."""
    plt = _mpl()
    fig, axes = plt.subplots(1, len(confusions), figsize=(3.4 * len(confusions), 3.2), squeeze=False)
    for ax, (name, (cm, classes)) in zip(axes[0], confusions.items()):
        cm = np.asarray(cm)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
               yticklabels=classes, xlabel="predicted", ylabel="true", title=name)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if not _in_notebook():
        import matplotlib.pyplot as plt

        plt.close(fig)
    return fig


def plot_examples(images, labels, class_names: Sequence[str], path: str | Path, n: int = 16,
                  title: str = "", probs=None):
    """A row of ``n`` images with their label (and classifier probability of class 1, if given)."""
    plt = _mpl()
    imgs = as_hwc_uint8(images[:n])
    cols = min(n, 8)
    rows = (len(imgs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.45 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(imgs):
            continue
        ax.imshow(imgs[i], interpolation="nearest")
        label = class_names[int(labels[i])] if int(labels[i]) >= 0 else "?"
        if probs is not None:
            label += f" p={float(probs[i]):.2f}"
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_synthetic_interventions(path: str | Path, size: int = 64, seed: int = 3, n_values: int = 5):
    """One face per row and factor: the same face with only that factor swept over its range."""
    import numpy as np

    from repro.data import synthetic

    plt = _mpl()
    base = synthetic.sample_factors(1, seed=seed, split="train")
    factors = [f for f in synthetic.FACTORS if f.kind != "id"]
    fig, axes = plt.subplots(len(factors), n_values, figsize=(1.1 * n_values + 1.6, 1.1 * len(factors)),
                             squeeze=False)
    for row, factor in enumerate(factors):
        values = (np.array([factor.low, factor.high]) if factor.kind == "binary"
                  else np.linspace(factor.low, factor.high, n_values))
        batch = np.repeat(base, len(values), axis=0)
        batch = synthetic.intervene(batch, factor.name, values.astype(np.float32))
        imgs = synthetic.render(batch, size)
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col < len(imgs):
                ax.imshow(imgs[col], interpolation="nearest")
        axes[row][0].text(-0.1, 0.5, factor.name, transform=axes[row][0].transAxes, ha="right",
                          va="center", fontsize=8)
    fig.suptitle("interventions: one factor changed, everything else identical", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def read_log(path: str | Path) -> list[dict]:
    """Records of a training ``log.jsonl`` (a truncated last line, from a crash, is skipped)."""
    import json

    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_training_logs(logs: dict[str, list[dict]], path: str | Path,
                       terms: Sequence[str] = ("d_adv", "adv", "img_l1", "lpips", "latent_l1", "classifier_kl")):
    """One panel per loss term, one line per model; z-passes and encoder passes averaged together."""
    plt = _mpl()
    present = [t for t in terms if any(t in r for recs in logs.values() for r in recs)]
    fig, axes = plt.subplots(1, len(present), figsize=(3.0 * len(present), 2.8), squeeze=False)
    for ax, term in zip(axes[0], present):
        for name, recs in logs.items():
            pts = [(r["iteration"], r[term]) for r in recs if term in r]
            if pts:
                it, val = zip(*pts)
                ax.plot(it, _smooth(val), label=name, lw=1.2)
        ax.set(title=term, xlabel="iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _smooth(values: Sequence[float], window: int = 9) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < window:
        return v
    kernel = np.ones(window) / window
    padded = np.pad(v, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def plot_reconstructions(rows: dict[str, np.ndarray | torch.Tensor], path: str | Path, n: int = 8):
    """The report's Figure 2: one row per entry (originals, then each model's reconstructions)."""
    plt = _mpl()
    fig, axes = plt.subplots(len(rows), n, figsize=(1.2 * n + 1.2, 1.25 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows.items()):
        imgs = as_hwc_uint8(images[:n])
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(imgs[c], interpolation="nearest")
        axes[r][0].text(-0.08, 0.5, name, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
