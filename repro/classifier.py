"""The classifier StylEx explains: torchvision MobileNetV2, one output per class, trained from scratch,
or your own classifier imported by the same stage (``ClassifierConfig.source``, ``repro.user_classifier``).

The same stage trains the second observer C' (``repro.observer``): ``ClassifierConfig.arch``
picks the architecture (``repro.networks.build_classifier``), ``ClassifierConfig.seed`` its
initialisation and batch order; its run directory is ``profile.run_dir(task, "observer")``.

``train_classifier`` trains it with a progress bar and writes, in its run directory:
``config.json``, ``classifier.pt`` (state_dict + config, atomic), ``history.jsonl`` (one line
per epoch) and ``metrics.json`` (held-out accuracy, confusion matrix, timing), following the
stage protocol of ``repro.stage``: a finished run (``classifier.pt`` and ``metrics.json``) of
the same configuration is reused unless ``force=True``. After every epoch the whole training state (weights, Adam,
learning-rate schedule, RNG states, history) goes to ``epoch.pt``, atomically, so a crashed or
killed run resumes at the next epoch, bit for bit, when the same command runs again.

With ``ClassifierConfig.source`` nothing is trained: the stage imports your classifier, checks it
on your validation images (``repro.user_classifier.check_classifier``), measures it on your
held-out splits and writes the same files (``classifier.pt`` holds its weights behind the input
adapter; its configuration records the source and a hash of its files, so a changed file is
imported again).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro.checkpoint import load_checkpoint, save_checkpoint
from repro.config import SPLITS, ClassifierConfig, DataConfig, to_dict
from repro.data import ImageSet, check_root, class_names, load_split
from repro.networks import build_classifier
from repro.stage import StageDir
from repro.utils import pick_device, seed_everything, tqdm, write_atomic

CHECKPOINT = "classifier.pt"  # the completion marker, with METRICS
METRICS = "metrics.json"
HISTORY = "history.jsonl"
DEFAULT_ARCH = "mobilenet_v2"  # the classifier StylEx explains (ClassifierConfig's default)
EPOCH_CHECKPOINT = "epoch.pt"


@dataclass
class ClassifierRun:
    """A trained classifier and what its training measured.

    Parameters:
        model: the classifier (MobileNetV2 unless the run's config names another arch), in eval mode.
        metrics: the contents of ``metrics.json``.
        history: one dict per epoch (loss, train and val accuracy, seconds).
        run_dir: where it lives.
    """

    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    run_dir: Path


@torch.inference_mode()
def predict_logits(model: nn.Module, images: ImageSet | torch.Tensor, *, batch_size: int = 512,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits [N, K] (on CPU) of every image of an ImageSet or a float tensor in [-1, 1]."""
    device = device or next(model.parameters()).device
    model.eval()
    n = len(images)
    out = []
    for start in range(0, n, batch_size):
        idx = slice(start, min(start + batch_size, n))
        x = images.batch(idx, device) if isinstance(images, ImageSet) else images[idx].to(device)
        out.append(model(x.contiguous()).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 2)


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int = 2) -> list[list[int]]:
    """Rows: true class; columns: predicted class."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    cm.index_put_((labels.long(), preds.long()), torch.ones_like(labels, dtype=torch.long), accumulate=True)
    return cm.tolist()


def evaluate(model: nn.Module, images: ImageSet, **kwargs) -> dict[str, Any]:
    """Accuracy and confusion matrix on a labelled set."""
    if (images.labels < 0).any():
        raise ValueError(f"{images.name} has no labels; evaluate the classifier on a labelled split")
    logits = predict_logits(model, images, **kwargs)
    preds = logits.argmax(1)
    return {"accuracy": (preds == images.labels).float().mean().item(),
            "confusion": confusion_matrix(images.labels, preds, logits.shape[1]), "n": len(images)}


def shortcut_accuracy(model: nn.Module, images: ImageSet, task: str, **kwargs) -> dict[str, Any]:
    """Accuracy of a synthetic task's classifier split by whether the task's spurious factor
    agrees with the label (as in the planted training split) or not.

    A classifier that took the planted shortcut is right where the two agree and wrong where
    they disagree; one that uses only the causal factors scores the same on both. Returns
    {"spurious", "agrees": {"accuracy", "n"}, "disagrees": {"accuracy", "n"}}.
    """
    from repro.data import synthetic

    if images.factors is None:
        raise ValueError(f"{images.name} has no generative factors: the shortcut split needs synthetic data")
    spurious = synthetic.TASKS[task].spurious
    column = synthetic.FACTOR_NAMES.index(spurious)
    agrees = (images.factors[:, column] > 0.5).long() == images.labels
    right = predict_logits(model, images, **kwargs).argmax(1) == images.labels
    return {"spurious": spurious,
            **{name: {"accuracy": right[mask].float().mean().item() if mask.any() else float("nan"),
                      "n": int(mask.sum())} for name, mask in (("agrees", agrees), ("disagrees", ~agrees))}}


def run_config(data: DataConfig, config: ClassifierConfig) -> dict[str, Any]:
    """The configuration a classifier run records (``config.json`` and every checkpoint) and is
    reused or resumed only with.

    ``arch`` is recorded only when it is not MobileNetV2, and your own classifier's fields
    (``source``, ``weights``, ``input_size``, ``mean``, ``std``) only when set, so runs written before
    those choices existed stay valid.
    """
    classifier = to_dict(config)
    if classifier.get("arch") == DEFAULT_ARCH:
        del classifier["arch"]
    for key in ("source", "weights", "input_size", "mean", "std"):  # your own classifier's, when given
        if classifier.get(key) is None:
            classifier.pop(key, None)
    return {"data": to_dict(data), "classifier": classifier}


def run_arch(config: dict[str, Any] | None) -> str:
    """The architecture a run's recorded configuration names (MobileNetV2 when it names none)."""
    classifier = (config or {}).get("classifier") or {}
    return classifier.get("arch", DEFAULT_ARCH)


def train_classifier(data: DataConfig, config: ClassifierConfig, run_dir: str | Path, *,
                     device: str = "auto", force: bool = False, progress: bool | None = None) -> ClassifierRun:
    """Train (or reuse) the classifier of one task; see the module docstring for the outputs.

    ``config.arch`` and ``config.seed`` choose the network and its seed: the default
    (MobileNetV2) is the classifier StylEx explains, ``profile.observer`` the second observer.
    """
    run_dir = Path(run_dir)
    if data.dataset == "ffhq":  # known before loading (and decoding) every image
        raise ValueError(f"dataset 'ffhq' (root {data.root}) has no labels: a classifier needs a labelled "
                         f"data set (for the age task, CelebA; FFHQ is only for StylEx)")
    dev = pick_device(device)
    full_config = run_config(data, config)
    if config.source is not None:
        return _import_classifier(data, config, run_dir, full_config, dev, force=force, progress=progress)
    stage = StageDir(run_dir, CHECKPOINT, full_config, requires=(METRICS,))
    done = stage.reuse(lambda: load_classifier(run_dir, device=dev, expected_config=full_config), force=force)
    if done is not None:
        return done
    check_root(data)  # a missing data folder fails before a run directory is made
    stage.begin()  # unwritable or full: fail now, not after loading data and training

    seed_everything(config.seed)
    train, val, test = (load_split(data, s, progress=progress) for s in SPLITS)
    for split in (train, val, test):
        if (split.labels < 0).any():
            raise ValueError(f"{split.name} has no labels: a classifier needs a labelled data set "
                             f"(for the age task, CelebA; FFHQ is only for StylEx)")
    if dev.type == "cuda":  # the whole uint8 training set on the GPU: a batch is an index away
        train = train.to(dev)
    num_classes = len(class_names(data))
    model = build_classifier(num_classes, config.arch).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, float]] = []
    first_epoch = 0
    resume = stage.resume([run_dir / EPOCH_CHECKPOINT], map_location=dev) if not force else None
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        sched.load_state_dict(resume["sched"])
        gen.set_state(resume["gen"])
        torch.set_rng_state(resume["torch_rng"])
        history = json.loads(resume["history"])
        first_epoch = int(resume["epoch"])
        print(f"resuming {run_dir} after epoch {first_epoch}")
    start = time.perf_counter()
    name = "classifier" if config.arch == DEFAULT_ARCH else f"classifier ({config.arch})"
    bar = tqdm(total=config.epochs * steps_per_epoch, initial=first_epoch * steps_per_epoch,
               desc=f"{name} {data.task}", enabled=progress)
    for epoch in range(first_epoch, config.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        t0, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size:(step + 1) * config.batch_size].to(train.images.device)
            x, y = train.batch(idx, dev), train.labels[idx].to(dev)
            if config.hflip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x[flip.to(dev)] = x[flip.to(dev)].flip(-1)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite classifier loss in epoch {epoch + 1}, step {step + 1}; training stopped. The last "
                    f"finished epoch is saved in {run_dir / EPOCH_CHECKPOINT} (if any). Lower ClassifierConfig.lr "
                    f"or check the data for broken images.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
        val_acc = evaluate(model, val)["accuracy"]
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "train_accuracy": correct / seen,
                        "val_accuracy": val_acc, "seconds": time.perf_counter() - t0})
        save_checkpoint(run_dir / EPOCH_CHECKPOINT, {
            "config": full_config, "epoch": epoch + 1, "model": model.state_dict(), "opt": opt.state_dict(),
            "sched": sched.state_dict(), "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "history": json.dumps(history)})
    bar.close()
    model.eval()
    metrics = {"task": data.task, "test": evaluate(model, test), "val": evaluate(model, val),
               "train_seconds": time.perf_counter() - start, "device": str(dev),
               "epochs": config.epochs, "n_train": len(train), "resumed_after_epoch": first_epoch,
               "arch": config.arch, "seed": config.seed}
    save_checkpoint(run_dir / CHECKPOINT, {"model": model.state_dict(), "config": full_config,
                                           **({} if num_classes == 2 else {"num_classes": num_classes})})
    write_atomic(run_dir / HISTORY, "".join(json.dumps(h) + "\n" for h in history))
    write_atomic(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")  # with classifier.pt: finished
    (run_dir / EPOCH_CHECKPOINT).unlink(missing_ok=True)  # finished: classifier.pt is the result
    return ClassifierRun(model, metrics, history, run_dir)


def _import_classifier(data: DataConfig, config: ClassifierConfig, run_dir: Path, full_config: dict[str, Any],
                       dev: torch.device, *, force: bool, progress: bool | None) -> ClassifierRun:
    """The classifier stage for your own classifier: import, check, measure, record (module docstring)."""
    from repro.user_classifier import check_classifier, fingerprint, load_user_classifier

    full_config["classifier"]["files_sha256"] = fingerprint(config)
    stage = StageDir(run_dir, CHECKPOINT, full_config, requires=(METRICS,))
    done = stage.reuse(lambda: load_classifier(run_dir, device=dev, expected_config=full_config), force=force,
                       again="importing it again")
    if done is not None:
        return done
    check_root(data)
    stage.begin()
    start = time.perf_counter()
    names = class_names(data)
    train, val, test = (load_split(data, s, progress=progress) for s in SPLITS)
    model = load_user_classifier(config)
    check = check_classifier(model, val.batch(slice(0, 16)), names, config.source)
    model.to(dev).requires_grad_(False)
    metrics = {"task": data.task, "test": evaluate(model, test), "val": evaluate(model, val),
               "train_seconds": 0.0, "import_seconds": time.perf_counter() - start, "device": str(dev),
               "epochs": 0, "n_train": len(train), "resumed_after_epoch": 0, "arch": f"yours ({config.source})",
               "seed": None, "source": config.source, "class_names": list(names), "check": check}
    chance = 1.0 / len(names)
    if metrics["test"]["accuracy"] < chance + 0.1 * (1.0 - chance):  # near chance: a likely mix-up
        warnings.warn(f"your classifier {config.source} is right on only {metrics['test']['accuracy']:.1%} of your "
                      f"test images (chance: {chance:.1%}); check that its outputs follow the sorted class folders "
                      f"({', '.join(names)}) and that --classifier-size/--classifier-mean/--classifier-std are the "
                      f"ones it was trained with")
    save_checkpoint(run_dir / CHECKPOINT, {"model": model.state_dict(), "config": full_config,
                                           **({} if len(names) == 2 else {"num_classes": len(names)})})
    write_atomic(run_dir / HISTORY, "")
    write_atomic(run_dir / METRICS, json.dumps(metrics, indent=2) + "\n")  # with classifier.pt: finished
    return ClassifierRun(model.eval(), metrics, [], run_dir)


def load_classifier(run_dir: str | Path, *, device: str | torch.device = "cpu",
                    expected_config: dict[str, Any] | None = None) -> ClassifierRun:
    """Load a trained (or imported) classifier (eval mode, gradients off) and its recorded metrics.

    The architecture is the one its checkpoint's configuration records (:func:`run_arch`), or your
    own classifier's source behind its input adapter (``repro.user_classifier``), with the weights
    the checkpoint holds.
    """
    run_dir = Path(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, expected_config=expected_config)
    recorded = (state.get("config") or {}).get("classifier") or {}
    if recorded.get("source") is not None:
        from repro.user_classifier import load_user_classifier

        fields = {k: recorded.get(k) for k in ("source", "weights", "input_size", "mean", "std")}
        model = load_user_classifier(ClassifierConfig(**fields), weights=False)
    else:
        model = build_classifier(int(state.get("num_classes", 2)), run_arch(state.get("config")))
    model.load_state_dict(state["model"])
    model.to(device).eval().requires_grad_(False)
    metrics = json.loads((run_dir / METRICS).read_text())
    history_file = run_dir / HISTORY
    history = [json.loads(line) for line in history_file.read_text().splitlines()] if history_file.exists() else []
    return ClassifierRun(model, metrics, history, run_dir)
