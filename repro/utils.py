"""Small shared helpers: devices, seeding, timing, progress bars."""

from __future__ import annotations

import os
import random
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress_enabled(requested: bool | None = None) -> bool:
    """Progress bars unless asked not to, or REPRO_PROGRESS=0 is set (papermill logs)."""
    if requested is not None:
        return requested
    return os.environ.get("REPRO_PROGRESS", "1") != "0"


def tqdm(*args, **kwargs):
    """tqdm that writes to stderr and honours :func:`progress_enabled`."""
    from tqdm.auto import tqdm as _tqdm

    kwargs.setdefault("disable", not progress_enabled(kwargs.pop("enabled", None)))
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return _tqdm(*args, **kwargs)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t['seconds']``."""
    record = {"seconds": 0.0}
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - start
