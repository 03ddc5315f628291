"""Shipped weights (repro.weights): ship the finished stages of a tiny quick-profile run, install
them into an empty run folder, and check that the trainers then reuse them without training; a
damaged file is refused, a finished stage is never overwritten, the size cap holds."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import bounded_env
from repro import weights
from repro.checkpoint import save_checkpoint
from repro.classifier import run_config, train_classifier
from repro.config import StylExConfig, get_profile
from repro.losses import LossWeights
from repro.model import load_stylex
from repro.networks import build_classifier
from repro.observer import train_observer
from repro.training import train_profile_model

STAGES = ["synth-age/classifier", "synth-age/observer", "synth-age/stylex", "synth-age/stylex-seed1"]


def tiny_profile(run_root: Path, cache: Path, **stylex):
    """The quick profile, shrunk: 64 training images, one epoch, two 2-iteration stylex seeds."""
    profile = get_profile("quick", run_root=str(run_root))
    task = profile.tasks[0]
    data = task.classifier_data  # the StylEx data is the same object
    data.cache_dir, data.n_train, data.n_val, data.n_test = str(cache), 64, 16, 16
    task.modes = ["stylex"]
    profile.classifier = dataclasses.replace(profile.classifier, epochs=1, batch_size=32)
    profile.observer = dataclasses.replace(profile.observer, epochs=1, batch_size=32)
    profile.stylex = StylExConfig(**{**dict(channels=8, latent_dim=32, batch_size=4, iterations=2, mapping_layers=2,
                                            log_every=1, sample_every=2, checkpoint_every=2,
                                            losses=LossWeights(lpips=0.0, r1_interval=2, pl_interval=2)), **stylex})
    profile.seeds = [0, 1]
    return profile


def train_all(profile):
    """Every stage of the tiny profile (trained, or reused when finished); results by stage key."""
    task = profile.tasks[0]
    out = {"synth-age/classifier": train_classifier(task.classifier_data, profile.classifier,
                                                    profile.run_dir(task.name, "classifier"), device="cpu",
                                                    progress=False),
           "synth-age/observer": train_observer(profile, task, device="cpu", progress=False)}
    for seed in profile.seeds:
        out[f"synth-age/{profile.model_dir(task.name, 'stylex', seed).name}"] = train_profile_model(
            profile, task, "stylex", device="cpu", progress=False, seed=seed)
    return out


def files_of(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime_ns), to show nothing was written."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A trained tiny run (run root A) and its shipped weights folder."""
    base = tmp_path_factory.mktemp("weights")
    profile = tiny_profile(base / "runs-a", base / "cache")
    trained = train_all(profile)
    manifest = weights.ship(profile, base / "weights")
    return {"base": base, "profile": profile, "trained": trained, "manifest": manifest, "root": base / "weights"}


def fresh(shipped, name: str, **stylex):
    return tiny_profile(shipped["base"] / name, shipped["base"] / "cache", **stylex)


def state_of(result) -> dict[str, torch.Tensor]:
    return result.model.state_dict()


def test_ship_writes_hub_named_networks_a_manifest_and_a_model_card(shipped):
    manifest, folder = shipped["manifest"], shipped["root"] / "quick"
    assert [e["stage"] for e in manifest["stages"]] == STAGES and manifest["not_shipped"] == {}
    total = 0
    for entry in manifest["stages"]:
        weights_file = entry["files"][0]
        path = folder / weights_file["file"]
        assert torch.hub.HASH_REGEX.search(path.name).group(1) == weights_file["sha256"][:8]  # torch hub's check
        assert path.name == weights.hub_name(weights_file["name"], weights_file["sha256"])
        for f in entry["files"]:
            assert weights.sha256_file(folder / f["file"]) == f["sha256"]
            total += f["bytes"]
        state = torch.load(path, map_location="cpu", weights_only=True)
        if entry["kind"] == "model":
            assert set(state) == {"config", "arch", "ema", "metadata", "complete"}  # networks only: no optimiser, no D
            assert {f["name"] for f in entry["files"]} >= {"model.pt", "config.json", "metadata.json", "log.jsonl"}
        else:
            assert set(state) == {"config", "model", "complete"}
            assert "epoch.pt" not in {f["name"] for f in entry["files"]}
        for f in entry["files"]:  # the logs travel gzip-compressed, reproducibly, and decompress to the run's text
            if f["name"].endswith(".jsonl"):
                assert f["file"].endswith(f"/{f['name']}.gz") and f["compression"] == "gzip"
                profile = shipped["profile"]
                text = (Path(profile.run_root) / profile.name / entry["stage"] / f["name"]).read_bytes()
                assert gzip.decompress((folder / f["file"]).read_bytes()) == text
                assert f["source_sha256"] == hashlib.sha256(text).hexdigest()
                assert (folder / f["file"]).read_bytes()[4:8] == b"\0\0\0\0"  # no time stamp in the header
            else:
                assert "compression" not in f
        card = entry["card"]
        assert card["command"].startswith("python -m repro train-") and card["git_commit"]
        assert card["seed"] == entry["seed"] and isinstance(card["wall_seconds"], float)
        assert {"platform", "cpu_count", "torch", "device"} <= set(card["machine"])
        if entry["kind"] == "model":
            assert card["iterations"] == 2 and card["metrics"]["final_logged_losses"]
        else:
            assert card["epochs"] == 1 and 0 <= card["metrics"]["test_accuracy"] <= 1
    assert manifest["stages"][3]["card"]["command"].endswith("--mode stylex --seed 1")
    assert manifest["total_bytes"] == total
    assert json.loads((folder / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    card_text = (folder / "MODEL_CARD.md").read_text()
    assert all(f"`{key}`" in card_text for key in STAGES) and "test accuracy" in card_text


def test_installed_weights_are_reused_not_trained(shipped, monkeypatch):
    profile = fresh(shipped, "runs-b")
    report = weights.install(profile, shipped["root"])
    assert report.installed == STAGES and report.present == [] and report.skipped == {}
    run_root = Path(profile.run_root)
    before = files_of(run_root)

    def no_training(*args, **kwargs):
        raise AssertionError("a trainer loaded its data: it trained instead of reusing the shipped weights")

    monkeypatch.setattr("repro.classifier.load_split", no_training)
    monkeypatch.setattr("repro.training.load_split", no_training)
    reused = train_all(profile)
    assert files_of(run_root) == before  # no new log lines, checkpoints, epoch.pt or samples
    assert not list(run_root.rglob("checkpoints")) and not list(run_root.rglob("epoch.pt"))
    for key, result in reused.items():
        original = shipped["trained"][key]
        for (name, a), b in zip(state_of(original).items(), state_of(result).values()):
            assert torch.equal(a, b), f"{key}: {name}"
    a_dir, b_dir = shipped["profile"].run_dir("synth-age", "stylex"), profile.run_dir("synth-age", "stylex")
    assert (b_dir / "log.jsonl").read_text() == (a_dir / "log.jsonl").read_text()
    assert load_stylex(b_dir).metadata == load_stylex(a_dir).metadata
    assert weights.installed_stages(profile) == STAGES

    again = weights.install(profile, shipped["root"])  # a second run: everything is there already
    assert again.installed == [] and again.present == STAGES and again.present_shipped == STAGES
    assert "4 of them installed from shipped weights earlier" in again.summary()
    assert files_of(run_root) == before


def test_a_damaged_file_is_refused_and_nothing_is_placed(shipped, tmp_path):
    damaged = tmp_path / "weights"
    shutil.copytree(shipped["root"], damaged)
    entry = shipped["manifest"]["stages"][3]
    target = damaged / "quick" / entry["files"][0]["file"]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one byte changed
    target.write_bytes(bytes(data))

    profile = fresh(shipped, "runs-c")
    with pytest.raises(weights.WeightsError, match=rf"{target.name} has sha256 [0-9a-f]{{64}}, but the manifest "
                                                   rf"says {entry['files'][0]['sha256']}.*re-fetch.*--retrain"):
        weights.install(profile, damaged)
    assert not Path(profile.run_root).exists() or files_of(Path(profile.run_root)) == {}  # verified before placing

    finished = fresh(shipped, "runs-b2")  # a run folder where every stage is finished: nothing to verify or place
    weights.install(finished, shipped["root"])
    before = files_of(Path(finished.run_root))
    assert weights.install(finished, damaged).present == STAGES
    assert files_of(Path(finished.run_root)) == before


def test_a_finished_stage_is_never_overwritten_and_remove_takes_back_only_the_installed(shipped):
    profile = fresh(shipped, "runs-d")
    task = profile.tasks[0]
    mine = profile.run_dir(task.name, "classifier")  # a finished classifier of the user's own
    torch.manual_seed(123)
    save_checkpoint(mine / "classifier.pt", {"model": build_classifier(2).state_dict(),
                                             "config": run_config(task.classifier_data, profile.classifier)})
    (mine / "metrics.json").write_text(json.dumps({"mine": True}) + "\n")
    before = files_of(mine)

    report = weights.install(profile, shipped["root"])
    assert report.present == ["synth-age/classifier"] and report.installed == STAGES[1:]
    assert files_of(mine) == before and not (mine / weights.MARKER).exists()
    assert json.loads((mine / "metrics.json").read_text()) == {"mine": True}

    seed1 = profile.model_dir(task.name, "stylex", 1)  # an installed stage the user trained over since
    (seed1 / "model.pt").write_bytes((seed1 / "model.pt").read_bytes() + b"changed")
    assert weights.uninstall(profile) == STAGES[1:]
    assert files_of(mine) == before  # the user's own stage is untouched
    assert not (profile.run_dir(task.name, "observer") / "classifier.pt").exists()
    assert not (profile.model_dir(task.name, "stylex") / "model.pt").exists()
    assert not (profile.model_dir(task.name, "stylex") / "log.jsonl").exists()  # decompressed on install, removed
    assert (seed1 / "model.pt").exists()  # changed since it was installed: kept
    assert not list(Path(profile.run_root).rglob(weights.MARKER))


def test_a_stage_shipped_with_another_recipe_is_not_installed(shipped):
    profile = fresh(shipped, "runs-e", lr=1e-3)
    report = weights.install(profile, shipped["root"])
    assert report.installed == STAGES[:2]
    assert set(report.skipped) == set(STAGES[2:])
    assert "stylex.lr: expected 0.001, found 0.002" in report.skipped["synth-age/stylex"]
    assert not (profile.model_dir("synth-age", "stylex") / "model.pt").exists()


def test_the_size_cap_and_the_command_line(shipped, tmp_path):
    profile = shipped["profile"]
    with pytest.raises(weights.WeightsError, match=r"take \d+\.\d MB, over the cap of 0\.0 MB.*--max-mb"):
        weights.ship(profile, tmp_path / "capped", max_bytes=1000)
    assert not (tmp_path / "capped").exists()
    some = weights.ship(profile, tmp_path / "some", stages=["*/stylex*"], max_bytes=None)
    assert [e["stage"] for e in some["stages"]] == STAGES[2:]
    assert set(some["not_shipped"]) == set(STAGES[:2]) and "not selected" in some["not_shipped"][STAGES[0]]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True,
                              env=bounded_env(), timeout=300)

    out = cli("ship-weights", "--profile", "quick", "--run-root", profile.run_root, "--weights-root",
              str(tmp_path / "capped"), "--max-mb", "0.001")
    # The real quick profile trains longer than the tiny one: its stages are not shipped under its name.
    assert out.returncode == 2 and "error: profile 'quick' has no finished stage" in out.stderr
    nothing = cli("install-weights", "--profile", "quick", "--run-root", str(tmp_path / "runs"), "--weights-root",
                  str(tmp_path / "none"))
    assert nothing.returncode == 0 and nothing.stdout == "" and not (tmp_path / "runs").exists()
    assert weights.install(profile, tmp_path / "none").source is None


def test_models_shipped_as_float16_are_half_the_size_and_load_into_float32(shipped, tmp_path, monkeypatch):
    manifest = weights.ship(shipped["profile"], tmp_path / "weights16", model_dtype="float16")
    full = {e["stage"]: e["files"][0] for e in shipped["manifest"]["stages"]}
    for entry in manifest["stages"]:
        f = entry["files"][0]
        if entry["kind"] == "model":  # every float32 tensor's bytes halve; the config and metadata stay
            assert f["stored_dtype"] == "float16" and f["source_sha256"] == full[entry["stage"]]["sha256"]
            original = shipped["root"] / shipped["profile"].name / full[entry["stage"]]["file"]
            state = torch.load(original, weights_only=True)
            fp32 = sum(t.numel() * 4 for t in state["ema"].values() if t.dtype == torch.float32)
            assert full[entry["stage"]]["bytes"] - f["bytes"] >= 0.95 * fp32 / 2
        else:  # classifiers are shipped as trained
            assert "stored_dtype" not in f and f["sha256"] == full[entry["stage"]]["sha256"]
    assert "stored as float16" in (tmp_path / "weights16" / shipped["profile"].name / weights.CARD).read_text()

    profile = fresh(shipped, "runs-half")
    assert weights.install(profile, tmp_path / "weights16").installed == STAGES
    monkeypatch.setattr("repro.training.load_split", lambda *a, **k: pytest.fail("trained instead of reusing"))
    reused = train_all(profile)
    for key in ("synth-age/stylex", "synth-age/stylex-seed1"):
        for (name, a), b in zip(state_of(shipped["trained"][key]).items(), state_of(reused[key]).values()):
            assert b.dtype == a.dtype, name  # loaded back into the float32 networks
            assert torch.equal(b, a.half().to(a.dtype)), name  # the float16 rounding of the trained weights


def test_classifiers_shipped_as_float16_install_and_are_reused_with_rounded_weights(shipped, tmp_path):
    manifest = weights.ship(shipped["profile"], tmp_path / "weights-c16", stages=["*/classifier", "*/observer"],
                            classifier_dtype="float16")
    full = {e["stage"]: e["files"][0] for e in shipped["manifest"]["stages"]}
    assert [e["stage"] for e in manifest["stages"]] == STAGES[:2]
    for entry in manifest["stages"]:
        f = entry["files"][0]
        assert f["stored_dtype"] == "float16" and f["source_sha256"] == full[entry["stage"]]["sha256"]
        assert f["bytes"] < 0.6 * full[entry["stage"]]["bytes"]
    profile = fresh(shipped, "runs-c16")
    assert weights.install(profile, tmp_path / "weights-c16").installed == STAGES[:2]
    task = profile.tasks[0]
    reused = train_classifier(task.classifier_data, profile.classifier, profile.run_dir(task.name, "classifier"),
                              device="cpu", progress=False)
    trained = shipped["trained"]["synth-age/classifier"].model.state_dict()
    for name, b in reused.model.state_dict().items():
        a = trained[name]
        assert b.dtype == a.dtype, name  # loaded back into the float32 network
        assert torch.equal(b, a.half().to(a.dtype) if a.dtype == torch.float32 else a), name
    with pytest.raises(weights.WeightsError, match="classifier_dtype"):
        weights.ship(shipped["profile"], tmp_path / "bad", classifier_dtype="int8")


def test_a_shipped_log_that_does_not_decompress_to_its_recorded_text_is_not_written(tmp_path):
    text = b'{"iteration": 10}\n'
    packed = tmp_path / "log.jsonl.gz"
    packed.write_bytes(gzip.compress(text))
    with pytest.raises(weights.WeightsError, match="does not decompress to the file that was shipped"):
        weights._gunzip_checked(packed, tmp_path / "run" / "log.jsonl", hashlib.sha256(b"other").hexdigest())
    assert not (tmp_path / "run" / "log.jsonl").exists()
    weights._gunzip_checked(packed, tmp_path / "run" / "log.jsonl", hashlib.sha256(text).hexdigest())
    assert (tmp_path / "run" / "log.jsonl").read_bytes() == text
