"""A quick-profile run root with finished (untrained, tiny) stages in place, for tests of the
stages that read them (explain, the second observer, Wu, screened AttFind)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from repro.checkpoint import save_checkpoint
from repro.classifier import run_config
from repro.config import Profile, TaskConfig, get_profile
from repro.model import FINAL, StylExArch
from repro.networks import build_classifier


def fake_finished_run(tmp_path: Path, modes: tuple[str, ...] = ("stylex",), *,
                      observer: bool = False) -> tuple[Profile, TaskConfig]:
    """Models of ``modes`` (initialised with seeds 0, 1, ...), the classifier (seed 1) and, with
    ``observer``, the second observer (seed 2), each saved as its finished stage."""
    profile = get_profile("quick", run_root=str(tmp_path / "runs"))
    task = profile.tasks[0]
    for data in (task.stylex_data, task.classifier_data):
        data.cache_dir, data.n_val, data.n_test = str(tmp_path / "cache"), 8, 32
    for seed, mode in enumerate(modes):
        arch = StylExArch.of(mode, 32, profile.stylex)
        torch.manual_seed(seed)
        save_checkpoint(profile.run_dir(task.name, mode) / FINAL,
                        {"config": arch.to_dict(), "ema": arch.build().state_dict(), "metadata": json.dumps({})})
    stages = [("classifier", profile.classifier, 1)] + ([("observer", profile.observer, 2)] if observer else [])
    for component, config, seed in stages:
        torch.manual_seed(seed)
        run_dir = profile.run_dir(task.name, component)
        save_checkpoint(run_dir / "classifier.pt", {"model": build_classifier(2, config.arch).eval().state_dict(),
                                                    "config": run_config(task.classifier_data, config)})
        (run_dir / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.5}}) + "\n")
    return profile, task
