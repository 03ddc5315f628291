"""The README's "Explain your own classifier" walkthrough, end to end, at quick sizes.

The commands are read from the README's walkthrough block and run as they are written, in a
folder this test makes: ``my_images/`` with three colour classes of images of mixed sizes and
``my_classifier.py`` (the small module below) with its weights ``my_classifier.pt``. Only the
``custom`` command gets extra flags, appended (argparse keeps the last): tiny networks and a
handful of iterations, so the whole walkthrough takes well under a minute on one CPU thread.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import bounded_env

REPO = Path(__file__).resolve().parents[1]

# The user's classifier: reads the colour of an image. Its factory gives random weights; the
# weights file makes it right, so a wrong adapter or unloaded weights would show as chance accuracy.
CLASSIFIER_MODULE = '''
from torch import nn


def make():
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 3))
'''
CLASSES = ("blue", "green", "red")  # sorted: labels 0, 1, 2 read channels 2, 1, 0
QUICK = ["--resolution", "32", "--classifier-size", "24", "--channels", "8", "--latent-dim", "16",
         "--iterations", "4", "--batch-size", "4", "--modes", "stylex", "--epochs", "1", "--attfind-images", "4",
         "--k", "2", "--repeats", "1", "--images-per-repeat", "6", "--no-progress"]


def walkthrough_commands() -> list[list[str]]:
    """The ``python -m repro`` commands of the README's walkthrough block, in order."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- walkthrough[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no walkthrough block"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines()
            if line.startswith("python -m repro ")]


def make_inputs(root: Path) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        channel = 2 - c
        for i in range(20):
            size = (int(rng.integers(30, 70)), int(rng.integers(30, 70)))  # any size, not square
            pixels = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            pixels[..., channel] += 180
            (root / "my_images" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "my_images" / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    (root / "my_classifier.py").write_text(CLASSIFIER_MODULE)
    weight = torch.zeros(3, 3)
    for label in range(3):
        weight[label, 2 - label] = 5.0  # logit of a class: its channel's mean (normalised)
    torch.save({"2.weight": weight, "2.bias": torch.zeros(3)}, root / "my_classifier.pt")


def test_the_readme_walkthrough_runs_end_to_end(tmp_path):
    commands = walkthrough_commands()
    assert [c[3] for c in commands] == ["custom", "train-classifier", "train-observer", "train-stylex", "explain"]
    make_inputs(tmp_path)
    env = bounded_env(PYTHONPATH=f"{tmp_path}:{REPO}")
    outputs = {}
    for command in commands:
        args = command[1:] + (QUICK if command[3] == "custom" else ["--no-progress"])
        done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
        outputs[command[3]] = done.stdout

    run = tmp_path / "runs" / "mine"
    profile = json.loads((run / "config.json").read_text())
    assert profile["name"] == "mine" and profile["classifier"]["source"] == "my_classifier:make"
    assert profile["tasks"][0]["classifier_data"]["dataset"] == "folder"
    inputs = json.loads((run / "inputs.json").read_text())["my_images"]
    assert inputs["classes"] == list(CLASSES) and inputs["images"]["test"] == {c: 2 for c in CLASSES}
    assert "split seed 0" in inputs["split"]

    metrics = json.loads((run / "my_images" / "classifier" / "metrics.json").read_text())
    assert metrics["epochs"] == 0 and metrics["class_names"] == list(CLASSES)  # imported, not trained
    assert metrics["test"]["accuracy"] == 1.0  # the weights file and the input adapter were used
    assert len(metrics["test"]["confusion"]) == 3

    model = torch.load(run / "my_images" / "stylex" / "model.pt", weights_only=True)
    assert model["arch"]["num_classes"] == 3  # conditioned on the 3-way softmax

    for c, name in enumerate(CLASSES):  # one-vs-rest: one explanation and flip rate per target class
        results = json.loads((run / "my_images" / "stylex" / f"class-{c}" / "explain.json").read_text())
        assert results["target_class"] == c and results["class_names"] == [f"not {name}", name]
        assert set(results["methods"]) == {"attfind", "wu", "random"}
        assert 0.0 <= results["methods"]["attfind"]["flip_rate"]["mean"] <= 1.0
        assert f"class {name} vs rest: flip rate at k=2" in outputs["explain"]
