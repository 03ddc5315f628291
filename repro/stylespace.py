"""StyleSpace edits: the coordinates, the one edit rule, its targets and the attribute lists.

StyleSpace (Wu et al.) is the concatenation of the conv layers' styles, ``S = sum(style_dims)``
coordinates per image; ``G.styles(w)`` gives them per layer (one [N, C_l] tensor each) and
``G.synthesis`` renders from them (:mod:`repro.networks`). This module is the home of everything
that names or moves a coordinate:

* **Layout**: a flat index ``i`` is layer-major (:func:`flatten_styles`); :func:`decode_index`
  turns it into ``(layer, channel)``, :func:`flat_index` back, :func:`decode_indices` decodes a
  whole list of ``(direction, index)`` pairs; :func:`edit_styles` writes new values.
* **Attributes**: an attribute is a ``(direction, index)`` pair; :class:`Attributes` is a ranked
  list of them (AttFind's output and the baselines'). Lists read "class 1 -> class 0":
  direction 0 moves coordinate ``index`` to its *minimum*, 1 to its *maximum*;
  :func:`toward_class` gives the direction that pushes an image of a given class to the other.
* **Targets** (:func:`style_range`): the minimum and maximum of every coordinate over a set of
  reference images (AttFind's images for AttFind, the figures, the explorer and the user study,
  kept on ``repro.explain.Explanation.targets``; the evaluation images themselves for the flip
  rate and the ground truth's probe). :func:`edit_targets` picks the target of a direction,
  :func:`check_range` puts given targets on a device.
* **The edit rule** (:func:`edit_values`): ``s <- s + amount * (target - s)``. Amount 1 moves a
  coordinate onto its target (AttFind, the flip rate, the figures), 0 leaves it, values between
  interpolate (GIF sweeps, the explorer's sliders). :func:`apply_edits` applies a list of edits
  to per-layer styles.

Typical use::

    conv, rgb = G.styles(w)
    style_min, style_max = style_range(flatten_styles(conv))
    edited = apply_edits(conv, [toward_class(attributes.coords[0], base_class=1)], 1.0, style_min, style_max)
    img = G.synthesis(edited, rgb, noise)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from repro.networks import assert_shape

__all__ = [
    "flatten_styles", "unflatten_styles", "decode_index", "flat_index", "decode_indices", "edit_styles",
    "Attributes", "toward_class", "class_direction", "style_range", "check_range", "edit_targets", "edit_values",
    "apply_edits",
]


# ---------------------------------------------------------------------------------------------
# Layout: flat index = layer-major concatenation of the conv layers' styles

def flatten_styles(conv_styles: Sequence[Tensor]) -> Tensor:
    """Per-layer styles -> [B, S]."""
    return torch.cat(list(conv_styles), dim=1)


def unflatten_styles(flat: Tensor, style_dims: Sequence[int]) -> list[Tensor]:
    """[B, S] -> one [B, C_l] per layer (views of ``flat``)."""
    assert_shape(flat, [None, sum(style_dims)], "flat styles")
    return list(torch.split(flat, list(style_dims), dim=1))


def decode_index(index: int, style_dims: Sequence[int]) -> tuple[int, int]:
    """Flat StyleSpace index -> (conv layer, channel); IndexError outside [0, S)."""
    index = int(index)
    if not 0 <= index < sum(style_dims):
        raise IndexError(f"style index {index} outside [0, {sum(style_dims)})")
    for layer, dim in enumerate(style_dims):
        if index < dim:
            return layer, index
        index -= dim
    raise AssertionError("unreachable")


def flat_index(layer: int, channel: int, style_dims: Sequence[int]) -> int:
    """(conv layer, channel) -> flat StyleSpace index (the inverse of :func:`decode_index`)."""
    if not 0 <= layer < len(style_dims) or not 0 <= channel < style_dims[layer]:
        raise IndexError(f"(layer {layer}, channel {channel}) outside style_dims {list(style_dims)}")
    return int(sum(style_dims[:layer]) + channel)


def decode_indices(coords: Sequence[tuple[int, int]], style_dims: Sequence[int]) -> tuple[list[int], list[int]]:
    """(layers, channels) of the indices of ``(direction, index)`` pairs, as :class:`Attributes` keeps them."""
    decoded = [decode_index(i, style_dims) for _, i in coords]
    return [layer for layer, _ in decoded], [channel for _, channel in decoded]


def edit_styles(conv_styles: Sequence[Tensor], indices: Sequence[int], values: Tensor | float) -> list[Tensor]:
    """Set flat coordinate ``indices[j]`` to ``values[..., j]`` and return a NEW list.

    ``values`` broadcasts to [B, len(indices)]. Only the edited layers are copied; the inputs
    are never modified. A repeated index takes its last value. Differentiable.
    """
    dims = [s.shape[1] for s in conv_styles]
    batch = conv_styles[0].shape[0]
    out = list(conv_styles)
    if len(indices) == 0:
        return out
    ref = conv_styles[0]
    vals = torch.as_tensor(values, dtype=ref.dtype, device=ref.device).expand(batch, len(indices))
    last = {int(i): j for j, i in enumerate(indices)}  # repeated index: the last value wins
    by_layer: dict[int, tuple[list[int], list[int]]] = {}
    for i, j in last.items():
        layer, ch = decode_index(i, dims)
        by_layer.setdefault(layer, ([], []))
        by_layer[layer][0].append(ch)
        by_layer[layer][1].append(j)
    for layer, (chs, js) in by_layer.items():
        s = out[layer].clone()
        s[:, torch.tensor(chs, device=ref.device)] = vals[:, torch.tensor(js, device=ref.device)]
        out[layer] = s
    return out


# ---------------------------------------------------------------------------------------------
# Attribute lists

def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Attributes:
    """A ranked list of StyleSpace edits, the common output of AttFind and the baselines.

    Convention: ``coords[r] = (direction, index)`` moves an image from class 1 towards class 0
    (direction 0: set the coordinate to its minimum, 1: to its maximum); to move class 0 towards
    class 1 apply ``1 - direction`` (:func:`toward_class`). The flip rate relies on this.

    Parameters:
        method: ``attfind``, ``wu`` or ``random`` (free text for others).
        coords: ranked ``(direction, flat StyleSpace index)`` pairs, best first.
        scores: the ranking score of each pair (AttFind two-class: mean(effect[:, d, i, 0]) +
            mean(effect[:, 1-d, i, 1]) over all images; see each method's docstring).
        mean_effect: per pair ``(e0, e1)``: e0 = mean over all images of the class-0 logit change
            when applying ``d``, e1 = that of the class-1 logit when applying ``1 - d``; so each
            is the mean effect on one class's logit of moving towards that class. None if unknown.
        layers / channels: the conv layer and channel of each index (None if unknown;
            :func:`decode_indices`).
        config: the settings that produced the list.
        details: method-specific extras (per-class selections, unstable images, ...).
    """

    method: str
    coords: list[tuple[int, int]]
    scores: list[float]
    mean_effect: list[tuple[float, float]] | None = None
    layers: list[int] | None = None
    channels: list[int] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.coords = [(int(d), int(i)) for d, i in self.coords]
        if len(self.scores) != len(self.coords):
            raise ValueError(f"{len(self.coords)} coords but {len(self.scores)} scores")
        for name in ("mean_effect", "layers", "channels"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.coords):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.coords)} coords")

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def directions(self) -> list[int]:
        return [d for d, _ in self.coords]

    @property
    def indices(self) -> list[int]:
        return [i for _, i in self.coords]

    def top(self, k: int) -> list[tuple[int, int]]:
        return self.coords[:k]

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "coords": [[d, i] for d, i in self.coords],
            "scores": [_finite_or_none(s) for s in self.scores],
            "mean_effect": None if self.mean_effect is None else [[_finite_or_none(a), _finite_or_none(b)]
                                                                  for a, b in self.mean_effect],
            "layers": self.layers,
            "channels": self.channels,
            "config": self.config,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Attributes":
        mean_effect = data.get("mean_effect")
        return cls(
            method=data["method"],
            coords=[(int(d), int(i)) for d, i in data["coords"]],
            scores=[math.nan if s is None else float(s) for s in data["scores"]],
            mean_effect=None if mean_effect is None else [
                (math.nan if a is None else float(a), math.nan if b is None else float(b)) for a, b in mean_effect],
            layers=data.get("layers"),
            channels=data.get("channels"),
            config=dict(data.get("config") or {}),
            details=dict(data.get("details") or {}),
        )


def class_direction(direction: int | Tensor, base_class: int | Tensor) -> int | Tensor:
    """The direction of a "class 1 -> class 0" attribute that pushes an image of ``base_class`` to the
    other class: ``direction`` itself for class 1, ``1 - direction`` for class 0. Elementwise when
    ``base_class`` is a tensor (one class per image)."""
    if isinstance(base_class, Tensor):
        return torch.where(base_class == 1, direction, 1 - direction)
    return direction if base_class == 1 else 1 - direction


def toward_class(edit: tuple[int, int], base_class: int) -> tuple[int, int]:
    """The edit that pushes an image of ``base_class`` to the other class (lists read 1 -> 0)."""
    d, i = edit
    return class_direction(int(d), int(base_class)), int(i)


# ---------------------------------------------------------------------------------------------
# Targets and the edit rule

def style_range(conv_styles_flat: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-coordinate (min, max) over images of [N, S] styles (a per-layer list is flattened first):
    the edit targets of direction 0 and 1."""
    flat = torch.cat(list(conv_styles_flat), 1) if isinstance(conv_styles_flat, (list, tuple)) else conv_styles_flat
    if flat.ndim != 2:
        raise ValueError(f"expected [N, S] styles, got {tuple(flat.shape)}")
    return flat.min(0).values, flat.max(0).values


def check_range(style_min: Tensor, style_max: Tensor, num_styles: int, device: torch.device | str,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``style_min`` / ``style_max`` as flat [S] tensors on ``device`` in ``dtype``; ValueError unless
    each has S = ``num_styles`` entries."""
    smin = torch.as_tensor(style_min).reshape(-1).to(device, dtype)
    smax = torch.as_tensor(style_max).reshape(-1).to(device, dtype)
    if smin.numel() != num_styles or smax.numel() != num_styles:
        raise ValueError(f"style_min/style_max must have S = {num_styles} entries, "
                         f"got {smin.numel()} and {smax.numel()}")
    return smin, smax


def edit_targets(direction: int | Tensor, index: int | Tensor | Sequence[int], style_min: Tensor,
                 style_max: Tensor) -> Tensor:
    """The target of each edit: ``style_min[index]`` for direction 0, ``style_max[index]`` for 1.

    ``direction`` and ``index`` broadcast against each other (ints, index lists or tensors);
    the result is on the targets' device. A selection: no arithmetic touches the values.
    """
    if isinstance(index, Tensor):
        index = index.to(style_min.device)
    else:
        try:
            index = operator.index(index)
        except TypeError:
            index = torch.as_tensor(list(index), dtype=torch.long, device=style_min.device)
    direction = torch.as_tensor(direction, device=style_min.device)
    return torch.where(direction == 0, style_min[index], style_max[index])


def edit_values(current: Tensor, target: Tensor, amount: float | Tensor, *, exact: bool = False) -> Tensor:
    """The edit rule: the new value ``s + amount * (target - s)`` of each coordinate ``s = current``.

    ``amount`` (the shift size) 1 moves a coordinate onto its target, 0 leaves it, values in
    between interpolate and values above 1 overshoot. ``exact`` (only with amount 1) returns the
    target itself: in floating point ``s + 1 * (t - s)`` can miss ``t`` in the last bit (a quarter
    of random float32 pairs do). The flip rate sets coordinates to exactly their targets, AttFind,
    the counterfactual figures and the explorer compute the formula; each keeps its numbers.
    """
    if exact:
        if not (isinstance(amount, (int, float)) and amount == 1):
            raise ValueError(f"exact=True sets coordinates to their targets: it needs amount 1, got {amount!r}")
        return torch.broadcast_to(target, torch.broadcast_shapes(current.shape, target.shape))
    return current + amount * (target - current)


def apply_edits(conv_styles: Sequence[Tensor], edits: Sequence[tuple[int, int]], amount: float | Sequence[float],
                style_min: Tensor, style_max: Tensor) -> list[Tensor]:
    """Per-layer styles with every ``(direction, index)`` of ``edits`` moved towards its target by the rule.

    ``amount``: one shift size for every edit, or one per edit. Returns a new list
    (:func:`edit_styles`); the inputs are untouched. Edits apply together, to every image;
    targets come from ``style_min`` / ``style_max`` ([S], any device).
    """
    if not edits:
        return list(conv_styles)
    flat = flatten_styles(conv_styles)
    idx = [i for _, i in edits]
    targets = edit_targets([d for d, _ in edits], idx, style_min, style_max).to(flat.device)
    if not isinstance(amount, (list, tuple)):
        values = edit_values(flat[:, idx], targets, amount)
    else:
        if len(amount) != len(edits):
            raise ValueError(f"{len(edits)} edits but {len(amount)} amounts")
        values = torch.stack([edit_values(flat[:, i], t, a) for i, t, a in zip(idx, targets, amount)], 1)
    return edit_styles(conv_styles, idx, values)
