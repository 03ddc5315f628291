"""Shipped weights: the trained networks a profile's report needs, made by the project's own
commands, so that the report runs within its budget without training them again.

``ship(profile)`` (``python -m repro ship-weights``) copies every *finished* stage of a profile
from its run folder into ``weights/<profile>/``:

- the classifier C and the second observer C' of each task (``<task>/classifier``,
  ``<task>/observer``): the final ``classifier.pt`` (weights + config; never the resumable
  ``epoch.pt``) with ``metrics.json``, ``history.jsonl`` and ``config.json``;
- each generative model (``profile.model_dir(task, mode, seed)``: every mode of the task and, for
  ``stylex``, every seed of ``profile.seeds``): the finished ``model.pt`` (the EMA generator,
  encoder and mapping network + config; no optimiser, no discriminator) with ``config.json``,
  ``metadata.json``, ``log.jsonl`` and the last sample grid.

The layout under ``weights/<profile>/`` is the run folder's (``<task>/<component>/``). Each
weights file is named as torch hub names its files, ``<name>-<first 8 hex digits of its
sha256>.pt`` (``torch.hub.HASH_REGEX``; e.g. ``model-1a2b3c4d.pt``); the small records keep their
names, except the ``.jsonl`` logs, shipped gzip-compressed (``log.jsonl.gz``: a training log of
3,000 iterations is 90 kB as text, a fifth of that compressed) and written back as text by
``install``. ``manifest.json`` lists, per stage, every file with its full sha256 and size, the
configuration the stage was trained with, and a **model card**: the command that makes it, the
git commit shipped from, epochs / iterations, wall time (from the run's own records), the
machine, the seed and the metrics the stage recorded. ``MODEL_CARD.md`` is the same for people.
A stage whose recorded configuration is not the profile's (an older recipe) is not shipped but
listed with the reason. The total is capped (``max_bytes``, 30 MB by default).

``install(profile)`` (``python -m repro install-weights``; ``run_all.sh`` runs it unless
``--retrain``) places the shipped files of every stage that is not finished in the run folder,
after checking every file's sha256 (a mismatch is an error that names the file), so that the
trainers' reuse rule (``classifier.pt`` + ``metrics.json``; ``model.pt``) takes them and nothing
is trained. A finished stage already there is never overwritten; a shipped stage whose
configuration is no longer the profile's is left out (the stage is then trained). Each installed
stage gets a ``shipped.json`` (where from, which files, their sha256), which ``uninstall``
(``install-weights --remove``, what ``run_all.sh --retrain`` runs) uses to remove exactly the
installed files again, where they are unchanged. Files are loaded only with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from repro.config import Profile, config_diff, to_dict
from repro.utils import atomic_write

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
MARKER = "shipped.json"  # in an installed stage's run folder
DEFAULT_ROOT = "weights"
DEFAULT_MAX_BYTES = 30_000_000
FORMAT = 1
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX: the hash prefix in a file name
# Recorded StylEx settings that do not change what a model is trained to (bookkeeping and the
# numeric layout; precision is checked against fp32 when training starts and is in the card).
# Everything else of a model's recorded configuration must equal the profile's to be shipped or
# installed. Data paths differ between machines and do not change synthetic data.
IGNORED_MODEL_FIELDS = ("data.root", "data.cache_dir", "stylex.log_every", "stylex.sample_every",
                        "stylex.checkpoint_every", "stylex.keep_checkpoints", "stylex.channels_last",
                        "stylex.precision")


class WeightsError(ValueError):
    """Shipped weights that cannot be shipped or installed (damaged file, over the size cap, ...)."""


@dataclass
class Stage:
    """One trainable stage of a profile and where it lives.

    Parameters:
        key: ``<task>/<component>``, its run folder relative to ``<run_root>/<profile>``.
        kind: ``classifier``, ``observer`` or ``model``.
        task: the task's name.
        run_dir: the run folder.
        mode: the generative model's mode (models only).
        seed: the training seed.
        command: the project's command that trains it.
    """

    key: str
    kind: str
    task: str
    run_dir: Path
    mode: str | None = None
    seed: int | None = None
    command: str = ""


@dataclass
class InstallReport:
    """What :func:`install` did, stage by stage (stage keys, ``<task>/<component>``).

    Parameters:
        source: the folder installed from (None: no manifest, nothing shipped).
        installed: stages placed in the run folder now.
        present: stages already finished there (left as they were).
        present_shipped: those of ``present`` that hold weights an earlier install placed.
        skipped: stages shipped but not installed, with the reason (another configuration than
            the profile's, or not a stage of the profile).
        bytes_installed: bytes written.
    """

    source: Path | None = None
    installed: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    present_shipped: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    bytes_installed: int = 0

    def summary(self) -> str:
        """One line, e.g. for ``run_times.md``."""
        if self.source is None:
            return "none shipped for this profile"
        parts = [f"{len(self.installed)} stage(s) installed from {self.source}"
                 + (f" ({self.bytes_installed / 1e6:.1f} MB, sha256 verified)" if self.installed else ""),
                 f"{len(self.present)} already finished in the run folder"
                 + (f" ({len(self.present_shipped)} of them installed from shipped weights earlier)"
                    if self.present_shipped else "")]
        if self.skipped:
            parts.append(f"{len(self.skipped)} shipped but not installed (trained instead): {', '.join(self.skipped)}")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# The stages of a profile

def profile_stages(profile: Profile) -> Iterator[Stage]:
    """Every stage the report trains, in training order: per task the classifier, the observer and
    each generative model (every mode; for ``stylex`` every seed of ``profile.seeds``)."""
    for task in profile.tasks:
        base = f"--profile {profile.name} --task {task.name}"
        for kind, command in (("classifier", "train-classifier"), ("observer", "train-observer")):
            run_dir = profile.run_dir(task.name, kind)
            seed = profile.classifier.seed if kind == "classifier" else profile.observer.seed
            yield Stage(f"{task.name}/{kind}", kind, task.name, run_dir, seed=seed,
                        command=f"python -m repro {command} {base}")
        for mode in task.modes:
            for seed in (profile.seeds if mode == "stylex" else [profile.stylex.seed]):
                run_dir = profile.model_dir(task.name, mode, seed)
                extra = f" --seed {seed}" if seed != profile.stylex.seed else ""
                yield Stage(f"{task.name}/{run_dir.name}", "model", task.name, run_dir, mode=mode, seed=seed,
                            command=f"python -m repro train-stylex {base} --mode {mode}{extra}")


def _weights_name(stage: Stage) -> str:
    from repro.classifier import CHECKPOINT
    from repro.model import FINAL

    return FINAL if stage.kind == "model" else CHECKPOINT


def is_finished(stage: Stage) -> bool:
    """The trainers' own reuse rule: ``classifier.pt`` + ``metrics.json``, or ``model.pt``."""
    if stage.kind == "model":
        return (stage.run_dir / _weights_name(stage)).exists()
    return (stage.run_dir / _weights_name(stage)).exists() and (stage.run_dir / "metrics.json").exists()


def expected_config(profile: Profile, stage: Stage) -> dict[str, Any]:
    """The configuration the profile trains the stage with, as its checkpoint records it."""
    task = profile.task(stage.task)
    if stage.kind in ("classifier", "observer"):
        from repro.classifier import run_config

        return run_config(task.classifier_data, profile.classifier if stage.kind == "classifier" else profile.observer)
    from repro.model import StylExArch

    config = dataclasses.replace(profile.stylex, seed=stage.seed)
    return {**StylExArch.of(stage.mode, task.stylex_data.resolution, config).to_dict(), "data": to_dict(task.stylex_data),
            "stylex": to_dict(config), "iterations": config.iterations}


def config_differences(profile: Profile, stage: Stage, recorded: dict[str, Any]) -> list[str]:
    """The fields of a stage's recorded configuration that are not the profile's ([] when equal).

    Classifier stages compare every field, as ``train_classifier`` does before reusing a run; models
    leave out :data:`IGNORED_MODEL_FIELDS`."""
    expected = to_dict(expected_config(profile, stage))
    recorded = json.loads(json.dumps(recorded))  # tuples as lists, like the JSON the manifest holds
    diffs = config_diff(expected, recorded)
    if stage.kind == "model":
        diffs = [d for d in diffs if d.split(":")[0] not in IGNORED_MODEL_FIELDS]
    return diffs


# ---------------------------------------------------------------------------------------------
# Helpers

def sha256_file(path: str | Path) -> str:
    """Full hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hub_name(name: str, sha256: str) -> str:
    """torch hub's naming: ``model.pt`` with sha256 ``1a2b3c4d...`` -> ``model-1a2b3c4d.pt``."""
    stem, dot, ext = name.partition(".")
    return f"{stem}-{sha256[:8]}{dot}{ext}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a truncated last line of a crash
            continue
    return records


def _copy_atomic(src: Path, dest: Path) -> None:
    with open(src, "rb") as f, atomic_write(dest) as out:
        shutil.copyfileobj(f, out)


def _gzip_to(src: Path, dest: Path) -> None:
    """``src`` gzip-compressed into ``dest``, reproducibly: no name or time in the header, so the
    same text always gives the same bytes (and sha256)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f, atomic_write(dest) as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as out:
        shutil.copyfileobj(f, out)


def _gunzip_checked(src: Path, dest: Path, expected_sha256: str) -> None:
    """Write ``src`` decompressed to ``dest`` (atomically), only if the text has ``expected_sha256``."""
    data = gzip.decompress(src.read_bytes())  # a training log: tens of kB
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise WeightsError(f"{src} does not decompress to the file that was shipped (sha256 {expected_sha256}); "
                           f"re-fetch it or use --retrain")
    with atomic_write(dest) as out:
        out.write(data)


def _installed_sha256(f: dict[str, Any]) -> str:
    """The sha256 of a manifest file entry as installed in the run folder (a gzip-shipped log is
    written back as its text, whose sha256 the entry records as ``source_sha256``)."""
    return f["source_sha256"] if f.get("compression") == "gzip" else f["sha256"]


# ---------------------------------------------------------------------------------------------
# Ship

def _stage_files(stage: Stage) -> list[str]:
    """Names (relative to the run folder) of the files a finished stage ships: the weights file
    first, then the records that exist."""
    records = (["metrics.json", "history.jsonl", "config.json"] if stage.kind != "model"
               else ["config.json", "metadata.json", "log.jsonl"])
    names = [_weights_name(stage)] + [r for r in records if (stage.run_dir / r).exists()]
    if stage.kind == "model":
        grids = sorted((stage.run_dir / "samples").glob("iter-*.png"))
        if grids:
            names.append(f"samples/{grids[-1].name}")
    return names


def _model_card(profile: Profile, stage: Stage, state: dict[str, Any], commit: str | None, dirty: bool,
                machine: dict[str, Any]) -> dict[str, Any]:
    """The card of one finished stage, from its checkpoint and its own records."""
    config = state.get("config") or {}
    card: dict[str, Any] = {"command": stage.command, "git_commit": commit, "git_dirty": dirty,
                            "git_commit_source": "the commit ship-weights ran at (a run records no commit of its own)",
                            "seed": stage.seed}
    if stage.kind != "model":
        metrics = _read_json(stage.run_dir / "metrics.json") or {}
        history = _read_jsonl(stage.run_dir / "history.jsonl")
        epoch_seconds = [h.get("seconds") for h in history if isinstance(h.get("seconds"), (int, float))]
        card.update(
            arch=(config.get("classifier") or {}).get("arch", "mobilenet_v2"),
            epochs=metrics.get("epochs", len(history) or None), iterations=None,
            wall_seconds=round(sum(epoch_seconds), 1) if epoch_seconds else metrics.get("train_seconds"),
            wall_time_source=("history.jsonl: the sum of the epochs' seconds" if epoch_seconds
                              else "metrics.json: train_seconds"),
            device=metrics.get("device"), torch=None,
            metrics={"test_accuracy": (metrics.get("test") or {}).get("accuracy"),
                     "val_accuracy": (metrics.get("val") or {}).get("accuracy"),
                     "n_test": (metrics.get("test") or {}).get("n"), "n_train": metrics.get("n_train"),
                     "test_confusion": (metrics.get("test") or {}).get("confusion"),
                     "resumed_after_epoch": metrics.get("resumed_after_epoch")})
    else:
        metadata = json.loads(state["metadata"]) if isinstance(state.get("metadata"), str) else {}
        log = _read_jsonl(stage.run_dir / "log.jsonl")
        seconds, previous = 0.0, 0
        for record in log:  # sec_per_iter is the mean over the iterations since the previous line
            it = int(record.get("iteration", previous))
            seconds += float(record.get("sec_per_iter", 0.0)) * max(0, it - previous)
            previous = it
        last = log[-1] if log else {}
        losses = {k: v for k, v in last.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and k not in ("iteration", "sec_per_iter", "images_per_sec")}
        metrics: dict[str, Any] = {"final_logged_losses": losses, "lpips": metadata.get("lpips")}
        explained = _read_json(stage.run_dir / "explain.json")
        if isinstance(explained, dict) and isinstance(explained.get("methods"), dict):
            try:
                metrics["flip_rate"] = {m: r["flip_rate"]["mean"] for m, r in explained["methods"].items()
                                        if isinstance(r, dict) and isinstance(r.get("flip_rate"), dict)}
            except (KeyError, TypeError):
                pass
        card.update(
            mode=stage.mode, arch={k: config.get(k) for k in ("resolution", "channels", "latent_dim", "mapping_layers")},
            epochs=None, iterations=metadata.get("finished_iteration", config.get("iterations")),
            wall_seconds=round(seconds, 1) if log else None,
            wall_time_source="log.jsonl: sec_per_iter x iterations (the training loop, every sitting)",
            device=metadata.get("device"), torch=metadata.get("torch"), precision=metadata.get("precision"),
            world_size=metadata.get("world_size"), resumed=bool(metadata.get("started_at_iteration")),
            metrics=metrics)
    card["machine"] = {**machine, "device": card.pop("device"), "torch": card.pop("torch") or machine["torch"],
                       "note": "device and torch as the run recorded them; platform and CPU count of the machine "
                               "that shipped it"}
    return card


def half_state(value: Any) -> Any:
    """A checkpoint with every float32 tensor stored as float16 (other values unchanged). The
    networks load it back into float32 (``load_state_dict`` copies with a cast), so the file is
    half the size and the weights are rounded to float16's 11 significant bits."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.half() if value.dtype == torch.float32 else value
    if isinstance(value, dict):
        return {k: half_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(half_state(v) for v in value)
    return value


def ship(profile: Profile, weights_root: str | Path = DEFAULT_ROOT, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
         stages: Sequence[str] | None = None, model_dtype: str = "float32",
         classifier_dtype: str = "float32") -> dict[str, Any]:
    """Copy every finished stage of ``profile`` into ``<weights_root>/<profile>/`` and write its
    ``manifest.json`` and ``MODEL_CARD.md`` (see the module docstring); returns the manifest.

    The folder is replaced as a whole (a stale file of an earlier ship never stays). Unfinished
    stages, and finished ones trained with another configuration than the profile's, are listed
    under ``not_shipped`` with the reason; so are those ``stages`` leaves out (stage keys or shell
    patterns, e.g. ``["*/stylex*", "*/stylegan2"]``; None: every stage). ``model_dtype="float16"``
    stores the generative models' weights as float16 (:func:`half_state`; the manifest records the
    float32 original's sha256 beside the shipped file's), which halves them; ``classifier_dtype``
    does the same for the classifiers C and C' (the default report, on float16 classifiers, gives
    the test accuracies their float32 runs recorded). Raises :class:`WeightsError` when nothing is
    finished, or when the files would take more than ``max_bytes`` (None: no cap); nothing is
    written then.
    """
    import torch

    from repro.checkpoint import load_checkpoint

    for name, dtype in (("model_dtype", model_dtype), ("classifier_dtype", classifier_dtype)):
        if dtype not in ("float32", "float16"):
            raise WeightsError(f"{name} must be float32 or float16, got {dtype!r}")

    commit, dirty = _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))
    machine = _machine()
    plan: list[tuple[Stage, list[dict[str, Any]], dict[str, Any], dict[str, Any]]] = []
    not_shipped: dict[str, str] = {}
    out = Path(weights_root) / profile.name
    converted = out.with_name(f".{out.name}.converted-{os.getpid()}")  # float16 / gzip copies, before the copy
    made_root = not out.parent.exists()

    def discard_converted() -> None:  # and the weights root, where this call made it and nothing was shipped
        shutil.rmtree(converted, ignore_errors=True)
        if made_root and out.parent.is_dir() and not any(out.parent.iterdir()):
            out.parent.rmdir()
    sources: dict[str, Path] = {}  # shipped file -> where it is copied from, where not the run folder
    for stage in profile_stages(profile):
        if stages is not None and not any(fnmatch.fnmatchcase(stage.key, pattern) for pattern in stages):
            not_shipped[stage.key] = f"not selected (stages {', '.join(stages)})"
            continue
        if not is_finished(stage):
            not_shipped[stage.key] = f"not finished in {stage.run_dir}"
            continue
        state = load_checkpoint(stage.run_dir / _weights_name(stage), map_location="cpu")  # weights_only
        diffs = config_differences(profile, stage, state.get("config") or {})
        if diffs:
            not_shipped[stage.key] = (f"trained with another configuration than profile {profile.name!r}'s: "
                                      + "; ".join(diffs))
            continue
        files = []
        for name in _stage_files(stage):
            src = stage.run_dir / name
            entry: dict[str, Any] = {}
            if name == _weights_name(stage) and (model_dtype if stage.kind == "model" else classifier_dtype) == "float16":
                entry = {"stored_dtype": "float16", "source_sha256": sha256_file(src)}
                src = converted / stage.key / name
                src.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(src) as f:
                    torch.save(half_state(state), f)
            elif name.endswith(".jsonl"):
                entry = {"compression": "gzip", "source_sha256": sha256_file(src)}
                src = converted / stage.key / f"{name}.gz"
                _gzip_to(stage.run_dir / name, src)
            digest = sha256_file(src)
            shipped = (hub_name(name, digest) if name == _weights_name(stage)
                       else f"{name}.gz" if entry.get("compression") == "gzip" else name)
            files.append({"name": name, "file": f"{stage.key}/{shipped}", "sha256": digest,
                          "bytes": src.stat().st_size, **entry})
            if src != stage.run_dir / name:
                sources[files[-1]["file"]] = src
        card = _model_card(profile, stage, state, commit, dirty, machine)
        plan.append((stage, files, json.loads(json.dumps(state.get("config") or {})), card))
    if not plan:
        discard_converted()
        raise WeightsError(f"profile {profile.name!r} has no finished stage{' of those selected' if stages else ''} "
                           f"under {Path(profile.run_root) / profile.name} to ship; train them first (bash run_all.sh --profile {profile.name} --retrain, or the "
                           f"commands `python -m repro train-classifier|train-observer|train-stylex`)")
    total = sum(f["bytes"] for _, files, _, _ in plan for f in files)
    if max_bytes is not None and total > max_bytes:
        discard_converted()
        sizes = sorted(((sum(f["bytes"] for f in files), stage.key) for stage, files, _, _ in plan), reverse=True)
        largest = ", ".join(f"{key} {size / 1e6:.1f} MB" for size, key in sizes[:4])
        raise WeightsError(f"the finished stages of profile {profile.name!r} take {total / 1e6:.1f} MB, over the cap of "
                           f"{max_bytes / 1e6:.1f} MB (largest: {largest}); nothing was written. Make the networks "
                           f"smaller, store the models as float16 (--half), ship fewer stages (--stage), or raise "
                           f"the cap (--max-mb)")

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = {
        "format": FORMAT, "profile": profile.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": commit, "git_dirty": dirty, "machine": machine, "total_bytes": total, "max_bytes": max_bytes,
        "stages": [{"stage": stage.key, "kind": stage.kind, "task": stage.task, "mode": stage.mode,
                    "seed": stage.seed, "files": files, "config": config, "card": card}
                   for stage, files, config, card in plan],
        "not_shipped": not_shipped,
    }
    try:
        for stage, files, _, _ in plan:
            for f in files:
                _copy_atomic(sources.get(f["file"], stage.run_dir / f["name"]), tmp / f["file"])
                if sha256_file(tmp / f["file"]) != f["sha256"]:
                    raise WeightsError(f"{stage.run_dir / f['name']} changed while it was shipped; ship again")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / CARD).write_text(model_card_markdown(manifest))
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        discard_converted()
    return manifest


def _fmt_seconds(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "not recorded"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for key in ("test_accuracy", "val_accuracy"):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{key.replace('_', ' ')} {metrics[key]:.3f}")
    for key, value in (metrics.get("final_logged_losses") or {}).items():
        if key in ("g_total", "d_adv", "img_l1", "img_lpips", "latent_l1", "classifier_kl"):
            parts.append(f"{key} {value:.3f}")
    for method, rate in (metrics.get("flip_rate") or {}).items():
        if isinstance(rate, (int, float)):
            parts.append(f"flip rate {method} {rate:.3f}")
    if metrics.get("lpips"):
        parts.append(f"LPIPS: {metrics['lpips']}")
    return "; ".join(parts) or "none recorded"


ROLES = {"classifier": "the classifier C that StylEx explains",
         "observer": "the second observer C' (checks explanations only)", "model": "a generative model"}


def model_card_markdown(manifest: dict[str, Any]) -> str:
    """``MODEL_CARD.md``: the manifest for people."""
    name = manifest["profile"]
    machine = manifest.get("machine") or {}
    lines = [
        f"# Shipped weights of profile `{name}`",
        "",
        f"Written by `python -m repro ship-weights --profile {name}` on {manifest['created']} from git commit "
        f"`{manifest.get('git_commit') or 'unknown'}`{' (with uncommitted changes)' if manifest.get('git_dirty') else ''}, "
        f"on {machine.get('platform')} ({machine.get('cpu_count')} CPUs, torch {machine.get('torch')}). "
        f"{len(manifest['stages'])} stage(s), {manifest['total_bytes'] / 1e6:.1f} MB in all"
        + (f" (cap {manifest['max_bytes'] / 1e6:.0f} MB)." if manifest.get("max_bytes") else "."),
        "",
        f"`bash run_all.sh --profile {name}` verifies every file against the sha256 in `manifest.json` and places "
        f"them in `runs/{name}/` (`python -m repro install-weights --profile {name}`), where the trainers reuse them "
        f"instead of training; a finished stage already there is kept. `bash run_all.sh --profile {name} --retrain` "
        f"trains every stage instead, with the commands below. Weights files are named as torch hub names them "
        f"(`<name>-<first 8 hex digits of the sha256>.pt`) and hold only tensors and plain values "
        f"(`torch.load(..., weights_only=True)`): a StylEx `model.pt` holds the EMA generator, encoder and mapping "
        f"network with their configuration; a `classifier.pt` the final classifier.",
        "",
        "| stage | weights file | seed | epochs / iterations | wall time | device | metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in manifest["stages"]:
        card = entry["card"]
        weights = entry["files"][0]
        length = (f"{card['epochs']} epochs" if card.get("epochs") is not None
                  else f"{card.get('iterations')} iterations")
        stored = f", {weights['stored_dtype']}" if weights.get("stored_dtype") else ""
        lines.append(f"| `{entry['stage']}` | `{weights['file']}` ({weights['bytes'] / 1e6:.1f} MB{stored}) | {card.get('seed')} | "
                     f"{length} | {_fmt_seconds(card.get('wall_seconds'))} | {card['machine'].get('device')} | "
                     f"{_fmt_metrics(card.get('metrics') or {})} |")
    lines += ["", "## Each stage", ""]
    for entry in manifest["stages"]:
        card = entry["card"]
        what = (f"{card.get('arch')} classifier" if entry["kind"] != "model"
                else f"{entry['mode']} model ({', '.join(f'{k} {v}' for k, v in (card.get('arch') or {}).items())})")
        lines += [
            f"### `{entry['stage']}`",
            "",
            f"- what: {ROLES[entry['kind']]}, {what}",
            f"- made by: `{card['command']}` (shipped from commit `{card.get('git_commit') or 'unknown'}`; the run "
            f"records no commit of its own)",
            f"- seed {card.get('seed')}; "
            + (f"{card['epochs']} epochs" if card.get("epochs") is not None else f"{card.get('iterations')} iterations")
            + f"; wall time {_fmt_seconds(card.get('wall_seconds'))} ({card.get('wall_time_source')})",
            f"- machine: device {card['machine'].get('device')}, torch {card['machine'].get('torch')}, "
            f"{card['machine'].get('platform')}, {card['machine'].get('cpu_count')} CPUs"
            + (f"; precision {card['precision']}" if card.get("precision") else ""),
            f"- metrics: {_fmt_metrics(card.get('metrics') or {})}",
            "- files: " + ", ".join(f"`{f['file']}` (sha256 `{f['sha256']}`"
                                    + (f"; stored as {f['stored_dtype']}, from the float32 file with sha256 "
                                       f"`{f['source_sha256']}`" if f.get("stored_dtype") else "")
                                    + (f"; gzip of `{f['name']}`, sha256 `{f['source_sha256']}`"
                                       if f.get("compression") == "gzip" else "") + ")"
                                    for f in entry["files"]),
            "",
        ]
    if manifest.get("not_shipped"):
        lines += ["## Not shipped (trained by the report)", ""]
        lines += [f"- `{key}`: {reason}" for key, reason in manifest["not_shipped"].items()]
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Install / uninstall

def load_manifest(profile: Profile, weights_root: str | Path = DEFAULT_ROOT) -> dict[str, Any] | None:
    """The manifest of a profile's shipped weights, or None when none is shipped."""
    path = Path(weights_root) / profile.name / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise WeightsError(f"{path} is not valid JSON ({err}); re-fetch weights/{profile.name}/ or use "
                           f"--retrain") from None
    if manifest.get("format") != FORMAT or manifest.get("profile") != profile.name:
        raise WeightsError(f"{path} is not a format-{FORMAT} manifest of profile {profile.name!r}; re-fetch "
                           f"weights/{profile.name}/ or use --retrain")
    return manifest


def verify_file(path: Path, expected_sha256: str) -> None:
    """Raise :class:`WeightsError` unless ``path`` exists and has the sha256 (and, where its name
    carries one as torch hub's do, the matching prefix)."""
    fix = "re-fetch it (git checkout / git lfs pull of weights/) or run `bash run_all.sh --retrain` to train instead"
    if not path.is_file():
        raise WeightsError(f"shipped weights file {path} is missing; {fix}")
    digest = sha256_file(path)
    if digest != expected_sha256:
        raise WeightsError(f"shipped weights file {path} has sha256 {digest}, but the manifest says "
                           f"{expected_sha256}: it is damaged or not the file that was shipped; {fix}")
    match = HASH_REGEX.search(path.name) if path.suffix == ".pt" else None
    if match and not expected_sha256.startswith(match.group(1)):
        raise WeightsError(f"shipped weights file {path}: its name's hash prefix {match.group(1)} is not the start of "
                           f"its sha256 {expected_sha256}; {fix}")


def install(profile: Profile, weights_root: str | Path = DEFAULT_ROOT) -> InstallReport:
    """Place the shipped stages of ``profile`` that are not finished in its run folder.

    Every file of a stage to install is checked against the manifest's sha256 first (all stages
    before any is placed); a mismatch raises :class:`WeightsError` naming the file. Stages already
    finished are left alone (listed as present, not checked); shipped stages whose recorded
    configuration is not the profile's are skipped with the reason. Within a stage the file that
    marks it finished is placed last, each file atomically, then ``shipped.json``. No manifest:
    an empty report (``source`` None).
    """
    manifest = load_manifest(profile, weights_root)
    report = InstallReport()
    if manifest is None:
        return report
    source = Path(weights_root) / profile.name
    report.source = source
    shipped = {entry["stage"]: entry for entry in manifest["stages"]}
    todo: list[tuple[Stage, dict[str, Any]]] = []
    known = set()
    for stage in profile_stages(profile):
        known.add(stage.key)
        entry = shipped.get(stage.key)
        if entry is None:
            continue
        if is_finished(stage):
            report.present.append(stage.key)
            if _holds_shipped(stage):
                report.present_shipped.append(stage.key)
            continue
        diffs = config_differences(profile, stage, entry.get("config") or {})
        if diffs:
            report.skipped[stage.key] = (f"shipped with another configuration than profile {profile.name!r}'s: "
                                         + "; ".join(diffs))
            continue
        if entry["files"][0]["name"] != _weights_name(stage):
            raise WeightsError(f"{source / MANIFEST}: stage {stage.key} does not start with its weights file "
                               f"{_weights_name(stage)}; re-fetch weights/{profile.name}/ or use --retrain")
        todo.append((stage, entry))
    for key in shipped:
        if key not in known:
            report.skipped[key] = f"not a stage of profile {profile.name!r} any more"
    for stage, entry in todo:  # everything verified before anything is placed
        for f in entry["files"]:
            for rel in (f["name"], f["file"]):
                if Path(rel).is_absolute() or ".." in Path(rel).parts:
                    raise WeightsError(f"{source / MANIFEST}: file name {rel!r} of stage {stage.key} leaves its "
                                       f"folder; re-fetch weights/{profile.name}/ or use --retrain")
            verify_file(source / f["file"], f["sha256"])
    for stage, entry in todo:
        finishing = {_weights_name(stage), "metrics.json"}  # the trainers' reuse rule: placed last
        files = sorted(entry["files"], key=lambda f: (f["name"] in finishing, f["name"] == "metrics.json"))
        for f in files:
            if f.get("compression") == "gzip":
                _gunzip_checked(source / f["file"], stage.run_dir / f["name"], f["source_sha256"])
            else:
                _copy_atomic(source / f["file"], stage.run_dir / f["name"])
            report.bytes_installed += f["bytes"]
        marker = {"profile": profile.name, "stage": stage.key, "source": str(source),
                  "manifest_created": manifest.get("created"), "git_commit": manifest.get("git_commit"),
                  "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "files": {f["name"]: _installed_sha256(f) for f in entry["files"]}}
        (stage.run_dir / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        report.installed.append(stage.key)
    return report


def installed_stages(profile: Profile) -> list[str]:
    """Stages of the profile's run folder that hold shipped weights, unchanged (their ``shipped.json``
    and files agree), e.g. to say in a report which networks were not trained here."""
    return [stage.key for stage in profile_stages(profile) if _holds_shipped(stage)]


def _holds_shipped(stage: Stage) -> bool:
    """The stage is finished with the weights file an install placed (its sha256 unchanged)."""
    marker = _read_json(stage.run_dir / MARKER)
    if not isinstance(marker, dict) or not is_finished(stage):
        return False
    name = _weights_name(stage)
    return (marker.get("files") or {}).get(name) == sha256_file(stage.run_dir / name)


def uninstall(profile: Profile) -> list[str]:
    """Remove what :func:`install` placed in the profile's run folder, so those stages are trained:
    in each stage with a ``shipped.json``, the files it lists that still have their shipped sha256
    (a file changed since, e.g. by training, is kept), then the marker. Returns the stages touched."""
    removed = []
    for stage in profile_stages(profile):
        marker_path = stage.run_dir / MARKER
        marker = _read_json(marker_path)
        if not isinstance(marker, dict):
            continue
        # The finishing files go first, so that an interrupted removal leaves an unfinished stage.
        names = sorted((marker.get("files") or {}).items(), key=lambda kv: kv[0] not in (_weights_name(stage), "metrics.json"))
        for name, digest in names:
            path = stage.run_dir / name
            if ".." in Path(name).parts or not path.is_file():
                continue
            if sha256_file(path) == digest:
                path.unlink()
        marker_path.unlink()
        removed.append(stage.key)
    return removed
