"""Small shared helpers: devices, seeding, timing, progress bars, atomic file writes."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

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


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_write(path) as f: ...``: write ``path`` so that it is always whole.

    ``f`` is a temporary file beside ``path`` (``.NAME.tmp-PID-THREAD``); when the block ends
    without an error it is flushed, fsynced and renamed over ``path``, so readers (and a crash at
    any moment) see the old file or the new one, never half of one. On an error the temporary
    file is removed, ``path`` is left as it was and the error propagates. ``mode``: ``wb`` or
    ``w`` (UTF-8 text).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a whole new file: mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to ``path`` with :func:`atomic_write`; returns ``path``."""
    with atomic_write(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)
