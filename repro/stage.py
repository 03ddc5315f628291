"""One protocol for every stage that computes a result into a run directory.

The stages are the classifier and the second observer (``repro.classifier``), each generative
model (``repro.training``), the attribute probe (``repro.probe``) and each model's explanation
(``repro.explain``). Each runs the same five steps through a :class:`StageDir`:

1. **Reuse of a finished stage** (:meth:`StageDir.reuse`): when its completion marker (and any
   file it ``requires``) exists, the result is loaded instead of recomputed, unless ``force``.
   A result that cannot be loaded (damaged, or recorded with another configuration) is reported
   and the stage runs again; a *strict* stage (a generative model) refuses to run over a result
   of another configuration instead (``ConfigMismatch``: another model lives there).
2. **Run directory** (:meth:`StageDir.begin`): checked to be writable with room for checkpoints
   (:func:`repro.checkpoint.check_run_dir`) before any work, then ``config.json`` written.
3. **Config check**: the configuration is recorded in every checkpoint and result, and nothing
   recorded with another one is used (the mismatch names the fields).
4. **Resume of an interrupted stage** (:meth:`StageDir.resume`): the newest checkpoint that
   loads and matches the configuration; damaged ones are reported and skipped, one of another
   configuration is refused.
5. **Completion marker**: the result file, written atomically and last of the stage's results;
   its presence marks the stage as done (``model.pt``, ``classifier.pt`` with
   ``metrics.json``, ``probe.pt``, ``explain.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import torch

from repro.checkpoint import CheckpointError, ConfigMismatch, check_run_dir, load_checkpoint
from repro.config import save_config

T = TypeVar("T")


@dataclass
class StageDir:
    """A stage's run directory and its protocol (see the module docstring).

    Parameters:
        run_dir: the run directory.
        marker: the completion marker, the file name of the stage's result.
        config: the configuration the stage runs with: what checkpoints must match and what
            ``config.json`` records (unless :meth:`begin` is given another record).
        config_keys: the fields of ``config`` a checkpoint must match (None: all of them).
        requires: other files a finished stage has besides the marker.
    """

    run_dir: Path
    marker: str
    config: dict[str, Any] | None = None
    config_keys: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def result(self) -> Path:
        """The path of the completion marker."""
        return self.run_dir / self.marker

    def finished(self) -> bool:
        """Whether the marker and every required file exist."""
        return all((self.run_dir / name).exists() for name in (self.marker, *self.requires))

    def reuse(self, load: Callable[[], T], *, force: bool = False, strict: bool = False,
              again: str = "training again") -> T | None:
        """``load()``'s result when the stage is finished and ``force`` is off, else None (run it).

        ``load`` raises ``CheckpointError`` for a result it must not return (damaged, or recorded
        with another configuration); that is reported ("not reusing ...; ``again``") and None is
        returned. With ``strict``, a ``ConfigMismatch`` propagates instead.
        """
        if force or not self.finished():
            return None
        try:
            return load()
        except CheckpointError as err:
            if strict and isinstance(err, ConfigMismatch):
                raise
            print(f"not reusing {self.result}: {err}; {again}")
            return None

    def begin(self, record: Any = None, *, need_bytes: int = 50_000_000) -> None:
        """Check the run directory (writable, ``need_bytes`` free), then write ``config.json``:
        ``record`` when given (e.g. the configuration with its data set), else ``config``."""
        check_run_dir(self.run_dir, need_bytes=need_bytes)
        save_config(self.config if record is None else record, self.run_dir)

    def resume(self, checkpoints: Iterable[Path], *, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The first of ``checkpoints`` (give them newest first) that loads and was written with
        this configuration; None when there is none. A damaged one is reported and skipped (a
        checkpoint is never trusted half-written); one of another configuration raises
        ``ConfigMismatch``, naming the fields."""
        for path in checkpoints:
            if not Path(path).exists():
                continue
            try:
                return load_checkpoint(path, map_location=map_location, expected_config=self.config,
                                       config_keys=self.config_keys)
            except ConfigMismatch:
                raise
            except CheckpointError as err:
                print(f"skipping damaged checkpoint: {err}")
        return None
