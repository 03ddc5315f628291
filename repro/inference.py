"""Running the generator and the classifier for evaluation: eval mode, the one classify, its fast form.

Every classifier decision on a render in this package goes through :func:`classify`: images are
clamped to [-1, 1] first (as the authors' ``call_synthesis`` does and as a figure shows them)
and the logits come back as float32. :func:`classify_images` is the batched form in eval mode
(:func:`class_probability` its softmax for one class);
:func:`fast_classifier` is the same function computed by a BatchNorm-folded channels_last copy
(AttFind's effects and the flip rate); :func:`eval_mode` keeps BatchNorm statistics out of edit
batches; :func:`prepare_inputs` moves styles and fixed noise to the generator's device;
:func:`classifier_probs` is StylEx's class input, softmax C(x), of a set of real images.
"""

from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from repro.data import ImageSet

__all__ = ["device_of", "eval_mode", "classify", "classify_images", "class_probability", "classifier_probs",
           "fast_classifier", "prepare_inputs"]


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for a module with neither."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block (BatchNorm must not see edit batches), then restore."""
    previous = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, was in zip(modules, previous):
            m.train(was)


def classify(classifier: nn.Module, img: torch.Tensor) -> torch.Tensor:
    """float32 logits of images clamped to [-1, 1] (as the authors' synthesis output is).

    The classifier runs in whatever mode it is in: wrap calls in :func:`eval_mode` (or use
    :func:`classify_images`) unless it is known to be in eval mode."""
    return classifier(img.clamp(-1.0, 1.0).contiguous()).float()


@torch.inference_mode()
def classify_images(classifier: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """float32 logits [N, 2] of float images, batched, by :func:`classify` (each image clamped to
    [-1, 1] first), in eval mode."""
    with eval_mode(classifier):
        out = [classify(classifier, images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 2)


def class_probability(classifier: nn.Module, images: torch.Tensor, cls: int = 1) -> torch.Tensor:
    """softmax C(x)[:, cls] on the CPU of float images, by :func:`classify_images` (clamped, eval mode)."""
    return F.softmax(classify_images(classifier, images), dim=1)[:, cls].cpu()


@torch.inference_mode()
def classifier_probs(classifier: nn.Module, images: "ImageSet", device: torch.device,
                     batch_size: int = 512) -> torch.Tensor:
    """softmax C(x) [N, 2] on ``device`` of every image of a set, by :func:`classify`, computed once
    (StylEx's class input: valid because no augmentation is applied). The classifier runs in the
    mode it is in (the trainer's and the evaluation's are frozen in eval mode)."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images.batch(slice(start, start + batch_size), device)
        out.append(F.softmax(classify(classifier, x), dim=1))
    return torch.cat(out).to(device)


_FOLDED: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Callable]]" = weakref.WeakKeyDictionary()


def fast_classifier(classifier: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`classify`, faster: an inference copy of the (eval-mode) classifier with BatchNorm
    folded into the convolutions (``torch.fx``) and channels_last weights and inputs. Falls back
    to the classifier as it is, with a warning, when it cannot be traced.

    The folded copy is cached per classifier and rebuilt when any of its parameters or buffers
    changed since (their in-place version counters, data pointers and devices are compared):
    folding costs a fraction of a second, which flip-rate repeats would otherwise pay each time.
    """
    from torch.fx.experimental.optimization import fuse

    tensors = [*classifier.parameters(), *classifier.buffers()]
    stamp = tuple((t._version, t.data_ptr(), str(t.device)) for t in tensors)
    cached = _FOLDED.get(classifier)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        fused = fuse(classifier).to(memory_format=torch.channels_last)
    except Exception as err:  # fx raises many types on untraceable models
        warnings.warn(f"could not fold the classifier's BatchNorm with torch.fx ({err!r}); using it as it is")
        return lambda img: classify(classifier, img)

    def run(img: torch.Tensor) -> torch.Tensor:
        return fused(img.clamp(-1.0, 1.0).contiguous(memory_format=torch.channels_last)).float()

    _FOLDED[classifier] = (stamp, run)
    return run


def prepare_inputs(G: nn.Module, conv_styles: Sequence[torch.Tensor], rgb_styles: Sequence[torch.Tensor],
                   noise: Sequence[torch.Tensor] | None) -> tuple[list[torch.Tensor], list[torch.Tensor],
                                                                 list[torch.Tensor], torch.device]:
    """(conv styles, rgb styles, noise, device), all on the generator's device, checked.

    ``conv_styles``: per layer [N, C_l] with one N (and ``G.style_dims`` when G has them);
    ``noise``: one fixed noise per image and conv layer, or None for zero noise.
    """
    device = device_of(G)
    conv = [c.to(device) for c in conv_styles]
    rgb = [r.to(device) for r in rgb_styles]
    n = conv[0].shape[0]
    if any(c.ndim != 2 or c.shape[0] != n for c in conv):
        raise ValueError(f"conv styles must be [N, C_l] with one N, got {[tuple(c.shape) for c in conv]}")
    if hasattr(G, "style_dims") and [c.shape[1] for c in conv] != list(G.style_dims):
        raise ValueError(f"conv styles have dims {[c.shape[1] for c in conv]}, the generator {list(G.style_dims)}")
    if noise is None:
        noise_t = [t.to(device) for t in G.zero_noise(n, device=device)]
    else:
        noise_t = [t.to(device) for t in noise]
        if any(t.shape[0] != n for t in noise_t):
            raise ValueError(f"need one fixed noise per image ({n}); got batch sizes {[t.shape[0] for t in noise_t]}")
    return conv, rgb, noise_t, device
