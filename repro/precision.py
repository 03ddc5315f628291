"""Reduced-precision training flags, each checked against fp32 before it is trusted.

``StylExConfig.precision`` picks one of:

    fp32   the reference: true fp32 matmuls and convolutions (TF32 switched off on CUDA).
    tf32   TF32 tensor-core matmuls and convolutions on CUDA (Ampere or newer); fp32 storage.
    bf16   bfloat16 autocast of the network forward passes (CUDA, or CPU); losses, R1 and
           path-length penalties, optimiser state and EMA stay fp32. No loss scaling is needed:
           bfloat16 has fp32's exponent range.
    auto   bf16 where the device computes bfloat16 natively (a CUDA GPU that supports it; a CPU
           with AVX512-BF16 or AMX-BF16), fp32 elsewhere (:func:`resolve`); the run's
           ``metadata.json`` records what it resolved to.

``StylExConfig.channels_last`` stores the conv networks NHWC, which tensor cores prefer.

Before a run trains with ``tf32`` or ``bf16``, :func:`numerical_check` renders a fixed batch with
the freshly initialised networks both ways and compares images and classifier probabilities; a
difference above the tolerance stops the run with an error (the result is recorded in the run's
``metadata.json`` either way).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "auto")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bfloat16 arithmetic
# Largest accepted mean |image difference| (images in [-1, 1]) and max |probability difference|
# between a reduced-precision render and the fp32 one.
IMAGE_TOLERANCE = 0.02
PROB_TOLERANCE = 0.05


class PrecisionMismatch(RuntimeError):
    """A reduced-precision render differs from the fp32 one beyond tolerance."""


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU with bfloat16 support, or a CPU
    with one of :data:`CPU_BF16_FLAGS` (elsewhere bfloat16 is emulated and can be slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(_cpu_flags() & set(CPU_BF16_FLAGS))


def resolve(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` uses: ``auto`` becomes ``bf16`` where :func:`native_bf16`,
    else ``fp32``; the others are returned unchanged (:func:`validate` them)."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def validate(precision: str, device: torch.device) -> None:
    """Raise ``ValueError`` naming the flag and the fix when ``precision`` can't run on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(f"precision 'tf32' only changes CUDA matmuls and convolutions, and the device is "
                         f"{device}; use --precision fp32 (or bf16) on this device")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' needs a GPU with bfloat16 support, and {torch.cuda.get_device_name(device)} "
                         f"has none; use --precision fp32 or tf32")


@contextlib.contextmanager
def matmul_mode(precision: str) -> Iterator[None]:
    """TF32 on for ``tf32``, off otherwise (PyTorch leaves cuDNN's TF32 on by default), restored after."""
    cuda_backends = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [b.allow_tf32 for b in cuda_backends]
    for b in cuda_backends:
        b.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        for b, value in zip(cuda_backends, before):
            b.allow_tf32 = value


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for ``bf16``; a no-op otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


@torch.no_grad()
def numerical_check(model: nn.Module, classifier: nn.Module, precision: str, device: torch.device,
                    batch: int = 8, seed: int = 0) -> dict[str, Any]:
    """Render one fixed batch in fp32 and in ``precision``; compare images and classifier output.

    ``model`` is a ``repro.model.StylExModel`` (its generator is used with a random w).
    Returns ``{"precision", "image_mean_abs", "image_max_abs", "prob_max_abs", "ok"}``.
    """
    gen = torch.Generator().manual_seed(seed)
    w_dim = model.generator.w_dim
    w = torch.randn(batch, w_dim, generator=gen).to(device)
    noise = model.generator.make_noise(batch, generator=gen, device=device)

    def render(mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        with matmul_mode(mode), autocast(mode, device):
            img = model.generator(w, noise)
            probs = F.softmax(classifier(img).float(), dim=1)
        return img.float(), probs

    ref_img, ref_probs = render("fp32")
    img, probs = render(precision)
    diff = (img - ref_img).abs()
    result = {"precision": precision, "image_mean_abs": diff.mean().item(), "image_max_abs": diff.max().item(),
              "prob_max_abs": (probs - ref_probs).abs().max().item()}
    result["ok"] = bool(result["image_mean_abs"] <= IMAGE_TOLERANCE and result["prob_max_abs"] <= PROB_TOLERANCE)
    return result


def require_close(check: dict[str, Any]) -> None:
    """Raise ``PrecisionMismatch`` when a :func:`numerical_check` failed its tolerance."""
    if not check["ok"]:
        raise PrecisionMismatch(
            f"precision {check['precision']!r} differs from fp32 beyond tolerance on a fixed render "
            f"(mean |image diff| {check['image_mean_abs']:.4f}, tolerance {IMAGE_TOLERANCE}; max |prob diff| "
            f"{check['prob_max_abs']:.4f}, tolerance {PROB_TOLERANCE}); train with --precision fp32")
