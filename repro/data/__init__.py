"""Data: the embedded synthetic data set and the real-data loaders behind one call.

``load_split(data_config, split)`` returns an :class:`ImageSet`: all images of the split as one
uint8 tensor in memory (pre-resized, cached on disk), so that training indexes batches with no
decoding and no worker processes. ``ImageSet.batch(idx)`` gives float images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from repro.config import DATASETS, SPLITS, DataConfig


@dataclass
class ImageSet:
    """A split held in memory.

    Parameters:
        images: uint8 [N, 3, R, R].
        labels: int64 [N]; -1 where the data set has no labels (FFHQ).
        factors: float32 [N, F] generative factors (synthetic data only).
        name: a readable description, e.g. ``synth-age/train``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    factors: torch.Tensor | None = None
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def batch(self, idx: torch.Tensor | slice, device: torch.device | str | None = None) -> torch.Tensor:
        """Float images in [-1, 1] of the given indices, contiguous, on ``device``."""
        x = self.images[idx]
        if device is not None:
            x = x.to(device, non_blocking=True)
        return (x.float() / 127.5 - 1.0).contiguous()

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same set with its tensors on ``device`` (e.g. the whole set on the GPU)."""
        factors = None if self.factors is None else self.factors.to(device)
        return ImageSet(self.images.to(device), self.labels.to(device), factors, self.name)


def check_root(config: DataConfig) -> None:
    """Fail now, before a run starts, if a real data set's root is unset or not a folder.

    Raises ValueError (no root) or :class:`repro.data.real.DataError` naming the path and the fix;
    does nothing for the synthetic data set.
    """
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    if config.dataset == "synthetic":
        return
    if config.root is None:
        raise ValueError(f"dataset {config.dataset!r} needs a data root (--data-root); "
                         f"see README.md, 'Real data', for where to download it")
    from repro.data import real

    real.require_root(config.dataset, config.root)


def class_names(data: DataConfig) -> tuple[str, ...]:
    """The names of a task's classes, in label order (your folder's class folders, sorted by name)."""
    if data.dataset == "synthetic":
        from repro.data import synthetic

        return tuple(synthetic.TASKS[data.task].class_names)
    if data.dataset == "afhq":
        return ("cat", "dog")
    if data.dataset in ("celeba", "ffhq"):
        return ("young", "old")
    if data.dataset == "folder" and data.root is not None:
        from repro.data import real

        return tuple(real.folder_classes(data.root))
    return ("class 0", "class 1")


def load_split(config: DataConfig, split: str, *, progress: bool = False) -> ImageSet:
    """Load one split of the data a :class:`DataConfig` describes."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(DATASETS)}")
    name = f"{config.task}/{split}"
    if config.dataset == "synthetic":
        from repro.data import synthetic

        n = {"train": config.n_train, "val": config.n_val, "test": config.n_test}[split]
        data = synthetic.make_split(config.task, split, n, config.resolution, seed=config.seed,
                                    spurious_p=config.spurious_p, label_noise=config.label_noise,
                                    cache_dir=config.cache_dir, progress=progress)
        return ImageSet(torch.from_numpy(np.ascontiguousarray(data.images)),
                        torch.from_numpy(data.labels).long(),
                        torch.from_numpy(data.factors).float(), name)
    from repro.data import real

    check_root(config)
    folder = config.dataset == "folder"  # your own images: undecodable ones are left out up to a share
    data = real.load_real(config.dataset, config.root, split, config.resolution,
                          cache_dir=config.cache_dir, progress=progress, skip_bad=folder,
                          max_bad_share=real.MAX_BAD_SHARE if folder else 1.0, seed=config.seed if folder else 0)
    labels = torch.as_tensor(data.labels).long()
    return ImageSet(data.images.contiguous(), labels, None, name)
