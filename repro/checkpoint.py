"""Checkpoints: ``state_dict``s plus the config, written atomically, loaded with ``weights_only``.

A checkpoint is a dict of tensors and plain values (never pickled code). It is written to a
temporary file in the same folder, flushed to disk and renamed over the target, so a crash
leaves either the old file or the new one, never half of one. On load, ``weights_only=True``
refuses anything that would execute code, and a ``"complete": True`` marker written last
guards against files that were truncated by other means.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from repro.config import config_diff
from repro.utils import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that cannot or must not be loaded."""


class ConfigMismatch(CheckpointError):
    """A whole checkpoint written with another configuration: not damaged, so never to be skipped
    or trained over, but reported (the message names the differing fields)."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`repro.utils.atomic_write`: temp file, fsync, rename)."""
    path = Path(path)
    try:
        with atomic_write(path) as f:
            torch.save({**state, "complete": True}, f)
    except OSError as err:  # e.g. the disk filled up during the write
        raise OSError(f"could not write checkpoint {path} ({err}); the checkpoints already there are intact. "
                      f"Free disk space (or choose another --run-root) and re-run the same command to "
                      f"resume") from err
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                    expected_config: dict[str, Any] | None = None,
                    config_keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Load a checkpoint safely.

    Raises ``CheckpointError`` when the file is missing, truncated, not a checkpoint, holds
    objects that only an unsafe unpickler could build (e.g. code); ``ConfigMismatch`` (a
    ``CheckpointError``) when it was written with a config whose ``config_keys`` fields differ
    from ``expected_config`` (the message names them).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it contains objects that are not plain tensors or values "
            f"(loading it would run code from the file). Only load checkpoints written by this "
            f"project. Details: {str(err).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({err}); "
                              f"delete it and resume from an earlier one") from None
    if not isinstance(state, dict) or state.get("complete") is not True:
        raise CheckpointError(f"{path} is not a complete checkpoint of this project")
    if expected_config is not None:
        found = state.get("config", {})
        keys = config_keys or tuple(expected_config)
        diffs = config_diff({k: expected_config.get(k) for k in keys},
                            {k: found.get(k) for k in keys})
        if diffs:
            raise ConfigMismatch(
                f"checkpoint {path} was written with a different configuration:\n  "
                + "\n  ".join(diffs)
                + "\nUse the matching profile/mode, or a fresh run directory.")
    return state


def check_run_dir(run_dir: str | Path, need_bytes: int = 50_000_000) -> Path:
    """Fail before training, not after an hour, when the run directory can't take checkpoints."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"run directory {run_dir} is not writable ({err}); choose another "
                              f"with --run-root") from None
    stats = os.statvfs(run_dir)
    free = stats.f_bavail * stats.f_frsize
    if free < need_bytes:
        raise OSError(f"run directory {run_dir} has only {free / 1e6:.0f} MB free; checkpoints need "
                      f"at least {need_bytes / 1e6:.0f} MB. Free space or choose another --run-root")
    return run_dir
