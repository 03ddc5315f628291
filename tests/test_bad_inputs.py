"""Bad inputs everywhere a user types or points (issue 7): each gives one clear error that names
the input and the fix, before any data is decoded or any training starts.

Every test asserts the exception type (or the CLI's exit code 2), the bad value, and the fix.
Command-line cases run ``repro.__main__.main`` in-process (the same code path as
``python -m repro``, without paying for a fresh ``import torch``); two run the real
``python -m repro`` in a subprocess to pin the exit code and the absence of a traceback.
The truncated-answers case (recovered, not an error) is tested in tests/test_userstudy.py::
test_truncated_last_line_is_skipped_and_appending_goes_on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from repro import __main__ as cli
from repro.attfind import AttFindConfig, EffectResult, run_attfind, select_class
from repro.baselines import random_attributes, wu_attributes
from repro.checkpoint import CheckpointError, check_run_dir
from repro.config import DataConfig, EvalConfig, Profile, StylExConfig, from_dict, get_profile, to_dict
from repro.data import load_split
from repro.data.real import DataError, load_real
from repro.fliprate import flip_rate, flip_rate_curve
from repro.stylespace import Attributes

ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m repro ARGS`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)  # a safety net against a hang, not a speed limit


def run_main(capsys, *args: str) -> tuple[int, str]:
    """``repro.__main__.main(ARGS)`` in-process: (exit code, stderr). argparse errors exit via SystemExit."""
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fail the test if anything loads a data split: the error must come before that."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("data was loaded before the bad input was reported")
    monkeypatch.setattr("repro.classifier.load_split", refuse)
    monkeypatch.setattr("repro.explain.load_split", refuse)


def png(path: Path, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


# -- 1-3. names: profile, mode, task -----------------------------------------------------------

def test_unknown_profile_library():
    with pytest.raises(ValueError, match=r"unknown profile 'nope'; choose one of: quick, default, paper-afhq"):
        get_profile("nope")


def test_unknown_profile_cli_exits_2():
    out = run_cli("train-classifier", "--profile", "nope")
    assert out.returncode == 2, out.stderr
    # one line, naming the built-in profiles and how to make a custom one (not an argparse choice:
    # a custom profile's name is any name saved by `python -m repro custom`)
    assert out.stderr.startswith("error: unknown profile 'nope'; choose one of: quick, default")
    assert "python -m repro custom --name nope --data-root DIR" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_unknown_mode_library(tmp_path):
    from repro.training import train_profile_model

    profile = get_profile("quick", run_root=str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown mode 'nope'; choose one of: stylex, stylex-alt, stylegan2"):
        train_profile_model(profile, profile.tasks[0], "nope", device="cpu")


def test_unknown_mode_cli(capsys):
    code, err = run_main(capsys, "train-stylex", "--profile", "quick", "--mode", "nope")
    assert code == 2
    assert "--mode: invalid choice: 'nope'" in err and "choose from 'stylex'" in err


def test_unknown_task_of_a_profile(capsys, tmp_path, no_data_loading):
    with pytest.raises(ValueError, match=r"task 'nope' is not in profile 'quick'; choose one of: synth-age"):
        get_profile("quick").task("nope")
    code, err = run_main(capsys, "train-classifier", "--profile", "quick", "--task", "nope",
                         "--run-root", str(tmp_path), "--device", "cpu")
    assert code == 2
    assert "error: task 'nope' is not in profile 'quick'; choose one of: synth-age" in err
    assert "leave --task out" in err


# -- 4-11. data roots and data files -----------------------------------------------------------

def test_data_root_missing_cli_exits_2_before_any_run_dir(tmp_path):
    missing = tmp_path / "nonexistent"
    out = run_cli("train-classifier", "--profile", "paper-afhq", "--data-root", str(missing),
                  "--run-root", str(tmp_path / "runs"), "--device", "cpu", "--no-progress")
    assert out.returncode == 2, out.stderr
    assert f"error: AFHQ root folder not found: {missing / 'afhq'}" in out.stderr
    assert "--data-root is the folder holding afhq/, celeba/ and ffhq/" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_data_root_names_a_file_cli(capsys, tmp_path, no_data_loading):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "celeba").write_text("a file where the CelebA folder should be")
    code, err = run_main(capsys, "train-classifier", "--profile", "paper-ffhq", "--data-root", str(tmp_path / "data"),
                         "--run-root", str(tmp_path / "runs"), "--device", "cpu", "--no-progress")
    assert code == 2
    assert f"error: CelebA root folder {tmp_path / 'data' / 'celeba'} is a file, not a folder" in err
    assert "--data-root is the folder holding afhq/, celeba/ and ffhq/" in err
    assert not (tmp_path / "runs").exists()


def test_real_dataset_without_a_root():
    with pytest.raises(ValueError, match=r"dataset 'afhq' needs a data root \(--data-root\); see README.md"):
        load_split(DataConfig(dataset="afhq", root=None), "train")


def test_afhq_wrong_layout(tmp_path):
    png(tmp_path / "afhq" / "pictures" / "a.png")
    with pytest.raises(DataError, match=r"no AFHQ split folder .*train: expected the layout "
                                        r"afhq/\{train,val\}/\{cat,dog\}/\*\.png .*found in .*: pictures/"):
        load_split(DataConfig(dataset="afhq", root=str(tmp_path), cache_dir=str(tmp_path / "cache")), "train")


def test_celeba_wrong_layout(tmp_path):
    (tmp_path / "list_attr_celeba.txt").write_text("0\nYoung\n")
    with pytest.raises(DataError, match=r"CelebA image folder not found: .*img_align_celeba "
                                        r"\(expected img_align_celeba/\*\.jpg, list_attr_celeba\.txt and "
                                        r"list_eval_partition\.txt in"):
        load_split(DataConfig(dataset="celeba", root=str(tmp_path), cache_dir=str(tmp_path / "cache")), "train")


def test_ffhq_folder_without_images(tmp_path):
    (tmp_path / "README.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"FFHQ folder .* holds 0 image\(s\); expected a folder of images "
                                        r"\(subfolders allowed\) with at least 2; found: README\.txt"):
        load_split(DataConfig(dataset="ffhq", root=str(tmp_path), cache_dir=str(tmp_path / "cache")), "train")


def test_folder_dataset_with_one_class(tmp_path):
    png(tmp_path / "cats" / "a.png")
    with pytest.raises(DataError, match=r"must hold at least two class folders \(ROOT/\{train,val,test\}/"
                                        r"<class>/\* or ROOT/<class>/\*, with 2 or more class folders\); found 1"):
        load_split(DataConfig(dataset="folder", root=str(tmp_path), cache_dir=str(tmp_path / "cache")), "train")


def test_corrupt_image_in_a_real_data_folder(tmp_path):
    png(tmp_path / "train" / "a" / "1.png")
    png(tmp_path / "train" / "b" / "1.png", 200)
    bad = tmp_path / "train" / "b" / "2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not the rest of a PNG")
    # your own folder leaves undecodable images out up to 5 % of a split (tests/test_own_data.py); 1 of 3 is refused
    with pytest.raises(DataError, match=rf"1 of 3 images \(33%\) cannot be decoded, more than the 5% that are left "
                                        rf"out with a warning, e.g. {bad}; replace or delete the broken files"):
        load_split(DataConfig(dataset="folder", root=str(tmp_path), resolution=8,
                              cache_dir=str(tmp_path / "cache")), "train")
    with pytest.raises(DataError, match=rf"cannot decode image {bad}: .*Replace or delete the file, "
                                        rf"or preprocess with skip_bad=True"):  # the other real data sets: at once
        load_real("folder", tmp_path, "train", 8, cache_dir=tmp_path / "cache2")


def test_classifier_on_unlabelled_ffhq_fails_before_loading(tmp_path, no_data_loading):
    from repro.classifier import train_classifier
    from repro.config import ClassifierConfig

    with pytest.raises(ValueError, match=r"dataset 'ffhq' \(root /x/ffhq\) has no labels: a classifier needs "
                                         r"a labelled data set \(for the age task, CelebA"):
        train_classifier(DataConfig(dataset="ffhq", root="/x/ffhq"), ClassifierConfig(), tmp_path, device="cpu")


# -- 12-13. run directory: not writable, full disk (before any data or training) -----------------

def test_run_dir_not_writable(capsys, tmp_path, no_data_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file where a folder should be")  # root ignores chmod; this still fails
    with pytest.raises(PermissionError, match=rf"run directory {blocker / 'runs'} is not writable .*"
                                              rf"choose another with --run-root"):
        check_run_dir(blocker / "runs")
    code, err = run_main(capsys, "train-classifier", "--profile", "quick", "--run-root", str(blocker),
                         "--device", "cpu", "--no-progress")
    assert code == 2
    assert f"error: run directory {blocker / 'quick' / 'synth-age' / 'classifier'} is not writable" in err
    assert "choose another with --run-root" in err


def test_run_dir_on_a_full_disk(capsys, tmp_path, monkeypatch, no_data_loading):
    monkeypatch.setattr("repro.checkpoint.os.statvfs", lambda _path: SimpleNamespace(f_bavail=10, f_frsize=4096))
    with pytest.raises(OSError, match=r"has only 0 MB free; checkpoints need at least 50 MB\. "
                                      r"Free space or choose another --run-root"):
        check_run_dir(tmp_path / "runs")
    code, err = run_main(capsys, "train-classifier", "--profile", "quick", "--run-root", str(tmp_path / "runs"),
                         "--device", "cpu", "--no-progress")
    assert code == 2
    assert "error: run directory" in err and "has only 0 MB free" in err and "choose another --run-root" in err


# -- 14-17. AttFind, flip rate and the baselines asked for more coordinates than exist -----------

def test_attfind_num_indices_larger_than_the_coordinates():
    n, S = 4, 3
    effects = EffectResult(torch.zeros(n, 2, S, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 2))
    message = (r"AttFindConfig\.num_indices = 7 asks for more coordinates than exist: the effect tensor has "
               r"S = 3 style coordinates, i\.e\. 6 \(direction, coordinate\) pairs per class; "
               r"set num_indices to at most 6")
    with pytest.raises(ValueError, match=message):
        run_attfind(effects, AttFindConfig(num_indices=7))
    with pytest.raises(ValueError, match=message):
        select_class(effects.effect, effects.base_logits, 0, AttFindConfig(num_indices=7))


def _styles(n: int = 6, dims: tuple[int, ...] = (3, 2)):
    flat = torch.randn(n, sum(dims), generator=torch.Generator().manual_seed(0))
    return list(torch.split(flat, list(dims), 1)), [torch.zeros(n, 4)]


def test_flip_rate_k_larger_than_the_coordinates():
    conv, rgb = _styles()  # S = 5
    attrs = Attributes("test", [(0, 0), (1, 1)], [0.0, 0.0])
    message = r"k = 6 asks to edit more coordinates than exist: the styles have S = 5 coordinates; ask for k <= 5"
    # G and the classifier are never touched: the check comes before any render
    with pytest.raises(ValueError, match=message):
        flip_rate(None, None, conv, rgb, None, attrs, k=6)
    with pytest.raises(ValueError, match=message):
        flip_rate_curve(None, None, conv, rgb, None, attrs, ks=[1, 3, 6])
    with pytest.raises(ValueError, match=r"k must be >= 1, got \[0\]; the flip rate edits the top k"):
        flip_rate(None, None, conv, rgb, None, attrs, k=0)


@pytest.mark.parametrize("k", [0, -1, 6], ids=["k=0", "k=-1", "k=S+1"])
def test_wu_baseline_k_out_of_range(k):
    conv, _ = _styles()
    probs = torch.tensor([[0.95, 0.05]] * 3 + [[0.1, 0.9]] * 3)
    with pytest.raises(ValueError, match=rf"Wu baseline: k = {k} is outside \[1, 5\] .* ask for 1 to 5 coordinates"):
        wu_attributes(torch.cat(conv, 1), probs, target_class=0, k=k)


def test_random_baseline_k_larger_than_the_coordinates():
    with pytest.raises(ValueError, match=r"random baseline: k = 9 is outside \[1, 5\] .* ask for 1 to 5"):
        random_attributes(5, 9, seed=0)


# -- 18-21. explain: asked for too much, before training, or with a broken model ----------------

def _tiny_profile(tmp_path: Path, **eval_fields) -> Profile:
    profile = get_profile("quick", run_root=str(tmp_path / "runs"))
    data = profile.tasks[0].stylex_data
    data.n_val, data.n_test, data.cache_dir = 4, 8, str(tmp_path / "cache")
    profile.eval = EvalConfig(**{**to_dict(profile.eval), **eval_fields})
    return profile


def _fake_trained_run(profile: Profile, monkeypatch, num_styles: int = 40) -> None:
    """Files where a trained model and classifier would be, and loaders that return stand-ins."""
    task = profile.tasks[0]
    for component, name in (("stylex", "model.pt"), ("classifier", "classifier.pt")):
        path = profile.run_dir(task.name, component) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stand-in")
    model = SimpleNamespace(generator=SimpleNamespace(num_styles=num_styles), encoder=object())
    monkeypatch.setattr("repro.explain.load_stylex", lambda *a, **k: SimpleNamespace(model=model))
    monkeypatch.setattr("repro.explain.load_classifier", lambda *a, **k: SimpleNamespace(model=None))

    def no_encoding(*_a, **_k):
        raise AssertionError("images were encoded before the bad input was reported")
    monkeypatch.setattr("repro.explain.latents", no_encoding)


def test_explain_more_repeats_x_images_than_held_out_images(tmp_path, monkeypatch):
    from repro.explain import explain_model

    profile = _tiny_profile(tmp_path, repeats=2, images_per_repeat=16)
    _fake_trained_run(profile, monkeypatch)
    with pytest.raises(ValueError, match=r"2 repeats x 16 images need 32 held-out images but synth-age/test has 8; "
                                         r"lower EvalConfig\.repeats or EvalConfig\.images_per_repeat so that "
                                         r"their product is at most 8"):
        explain_model(profile, profile.tasks[0], "stylex", device="cpu")


def test_explain_k_larger_than_the_model_coordinates(tmp_path, monkeypatch, no_data_loading):
    from repro.explain import explain_model

    profile = _tiny_profile(tmp_path, k=4, k_max=60)
    _fake_trained_run(profile, monkeypatch, num_styles=40)
    with pytest.raises(ValueError, match=r"EvalConfig asks to edit k = 60 coordinates \(k = 4, k_max = 60, .*\) "
                                         r"but the model has only S = 40 style coordinates; set k, k_max and "
                                         r"curve_ks to at most 40"):
        explain_model(profile, profile.tasks[0], "stylex", device="cpu")


def test_explain_unknown_attfind_preset_fails_first(tmp_path, no_data_loading):
    from repro.explain import explain_model

    profile = _tiny_profile(tmp_path, attfind_preset="nope")  # and no trained model: the preset is reported first
    with pytest.raises(ValueError, match=r"unknown AttFind preset 'nope'; choose one of: authors, replication"):
        explain_model(profile, profile.tasks[0], "stylex", device="cpu")


def test_explain_before_training_cli(capsys, tmp_path, no_data_loading):
    code, err = run_main(capsys, "explain", "--profile", "quick", "--mode", "stylex", "--run-root", str(tmp_path),
                         "--device", "cpu", "--no-progress")
    assert code == 2
    assert f"error: no trained model {tmp_path / 'quick' / 'synth-age' / 'stylex' / 'model.pt'} to explain" in err
    assert "run `python -m repro train-stylex --mode stylex --profile quick --task synth-age` first" in err


def test_explain_with_a_truncated_checkpoint_cli(capsys, tmp_path, no_data_loading):
    profile = get_profile("quick", run_root=str(tmp_path))
    for component, name in (("stylex", "model.pt"), ("classifier", "classifier.pt")):
        path = profile.run_dir("synth-age", component) / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"PK\x03\x04 cut short")
    code, err = run_main(capsys, "explain", "--profile", "quick", "--mode", "stylex", "--run-root", str(tmp_path),
                         "--device", "cpu", "--no-progress")
    assert code == 2
    assert f"error: checkpoint {profile.run_dir('synth-age', 'stylex') / 'model.pt'} is unreadable or truncated" in err
    assert "delete it and resume from an earlier one" in err


# -- 22-24. user study: participant ids, a damaged manifest ----------------------------------------

@pytest.mark.parametrize("bad", ["../../x", "", "p" * 65], ids=["path-traversal", "empty", "65-chars"])
def test_unsafe_participant_id(tmp_path, bad):
    from repro.userstudy import AnswerLog

    answers = tmp_path / "study" / "answers"
    with pytest.raises(ValueError, match=rf"participant id {bad!r} is not allowed: use 1-64 letters, digits, "
                                         rf"'_' or '-'"):
        AnswerLog(answers, bad)
    assert not (tmp_path / "x.jsonl").exists() and not answers.exists()


def test_questionnaire_manifest_cut_short(tmp_path):
    from repro.userstudy import load_manifest

    (tmp_path / "manifest.json").write_text('{"format": "stylex-user-study/1", "questions": [{"id"')
    with pytest.raises(ValueError, match=r"manifest\.json is not valid JSON \(.*\): it was cut short or edited by "
                                         r"hand; make the questionnaire again \(make_questionnaire\)"):
        load_manifest(tmp_path)


# -- 25-29. device, config files and numbers --------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here, so --device cuda is not an error")
def test_device_cuda_without_cuda(capsys, tmp_path, no_data_loading):
    code, err = run_main(capsys, "train-classifier", "--profile", "quick", "--device", "cuda",
                         "--run-root", str(tmp_path), "--no-progress")
    assert code == 2
    assert "error: device 'cuda' was asked for but CUDA is not available here; use --device cpu" in err


def test_unknown_device_name(capsys, tmp_path, no_data_loading):
    code, err = run_main(capsys, "train-classifier", "--profile", "quick", "--device", "gpu",
                         "--run-root", str(tmp_path), "--no-progress")
    assert code == 2
    assert "error: unknown device 'gpu'; use auto, cpu, cuda or cuda:N" in err


def test_unknown_precision_and_tf32_on_cpu(capsys, tmp_path):
    from repro.precision import validate

    code, err = run_main(capsys, "train-stylex", "--profile", "quick", "--precision", "fp16")
    assert code == 2 and "invalid choice: 'fp16'" in err
    with pytest.raises(ValueError, match="'tf32' only changes CUDA matmuls .* use --precision fp32"):
        validate("tf32", torch.device("cpu"))


def test_config_json_with_an_unknown_field(tmp_path):
    data = to_dict(get_profile("quick"))
    data["stylex"]["iteratons"] = data["stylex"].pop("iterations")  # a typo in a hand-edited config.json
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"StylExConfig has no field\(s\) \['iteratons'\]; remove or rename them "
                                         r"\(its fields are: .*\biterations\b"):
        from_dict(Profile, json.loads(path.read_text()))


@pytest.mark.parametrize("cls, field, value, fix", [
    (StylExConfig, "batch_size", 0, "must be a positive integer, got 0; set it to 1 or more"),
    (StylExConfig, "iterations", "800", "must be a positive integer, got '800'; set it to 1 or more"),
    (EvalConfig, "wu_threshold", 1.5, "must lie strictly between 0 and 1 .*got 1.5; the replication used 0.9"),
    (StylExConfig, "precision", "fp16", "'fp16' is unknown; choose one of: fp32, tf32, bf16"),
], ids=["batch_size=0", "iterations-as-text", "wu_threshold=1.5", "precision=fp16"])
def test_config_value_out_of_range(cls, field, value, fix):
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field} {fix}"):
        from_dict(cls, {field: value})


@pytest.mark.parametrize("value", ["0", "-5"], ids=["iterations=0", "iterations=-5"])
def test_non_positive_iterations_cli(capsys, monkeypatch, value):
    monkeypatch.setattr("repro.training.train_profile_model", lambda *a, **k: pytest.fail("training started"))
    code, err = run_main(capsys, "train-stylex", "--profile", "quick", "--iterations", value)
    assert code == 2
    assert f"--iterations must be a positive number of training steps, got {value}" in err
    assert "give 1 or more, or leave it out to use the profile's" in err


def test_batch_size_not_divisible_by_the_processes(tmp_path, monkeypatch):
    """Reported before any data is loaded; the message names both numbers and the two fixes."""
    from repro import training

    monkeypatch.setattr(training, "_dist_info", lambda: (0, 0, 3))
    monkeypatch.setattr(training, "_init_distributed", lambda device: None)
    monkeypatch.setattr(training.dist, "barrier", lambda: None)
    monkeypatch.setattr(training, "load_split", lambda *a, **k: pytest.fail("data was loaded first"))
    config = StylExConfig(channels=8, latent_dim=16, batch_size=16, iterations=1, mapping_layers=1)
    with pytest.raises(ValueError, match=r"batch_size 16 is not divisible by 3 processes.*multiple of 3.*"
                                         r"--nproc-per-node\) that divides 16"):
        training.train_stylex("stylex", DataConfig(), config, None, tmp_path / "run", device="cpu")


# -- how the command line reports them ------------------------------------------------------------

@pytest.mark.parametrize("error", [
    CheckpointError("checkpoint x.pt is unreadable or truncated; delete it"),
    DataError("cannot decode image a.png"),
    OSError(28, "No space left on device"),
    FileExistsError("out/ holds another questionnaire"),
    PermissionError("run directory r is not writable"),
], ids=["CheckpointError", "DataError", "OSError-ENOSPC", "FileExistsError", "PermissionError"])
def test_cli_reports_user_errors_in_one_line(capsys, monkeypatch, error):
    def command(_args):
        raise error
    monkeypatch.setitem(cli.COMMANDS, "profiles", (command, "raises"))
    code, err = run_main(capsys, "profiles")
    assert code == 2 and err == f"error: {error}\n"


class Stopped(KeyboardInterrupt):
    """Like repro.training's stop by SIGTERM: a KeyboardInterrupt that carries its shell exit code."""
    exit_code = 143


@pytest.mark.parametrize("error, code", [(KeyboardInterrupt(), 130), (Stopped("stopped by SIGTERM at iteration 7"), 143)],
                         ids=["ctrl-c", "stopped-by-sigterm"])
def test_cli_interrupt_is_one_line(capsys, monkeypatch, error, code):
    def command(_args):
        raise error
    monkeypatch.setitem(cli.COMMANDS, "profiles", (command, "raises"))
    got, err = run_main(capsys, "profiles")
    assert got == code and err.startswith("interrupted: ") and err.count("\n") == 1


def test_measure_refuses_a_refine_grid_without_refinement_and_a_negative_step_count(capsys, no_data_loading):
    code, err = run_main(capsys, "measure", "--profile", "quick", "--refine-grid", "grid.png")
    assert code == 2 and "give --refine-steps N (N > 0) too" in err
    code, err = run_main(capsys, "measure", "--profile", "quick", "--refine-steps", "-3")
    assert code == 2 and "EvalConfig.refine_steps must be a whole number >= 0" in err
