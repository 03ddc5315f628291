"""Your own data and classifier: the custom profile, the input checks (each a one-line error naming
the fix), the input adapter, and the K-class pieces (one-vs-rest; K = 2 is the paper's path)."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from repro.config import ClassifierConfig, custom_profile, get_profile, save_profile, to_dict
from repro.data import class_names, load_split
from repro.data.real import DataError
from repro.explain import OneVsRest
from repro.model import StylExArch, StylExModel
from repro.user_classifier import (ClassifierError, InputAdapter, check_classifier, check_inputs,
                                   load_user_classifier)

R = 32


def make_folder(root, classes=("a", "b", "c"), n=20, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def tiny_profile(tmp_path, root, **kwargs):
    options = dict(resolution=R, repeats=1, images_per_repeat=2, run_root=str(tmp_path / "runs"))
    profile = custom_profile(root, **{**options, **kwargs})
    for task in profile.tasks:
        task.classifier_data.cache_dir = str(tmp_path / "cache")
    return profile


class Colour(nn.Module):
    """A tiny classifier of K outputs (the checks' subject)."""

    def __init__(self, k=3):
        super().__init__()
        self.fc = nn.Linear(3, k)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


class Noisy(Colour):
    def forward(self, x):
        return super().forward(x) + torch.randn(x.shape[0], self.fc.out_features)


class NonFinite(Colour):
    def forward(self, x):
        return super().forward(x) / 0.0


def make_colour():
    return Colour(3)


def make_noisy():
    return Noisy(3)


def make_non_finite():
    return NonFinite(3)


def make_five():
    return Colour(5)


def make_broken():
    raise RuntimeError("no GPU here")


def make_not_a_module():
    return "a string"


# -- the custom profile ------------------------------------------------------------------------

def test_custom_profile_round_trips_through_its_config_json(tmp_path):
    profile = custom_profile(tmp_path / "imgs", name="mine", resolution=64, channels=8, iterations=5, batch_size=4,
                             classifier=f"{__name__}:make_colour", classifier_size=48, classifier_mean=[0.5] * 3,
                             classifier_std=[0.25] * 3, split_seed=3, run_root=str(tmp_path / "runs"))
    path = save_profile(profile)
    assert path == tmp_path / "runs" / "mine" / "config.json"
    again = get_profile("mine", run_root=str(tmp_path / "runs"))
    assert to_dict(again) == to_dict(profile)
    data = again.tasks[0].classifier_data
    assert (data.dataset, data.task, data.seed, data.resolution) == ("folder", "imgs", 3, 64)
    assert again.stylex.losses.r1_gamma == pytest.approx(0.8)  # 0.2 at 32 px, scaled by resolution squared
    default = get_profile("default").stylex  # the default's recipe, its precision included
    assert (again.stylex.precision, again.stylex.channels_last) == (default.precision, default.channels_last)
    assert again.classifier.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="was made for the images in"):
        get_profile("mine", data_root=str(tmp_path / "other"), run_root=str(tmp_path / "runs"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="default"), "'default' is a built-in profile"),
    (dict(name="a b"), "is not usable"),
    (dict(resolution=48), "--resolution must be one of 32, 64, 128, 256"),
    (dict(modes=["stylegan2"]), "--modes must include stylex"),
    (dict(classifier_weights="w.pt"), "give --classifier as well"),
    (dict(classifier="m:f", classifier_mean=[0.5] * 3), "give both --classifier-mean and --classifier-std"),
    (dict(classifier="m:f", classifier_mean=[0.5] * 3, classifier_std=[0, 1, 1]), "three positive numbers"),
    (dict(classifier="m:f", classifier_size=4), "--classifier-size must be"),
])
def test_custom_profile_refuses_bad_flags_naming_them(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        custom_profile(tmp_path, **kwargs)


def test_an_unknown_profile_says_how_to_make_a_custom_one(tmp_path):
    with pytest.raises(ValueError, match="python -m repro custom --name nope --data-root DIR"):
        get_profile("nope", run_root=str(tmp_path))


# -- the data checks ---------------------------------------------------------------------------

def test_fewer_than_two_classes_is_refused_before_training(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("only",))
    with pytest.raises(DataError, match="at least two class folders"):
        check_inputs(tiny_profile(tmp_path, root))


def test_an_empty_class_is_refused(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("a", "b"))
    (root / "c").mkdir()
    with pytest.raises(DataError, match=r"class folder .*c holds no images"):
        check_inputs(tiny_profile(tmp_path, root))


def test_undecodable_images_are_left_out_with_a_warning_up_to_the_share(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("a", "b"), n=60)
    profile = tiny_profile(tmp_path, root)
    train_files = {p.name for p in (root / "a").iterdir()}
    from repro.data.real import load_folder

    victim = load_folder(root, "train", R).files[0]  # one broken image of 96 training images: ~1 %
    victim.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"left out 1 of 96 undecodable"):
        summary = check_inputs(profile)
    assert summary["imgs"]["images"]["train"] == {"a": 47, "b": 48} and victim.name in train_files
    for path in load_folder(root, "train", R).files[1:6]:  # 6 of 96: above 5 %
        path.write_bytes(b"broken")
    profile.tasks[0].classifier_data.cache_dir = str(tmp_path / "cache2")
    with pytest.raises(DataError, match=r"6 of 96 images \(6%\) cannot be decoded, more than the 5%"):
        load_split(profile.tasks[0].classifier_data, "train")


def test_a_held_out_split_too_small_for_the_flip_rate_names_the_flags(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("a", "b"))
    with pytest.raises(ValueError, match="--repeats x --images-per-repeat = 1 x 80 .* has 4; give e.g. --repeats 1 "
                                         "--images-per-repeat 4"):
        check_inputs(tiny_profile(tmp_path, root, images_per_repeat=80))


# -- the classifier checks ---------------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("no_such_module_x:make", "cannot import no_such_module_x .* put the folder that holds it on PYTHONPATH"),
    (f"{__name__}:nothing", "has no function 'nothing'"),
    (f"{__name__}:make_broken", r"calling make_broken\(\) failed \(RuntimeError: no GPU here\)"),
    (f"{__name__}:make_not_a_module", "returned a str, not an nn.Module"),
    ("just_a_name", "neither a .pt2 file nor package.module:factory"),
    ("missing.pt2", "no such file"),
])
def test_a_classifier_that_does_not_import_is_one_line_naming_the_fix(source, message):
    with pytest.raises(ClassifierError, match=message) as err:
        load_user_classifier(ClassifierConfig(source=source))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("factory, message", [
    ("make_five", r"returned shape \[6, 5\] on 6 images, but the folder has 3 classes \(a, b, c\)"),
    ("make_non_finite", "non-finite outputs"),
    ("make_noisy", "changed its output between two identical calls in eval mode"),
])
def test_classifier_output_checks(factory, message):
    model = load_user_classifier(ClassifierConfig(source=f"{__name__}:{factory}"))
    with pytest.raises(ClassifierError, match=message):
        check_classifier(model, torch.rand(6, 3, R, R) * 2 - 1, ["a", "b", "c"], factory)


def test_weights_that_do_not_fit_are_named(tmp_path):
    source = f"{__name__}:make_colour"
    good = Colour(3).state_dict()
    cases = {
        "shape": ({**good, "fc.weight": torch.zeros(2, 3)}, r"1 of another shape \(e.g. fc.weight: \[2, 3\] in the file"),
        "missing": ({"fc.weight": good["fc.weight"]}, r"1 missing \(e.g. fc.bias\)"),
        "prefix": ({f"module.{k}": v for k, v in good.items()}, "strip the 'module.' prefix"),
    }
    for name, (state, message) in cases.items():
        torch.save(state, tmp_path / f"{name}.pt")
        with pytest.raises(ClassifierError, match=message):
            load_user_classifier(ClassifierConfig(source=source, weights=str(tmp_path / f"{name}.pt")))
    torch.save({"model": good, "epoch": 3}, tmp_path / "wrapped.pt")  # a training checkpoint's layout loads
    loaded = load_user_classifier(ClassifierConfig(source=source, weights=str(tmp_path / "wrapped.pt")))
    assert torch.equal(loaded.model.fc.weight, good["fc.weight"])
    torch.save({"fc": Colour(3)}, tmp_path / "pickled.pt")  # a pickled module, not a state_dict
    with pytest.raises(ClassifierError, match="holds more than tensors"):
        load_user_classifier(ClassifierConfig(source=source, weights=str(tmp_path / "pickled.pt")))


def test_the_input_adapter_resizes_and_normalises():
    inner = Colour(3).eval()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    adapter = InputAdapter(inner, input_size=16, mean=mean, std=std).eval()
    x = torch.rand(2, 3, R, R) * 2 - 1
    expect = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    expect = ((expect + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(adapter(x), inner(expect), atol=1e-6)
    assert torch.equal(InputAdapter(inner)(x), inner(x))  # no flags: the images as this project makes them
    assert list(adapter.state_dict()) == ["model.fc.weight", "model.fc.bias"]  # mean/std are flags, not weights


def test_a_torch_export_program_loads_and_stays_in_its_mode(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3)).eval()
    example = torch.rand(2, 3, R, R)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, tmp_path / "net.pt2")
    model = load_user_classifier(ClassifierConfig(source=str(tmp_path / "net.pt2")))
    model.train()  # an exported module is frozen in its mode: the adapter does not pass train() on
    x = torch.rand(5, 3, R, R) * 2 - 1
    assert torch.allclose(model(x), net(x), atol=1e-6)
    check = check_classifier(model, x, ["a", "b", "c"], "net.pt2")
    assert check["repeat_max_diff"] == 0.0


def test_check_inputs_runs_the_classifier_on_real_images(tmp_path):
    root = make_folder(tmp_path / "imgs")
    summary = check_inputs(tiny_profile(tmp_path, root, classifier=f"{__name__}:make_colour"))
    assert summary["imgs"]["classes"] == ["a", "b", "c"] and summary["imgs"]["classifier"]["classes"] == 3
    with pytest.raises(ClassifierError, match="the folder has 3 classes"):
        check_inputs(tiny_profile(tmp_path, root, classifier=f"{__name__}:make_five"))


# -- K classes ---------------------------------------------------------------------------------

def test_one_vs_rest_is_the_classifier_itself_at_two_classes_and_rest_vs_c_above():
    torch.manual_seed(0)
    two, three = Colour(2).eval(), Colour(3).eval()
    x = torch.rand(4, 3, R, R)
    assert torch.equal(OneVsRest(two, 1)(x), two(x))  # K = 2, class 1 vs rest: the paper's two logits, bit for bit
    p = F.softmax(three(x), 1)
    for c in range(3):
        q = F.softmax(OneVsRest(three, c)(x), 1)
        assert torch.allclose(q, torch.stack([1 - p[:, c], p[:, c]], 1), atol=1e-6)


def test_two_classes_build_and_record_the_model_as_before():
    """At K = 2 the architecture records the same fields as before num_classes existed (so shipped
    checkpoints load and their config checks pass) and builds the same networks, bit for bit."""
    arch = StylExArch("stylex", 32, 8, 16, 2)
    assert arch.num_classes == 2 and "num_classes" not in arch.to_dict() and "num_classes" not in arch.keys
    assert StylExArch.from_dict({"mode": "stylex", "resolution": 32, "channels": 8, "latent_dim": 16,
                                 "mapping_layers": 2}) == arch
    torch.manual_seed(0)
    before = StylExModel("stylex-alt", 32, 8, 16, 2).state_dict()
    torch.manual_seed(0)
    now = dataclasses.replace(arch, mode="stylex-alt").build().state_dict()
    assert before.keys() == now.keys() and all(torch.equal(before[k], now[k]) for k in before)
    three = dataclasses.replace(arch, num_classes=3)
    assert three.to_dict()["num_classes"] == 3 and "num_classes" in three.keys
    assert three.build().generator.w_dim == 16 + 3


def test_class_names_of_a_folder_follow_its_sorted_class_folders(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("zebra", "ant", "moth"), n=10)
    data = custom_profile(root, resolution=R).tasks[0].classifier_data
    assert class_names(data) == ("ant", "moth", "zebra")
    assert json.loads(json.dumps(to_dict(data)))["seed"] == 0


def test_custom_refuses_to_remake_a_profile_for_other_images(tmp_path, monkeypatch, capsys):
    """Models already trained in runs/<name>/ were trained on its images: a second `custom` with
    another folder or resolution under the same name is refused; other settings may change."""
    from repro.__main__ import main

    root = make_folder(tmp_path / "imgs", classes=("a", "b"))
    monkeypatch.chdir(tmp_path)
    common = ["custom", "--data-root", str(root), "--name", "mine", "--repeats", "1", "--images-per-repeat", "2",
              "--no-progress"]
    assert main(common + ["--resolution", "32"]) == 0
    assert main(common + ["--resolution", "32", "--iterations", "7"]) == 0  # a training setting: fine
    assert get_profile("mine").stylex.iterations == 7
    capsys.readouterr()
    assert main(common + ["--resolution", "64"]) == 2
    err = capsys.readouterr().err
    assert "was made for other images (imgs.data.resolution: saved 32, now 64); give another --name" in err


# -- run_all.sh ----------------------------------------------------------------------------------

def test_run_all_passes_custom_flags_on_and_stops_at_a_bad_input(tmp_path):
    """run_all.sh hands the flags it does not know to `python -m repro custom`, which checks the
    inputs before any notebook runs; those flags without --profile custom are refused."""
    import subprocess
    from pathlib import Path

    from conftest import bounded_env

    repo = Path(__file__).resolve().parents[1]
    root = make_folder(tmp_path / "imgs", classes=("only",), n=4)
    run = subprocess.run(["bash", "run_all.sh", "--no-setup", "--profile", "custom", "--name", "t-run-all",
                          "--data-root", str(root), "--resolution", "32", "--classifier", "m:f",
                          "--classifier-mean", "0.5", "0.5", "0.5", "--classifier-std", "0.2", "0.2", "0.2"],
                         cwd=repo, env=bounded_env(), capture_output=True, text=True, timeout=300)
    # the three-number flags arrived whole (else argparse would have said so); the data is checked first
    assert run.returncode == 2 and "must hold at least two class folders" in run.stderr, run.stderr
    assert "[report]" not in run.stdout and not (repo / "runs" / "t-run-all").exists()
    run = subprocess.run(["bash", "run_all.sh", "--no-setup", "--profile", "quick", "--classifier", "m:f"],
                         cwd=repo, env=bounded_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "are options of --profile custom" in run.stderr, run.stderr
