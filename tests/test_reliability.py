"""Crash safety of training, for real: SIGKILL at random moments, SIGTERM/SIGINT, injected NaNs.

The kill test runs the command a user runs (``python -m repro train-stylex --profile quick``) in a
subprocess, kills it with SIGKILL at random moments, checks what is on disk after each kill, and
re-runs the command until it finishes. docs/RELIABILITY.md lists these faults and outcomes.

Nothing here depends on how fast or how busy the machine is. The runs that get killed or stopped
are started with an ``--iterations`` they can never reach, and every kill or signal is sent on an
event the run itself produces (a new line in ``log.jsonl``, a new checkpoint file), never after a
guessed number of seconds; the final re-run of the same command is given ``--iterations`` just past
the newest checkpoint, so it has a few iterations left and finishes. Each child process gets one
thread (tests/conftest.py). The only clock is a safety net of many minutes against a hung process.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import bounded_env
from repro import training
from repro.checkpoint import load_checkpoint, save_checkpoint
from repro.config import DataConfig, StylExConfig, get_profile
from repro.losses import StylExLoss
from repro.model import StylExModel, load_stylex
from repro.networks import build_classifier
from repro.training import NonFiniteError, TrainingStopped, train_stylex
from test_training import tiny_config

ROOT = Path(__file__).resolve().parents[1]
ENDLESS = 10_000_000  # --iterations of a run that is always killed or stopped long before its end
KILLS = 6
SAFETY_NET_S = 900.0  # against a hung child only: 15 min, far beyond any slow or busy machine
POLL_S = 0.005


def _cli_command(run_root: Path, iterations: int) -> list[str]:
    return [sys.executable, "-m", "repro", "train-stylex", "--profile", "quick", "--task", "synth-age",
            "--mode", "stylex", "--run-root", str(run_root), "--iterations", str(iterations), "--no-progress"]


@pytest.fixture()
def quick_run(tmp_path) -> tuple[Path, Path]:
    """A quick-profile run root with an (untrained) classifier in place; returns (run_root, run_dir)."""
    profile = get_profile("quick", run_root=str(tmp_path / "runs"))
    clf_dir = profile.run_dir("synth-age", "classifier")
    torch.manual_seed(0)
    save_checkpoint(clf_dir / "classifier.pt", {"model": build_classifier(2).state_dict(), "config": {}})
    (clf_dir / "metrics.json").write_text("{}\n")
    return tmp_path / "runs", profile.run_dir("synth-age", "stylex")


@pytest.fixture()
def start():
    """Start a child (one thread, unbuffered) logging to a file; any still running at the end is killed."""
    procs: list[subprocess.Popen] = []

    def _start(cmd: list[str], log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=bounded_env())
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:  # a run of ENDLESS iterations must not outlive a failed test
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_for(what: str, condition, proc: subprocess.Popen, log: Path):
    """Poll ``condition()`` until it is true and return its value; fail if the run exits first."""
    deadline = time.monotonic() + SAFETY_NET_S
    while True:
        exited = proc.poll() is not None
        value = condition()
        if value:
            return value
        if exited:
            pytest.fail(f"training exited (code {proc.returncode}) while waiting for {what}:\n"
                        f"{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"safety net: still no {what} after {SAFETY_NET_S:.0f} s; the child hangs:\n"
                        f"{log.read_text()[-3000:]}")
        time.sleep(POLL_S)


def _finish(proc: subprocess.Popen, log: Path) -> int:
    """Wait for the child to exit (it has a bounded amount of work left) and return its exit code."""
    try:
        return proc.wait(timeout=SAFETY_NET_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"safety net: the child did not exit within {SAFETY_NET_S:.0f} s:\n{log.read_text()[-3000:]}")


def _wait_for_training(proc: subprocess.Popen, run_dir: Path, log: Path) -> int:
    """Until this attempt has (re)written metadata.json (its log is trimmed, its loop about to start);
    returns the iteration it resumed at."""
    _wait_for("metadata.json (the start of the training loop)", (run_dir / "metadata.json").exists, proc, log)
    return _resumed_at(log)


def _log_records(run_dir: Path) -> list[dict]:
    records = []
    path = run_dir / "log.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by the kill, or being written right now
    return records


def _logged_iterations(run_dir: Path) -> list[int]:
    return [r["iteration"] for r in _log_records(run_dir)]


def _checkpoint_iterations(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("ckpt-*.pt"))


def _resumed_at(log: Path) -> int:
    found = re.findall(r"resuming .* at iteration (\d+)", log.read_text())
    return int(found[-1]) if found else 0


def _check_every_checkpoint(run_dir: Path, every: int) -> int:
    """Every checkpoint on disk loads, is finite and is named after its iteration; returns the newest."""
    newest = 0
    for path in sorted((run_dir / "checkpoints").glob("ckpt-*.pt")):
        state = load_checkpoint(path)  # raises on a truncated or foreign file
        it = int(state["iteration"])
        assert path.name == f"ckpt-{it:07d}.pt" and it % every == 0
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
        newest = max(newest, it)
    return newest


def _kill_schedule(rng: random.Random, every: int, log_every: int) -> list[tuple[str, int]]:
    """Per attempt, the event to kill on, relative to the iteration it resumed at:

    * ("logged", n): once iteration start + n is in log.jsonl, plus a random fraction of one
      iteration's measured time (so the kill lands anywhere in the loop, sample and checkpoint
      writing included when start + n is a checkpoint iteration);
    * ("checkpoint", n): the moment checkpoint start + n appears (while older ones are pruned);
    * ("writing", n): the moment the temporary file of checkpoint start + n appears (its write in
      progress) or, if the poll misses that short window, checkpoint start + n itself does.
    """
    schedule = []
    for _ in range(KILLS):
        kind = rng.choice(["logged", "logged", "checkpoint", "writing"])
        if kind == "logged":
            schedule.append((kind, log_every * rng.randint(1, 2 * every // log_every)))
        else:
            schedule.append((kind, every * rng.randint(1, 2)))
    # Progress is certain, at any speed, once some kill waits for a finished checkpoint or for
    # anything after one (the seeded schedule is fixed: this never depends on the machine).
    assert any(kind == "checkpoint" or n > every for kind, n in schedule), schedule
    return schedule


def test_sigkill_at_random_moments_then_rerun_resumes(quick_run, tmp_path, start):
    run_root, run_dir = quick_run
    profile = get_profile("quick")
    every, log_every = profile.stylex.checkpoint_every, profile.stylex.log_every
    rng = random.Random(20261123)
    schedule = _kill_schedule(rng, every, log_every)
    resumed, mid_write, newest = [], 0, 0
    for attempt, (kind, n) in enumerate(schedule):
        (run_dir / "metadata.json").unlink(missing_ok=True)
        log = tmp_path / f"attempt-{attempt}.log"
        proc = start(_cli_command(run_root, ENDLESS), log)
        begin = _wait_for_training(proc, run_dir, log)
        assert begin == newest, f"attempt {attempt} resumed at {begin}, not at the newest checkpoint {newest}"
        target = begin + n
        if kind == "logged":
            _wait_for(f"iteration {target} in log.jsonl",
                      lambda: max(_logged_iterations(run_dir), default=0) >= target, proc, log)
            sec_per_iter = _log_records(run_dir)[-1].get("sec_per_iter", 0.0)  # measured here and now
            time.sleep(rng.random() * sec_per_iter)  # where in the loop the kill lands; the run can't end
        elif kind == "checkpoint":
            _wait_for(f"checkpoint {target}", lambda: max(_checkpoint_iterations(run_dir), default=0) >= target,
                      proc, log)
        else:
            writing = f".ckpt-{target:07d}.pt.tmp-*"
            found = _wait_for(f"the write of checkpoint {target}",
                              lambda: (list((run_dir / "checkpoints").glob(writing))
                                       or max(_checkpoint_iterations(run_dir), default=0) >= target), proc, log)
            mid_write += isinstance(found, list)  # the temporary file was seen, not only the result
        if proc.poll() is not None:  # it has ENDLESS iterations to go: only a crash ends it
            pytest.fail(f"attempt {attempt} exited (code {proc.returncode}) before its kill:\n"
                        f"{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        logged = _logged_iterations(run_dir)
        newest = _check_every_checkpoint(run_dir, every)  # 0 corrupt checkpoints
        reached = max(logged, default=begin)
        # Progress lost by this kill: at most one checkpoint interval.
        assert reached - newest <= every, (reached, newest)
        assert newest >= begin, "a checkpoint went backwards"
        resumed.append((begin, reached, newest))

    print(f"\n{KILLS} SIGKILLs on {schedule}, {mid_write} with a checkpoint's temporary file seen; "
          f"(resumed at, last logged, newest checkpoint) per attempt: {resumed}")
    assert newest > 0, f"the kills left no checkpoint: {resumed}"
    # The same command to the end, the end being one checkpoint interval past the newest checkpoint.
    final_iters = newest + every
    log = tmp_path / "final.log"
    proc = start(_cli_command(run_root, final_iters), log)
    assert _finish(proc, log) == 0, log.read_text()[-3000:]
    final_start = _resumed_at(log)
    assert final_start == newest, "the re-run resumed from the newest complete checkpoint"
    starts = [s for s, _, _ in resumed] + [final_start]
    assert starts == sorted(starts) and starts[-1] > 0, f"the iteration counter continues: {starts}"
    result = load_stylex(run_dir)
    assert result.iteration == final_iters
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    logged = _logged_iterations(run_dir)
    assert logged == list(range(log_every, final_iters + 1, log_every)), "one log line per logged iteration"
    assert not list((run_dir / "checkpoints").glob(".ckpt-*")), "no half-written file is left"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_stop_with_a_final_checkpoint(quick_run, tmp_path, start, sig, code):
    run_root, run_dir = quick_run
    log = tmp_path / "stop.log"
    proc = start(_cli_command(run_root, ENDLESS), log)
    _wait_for_training(proc, run_dir, log)
    _wait_for("a logged iteration", lambda: _logged_iterations(run_dir), proc, log)  # it runs, handlers in place
    proc.send_signal(sig)
    assert _finish(proc, log) == code, log.read_text()[-3000:]
    text = log.read_text()
    stopped_at = int(re.search(r"stopped by SIG\w+ at iteration (\d+)", text).group(1))
    assert "Traceback" not in text
    assert 0 < stopped_at < ENDLESS
    state = load_checkpoint(run_dir / "checkpoints" / f"ckpt-{stopped_at:07d}.pt")
    assert state["iteration"] == stopped_at  # a checkpoint at the very iteration it stopped
    # The same command again, to an end a few iterations past the stop.
    final_iters = stopped_at + get_profile("quick").stylex.log_every
    again_log = tmp_path / "again.log"
    again = start(_cli_command(run_root, final_iters), again_log)
    assert _finish(again, again_log) == 0, again_log.read_text()[-3000:]
    assert f"at iteration {stopped_at}" in again_log.read_text()
    assert load_stylex(run_dir).iteration == final_iters


# -- in-process faults on a tiny config ---------------------------------------------------------

def _tiny(**overrides) -> StylExConfig:
    """test_training's tiny networks, 8 iterations, a checkpoint every 2, all of them kept."""
    return tiny_config(**{"iterations": 8, "sample_every": 100, "keep_checkpoints": 10, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DataConfig:
    return DataConfig(task="synth-age", resolution=32, n_train=64, n_val=16, n_test=16,
                      cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier(2).eval()


def test_nan_loss_stops_naming_iteration_term_and_last_good_checkpoint(data, classifier, tmp_path, monkeypatch):
    real = StylExLoss.generator_terms
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        terms = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # the generator phase of iteration 5
            terms["img_l1"] = terms["img_l1"] * float("nan")
            terms["total"] = terms["total"] + terms["img_l1"]
        return terms

    monkeypatch.setattr(StylExLoss, "generator_terms", poisoned)
    with pytest.raises(NonFiniteError) as err:
        train_stylex("stylex", data, _tiny(), classifier, tmp_path, device="cpu", progress=False)
    message = str(err.value)
    assert "non-finite img_l1" in message and "iteration 5 " in message
    assert f"Last good checkpoint: {tmp_path / 'checkpoints' / 'ckpt-0000004.pt'}" in message
    assert [p.name for p in sorted((tmp_path / "checkpoints").glob("*.pt"))] == ["ckpt-0000002.pt", "ckpt-0000004.pt"]
    assert not (tmp_path / "model.pt").exists()
    monkeypatch.setattr(StylExLoss, "generator_terms", real)
    resumed = train_stylex("stylex", data, _tiny(), classifier, tmp_path, device="cpu", progress=False)
    assert resumed.iteration == 8  # the fault was transient: the re-run resumes at 4 and finishes


def test_nan_weights_are_never_written_over_a_good_checkpoint(data, classifier, tmp_path, monkeypatch):
    real = training._ema_update
    calls = {"n": 0}

    def poison_after_iteration_3(ema, model, decay):
        real(ema, model, decay)
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                next(model.generator.parameters()).fill_(float("inf"))

    monkeypatch.setattr(training, "_ema_update", poison_after_iteration_3)
    with pytest.raises(NonFiniteError, match="non-finite .* in iteration 4 .*ckpt-0000002.pt"):
        train_stylex("stylex", data, _tiny(), classifier, tmp_path, device="cpu", progress=False)
    # Whatever caught it first (a loss of iteration 4 or the weight check before the checkpoint),
    # nothing non-finite reached the disk.
    assert [p.name for p in (tmp_path / "checkpoints").glob("*.pt")] == ["ckpt-0000002.pt"]
    state = load_checkpoint(tmp_path / "checkpoints" / "ckpt-0000002.pt")
    assert all(torch.isfinite(v).all() for part in ("model", "ema", "disc") for v in state[part].values()
               if v.is_floating_point())


def test_weight_check_names_the_part_and_the_iteration(tmp_path):
    model = StylExModel("stylex", 32, 8, 32, 2)
    assert bool(torch.isfinite(training._weights_finite(model)))
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match="non-finite EMA weights .* in iteration 3 .*none yet"):
        training._check_finite(3, {"EMA weights": training._weights_finite(model)}, tmp_path)


def test_damaged_newest_checkpoint_and_stale_temp_file_are_skipped(data, classifier, tmp_path, capsys):
    train_stylex("stylex", data, _tiny(iterations=6), classifier, tmp_path, device="cpu", progress=False)
    (tmp_path / "model.pt").unlink()
    ckpts = tmp_path / "checkpoints"
    newest = ckpts / "ckpt-0000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut as by a full disk
    (ckpts / ".ckpt-0000008.pt.tmp-12345").write_bytes(b"half")  # left by a killed writer
    result = train_stylex("stylex", data, _tiny(iterations=8), classifier, tmp_path, device="cpu", progress=False)
    out = capsys.readouterr().out
    assert "skipping damaged checkpoint" in out and "resuming" in out and "at iteration 4" in out
    assert result.iteration == 8
    assert not list(ckpts.glob(".ckpt-*"))
    assert _logged_iterations(tmp_path) == list(range(1, 9))


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(data, classifier, tmp_path, monkeypatch):
    import repro.checkpoint as ckpt

    real_save = torch.save
    calls = {"n": 0}

    def save_until_full(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: half the bytes, then ENOSPC
            f.write(b"\0" * 4096)
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_until_full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*ckpt-0000004.pt .*No space left.*intact.*re-run"):
        train_stylex("stylex", data, _tiny(), classifier, tmp_path, device="cpu", progress=False)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-0000002.pt"]  # no temp file left
    assert load_checkpoint(tmp_path / "checkpoints" / "ckpt-0000002.pt")["iteration"] == 2


def test_every_load_in_the_project_is_weights_only():
    """Static guard: each torch.load passes weights_only=True and no np.load allows pickles."""
    import ast

    calls = []
    for path in [*ROOT.glob("repro/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("notebooks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                owner = getattr(node.func.value, "id", "")
                kw = {k.arg: k.value for k in node.keywords}
                if owner == "torch":
                    calls.append(path.name)
                    assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                        f"{path}:{node.lineno}: torch.load without weights_only=True"
                if owner == "np":
                    assert "allow_pickle" not in kw, f"{path}:{node.lineno}: np.load with allow_pickle"
    assert "checkpoint.py" in calls  # the scan sees the project's loader


def test_a_run_directory_of_another_configuration_is_refused_not_reused(data, classifier, tmp_path):
    from repro.checkpoint import CheckpointError

    train_stylex("stylex", data, _tiny(iterations=2), classifier, tmp_path, device="cpu", progress=False)
    stamp = (tmp_path / "model.pt").stat().st_mtime_ns
    with pytest.raises(CheckpointError, match=r"different configuration:\n  channels: expected 16, found 8\n"
                                              r".*Use the matching profile/mode, or a fresh run directory"):
        train_stylex("stylex", data, _tiny(iterations=2, channels=16), classifier, tmp_path, device="cpu",
                     progress=False)
    assert (tmp_path / "model.pt").stat().st_mtime_ns == stamp  # not retrained over
    (tmp_path / "model.pt").unlink()  # an unfinished run of the other configuration: its checkpoints say so too
    with pytest.raises(CheckpointError, match=r"channels: expected 16, found 8"):
        train_stylex("stylex", data, _tiny(iterations=4, channels=16), classifier, tmp_path, device="cpu",
                     progress=False)


def test_classifier_training_resumes_after_the_last_finished_epoch(tmp_path, monkeypatch, capsys):
    import repro.classifier as clf_mod
    from repro.config import ClassifierConfig

    data = DataConfig(task="synth-age", resolution=32, n_train=128, n_val=32, n_test=32,
                      cache_dir=str(tmp_path / "cache"))
    config = ClassifierConfig(epochs=3, batch_size=32)
    straight = clf_mod.train_classifier(data, config, tmp_path / "a", device="cpu", progress=False)
    assert not (tmp_path / "a" / clf_mod.EPOCH_CHECKPOINT).exists()  # removed once finished

    real_evaluate = clf_mod.evaluate
    calls = {"n": 0}

    def crash_in_epoch_3(model, split):
        calls["n"] += 1
        if calls["n"] == 3:  # the validation pass that ends epoch 3
            raise KeyboardInterrupt("killed")
        return real_evaluate(model, split)

    monkeypatch.setattr(clf_mod, "evaluate", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        clf_mod.train_classifier(data, config, tmp_path / "b", device="cpu", progress=False)
    assert load_checkpoint(tmp_path / "b" / clf_mod.EPOCH_CHECKPOINT)["epoch"] == 2
    monkeypatch.setattr(clf_mod, "evaluate", real_evaluate)
    resumed = clf_mod.train_classifier(data, config, tmp_path / "b", device="cpu", progress=False)
    assert "after epoch 2" in capsys.readouterr().out and resumed.metrics["resumed_after_epoch"] == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name  # bit for bit the uninterrupted run
    with pytest.raises(Exception, match="different configuration"):  # another config can't resume it
        (tmp_path / "c").mkdir()
        save_checkpoint(tmp_path / "c" / clf_mod.EPOCH_CHECKPOINT, {"config": {"data": {}, "classifier": {}}})
        clf_mod.train_classifier(data, config, tmp_path / "c", device="cpu", progress=False)


def test_training_stopped_carries_the_shell_exit_code(tmp_path):
    stopped = TrainingStopped("SIGTERM", 7, tmp_path / "ckpt-0000007.pt")
    assert stopped.exit_code == 143 and isinstance(stopped, KeyboardInterrupt)
    assert "iteration 7" in str(stopped) and "Re-run the same command" in str(stopped)
    assert TrainingStopped("SIGINT", 1, None).exit_code == 130
