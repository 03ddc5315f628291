"""The model beside its architecture: StylExArch, StylExModel and the finished model file."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from repro.checkpoint import ConfigMismatch, save_checkpoint
from repro.config import StylExConfig
from repro.model import FINAL, StylExArch, StylExModel, load_stylex


def test_model_modes_have_the_right_parts():
    assert StylExModel("stylex", 32, 8, 32, 2).mapping is None
    assert StylExModel("stylegan2", 32, 8, 32, 2).encoder is None
    both = StylExModel("stylex-alt", 32, 8, 32, 2)
    assert both.encoder is not None and both.mapping is not None
    with pytest.raises(ValueError, match="unknown mode 'gan'"):
        StylExModel("gan", 32, 8, 32, 2)


def test_arch_is_frozen_and_round_trips():
    config = StylExConfig(channels=8, latent_dim=32, mapping_layers=2)
    arch = StylExArch.of("stylex-alt", 32, config)
    assert arch == StylExArch("stylex-alt", 32, 8, 32, 2)
    assert StylExArch.from_dict({**arch.to_dict(), "data": {}, "iterations": 4}) == arch  # other keys ignored
    assert arch.build().arch == arch
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.channels = 16
    with pytest.raises(ValueError, match="unknown mode 'gan'"):
        StylExArch("gan", 32, 8)


def test_arch_keys_leave_out_the_mapping_depth_only_of_a_stylex_model():
    assert "mapping_layers" not in StylExArch("stylex", 32, 8).keys
    for mode in ("stylex-alt", "stylegan2"):
        assert StylExArch(mode, 32, 8).keys == ("mode", "resolution", "channels", "latent_dim", "mapping_layers")


def _write(run_dir, state_extra, arch):
    torch.manual_seed(0)
    model = arch.build().eval()
    save_checkpoint(run_dir / FINAL, {**state_extra, "ema": model.state_dict(),
                                      "metadata": json.dumps({"finished_iteration": 3})})
    return model


@pytest.mark.parametrize("layout", ["arch entry", "config only (older checkpoints)"])
def test_finished_model_loads_from_either_checkpoint_layout(tmp_path, layout):
    """Checkpoints store the architecture as a plain dict under "arch"; ones written before that
    entry existed carry the same fields at the top of their "config" and load the same."""
    arch = StylExArch("stylegan2", 32, 8, 32, 2)
    config = {**arch.to_dict(), "data": {"task": "synth-age"}, "iterations": 3}
    extra = {"config": config, "arch": arch.to_dict()} if layout == "arch entry" else {"config": config}
    model = _write(tmp_path, extra, arch)
    loaded = load_stylex(tmp_path, expected=arch)
    assert loaded.model.arch == arch and loaded.iteration == 3
    for (name, a), b in zip(model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigMismatch, match="mapping_layers: expected 8, found 2"):
        load_stylex(tmp_path, expected=dataclasses.replace(arch, mapping_layers=8))


def test_a_stylex_model_loads_under_any_mapping_depth(tmp_path):
    arch = StylExArch("stylex", 32, 8, 32, 2)
    _write(tmp_path, {"config": arch.to_dict(), "arch": arch.to_dict()}, arch)
    assert load_stylex(tmp_path, expected=dataclasses.replace(arch, mapping_layers=8)).model.arch == arch
    with pytest.raises(ConfigMismatch, match="channels: expected 16, found 8"):
        load_stylex(tmp_path, expected=dataclasses.replace(arch, channels=16))


def test_only_the_training_entry_points_import_the_trainer():
    """Readers of a trained model use repro.model; repro.training is imported by the command line
    and the ablation's train_row alone."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "repro"
    importers = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) and node.module else [])
            if "repro.training" in names:
                importers.add(path.relative_to(root).as_posix())
    assert importers <= {"__main__.py", "ablation.py", "training.py"}, importers
