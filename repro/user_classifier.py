"""Your own classifier: imported, adapted to this project's images, and checked before any training.

``ClassifierConfig.source`` names it, as either

- a ``torch.export`` program file (``.pt2``, made by
  ``torch.export.save(torch.export.export(model.eval(), (example,)), "model.pt2")``; export it in
  eval mode with a dynamic batch dimension), or
- ``package.module:factory``, a function of no arguments returning the ``nn.Module`` (importable:
  put its folder on ``PYTHONPATH``), with ``ClassifierConfig.weights`` a ``state_dict`` file
  loaded with ``weights_only=True``.

This project hands every classifier float images in [-1, 1] at the data's resolution.
:class:`InputAdapter` gives yours what it was trained on instead: resized (bilinear, antialiased)
to ``input_size``, and with ``mean``/``std`` normalised as ``(x01 - mean) / std`` of pixels in
[0, 1]. Its outputs must be one logit per class, in the sorted order of the class folders.

Every problem is a :class:`ClassifierError` (a ``ValueError``) of one line that names the input
and the fix: a source that fails to import or build, weights that don't fit the module (missing,
unexpected or misshapen entries), and, from :func:`check_classifier` on a batch of real images,
a wrong output shape, non-finite outputs, or outputs that change between two identical calls in
eval mode (dropout or noise left on). :func:`check_inputs` runs the data's and the classifier's
checks of a whole profile (``python -m repro custom`` does, before anything is trained).
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import SPLITS, ClassifierConfig, Profile

# Two identical eval-mode calls may differ by float noise (e.g. non-deterministic GPU kernels),
# never by more than this share of the logits' scale.
DETERMINISM_TOLERANCE = 1e-4
CHECK_IMAGES = 16  # real images the checks run the classifier on


class ClassifierError(ValueError):
    """Your classifier cannot be used as given (the message names the input and the fix)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


class InputAdapter(nn.Module):
    """Your classifier behind the input it was trained on.

    Parameters:
        model: your classifier (a module, or a ``torch.export`` program's module).
        input_size: its square input size in pixels (None: the images' own size).
        mean / std: its per-channel normalisation of pixels in [0, 1] (None: it takes [-1, 1]).
        exported: ``model`` came from a ``.pt2`` program; such a module is frozen in the mode it was
            exported in (``train()``/``eval()`` are not supported on it), so they are not passed on.
    """

    def __init__(self,
                 model: nn.Module,                             # your classifier
                 input_size: int | None = None,                # its input size
                 mean: Sequence[float] | None = None,          # its normalisation of [0, 1] pixels
                 std: Sequence[float] | None = None,
                 exported: bool = False):                      # a torch.export program's module
        super().__init__()
        self.model = model
        self.input_size = input_size
        self.exported = exported
        self.normalise = mean is not None
        self.register_buffer("mean", torch.tensor(mean if mean is not None else (0.0,) * 3).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std if std is not None else (1.0,) * 3).view(1, 3, 1, 1),
                             persistent=False)

    def train(self, mode: bool = True) -> "InputAdapter":
        self.training = mode
        if not self.exported:
            self.model.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        if self.normalise:
            x = ((x + 1.0) * 0.5 - self.mean) / self.std
        return self.model(x)


def _import_source(source: str) -> tuple[nn.Module, bool]:
    """(module, exported) built from ``source``; see the module docstring."""
    if source.endswith(".pt2"):
        path = Path(source)
        if not path.is_file():
            raise ClassifierError(f"--classifier {source}: no such file; give the .pt2 file written by "
                                  f"torch.export.save(torch.export.export(model.eval(), (example,)), 'model.pt2')")
        try:
            return torch.export.load(str(path)).module(), True
        except Exception as err:  # torch.export raises many types on foreign files
            raise ClassifierError(f"--classifier {source} is not a loadable torch.export program ({_first_line(err)}); "
                                  f"save it again with torch.export.save with this torch ({torch.__version__}), or "
                                  f"give package.module:factory instead") from None
    module_name, _, factory_name = source.partition(":")
    if not module_name or not factory_name:
        raise ClassifierError(f"--classifier {source!r} is neither a .pt2 file nor package.module:factory; give e.g. "
                              f"mypackage.models:make_classifier (a function of no arguments returning the nn.Module)")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # an ImportError, or any error raised by the module's own code
        raise ClassifierError(f"--classifier {source}: cannot import {module_name} ({_first_line(err)}); put the "
                              f"folder that holds it on PYTHONPATH (or pip install its package)") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ClassifierError(f"--classifier {source}: {module_name} has no function {factory_name!r}; name a "
                              f"function of no arguments that returns your nn.Module")
    try:
        model = factory()
    except Exception as err:
        raise ClassifierError(f"--classifier {source}: calling {factory_name}() failed ({_first_line(err)}); it must "
                              f"take no arguments and return your nn.Module") from None
    if not isinstance(model, nn.Module):
        raise ClassifierError(f"--classifier {source}: {factory_name}() returned a {type(model).__name__}, not an "
                              f"nn.Module; return the network itself")
    return model, False


def load_weights(model: nn.Module, path: str | Path, source: str) -> None:
    """Load a ``state_dict`` file (``weights_only``) into ``model``, or say in one line why it doesn't fit."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"--classifier-weights {path}: no such file; give the file written by "
                              f"torch.save(model.state_dict(), path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ClassifierError(f"--classifier-weights {path} holds more than tensors (weights_only refused it: loading "
                              f"it would run code); save model.state_dict() with torch.save instead") from None
    except Exception as err:
        raise ClassifierError(f"--classifier-weights {path} is unreadable ({_first_line(err)}); save "
                              f"model.state_dict() with torch.save") from None
    for key in ("state_dict", "model"):  # common checkpoint layouts that wrap the state_dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClassifierError(f"--classifier-weights {path} is not a state_dict (a dict of tensors); save "
                              f"model.state_dict() with torch.save")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {list(state[k].shape)} in the file, {list(own[k].shape)} in the module"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {what} (e.g. {', '.join(v[:2])})"
                 for v, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape")) if v]
        hint = ("strip the 'module.' prefix (saved from DataParallel)" if unexpected
                and all(k.startswith("module.") for k in unexpected) else
                f"save the state_dict of the network {source} builds (same architecture and number of classes)")
        raise ClassifierError(f"--classifier-weights {path} do not fit {source}'s module: {'; '.join(parts)}; {hint}")
    model.load_state_dict(state)


def load_user_classifier(config: ClassifierConfig, *, weights: bool = True) -> InputAdapter:
    """Your classifier (``config.source``) behind its :class:`InputAdapter`, in eval mode.

    ``weights``: load ``config.weights`` (False: leave the module's own, e.g. to load a checkpoint's)."""
    if config.source is None:
        raise ValueError("ClassifierConfig.source is None: there is no classifier of yours to load")
    model, exported = _import_source(config.source)
    if weights and config.weights is not None:
        load_weights(model, config.weights, config.source)
    return InputAdapter(model, config.input_size, config.mean, config.std, exported).eval()


def fingerprint(config: ClassifierConfig) -> str:
    """sha256 of the files your classifier is read from (the .pt2 program, the weights), so a changed file
    is a changed configuration; empty for a factory without weights (its code is not hashed)."""
    digest = hashlib.sha256()
    files = [Path(f) for f in (config.source if config.source and config.source.endswith(".pt2") else None,
                                config.weights) if f]
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest() if files else ""


@torch.no_grad()
def check_classifier(model: nn.Module, images: torch.Tensor, class_names: Sequence[str], source: str) -> dict[str, Any]:
    """Run ``model`` (eval mode) twice on real float images in [-1, 1]; a :class:`ClassifierError` for a
    failure, a wrong output shape (one logit per class is needed), non-finite outputs or two calls
    that differ. Returns what was checked."""
    from repro.inference import eval_mode

    n, k = images.shape[0], len(class_names)
    shape = f"[{n}, 3, {images.shape[-2]}, {images.shape[-1]}]"
    outputs = []
    with eval_mode(model):
        for _ in range(2):
            try:
                out = model(images.clamp(-1.0, 1.0).contiguous())
            except Exception as err:
                raise ClassifierError(f"--classifier {source} failed on a batch {shape} of your images in [-1, 1] "
                                      f"({_first_line(err)}); give --classifier-size (its input size) and "
                                      f"--classifier-mean/--classifier-std (its normalisation) so the input "
                                      f"adapter feeds it what it was trained on") from None
            if not isinstance(out, torch.Tensor):
                raise ClassifierError(f"--classifier {source} returned a {type(out).__name__}, not a tensor of "
                                      f"logits [N, {k}]; return the logits alone")
            outputs.append(out.detach().float().cpu())
    first, second = outputs
    if tuple(first.shape) != (n, k):
        raise ClassifierError(f"--classifier {source} returned shape {list(first.shape)} on {n} images, but the folder "
                              f"has {k} classes ({', '.join(class_names)}): it must return [N, {k}], one logit per "
                              f"class folder in sorted order")
    bad = int((~torch.isfinite(first)).any(1).sum())
    if bad:
        raise ClassifierError(f"--classifier {source} gave non-finite outputs (NaN or Inf) on {bad} of {n} of your "
                              f"images; check its weights (--classifier-weights) and input normalisation "
                              f"(--classifier-mean/--classifier-std)")
    diff = float((first - second).abs().max())
    if diff > DETERMINISM_TOLERANCE * (1.0 + float(first.abs().max())):
        raise ClassifierError(f"--classifier {source} changed its output between two identical calls in eval mode "
                              f"(max difference {diff:.3g}): switch off what is random at inference (dropout called "
                              f"with training=True, sampled noise); StylEx needs a deterministic classifier")
    return {"images": n, "classes": k, "max_abs_logit": float(first.abs().max()), "repeat_max_diff": diff}


def check_inputs(profile: Profile, *, progress: bool = False) -> dict[str, Any]:
    """Check a profile's data and classifier before anything is trained; what :mod:`repro.__main__`'s
    ``custom`` command runs. Loads (decodes and caches) every split of every task, so fewer than two
    classes, an empty class and too many undecodable images fail here; then imports your classifier
    and runs :func:`check_classifier` on real validation images. Returns one summary dict per task."""
    from repro.data import class_names, load_split
    from repro.data.real import DataError

    summary: dict[str, Any] = {}
    for task in profile.tasks:
        data = task.classifier_data
        names = class_names(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            splits = {s: load_split(data, s, progress=progress) for s in SPLITS}
        for w in caught:
            warnings.warn(str(w.message), stacklevel=2)
        counts = {s: {names[c]: int((split.labels == c).sum()) for c in range(len(names))} for s, split in splits.items()}
        for s, per_class in counts.items():
            empty = [c for c, n in per_class.items() if n == 0]
            if empty:
                raise DataError(f"split {s!r} of {data.root} has no image of class(es) {', '.join(empty)}; add "
                                      f"images to them (or remove the class folders)")
        ev = profile.eval
        if len(splits["test"]) < ev.repeats * ev.images_per_repeat:
            raise ValueError(f"the flip rate needs --repeats x --images-per-repeat = {ev.repeats} x "
                                  f"{ev.images_per_repeat} held-out images but your test split has "
                                  f"{len(splits['test'])}; give e.g. --repeats {min(ev.repeats, len(splits['test']))} "
                                  f"--images-per-repeat {max(1, len(splits['test']) // min(ev.repeats, len(splits['test'])))}")
        entry: dict[str, Any] = {"root": data.root, "classes": list(names), "images": counts,
                                 "split": ("split folders" if any((Path(data.root) / s).is_dir() for s in SPLITS)
                                           else f"80/10/10 by a hash of each file name, split seed {data.seed}"),
                                 "left_out": [str(w.message) for w in caught]}
        if profile.classifier.source is not None:
            model = load_user_classifier(profile.classifier)
            val = splits["val"]
            take = torch.linspace(0, len(val) - 1, min(CHECK_IMAGES, len(val))).round().long()
            entry["classifier"] = check_classifier(model, val.batch(take), names, profile.classifier.source)
        summary[task.name] = entry
    return summary
