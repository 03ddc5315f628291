"""The StylEx training loop: every mode runs, resume is exact, DDP works on CPU (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro.config import DataConfig, StylExConfig
from repro.losses import LossWeights
from repro.model import StylExArch, load_stylex
from repro.networks import build_classifier
from repro.training import train_stylex


def tiny_config(**overrides) -> StylExConfig:
    base = dict(channels=8, latent_dim=32, batch_size=4, iterations=4, mapping_layers=2, log_every=1,
                sample_every=2, checkpoint_every=2, keep_checkpoints=5,
                losses=LossWeights(r1_interval=2, pl_interval=2))
    base.update(overrides)
    return StylExConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DataConfig:
    cache = tmp_path_factory.mktemp("cache")
    return DataConfig(task="synth-age", resolution=32, n_train=64, n_val=16, n_test=16, cache_dir=str(cache))


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier(2).eval()


@pytest.mark.parametrize("mode", ["stylex", "stylex-alt", "stylegan2"])
def test_every_mode_trains_and_finishes(mode, data, classifier, tmp_path):
    result = train_stylex(mode, data, tiny_config(), classifier, tmp_path, device="cpu", progress=False)
    assert result.iteration == 4
    assert (tmp_path / "model.pt").exists() and (tmp_path / "config.json").exists()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4]
    if mode == "stylex":
        assert {"adv", "img_l1", "latent_l1", "classifier_kl", "d_adv"} <= set(log[0])
    if mode == "stylex-alt":
        assert [r["z_pass"] for r in log] == [False, True, False, True]
    if mode == "stylegan2":
        assert "img_l1" not in log[0] and result.model.encoder is None
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["lpips"]  # recorded either way: "available (...)" or "unavailable ..."
    assert list((tmp_path / "samples").glob("*.png"))
    loaded = load_stylex(tmp_path)
    for a, b in zip(loaded.model.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.model.arch == StylExArch.of(mode, 32, tiny_config())
    assert torch.load(tmp_path / "model.pt", weights_only=True)["arch"] == loaded.model.arch.to_dict()


@pytest.mark.parametrize("rampdown", [None, 1.0])
def test_resume_continues_bit_identically(data, classifier, tmp_path, rampdown):
    # With a ramp-down every iteration has its own learning rate: a resumed run must take the
    # configured rates as the base, not the last scheduled ones its optimiser state holds.
    config = tiny_config(lr_rampdown=rampdown)
    straight = train_stylex("stylex-alt", data, config, classifier, tmp_path / "a", device="cpu", progress=False)
    train_stylex("stylex-alt", data, config, classifier, tmp_path / "b", device="cpu", progress=False, iterations=2)
    (tmp_path / "b" / "model.pt").unlink()  # pretend the 2-iteration run was interrupted after its checkpoint
    resumed = train_stylex("stylex-alt", data, config, classifier, tmp_path / "b", device="cpu", progress=False)
    assert resumed.iteration == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_finished_run_is_reused_not_retrained(data, classifier, tmp_path):
    train_stylex("stylex", data, tiny_config(), classifier, tmp_path, device="cpu", progress=False)
    stamp = (tmp_path / "model.pt").stat().st_mtime_ns
    train_stylex("stylex", data, tiny_config(), classifier, tmp_path, device="cpu", progress=False)
    assert (tmp_path / "model.pt").stat().st_mtime_ns == stamp


def test_encoder_ema_is_paired_with_generator_ema(data, classifier, tmp_path):
    """Evaluation must use the EMA encoder with the EMA generator (a defect of the seed code)."""
    result = train_stylex("stylex", data, tiny_config(), classifier, tmp_path, device="cpu", progress=False)
    state = torch.load(sorted((tmp_path / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    ema_enc = {k: v for k, v in state["ema"].items() if k.startswith("encoder.")}
    raw_enc = {k: v for k, v in state["model"].items() if k.startswith("encoder.")}
    final_enc = {k: v for k, v in result.model.state_dict().items() if k.startswith("encoder.")}
    assert all(torch.equal(final_enc[k], ema_enc[k]) for k in ema_enc)
    assert any(not torch.equal(ema_enc[k], raw_enc[k]) for k in ema_enc)


DDP_SCRIPT = """
import json, os, sys, torch
from repro.config import DataConfig
from repro.networks import build_classifier
sys.path.insert(0, {tests!r})
from test_training import tiny_config
torch.manual_seed(0)
data = DataConfig(task="synth-age", resolution=32, n_train=64, n_val=16, n_test=16, cache_dir={cache!r})
from repro.training import train_stylex
result = train_stylex("stylex", data, tiny_config(iterations=3), build_classifier(2), {run!r}, device="cpu", progress=False)
checksum = sum(p.double().sum().item() for p in result.model.parameters())
with open(os.path.join({run!r}, "rank%s.json" % os.environ["RANK"]), "w") as f:
    json.dump({{"checksum": checksum, "iteration": result.iteration}}, f)
"""


def test_ddp_two_gloo_processes(data, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), cache=data.cache_dir, run=str(run)))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29517", str(script)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == 3
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6), "replicas diverged"
    assert (run / "model.pt").exists()
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["world_size"] == 2 and meta["batch_per_process"] == 2


def test_mapping_depth_binds_only_models_that_have_a_mapping_network(data, classifier, tmp_path):
    from repro.checkpoint import ConfigMismatch

    train_stylex("stylex", data, tiny_config(mapping_layers=8), classifier, tmp_path / "x", device="cpu", progress=False)
    (tmp_path / "x" / "model.pt").unlink()  # resume from the checkpoint under another mapping depth
    resumed = train_stylex("stylex", data, tiny_config(mapping_layers=2, iterations=6), classifier, tmp_path / "x",
                           device="cpu", progress=False)
    assert resumed.iteration == 6
    train_stylex("stylegan2", data, tiny_config(mapping_layers=8), classifier, tmp_path / "g", device="cpu",
                 progress=False)
    with pytest.raises(ConfigMismatch, match="mapping_layers"):
        train_stylex("stylegan2", data, tiny_config(mapping_layers=2), classifier, tmp_path / "g", device="cpu",
                     progress=False)


def test_ema_ramps_up_then_holds_the_configured_decay():
    from repro.training import ema_beta

    config = tiny_config(batch_size=16, ema_decay=0.995, ema_rampup=0.05)
    early, late = ema_beta(config, 16 * 10), ema_beta(config, 16 * 100_000)
    assert early < 0.5  # after 10 iterations the EMA follows the weights closely (half-life 8 images)
    assert late == pytest.approx(0.995)
    assert ema_beta(tiny_config(batch_size=16, ema_decay=0.995, ema_rampup=None), 16) == pytest.approx(0.995)


def test_lr_factor_holds_then_falls_on_a_half_cosine():
    from repro.training import lr_factor

    constant = tiny_config(iterations=100)
    assert {lr_factor(constant, i) for i in (0, 50, 99)} == {1.0}
    half = tiny_config(iterations=100, lr_rampdown=0.5)
    assert lr_factor(half, 0) == lr_factor(half, 50) == 1.0
    assert lr_factor(half, 75) == pytest.approx(0.5)
    assert 0 < lr_factor(half, 99) < 0.01 and lr_factor(half, 100) == pytest.approx(0.0)
    factors = [lr_factor(half, i) for i in range(50, 100)]
    assert all(a > b for a, b in zip(factors, factors[1:]))
    with pytest.raises(ValueError, match="lr_rampdown"):
        tiny_config(lr_rampdown=1.5)


def test_lr_rampdown_reaches_the_optimisers(data, classifier, tmp_path):
    constant = train_stylex("stylex", data, tiny_config(), classifier, tmp_path / "c", device="cpu", progress=False)
    ramped = train_stylex("stylex", data, tiny_config(lr_rampdown=1.0), classifier, tmp_path / "r", device="cpu",
                          progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(constant.model.state_dict().values(),
                                                     ramped.model.state_dict().values()))
    state = torch.load(sorted((tmp_path / "r" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    config = tiny_config()
    # the last step (iteration 3 of 4) ran at lr x lr_factor = lr x (1 + cos(3 pi / 4)) / 2
    assert state["opt_e"]["param_groups"][0]["lr"] == pytest.approx(config.lr * 0.5 * (1 - 2 ** -0.5))
