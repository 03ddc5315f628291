"""Profiles and config round trip, safe checkpoints, the classifier, and the command line."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from repro.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from repro.config import PROFILES, Profile, config_diff, from_dict, get_profile, save_config, to_dict


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_json_round_trip(name, tmp_path):
    profile = get_profile(name)
    path = save_config(profile, tmp_path)
    again = from_dict(Profile, json.loads(path.read_text()))
    assert again == profile
    assert to_dict(again) == to_dict(profile)


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="unknown profile 'fast'.*quick.*default.*paper-afhq"):
        get_profile("fast")


def test_data_root_override_only_touches_real_data():
    ffhq = get_profile("paper-ffhq", data_root="/data")
    task = ffhq.tasks[0]
    assert task.classifier_data.root == "/data/celeba" and task.stylex_data.root == "/data/ffhq"
    default = get_profile("default", data_root="/data")
    assert all(t.stylex_data.root is None for t in default.tasks)


def test_default_profile_plants_the_spurious_factor_on_one_task():
    planted = [t.name for t in get_profile("default").tasks if t.classifier_data.spurious_p != 0.5]
    assert planted == ["synth-age"]


def test_from_dict_rejects_unknown_fields():
    data = to_dict(get_profile("quick"))
    data["classifier"]["epoch"] = 3
    with pytest.raises(ValueError, match="epoch"):
        from_dict(Profile, data)


def test_config_diff_names_nested_fields():
    diffs = config_diff({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})
    assert diffs == ["b.c: expected 2, found 3"]


# -- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "config": {"mode": "stylex"}, "iteration": 7}
    path = save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["iteration"] == 7
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file is left behind"


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this would create a file: the attack weights_only must stop."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_checkpoint_runs_no_code(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"complete": True, "payload": _Exploit(str(target))}, f)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not target.exists()


def test_config_mismatch_names_the_fields(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"config": {"mode": "stylex", "resolution": 32, "channels": 64}})
    with pytest.raises(CheckpointError, match=r"channels: expected 128, found 64\n  resolution: expected 64, found 32"):
        load_checkpoint(path, expected_config={"mode": "stylex", "resolution": 64, "channels": 128})


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


# -- the classifier ----------------------------------------------------------------------------

def test_classifier_steps_lower_the_loss(tmp_path):
    from repro.data import load_split
    from repro.networks import build_classifier

    data = get_profile("quick").tasks[0].classifier_data
    data.cache_dir = str(tmp_path)
    train = load_split(data, "train")
    torch.manual_seed(0)
    model = build_classifier(2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = train.batch(slice(0, 64)), train.labels[:64]
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_train_classifier_writes_and_reuses_its_run(tmp_path):
    from repro.classifier import load_classifier, train_classifier

    profile = get_profile("quick")
    data = profile.tasks[0].classifier_data
    data.cache_dir = str(tmp_path / "cache")
    data.n_train, data.n_val, data.n_test = 128, 32, 32
    run = train_classifier(data, profile.classifier, tmp_path / "clf", device="cpu", progress=False)
    for name in ("config.json", "classifier.pt", "metrics.json", "history.jsonl"):
        assert (tmp_path / "clf" / name).exists(), name
    assert sum(map(sum, run.metrics["test"]["confusion"])) == 32
    again = train_classifier(data, profile.classifier, tmp_path / "clf", device="cpu", progress=False)
    assert again.metrics == run.metrics  # reused, not retrained
    loaded = load_classifier(tmp_path / "clf")
    x = torch.zeros(2, 3, 32, 32)
    assert torch.allclose(loaded.model(x), run.model(x), atol=1e-5)  # channels_last vs default layout


# -- the command line --------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, timeout=600)


def test_cli_lists_commands_and_each_has_help():
    from repro.__main__ import COMMANDS

    top = _cli("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = _cli(name, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout, name


def test_cli_bad_profile_is_a_clear_error():
    out = _cli("train-classifier", "--profile", "nope")
    assert out.returncode == 2 and "unknown profile 'nope'; choose one of: quick" in out.stderr


def test_shortcut_accuracy_splits_by_the_spurious_factor():
    from torch import nn

    from repro.classifier import shortcut_accuracy
    from repro.data import ImageSet
    from repro.data.synthetic import FACTOR_NAMES

    class Reader(nn.Module):  # answers the top-left pixel: a pure "glasses" shortcut here
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            v = x[:, 0, 0, 0] * self.scale
            return torch.stack([-v, v], 1)

    labels = torch.tensor([1, 1, 0, 0, 1, 0])
    glasses = torch.tensor([1., 1., 0., 1., 0., 0.])  # agrees with the label on rows 0, 1, 2, 5
    factors = torch.zeros(6, len(FACTOR_NAMES))
    factors[:, FACTOR_NAMES.index("glasses")] = glasses
    images = torch.zeros(6, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = (glasses * 255).to(torch.uint8)  # pixel -1 or 1: the reader says glasses
    res = shortcut_accuracy(Reader(), ImageSet(images, labels, factors, "toy"), "synth-age")
    assert res["spurious"] == "glasses"
    assert res["agrees"] == {"accuracy": 1.0, "n": 4}
    assert res["disagrees"] == {"accuracy": 0.0, "n": 2}
    with pytest.raises(ValueError, match="no generative factors"):
        shortcut_accuracy(Reader(), ImageSet(images, labels, None, "toy"), "synth-age")
