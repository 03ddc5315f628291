"""Figures of the attributes a method found (the report's Figures 3-6 and 9), their GIFs and effects.

An *attribute* is one ``(direction, index)`` pair of a ranked :class:`repro.stylespace.Attributes`
list; the list reads "class 1 -> class 0" (see :mod:`repro.counterfactual`). Every figure here
shows it **in both directions**: held-out images the classifier puts in class 0 are pushed
towards class 1 (direction ``1 - d``) and images of class 1 towards class 0 (direction ``d``).

Conventions shared by every function:

* **Images** come from the explanation's held-out evaluation set (never the AttFind images).
  An image's *base class* is the classifier's decision on its unedited render ``G(s)`` with its
  fixed noise, as in the flip rate. ``n_images`` per attribute are split evenly between the two
  base classes (class 0 gets the smaller half); when one class has too few images the other
  fills in, so a badly trained model that puts every image in one class still gets a figure.
* **Originals** are unedited renders, not the real images: the only difference between an
  original and its counterfactual is the edit.
* **Targets** of an edit are the coordinate's min / max over the AttFind images (the reference
  set the attribute was selected on), computed once per explanation (``Explanation.targets``);
  the shift size is 1 (the coordinate is set to the target), as AttFind and the flip rate use.
* **Probabilities** written on images are the classifier's softmax for the class the image is
  pushed towards ("the dogs show the classification score as cats", report Figure 4).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np
import torch

from repro.config import Profile
from repro.counterfactual import edit_render, save_gif, sweep_frames
from repro.explain import Explanation
from repro.figures import _in_notebook, _mpl, _save, as_hwc_uint8
from repro.inference import class_probability
from repro.stylespace import Attributes, decode_index, toward_class

T = TypeVar("T")

METHOD_NAMES = {"attfind": "AttFind", "wu": "Wu et al.", "random": "random"}
POOL = 256  # held-out images scanned for base classes when choosing examples
AFFECTED_POOL = 64  # held-out images an attribute is tried on to find those it moves most (affected_images)


def one_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with one torch CPU thread, restoring the setting after.

    Figures render a few images at a time; with such small batches extra threads only add
    synchronisation, and on a shared CPU they make it much worse (measured here: a 4-panel figure
    took 8.9 s with 2 threads and 2.2 s with 1 on a loaded 2-core machine). GPU work is unaffected.
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


# ---------------------------------------------------------------------------------------------
# What the figures are made of

@dataclass
class ImageChoice:
    """Held-out images chosen for a figure, in display order.

    Parameters:
        indices: positions in the explanation's evaluation set.
        base_class: the classifier's decision on each unedited render.
    """

    indices: list[int]
    base_class: list[int]

    def of_class(self, cls: int) -> list[int]:
        """Positions (in this choice, not the eval set) of the images of base class ``cls``."""
        return [j for j, b in enumerate(self.base_class) if b == cls]


@dataclass
class Counterfactuals:
    """Originals and counterfactuals of one attribute on chosen images.

    Parameters:
        original / edited: uint8 [N, R, R, 3].
        p_original / p_edited: [N] softmax of the class each image is pushed towards.
        choice: which images, with their base class (image j is pushed to ``1 - base_class[j]``).
        edits: per image, the ``(direction, index)`` applied.
    """

    original: np.ndarray
    edited: np.ndarray
    p_original: np.ndarray
    p_edited: np.ndarray
    choice: ImageChoice
    edits: list[tuple[int, int]]


def method_name(method: str) -> str:
    """Display name of a method key (``attfind`` -> ``AttFind``)."""
    return METHOD_NAMES.get(method, method)


def _attributes(explanation: Explanation, attributes: Attributes | str) -> Attributes:
    return explanation.attributes[attributes] if isinstance(attributes, str) else attributes


def layer_channel(attributes: Attributes, rank: int, style_dims: Sequence[int]) -> tuple[int, int]:
    """(conv layer, channel) of the attribute at ``rank`` (0-based)."""
    if attributes.layers is not None and attributes.channels is not None:
        return int(attributes.layers[rank]), int(attributes.channels[rank])
    return decode_index(attributes.coords[rank][1], style_dims)


def attribute_label(attributes: Attributes, rank: int, style_dims: Sequence[int]) -> str:
    """``AttFind #1: layer 2, channel 5`` (``rank`` is 0-based, the label 1-based)."""
    layer, channel = layer_channel(attributes, rank, style_dims)
    return f"{method_name(attributes.method)} #{rank + 1}: layer {layer}, channel {channel}"


@torch.inference_mode()
def base_classes(explanation: Explanation, pool: int = POOL) -> torch.Tensor:
    """Softmax [M, 2] of the classifier on the unedited renders of the first ``pool`` held-out images."""
    lat = explanation.eval_set.subset(slice(0, min(pool, len(explanation.eval_set))))
    empty = torch.zeros(0)
    images = edit_render(explanation.model, lat, [], 0.0, empty, empty)
    p1 = class_probability(explanation.classifier, images, 1)
    return torch.stack([1 - p1, p1], 1)


def _half_each(by_class: Mapping[int, Sequence[int]], n_images: int) -> ImageChoice:
    """The first ``n_images`` of ``by_class`` (image indices per base class, in order of preference),
    half of each class where possible, class 0 first."""
    want = {0: n_images // 2, 1: n_images - n_images // 2}
    for c in (0, 1):  # a class with too few images leaves its places to the other
        short = want[c] - len(by_class[c])
        if short > 0:
            want[c] -= short
            want[1 - c] += short
    first, second = list(by_class[0][:want[0]]), list(by_class[1][:want[1]])
    if not first + second:
        raise ValueError("the explanation has no held-out images to draw")
    return ImageChoice(first + second, [0] * len(first) + [1] * len(second))


def choose_images(explanation: Explanation, n_images: int = 4, *, pool: int = POOL) -> ImageChoice:
    """``n_images`` held-out images, half of each base class where possible (class 0 first)."""
    base = base_classes(explanation, pool).argmax(1).tolist()
    return _half_each({c: [i for i, b in enumerate(base) if b == c] for c in (0, 1)}, n_images)


@torch.inference_mode()
def affected_images(explanation: Explanation, edit: tuple[int, int], n_images: int = 4, *,
                    pool: int = AFFECTED_POOL) -> ImageChoice:
    """The ``n_images`` held-out images ``edit`` moves most, half of each base class where possible.

    Among the first ``pool`` held-out images, each is pushed towards the other class by ``edit``
    (as :func:`counterfactuals` does, with the explanation's targets) and ranked by how much the
    classifier's probability of that class rises. Where an attribute matters, not where it does
    not: a figure drawn from these images says so in its title.
    """
    probs = base_classes(explanation, pool)
    base = probs.argmax(1)
    smin, smax = explanation.targets
    gain = torch.full((len(base),), -float("inf"))
    for cls in (0, 1):
        idx = torch.nonzero(base == cls).flatten()
        if len(idx):
            edited = edit_render(explanation.model, explanation.eval_set.subset(idx), [toward_class(edit, cls)], 1.0,
                                 smin, smax)
            gain[idx] = class_probability(explanation.classifier, edited, 1 - cls).cpu() - probs[idx, 1 - cls].cpu()
    return _half_each({c: [int(i) for i in torch.nonzero(base == c).flatten()[gain[base == c].argsort(descending=True)]]
                       for c in (0, 1)}, n_images)


def counterfactuals(explanation: Explanation, edit: tuple[int, int], choice: ImageChoice,
                    style_min: torch.Tensor, style_max: torch.Tensor, amount: float = 1.0) -> Counterfactuals:
    """Originals and edits of ``choice``: each image pushed towards the other class by ``edit``.

    ``edit`` is an attribute in the list's "class 1 -> class 0" convention; images of base
    class 0 get its opposite direction (:func:`repro.stylespace.toward_class`).
    """
    model, clf = explanation.model, explanation.classifier
    n = len(choice.indices)
    outputs: dict[str, list[Any]] = {"orig": [None] * n, "edit": [None] * n, "p0": [0.0] * n, "p1": [0.0] * n}
    edits: list[tuple[int, int]] = [edit] * n
    for cls in (0, 1):
        rows = choice.of_class(cls)
        if not rows:
            continue
        lat = explanation.eval_set.subset(torch.tensor([choice.indices[j] for j in rows]))
        cls_edit = toward_class(edit, cls)
        orig = edit_render(model, lat, [], 0.0, style_min, style_max)
        edited = edit_render(model, lat, [cls_edit], amount, style_min, style_max)
        p_orig = class_probability(clf, orig, 1 - cls)
        p_edit = class_probability(clf, edited, 1 - cls)
        orig_u8, edit_u8 = as_hwc_uint8(orig), as_hwc_uint8(edited)
        for k, j in enumerate(rows):
            outputs["orig"][j], outputs["edit"][j] = orig_u8[k], edit_u8[k]
            outputs["p0"][j], outputs["p1"][j] = float(p_orig[k]), float(p_edit[k])
            edits[j] = cls_edit
    return Counterfactuals(np.stack(outputs["orig"]), np.stack(outputs["edit"]), np.array(outputs["p0"]),
                           np.array(outputs["p1"]), choice, edits)


# ---------------------------------------------------------------------------------------------
# Static figures

CELL_IN = 0.95      # width of one image column of a panel, inches
ROW_IN = 1.05       # height of one image row (image, its title, the direction label)
LABEL_IN = 0.55     # the row labels of a panel
TITLE_IN = 0.45     # a panel's title
DPI = 110


def panel_size(n_images: int) -> tuple[float, float]:
    """(width, height) in inches of one attribute panel: two rows of ``n_images``."""
    return LABEL_IN + CELL_IN * n_images, TITLE_IN + 2 * ROW_IN


@one_thread
def attribute_panel(explanation: Explanation, attributes: Attributes | str, rank: int, *, n_images: int = 4,
                    class_names: Sequence[str], fig=None, choice: ImageChoice | None = None,
                    targets: tuple[torch.Tensor, torch.Tensor] | None = None):
    """One attribute as the report draws it: originals over counterfactuals, both directions.

    Args:
        explanation: a model's explanation (``repro.explain.explain_model``).
        attributes: a method key of ``explanation.attributes`` (``attfind``, ``wu``, ``random``)
            or a list.
        rank: 0-based position in the list.
        n_images: images shown, split between the base classes (see the module docstring).
        class_names: names of class 0 and class 1.
        fig: a matplotlib Figure or SubFigure to draw into; a new Figure of
            :func:`panel_size` when None.
        choice / targets: precomputed images and edit targets ``(style_min, style_max)`` (a
            multi-panel figure computes them once).

    Returns the (sub)figure drawn into. Each image is titled with the classifier's probability
    of the class it is pushed towards (blue before, red after); the label between an original
    and its counterfactual says which way (``cat → dog``).
    """
    plt = _mpl()
    attrs = _attributes(explanation, attributes)
    if not 0 <= rank < len(attrs):
        raise IndexError(f"rank {rank} outside the {len(attrs)} attributes of {attrs.method}")
    choice = choice or choose_images(explanation, n_images)
    smin, smax = targets or explanation.targets
    cf = counterfactuals(explanation, attrs.coords[rank], choice, smin, smax)
    if fig is None:
        fig = plt.figure(figsize=panel_size(len(choice.indices)), dpi=DPI)
    style_dims = explanation.model.generator.style_dims
    fig.suptitle(attribute_label(attrs, rank, style_dims), fontsize=8)
    axes = fig.subplots(2, max(1, len(choice.indices)), squeeze=False)
    for j, base in enumerate(choice.base_class):
        target = class_names[1 - base]
        for row, (img, p) in enumerate(((cf.original[j], cf.p_original[j]), (cf.edited[j], cf.p_edited[j]))):
            ax = axes[row][j]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"p({target})={p:.2f}", fontsize=6, pad=2,
                         color="tab:blue" if row == 0 else "tab:red")
        axes[0][j].set_xlabel(f"{class_names[base]} → {target}", fontsize=6, labelpad=1)
    axes[0][0].set_ylabel("original", fontsize=7)
    axes[1][0].set_ylabel("edited", fontsize=7)
    return fig


@one_thread
def plot_attributes(explanation: Explanation, method: str, path: str | Path, *, top: int = 4, n_images: int = 4,
                    class_names: Sequence[str], cols: int = 2, affected: bool = False):
    """The top ``top`` attributes of ``method`` as a grid of panels (report Figures 3-6, 9); saved to ``path``.

    The same images are used for every attribute, so the panels compare attributes, not images;
    ``affected`` instead draws each attribute on the held-out images it moves most
    (:func:`affected_images`), which shows what it does where it matters (the title says so).
    The figure is saved at a fixed size (``cols`` x rows panels of :func:`panel_size` at ``DPI``),
    so its pixel size is predictable.
    """
    plt = _mpl()
    attrs = explanation.attributes[method]
    top = min(top, len(attrs))
    if top == 0:
        raise ValueError(f"{method} has no attributes to draw")
    cols = min(cols, top)
    rows = -(-top // cols)
    choice = choose_images(explanation, n_images)
    ranges = explanation.targets
    w, h = panel_size(len(choice.indices))
    fig = plt.figure(figsize=(w * cols, h * rows + 0.3), dpi=DPI)
    task, mode = explanation.results.get("task", ""), explanation.results.get("mode", "")
    header, body = fig.subfigures(2, 1, height_ratios=[0.3, h * rows])
    shown = (f"the {len(choice.indices)} of the first {AFFECTED_POOL} held-out images each moves most" if affected
             else "held-out images")
    header.suptitle(f"{method_name(method)}: top {top} attributes, {task} {mode} ({shown})", fontsize=9)
    grid = body.subfigures(rows, cols, squeeze=False)
    for r in range(top):
        attribute_panel(explanation, attrs, r, class_names=class_names, fig=grid[r // cols][r % cols],
                        choice=affected_images(explanation, attrs.coords[r], n_images) if affected else choice,
                        targets=ranges)
    for r in range(top, rows * cols):
        grid[r // cols][r % cols].set_visible(False)
    return _save_fixed(fig, path)


def _save_fixed(fig, path: str | Path):
    """Save at the figure's own size (no tight bounding box), so width x height = figsize x DPI."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    if not _in_notebook():
        _mpl().close(fig)
    return fig


def plot_effects(explanations_by_model: Mapping[str, Explanation], path: str | Path, *, top: int = 6,
                 methods: Sequence[str] = ("attfind", "wu")):
    """Per model, the effect on the classifier of each of the top attributes, one bar per method.

    The bar is ``e0 + e1`` of :attr:`repro.stylespace.Attributes.mean_effect`: the mean change of the
    class-0 logit when the attribute is applied towards class 0, plus that of the class-1 logit
    when applied towards class 1, over the AttFind images (AttFind's ranking score). Attributes
    with no recorded effect are left empty.
    """
    plt = _mpl()
    names = list(explanations_by_model)
    fig, axes = plt.subplots(1, len(names), figsize=(0.45 * top * len(methods) + 1.6, 2.8) if len(names) == 1
                             else (3.4 * len(names), 2.8), squeeze=False)
    width = 0.8 / len(methods)
    for ax, name in zip(axes[0], names):
        exp = explanations_by_model[name]
        for m, method in enumerate(methods):
            attrs = exp.attributes.get(method)
            if attrs is None:
                continue
            k = min(top, len(attrs))
            effects = [np.nan if attrs.mean_effect is None else float(sum(attrs.mean_effect[r])) for r in range(k)]
            ax.bar(np.arange(k) + (m - (len(methods) - 1) / 2) * width, effects, width, label=method_name(method))
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xticks=range(top), xticklabels=[str(r + 1) for r in range(top)], xlabel="rank", title=name)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("mean logit change\n(both directions)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# GIFs

def gif_name(explanation: Explanation, method: str, rank: int) -> str:
    """``{task}_{mode}_{method}_attr{rank}.gif`` with a 1-based rank."""
    task, mode = explanation.results.get("task", "task"), explanation.results.get("mode", "model")
    return f"{task}_{mode}_{method}_attr{rank + 1}.gif"


def attribute_frames(explanation: Explanation, edit: tuple[int, int], choice: ImageChoice,
                     style_min: torch.Tensor, style_max: torch.Tensor, steps: int = 6) -> np.ndarray:
    """uint8 [2 * steps - 2, N, R, R, 3]: each chosen image swept towards the other class and back.

    The shift size runs 0 -> 1 in ``steps`` frames and back down without repeating either end,
    so the GIF loops with no stutter and no two consecutive frames are the same edit.
    """
    if steps < 2:
        raise ValueError(f"a sweep needs steps >= 2, got {steps}")
    n = len(choice.indices)
    frames: list[np.ndarray | None] = [None] * n
    for cls in (0, 1):
        rows = choice.of_class(cls)
        if not rows:
            continue
        lat = explanation.eval_set.subset(torch.tensor([choice.indices[j] for j in rows]))
        sweep = sweep_frames(explanation.model, lat, toward_class(edit, cls), style_min, style_max, steps)
        sweep = np.concatenate([sweep[:steps], sweep[steps + 1:-1]])  # 0..1, then back, ends once
        for k, j in enumerate(rows):
            frames[j] = sweep[:, k]
    return np.stack(frames, axis=1)


@one_thread
def attribute_gifs(explanation: Explanation, method: str, out_dir: str | Path, *, top: int = 4,
                   n_images: int = 4, steps: int = 6, scale: int = 2, colors: int = 128,
                   affected: bool = False) -> list[Path]:
    """One looping GIF per top attribute of ``method``: ``n_images`` held-out images side by side.

    Each image's coordinate moves smoothly from its own value to the target that pushes it
    towards the other class (shift size 0 -> 1 over ``steps`` frames) and back
    (:func:`attribute_frames`, ``2 * steps - 2`` frames); the images are those of
    :func:`plot_attributes` with the same ``affected`` (class 0 images first). Files are named by :func:`gif_name`; one
    shared palette of ``colors`` colours keeps a 32 px, 4-image GIF at tens of KB.
    """
    attrs = explanation.attributes[method]
    choice = choose_images(explanation, n_images)
    smin, smax = explanation.targets
    paths = []
    for rank in range(min(top, len(attrs))):
        shown = affected_images(explanation, attrs.coords[rank], n_images) if affected else choice
        frames = attribute_frames(explanation, attrs.coords[rank], shown, smin, smax, steps)
        paths.append(save_gif(frames, Path(out_dir) / gif_name(explanation, method, rank), scale=scale,
                              colors=colors))
    return paths


def folder_size(path: str | Path) -> tuple[int, int]:
    """(number of files, total bytes) under ``path``."""
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def mean_effect(explanation: Explanation, method: str, k: int) -> float:
    """Mean over a method's top-k attributes of e0 + e1 (in-sample logit changes; nan if unknown)."""
    attrs = explanation.attributes[method]
    vals = [sum(attrs.mean_effect[r]) for r in range(min(k, len(attrs)))] if attrs.mean_effect else []
    return sum(vals) / len(vals) if vals else float("nan")


def top_attribute_rows(explanations: Mapping[tuple[str, str], Explanation], top: int,
                       methods: Sequence[str] = ("attfind", "wu")) -> list[dict[str, Any]]:
    """One row per (task, model, method, rank) of the top attributes: layer, channel, direction and
    the mean effects e0 / e1 (notebook 04's "top attributes in numbers" table)."""
    rows = []
    for (task, mode), exp in explanations.items():
        dims = exp.model.generator.style_dims
        for method in methods:
            attrs = exp.attributes[method]
            for r in range(min(top, len(attrs))):
                layer, channel = layer_channel(attrs, r, dims)
                e0, e1 = attrs.mean_effect[r] if attrs.mean_effect is not None else (float("nan"),) * 2
                rows.append({"task": task, "model": mode, "method": method_name(method), "rank": r + 1,
                             "layer": layer, "channel": channel,
                             "direction": "to max" if attrs.coords[r][0] == 1 else "to min",
                             "e0": float(e0), "e1": float(e1)})
    return rows


# A model whose top attributes move the logits less than this on average, and whose top-k edit
# flips fewer held-out decisions than this share, is called too weakly trained to say anything.
WEAK_EFFECT, WEAK_FLIP = 0.05, 0.05


def _reference_purity(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sentence that puts an edit's purity beside that of real one-factor changes."""
    by_step: dict[float, list[float]] = {}
    for r in rows:
        by_step.setdefault(float(r["step"]), []).append(float(r["purity"]))
    parts = [f"{min(v):.2f}-{max(v):.2f} for a change of {step:g} of a factor's range"
             for step, v in sorted(by_step.items())]
    return f" The same probe reads real one-factor changes of the renderer at purity {' and '.join(parts)}."


def attribute_findings(explanations: Mapping[tuple[str, str], Explanation],
                       groundtruth_results: Mapping[tuple[str, str], Mapping[str, Any]], profile: Profile,
                       top: int, purity_reference: Sequence[Mapping[str, Any]] | None = None) -> str:
    """Notebook 04's "what this notebook found" in markdown, generated from the run's numbers:
    per model the mean effect of AttFind's and Wu's top attributes and the top-``k`` flip rates,
    what a single top attribute does alone (what the attribute figures show), the ground truth
    where measured, and the precision target's verdict per stylex model (with the planted
    spurious factor exposed, on a task whose classifier data plants one), its purity beside
    ``purity_reference`` (:func:`repro.groundtruth.real_change_purity`) when given."""
    from repro import groundtruth
    from repro.fidelity import TARGETS

    k = profile.eval.k
    lines = []
    for (task, mode), exp in explanations.items():
        flip = {m: r["flip_rate"] for m, r in exp.results["methods"].items()}
        e_att, e_wu = mean_effect(exp, "attfind", top), mean_effect(exp, "wu", top)
        line = (f"* **{task} / {mode}**: AttFind's top-{top} attributes change the logits by {e_att:.3g} on average "
                f"(e0 + e1, in-sample) against {e_wu:.3g} for Wu et al.'s; on held-out images, editing the top "
                f"{k} together flips {flip['attfind']['mean']:.1%} ± {flip['attfind']['std']:.1%} of the decisions "
                f"(Wu et al. {flip['wu']['mean']:.1%}, random {flip['random']['mean']:.1%}).")
        single = (exp.results["methods"]["attfind"].get("observer") or {}).get("single") or []
        if single:
            flips = [r["flip_C"] for r in single if r.get("flip_C") is not None]
            pixels = [r["pixel_max_255"] for r in single if r.get("pixel_max_255") is not None]
            if flips and pixels:
                line += (f" Alone, each of its top {len(single)} attributes flips the classifier on at most "
                         f"{max(flips):.0%} of held-out images and changes pixels by at most {min(pixels):.0f}-"
                         f"{max(pixels):.0f} /255 (mean over images): the attribute figures, drawn on the images "
                         "each moves most, show it at its strongest.")
        if (task, mode) in groundtruth_results:
            gt = groundtruth_results[(task, mode)]
            prec = ", ".join(f"{method_name(m)} {v['precision_at_k']:.2f}" for m, v in gt["methods"].items())
            exposed = [method_name(m) for m, v in gt["methods"].items() if v["spurious_exposed"]]
            line += (f" Ground truth: the classifier uses {', '.join(gt['used_factors']) or 'no factor clearly'}; "
                     f"precision@{gt['k']}: {prec}; the spurious factor `{gt['spurious']}` "
                     f"({'used' if gt['spurious_used'] else 'not used'} by the classifier) is exposed by "
                     f"{', '.join(exposed) if exposed else 'no method'}".rstrip(".") + ".")
            if gt.get("probe_validation"):
                line += _probe_reading(gt["probe_validation"], gt["used_factors"])
        lines.append(line)
    weak = [f"{task}/{mode}" for (task, mode), exp in explanations.items()
            if abs(mean_effect(exp, "attfind", top)) < WEAK_EFFECT
            and exp.results["methods"]["attfind"]["flip_rate"]["mean"] < WEAK_FLIP]
    caveat = (f"\n\nFor {', '.join(weak)} the edits barely move the classifier (mean effect < {WEAK_EFFECT} and "
              f"flip rate < {WEAK_FLIP * 100:.0f} %): those models are too weakly trained for their pictures to say "
              "anything about the classifier (expected on the quick profile, which trains for seconds)."
              if weak else "")
    targets = []
    for (task, mode), gt in groundtruth_results.items():
        if mode != "stylex":
            continue
        planted = profile.task(task).classifier_data.planted
        v = groundtruth.target_verdict(gt, planted)
        targets.append(f"* **{task} / stylex** against the target (precision@{gt['k']} >= "
                       f"{groundtruth.TARGET_PRECISION} and above Wu et al. and random"
                       f"{'; the planted spurious factor exposed' if planted else ''}): "
                       f"**{'met' if v['met'] else 'missed'}** (AttFind {v['precision']:.2f}). "
                       f"The mean purity of AttFind's top-{gt['k']} coordinates is {v['mean_purity']:.2f}: "
                       + ("each edit changes mostly one factor." if v["mean_purity"] >= TARGETS["purity"] else
                          f"each edit changes many factors a little ({v['no_preference']:.2f} would be no "
                          "preference at all), so its dominant factor is a weak reading.")
                       + (_reference_purity(purity_reference) if purity_reference else ""))
    if targets:
        lines += [""] + targets
    return ("\n".join(lines) + caveat + "\n\nThe pictures above are the qualitative half of claim 2: "
            "whether an attribute is *interpretable* is for the reader (or, on synthetic data, the "
            "ground-truth table) to judge; the numbers only say how much it moves the classifier.")


READABLE_R2 = 0.5  # a factor the probe reads on reconstructions with at least this R^2 counts as readable there


def _probe_reading(validation: Mapping[str, Mapping[str, Mapping[str, float]]], used: Sequence[str]) -> str:
    """How well the probe reads this model's reconstructions (the probe's validation on generator
    output, ``repro.groundtruth.probe_on_reconstructions``) and, where measured, which used
    factors even a probe refitted to them cannot recover: too little kept, not merely unread."""
    from repro.probe import mean_r2

    rec = validation["reconstructions"]
    readable = [f for f, m in rec.items() if m["r2"] >= READABLE_R2]
    unread = [f for f in used if rec.get(f, {}).get("r2", 1.0) < READABLE_R2]
    text = (f" The probe reads this model's reconstructions at mean R² {mean_r2(rec):.2f} "
            f"({mean_r2(validation['originals']):.2f} on the originals); R² >= {READABLE_R2} only for "
            f"{', '.join(readable) or 'no factor'}"
            + (f", not for the used {', '.join(unread)}: its readings of those factors' moves are weak." if unread
               else "."))
    refit = validation.get("refit")
    if refit is None:
        return text
    lost = [f for f in used if refit.get(f, {}).get("r2", 1.0) < READABLE_R2]
    text += (f" A probe refitted to this model's reconstructions reads them at {mean_r2(refit):.2f} "
             f"({mean_r2(validation['refit_originals']):.2f}, the same recipe on the originals): ")
    if lost:
        one = len(lost) == 1
        return text + (f"{', '.join(lost)}, used by the classifier, {'stays' if one else 'stay'} below R² "
                       f"{READABLE_R2} even for it: the reconstructions keep too little of "
                       f"{'it' if one else 'them'} for an edit of this generator to show {'it' if one else 'them'} "
                       f"cleanly.")
    return text + "it recovers every used factor, so they are kept in a form the renders' probe was never shown."


__all__ = ["ImageChoice", "Counterfactuals", "attribute_findings", "attribute_gifs", "attribute_label",
           "affected_images", "attribute_panel", "base_classes", "choose_images", "counterfactuals", "folder_size", "gif_name",
           "layer_channel", "mean_effect", "method_name", "panel_size", "plot_attributes", "plot_effects",
           "top_attribute_rows"]
