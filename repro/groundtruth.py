"""Ground truth on the synthetic data: does an explanation name the factors the classifier really uses?

The synthetic renderer (``repro.data.synthetic``) draws every image from known factors, so two
things the paper could only ask people about can be measured here:

1. **What the classifier truly uses** (:func:`factor_importance`): re-render held-out images
   with one factor changed and everything else (the per-image detail included) kept, and measure
   how much the classifier's decision margin moves. This includes the task's spurious factor,
   which a classifier trained on planted data may have learned as a shortcut. The same
   measurement with only the meaningless per-image detail re-drawn is the noise floor: a factor
   is *used* only when it moves the decision clearly more than that (:func:`used_factors`).
2. **What an explanation's coordinates change** (:func:`coordinate_factors`): an
   :class:`AttributeProbe` (a small CNN trained on freshly rendered images to read every factor
   back) is applied to held-out images before and after a StyleSpace edit; the factor that moves
   most is the coordinate's *dominant* factor, and its share of the total change its *purity*.
   An edit counts as moving its dominant factor only when it moves it, on average, by
   ``MIN_FACTOR_CHANGE`` of its range in the direction the classifier reads as the class the
   edit pushes to (signed; :func:`moves_dominant`).

:func:`real_change_purity` reads real one-factor changes of the renderer with the same probe:
the purity a perfectly disentangled edit would show, the reference for the edits' purity.

:func:`evaluate` puts the two together per model and method: precision@k is the share of the
top-k coordinates whose dominant factor is one the classifier truly uses, and "spurious exposed"
says whether some top-k coordinate is dominated by the planted spurious factor.

:func:`probe_on_reconstructions` validates the probe on generator output: its R^2 on
reconstructions against their originals' true factors, beside its R^2 on the originals.

The attribute probe and the *normalised units* every factor change is measured in (each factor
scaled to 0..1 by its range, hues compared on the circle) live in :mod:`repro.probe`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from repro.classifier import predict_logits
from repro.config import DataConfig, Profile, TaskConfig, to_dict
from repro.counterfactual import edit_render
from repro.data.synthetic import TASKS, intervene, render, sample_factors
from repro.explain import METHODS, Explanation
from repro.fidelity import TARGETS
from repro.inference import classify
from repro.probe import (CYCLIC, FACTOR_BY_NAME, FACTOR_COLUMN, PROBE_FACTORS, AttributeProbe, factor_change,
                         fit_probe, load_or_train_probe, mean_r2, normalise_factors, probe_metrics)
from repro.stylespace import Attributes, flatten_styles, style_range, toward_class

USED_THRESHOLD = 0.25  # a factor is "used" when its importance is >= this share of the largest,
NULL_RATIO = 2.0  # ... >= this multiple of the null importance (only the per-image detail re-drawn),
USED_MIN_IMPORTANCE = 0.01  # ... and at least this (logits): a constant classifier uses nothing
NULL = "null (detail re-drawn)"  # the key of the null importance in factor_importance's result
MIN_CHANGE = 0.05  # an edit whose summed factor change is below this (normalised units) changes nothing
# An edit moves a factor only when, on average over the images, it moves it by at least this share
# of its range towards the class the edit pushes to (signed by the classifier's own direction).
MIN_FACTOR_CHANGE = 0.05
GT_RULE = f"signed >= {MIN_FACTOR_CHANGE:g}"  # the counting rule's name in `python -m repro measure` records


# ---------------------------------------------------------------------------------------------
# 1. The classifier's true factor importance

def _endpoints(factors: np.ndarray, name: str) -> tuple[np.ndarray | float, np.ndarray | float]:
    """The two values factor ``name`` is set to when its importance is measured (see factor_importance)."""
    f = FACTOR_BY_NAME[name]
    if name in CYCLIC:
        own = factors[:, FACTOR_COLUMN[name]]
        return own, np.remainder(own + 0.5, 1.0)
    return f.low, f.high


def factor_effects(classifier: nn.Module, data: DataConfig, *, n: int = 512, device: str | torch.device = "cpu",
                   seed: int = 0, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """The classifier's true importance of every factor (``PROBE_FACTORS``, the spurious one
    included) and the direction in which each moves the decision towards class 1.

    Rule: take the factor rows ``seed * n .. seed * n + n - 1`` of the data's test split (seed 0:
    the first ``n`` test images, the ones the classifier is evaluated on). For each factor, render
    every row twice with only that factor changed, all others (and the per-image detail) as drawn:

    - continuous: at the low (a) and at the high (b) end of its range;
    - binary: 0 (a) and 1 (b);
    - cyclic hue: at the image's own hue (a) and at the opposite hue (b, +0.5), since 0 and 1 are equal.

    With ``m = logit[1] - logit[0]`` the classifier's decision margin, per factor:
    ``importance`` = mean over the ``n`` images of ``|m(b) - m(a)|`` (logits): the largest change
    of the decision that factor alone can cause; ``direction`` = the sign of the mean of
    ``m(b) - m(a)``: +1 when raising the factor pushes towards class 1, -1 towards class 0, 0 for
    the cyclic hues (a circle has no "up") and for a factor that moves nothing. The classifier
    must already be on ``device``.

    ``importance`` also holds, under the key ``NULL``, the same measurement for a change that
    means nothing: every image re-rendered with another image's ``detail_seed`` (wrinkle jitter,
    hairline, stripes, gaze). A classifier is never perfectly invariant, so every factor moves its
    margin a little; the null says how much "a little" is for this classifier.
    """
    if data.dataset != "synthetic":
        raise ValueError(f"factor importance needs the synthetic data set (known factors), not {data.dataset!r}")
    factors = sample_factors(n, data.seed, "test", start=seed * n)
    dev = torch.device(device)

    def margin(rows: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(render(rows, data.resolution)).permute(0, 3, 1, 2)
        logits = predict_logits(classifier, images.float() / 127.5 - 1.0, batch_size=batch_size, device=dev)
        return logits[:, 1] - logits[:, 0]

    importance, direction = {}, {}
    for name in PROBE_FACTORS:
        a, b = _endpoints(factors, name)
        change = margin(intervene(factors, name, b)) - margin(intervene(factors, name, a))
        importance[name] = float(change.abs().mean())
        direction[name] = 0 if name in CYCLIC else int(np.sign(float(change.mean())))
    detail = factors[:, FACTOR_COLUMN["detail_seed"]]
    change = margin(intervene(factors, "detail_seed", np.roll(detail, 1))) - margin(factors)
    importance[NULL] = float(change.abs().mean())
    return {"importance": importance, "direction": direction}


def factor_importance(classifier: nn.Module, data: DataConfig, **kwargs: Any) -> dict[str, float]:
    """:func:`factor_effects`' ``importance`` (its keyword arguments pass through)."""
    return factor_effects(classifier, data, **kwargs)["importance"]


def used_floor(importance: Mapping[str, float], threshold: float = USED_THRESHOLD, *,
               null_ratio: float = NULL_RATIO, min_importance: float = USED_MIN_IMPORTANCE) -> float:
    """The importance a factor needs to count as used: the largest of ``threshold`` x the largest
    factor importance, ``null_ratio`` x the null importance (``importance[NULL]``, 0 if absent)
    and ``min_importance`` logits."""
    top = max((v for f, v in importance.items() if f != NULL), default=0.0)
    return max(threshold * top, null_ratio * importance.get(NULL, 0.0), min_importance)


def used_factors(importance: Mapping[str, float], threshold: float = USED_THRESHOLD, *,
                 null_ratio: float = NULL_RATIO, min_importance: float = USED_MIN_IMPORTANCE) -> list[str]:
    """The factors the classifier truly uses, most important first: importance >= :func:`used_floor`.

    The three parts of the floor each exclude one kind of non-use: a factor far weaker than the
    main ones (``threshold``, 25 %), one that moves the decision no more than re-drawing
    meaningless detail does (``null_ratio``, 2x), and everything for a classifier whose decision
    nothing moves (``min_importance``, e.g. one that always answers the same class). The two
    ratios are choices, not calibrated constants; ``evaluate`` records them with its results.
    """
    floor = used_floor(importance, threshold, null_ratio=null_ratio, min_importance=min_importance)
    return sorted((f for f, v in importance.items() if f != NULL and v >= floor), key=lambda f: -importance[f])


# ---------------------------------------------------------------------------------------------
# 2. What each coordinate changes

@torch.inference_mode()
def coordinate_factors(probe: AttributeProbe, explanation: Explanation, attributes: Attributes, k: int, *,
                       n_images: int = 64, amount: float = 1.0,
                       directions: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """What each of the top-``k`` coordinates of ``attributes`` changes, read by the probe.

    On the first ``n_images`` held-out images (``explanation.eval_set``), each coordinate is
    applied as the flip rate applies it: direction ``d`` to images the classifier puts in class 1,
    ``1 - d`` to class 0, i.e. towards the other class, by ``amount``. Both the unedited and the
    edited renders are read by the probe.

    The edit targets are the style min / max over these ``n_images`` evaluation images
    themselves, as the flip rate takes them over the images of each repeat, and not the
    explanation's ``targets`` (the AttFind images' range, which the figures, GIFs, explorer and
    user study use): the probe reads the kind of edit whose flips the flip rate counts.

    Returns one dict per coordinate: ``coord`` (d, i); ``changes`` {factor: mean over images of
    :func:`factor_change`} (normalised units, unsigned); ``total`` (their sum); ``dominant`` (the
    factor with the largest change); ``purity`` (its share of the total, in [0, 1]; 0 when nothing
    changes). With ``directions`` (:func:`factor_effects`' ``direction``) also ``signed``
    {factor: mean over images of its change towards the class the edit pushes to}: the reading's
    change times the factor's direction, negated for images pushed towards class 0, so that a
    positive value is a move the classifier reads as the new class. Factors without a direction
    (the hues, 0) keep their unsigned change there.
    """
    model, lat = explanation.model, explanation.eval_set
    lat = lat.subset(slice(0, min(n_images, len(lat))))
    conv, _ = lat.styles(model)
    smin, smax = style_range(flatten_styles(conv))
    before = edit_render(model, lat, [], 0.0, smin, smax)
    base_class = classify(explanation.classifier, before).argmax(1).cpu()
    groups = []  # (base class, its image indices, its latents)
    for c in (0, 1):
        idx = torch.nonzero(base_class == c).flatten().to(before.device)
        if len(idx):
            groups.append((c, idx, lat.subset(idx.to(lat.w.device))))
    read_before = probe.predict(before)
    names = probe.factor_names
    toward_one = (base_class == 0).float() * 2.0 - 1.0  # +1 where the edit pushes towards class 1, else -1
    sign = None if directions is None else torch.tensor([float(directions.get(n, 0)) for n in names])
    out = []
    for coord in attributes.top(k):
        after = torch.empty_like(before)
        for c, idx, sub in groups:
            after[idx] = edit_render(model, sub, [toward_class(coord, c)], amount, smin, smax)
        read_after = probe.predict(after)
        change = factor_change(read_before, read_after, names).mean(0)
        total = float(change.sum())
        j = int(change.argmax())
        row = {"coord": tuple(coord), "changes": {n: float(v) for n, v in zip(names, change)},
               "total": total, "dominant": names[j], "purity": float(change[j]) / total if total > 0 else 0.0}
        if sign is not None:
            toward = ((read_after - read_before) * sign * toward_one[:, None]).mean(0)
            signed = torch.where(sign != 0, toward, change)
            row["signed"] = {n: float(v) for n, v in zip(names, signed)}
        out.append(row)
    return out


def real_change_purity(probe: AttributeProbe, data: DataConfig, *, n: int = 256, steps: Sequence[float] = (0.25, 1.0),
                       seed: int = 0) -> list[dict[str, Any]]:
    """The purity the probe reads for a *real* one-factor change: the reference an edit's purity
    (:func:`coordinate_factors`) is read against, since the probe never reads one factor alone.

    On ``n`` test factor rows (rows ``seed * n ..``), every factor the probe reads is changed by
    ``step`` of its range, all others and the per-image detail kept, and the images are read
    before and after: continuous factors move up by ``step`` x range (down where up leaves the
    range), cyclic hues by ``step`` / 2 of the circle (1.0: the opposite hue), binary factors are
    flipped (only at step 1). Returns one dict per (step, factor): ``factor``, ``step``, ``total``
    (summed change, normalised units), ``dominant`` and ``purity`` (the changed factor's own share
    of the total).
    """
    if data.dataset != "synthetic":
        raise ValueError(f"real factor changes need the synthetic data set (known factors), not {data.dataset!r}")
    factors = sample_factors(n, data.seed, "test", start=seed * n)
    names = probe.factor_names

    def read(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(probe.predict_uint8(render(rows, data.resolution)))

    before = read(factors)
    out = []
    for step in steps:
        for name in names:
            f, own = FACTOR_BY_NAME[name], factors[:, FACTOR_COLUMN[name]]
            if f.kind == "binary":
                if step != 1.0:
                    continue
                new = 1.0 - own
            elif name in CYCLIC:
                new = np.remainder(own + 0.5 * step, 1.0)
            else:
                up = own + step * (f.high - f.low)
                new = np.where(up <= f.high, up, own - step * (f.high - f.low))
            change = factor_change(before, read(intervene(factors, name, new)), names).mean(0)
            total = float(change.sum())
            out.append({"factor": name, "step": float(step), "total": total, "dominant": names[int(change.argmax())],
                        "purity": float(change[names.index(name)]) / total if total > 0 else 0.0})
    return out


def real_change_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`real_change_purity`'s result as a table: one row per factor, total and purity per step."""
    steps = sorted({r["step"] for r in rows})
    columns = [f"{what} @ {step:g}" for step in steps for what in ("total", "purity")]
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        row = table.setdefault(r["factor"], {"factor": r["factor"], **{c: "-" for c in columns}})
        row[f"total @ {r['step']:g}"] = round(r["total"], 3)
        row[f"purity @ {r['step']:g}"] = round(r["purity"], 2)
    return list(table.values())


# ---------------------------------------------------------------------------------------------
# 3. Per model and method

def moves_dominant(c: Mapping[str, Any], *, min_change: float = MIN_CHANGE,
                   min_factor_change: float = MIN_FACTOR_CHANGE) -> bool:
    """Whether an edit (one :func:`coordinate_factors` dict) counts as changing its dominant
    factor: it visibly changes something (``total >= min_change``) and, where the result is
    signed, moves the dominant factor by ``>= min_factor_change`` of its range towards the class
    it pushes to (``signed``; unsigned results are judged by ``total`` alone)."""
    if c["total"] < min_change:
        return False
    return "signed" not in c or c["signed"][c["dominant"]] >= min_factor_change


def precision_at_k(coords: Sequence[Mapping[str, Any]], used: Collection[str], *,
                   min_change: float = MIN_CHANGE, min_factor_change: float = MIN_FACTOR_CHANGE) -> float:
    """Share of ``coords`` (the top-k, as :func:`coordinate_factors` returns them) whose dominant
    factor is one the classifier truly uses, counting only edits that move it
    (:func:`moves_dominant`). 0 for an empty list."""
    if not coords:
        return 0.0
    hits = sum(1 for c in coords if c["dominant"] in used
               and moves_dominant(c, min_change=min_change, min_factor_change=min_factor_change))
    return hits / len(coords)


def spurious_exposed(coords: Sequence[Mapping[str, Any]], spurious: str, *, min_change: float = MIN_CHANGE,
                     min_factor_change: float = MIN_FACTOR_CHANGE) -> bool:
    """Whether some coordinate of ``coords`` (the top-k) has the spurious factor as its dominant
    factor and moves it (:func:`moves_dominant`)."""
    return any(c["dominant"] == spurious
               and moves_dominant(c, min_change=min_change, min_factor_change=min_factor_change) for c in coords)


# The probe refitted to a model's reconstructions (probe_on_reconstructions' "refit"): that many
# training images' reconstructions, that many epochs, and the same recipe on the originals beside
# it (what the budget reads when nothing is lost).
REFIT_IMAGES = 2048
REFIT_EPOCHS = 8
REFIT_SEED = 2_000_003
_REFIT_ORIGINALS: dict[str, dict[str, dict[str, float]]] = {}  # per data config and budget: the originals' refit


def probe_on_reconstructions(probe: AttributeProbe, explanation: Explanation, data: DataConfig, *,
                             n: int = 512, refit_images: int = REFIT_IMAGES,
                             refit_epochs: int = REFIT_EPOCHS) -> dict[str, dict[str, dict[str, float]]] | None:
    """The probe validated on generator output: its per-factor R^2 and MAE
    (:func:`repro.probe.probe_metrics`) on the first ``n`` test images of ``data`` and on their
    reconstructions G(E(x), C(x)), both against the originals' true factors. The probe never saw
    generator output; where it reads reconstructions much worse than renders, what it reads of
    an edit is in doubt too.

    Which is it, then: a factor the reconstructions lost, or one they keep in a form the probe
    was never shown? ``refit``: a fresh probe (:func:`repro.probe.fit_probe`) fitted to the
    reconstructions of the first ``refit_images`` training images against their originals' true
    factors, ``refit_epochs`` epochs, read on the test reconstructions: what a reader that knows
    this generator can still recover. ``refit_originals``: the same recipe fitted to and read on
    the originals, its ceiling. ``refit_images`` 0 leaves both out. None for a model without an
    encoder (nothing to reconstruct) or data without known factors.

    Returns {"originals": {factor: {"r2", "mae"}}, "reconstructions": {...}[, "refit": {...},
    "refit_originals": {...}]}.
    """
    from repro.data import load_split
    from repro.evaluation import latents, render as render_latents

    model = explanation.model
    if model.encoder is None or data.dataset != "synthetic":
        return None
    test = load_split(data, "test")
    n = min(n, len(test))
    refine = (explanation.results.get("eval_config") or {}).get("refine_steps", 0)  # the explanation's latents
    with torch.no_grad():  # not inference_mode: the refit probe trains on these tensors
        lat = latents(model, explanation.classifier, test, n=n, refine_steps=refine)
        rec = render_latents(model, lat).clamp(-1.0, 1.0)
    truth = normalise_factors(test.factors[:n].numpy())
    out = {"originals": probe_metrics(probe, lat.images, truth), "reconstructions": probe_metrics(probe, rec, truth)}
    if refit_images > 0:
        train = load_split(data, "train")
        m = min(refit_images, len(train))
        fit_truth = normalise_factors(train.factors[:m].numpy())
        device = next(model.parameters()).device
        budget = {"resolution": data.resolution, "epochs": refit_epochs, "seed": REFIT_SEED, "device": device,
                  "progress": False}
        with torch.no_grad():
            fit_rec = render_latents(model, latents(model, explanation.classifier, train, n=m,
                                                    refine_steps=refine)).clamp(-1.0, 1.0)
        out["refit"] = probe_metrics(fit_probe(fit_rec, fit_truth, **budget)[0], rec, truth)
        key = json.dumps([to_dict(data), m, refit_epochs, n], sort_keys=True, default=str)
        if key not in _REFIT_ORIGINALS:
            fitted = fit_probe(train.images[:m], fit_truth, **budget)[0]
            _REFIT_ORIGINALS[key] = probe_metrics(fitted, lat.images, truth)
        out["refit_originals"] = _REFIT_ORIGINALS[key]
    return out


def probe_validation_rows(results: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per factor (and their mean): the probe's R^2 on the test images (``originals``,
    the same images for every model of a task) and on each model's reconstructions of them (the
    ``probe_validation`` of :func:`evaluate` results; models without one are left out); where
    measured, beside each the R^2 of the probe refitted to that model's reconstructions
    (``refit``) and of the same recipe on the originals (``originals refit``), see
    :func:`probe_on_reconstructions`."""
    validated = {(task, mode): res["probe_validation"] for (task, mode), res in results.items()
                 if res.get("probe_validation")}
    if not validated:
        return []
    names = list(next(iter(validated.values()))["originals"])
    rows = []
    for name in names + ["mean"]:
        row: dict[str, Any] = {"factor": name}
        for (task, mode), v in validated.items():
            for part, label in (("originals", f"{task} originals"), ("refit_originals", f"{task} originals refit"),
                                ("reconstructions", f"{task}/{mode}"), ("refit", f"{task}/{mode} refit")):
                if part in v:
                    row[label] = mean_r2(v[part]) if name == "mean" else v[part][name]["r2"]
        rows.append(row)
    return rows


def evaluate(profile: Profile, task: TaskConfig, mode: str, explanation: Explanation, *,
             probe: AttributeProbe | None = None, effects: Mapping[str, Mapping[str, float]] | None = None,
             k: int = 4, device: str | torch.device = "cpu", used_threshold: float = USED_THRESHOLD,
             n_images: int | None = None, min_change: float = MIN_CHANGE,
             min_factor_change: float = MIN_FACTOR_CHANGE, validate_probe: bool = True) -> dict[str, Any]:
    """Ground-truth fidelity of one model's explanations (AttFind, Wu et al., random).

    ``effects`` ({"importance", "direction"}) default to :func:`factor_effects` of the
    explanation's classifier on the task's classifier data, ``probe`` to
    :func:`load_or_train_probe` (pass both to reuse them across models). Used factors: importance
    >= ``used_threshold`` x the largest, >= ``NULL_RATIO`` x the null importance and
    >= ``USED_MIN_IMPORTANCE`` logits (:func:`used_factors`); the spurious factor counts as used
    when the classifier uses it, since then a coordinate changing it explains the classifier
    faithfully. Per method, its top-``k`` coordinates go through :func:`coordinate_factors`
    (signed by the classifier's directions) on ``n_images`` held-out images (None: the flip
    rate's ``profile.eval.images_per_repeat``, so that the edits' targets, the style min / max
    over those images, span the range the flip rate's do); ``precision_at_k`` and
    ``spurious_exposed`` (over the same top-k) follow the functions of those names: a coordinate
    counts only when it moves its dominant factor by ``min_factor_change`` of its range towards
    the class it pushes to. With ``validate_probe``, ``probe_validation`` is
    :func:`probe_on_reconstructions` (None for a model without an encoder).

    Returns {"task", "mode", "k", "n_images", "used_threshold", "null_ratio", "used_floor", "min_change",
    "min_factor_change", "importance", "direction", "used_factors", "spurious", "spurious_used",
    "probe_validation", "methods": {method: {"coords", "precision_at_k", "spurious_exposed"}}}.
    """
    if effects is None:
        effects = factor_effects(explanation.classifier, task.classifier_data, device=device)
    importance, direction = effects["importance"], effects["direction"]
    if probe is None:
        probe = load_or_train_probe(profile, task, device=device)
    used = used_factors(importance, used_threshold)
    n_images = profile.eval.images_per_repeat if n_images is None else n_images
    spurious = TASKS[task.classifier_data.task].spurious
    thresholds = {"min_change": min_change, "min_factor_change": min_factor_change}
    methods = {}
    for method in METHODS:
        if method not in explanation.attributes:
            continue
        coords = coordinate_factors(probe, explanation, explanation.attributes[method], k, n_images=n_images,
                                    directions=direction)
        methods[method] = {"coords": coords, "precision_at_k": precision_at_k(coords, used, **thresholds),
                           "spurious_exposed": spurious_exposed(coords, spurious, **thresholds)}
    validation = probe_on_reconstructions(probe, explanation, task.stylex_data) if validate_probe else None
    return {"task": task.name, "mode": mode, "k": k, "n_images": min(n_images, len(explanation.eval_set)),
            "used_threshold": used_threshold, "null_ratio": NULL_RATIO,
            "used_floor": used_floor(importance, used_threshold), **thresholds,
            "importance": dict(importance), "direction": dict(direction), "used_factors": used,
            "spurious": spurious, "spurious_used": spurious in used, "probe_validation": validation,
            "methods": methods}


TARGET_PRECISION = TARGETS["precision_at_4"]  # the target for AttFind's precision@k on StylEx models


def target_verdict(result: Mapping[str, Any], planted: bool, target: float = TARGET_PRECISION) -> dict[str, Any]:
    """AttFind against the project's ground-truth target, from one :func:`evaluate` result:
    precision@k >= ``target`` and above every other method, and, where the spurious factor was
    planted, exposed among AttFind's top-k. Also the mean purity of AttFind's top-k coordinates
    (1 / number of factors would be no preference at all), the evidence for a miss.

    Returns {"met", "precision", "others", "spurious_ok", "mean_purity", "no_preference"}.
    """
    methods = result["methods"]
    precision = methods["attfind"]["precision_at_k"]
    others = {m: v["precision_at_k"] for m, v in methods.items() if m != "attfind"}
    spurious_ok = methods["attfind"]["spurious_exposed"] or not planted
    coords = methods["attfind"]["coords"]
    return {"met": precision >= target and all(precision > p for p in others.values()) and spurious_ok,
            "precision": precision, "others": others, "spurious_ok": spurious_ok,
            "mean_purity": float(np.mean([c["purity"] for c in coords])) if coords else float("nan"),
            "no_preference": 1.0 / len(PROBE_FACTORS)}


# ---------------------------------------------------------------------------------------------
# 4. Tables and figures

def fidelity_rows(results: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, model, method) for ``repro.report.markdown_table``: precision@k, whether
    the spurious factor was exposed, the dominant factor of each top-k coordinate (rank order,
    with its signed move where measured; in brackets when it does not count as moved,
    :func:`moves_dominant`) and the factors the classifier uses."""
    rows = []
    for (task, mode), res in results.items():
        for method, m in res["methods"].items():
            thresholds = {"min_change": res["min_change"],
                          "min_factor_change": res.get("min_factor_change", MIN_FACTOR_CHANGE)}
            dominant = [_dominant_label(c, thresholds) for c in m["coords"]]
            rows.append({"task": task, "model": mode, "method": method, "k": res["k"],
                         "precision_at_k": float(m["precision_at_k"]),
                         "spurious_exposed": "yes" if m["spurious_exposed"] else "no",
                         "dominant_factors": ", ".join(dominant), "used_factors": ", ".join(res["used_factors"])})
    return rows


def _dominant_label(c: Mapping[str, Any], thresholds: Mapping[str, float]) -> str:
    """A coordinate's dominant factor for a table: with its signed move towards the new class
    where measured (e.g. ``hair_grey +0.072``, three decimals so that a move just under the
    threshold reads as one), in brackets where it does not count as moved."""
    label = c["dominant"] + (f" {c['signed'][c['dominant']]:+.3f}" if "signed" in c else "")
    return label if moves_dominant(c, **thresholds) else f"({label})"


def _importance_bars(ax, importance: Mapping[str, float], spurious: str | None, threshold: float) -> None:
    """Horizontal bars of true importance: blue if used, grey if not; the spurious factor hatched."""
    from matplotlib.patches import Patch

    names = list(importance)
    used = set(used_factors(importance, threshold))
    colours = ["white" if n == NULL else "tab:blue" if n in used else "lightgray" for n in names]
    bars = ax.barh(range(len(names)), [importance[n] for n in names], color=colours, edgecolor="k", linewidth=0.5)
    if NULL in names:
        bars.patches[names.index(NULL)].set_linestyle("--")
    ax.axvline(used_floor(importance, threshold), color="k", ls=":", lw=1)
    ax.set(yticks=range(len(names)), yticklabels=names, xlabel="mean |change of logit margin| (full-range change)")
    handles = [Patch(color="tab:blue", label="used"), Patch(color="lightgray", label="not used"),
               Patch(facecolor="white", edgecolor="k", hatch="///", label="spurious")]
    if spurious in names:
        bars.patches[names.index(spurious)].set_hatch("///")
        ax.get_yticklabels()[names.index(spurious)].set_color("tab:red")
    ax.legend(handles=handles, fontsize=7, loc="lower right",
              title=f"used: >= {threshold:.0%} of max and >= {NULL_RATIO:g}x null", title_fontsize=7)
    ax.invert_yaxis()


def plot_importance(importance: Mapping[str, Mapping[str, float]], path: str | Path,
                    threshold: float = USED_THRESHOLD):
    """One bar chart per task of the classifier's true factor importance (blue: used, red: the
    task's spurious factor, grey: unused)."""
    from repro.figures import _mpl, _save

    plt = _mpl()
    fig, axes = plt.subplots(1, len(importance), figsize=(4.2 * len(importance), 3.8), squeeze=False)
    for ax, (task, imp) in zip(axes[0], importance.items()):
        _importance_bars(ax, imp, TASKS[task].spurious if task in TASKS else None, threshold)
        ax.set_title(f"{task}: what the classifier uses")
    fig.tight_layout()
    return _save(fig, path)


def plot_fidelity(results: Mapping[tuple[str, str], Mapping[str, Any]], path: str | Path):
    """Per task: the classifier's true factor importance (left) next to precision@k of each
    method, grouped by model (right), each bar labelled with its value and an asterisk where the
    method exposed the spurious factor."""
    from repro.figures import _mpl, _save

    plt = _mpl()
    tasks = list(dict.fromkeys(task for task, _ in results))
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.8 * len(tasks)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.3]})
    for row, task in zip(axes, tasks):
        runs = {mode: res for (t, mode), res in results.items() if t == task}
        first = next(iter(runs.values()))
        _importance_bars(row[0], first["importance"], first["spurious"], first["used_threshold"])
        row[0].set_title(f"{task}: what the classifier uses")
        methods = list(dict.fromkeys(m for res in runs.values() for m in res["methods"]))
        width = 0.8 / max(1, len(methods))
        for j, method in enumerate(methods):
            xs = np.arange(len(runs)) + (j - (len(methods) - 1) / 2) * width
            stats = [res["methods"].get(method, {}) for res in runs.values()]
            vals = [m.get("precision_at_k", np.nan) for m in stats]
            bars = row[1].bar(xs, vals, width, label=method)
            row[1].bar_label(bars, labels=[f"{v:.2f}" + ("*" if m.get("spurious_exposed") else "") if m else ""
                                           for v, m in zip(vals, stats)], fontsize=8, padding=2)
        row[1].set(xticks=range(len(runs)), xticklabels=list(runs), ylim=(0, 1.15),
                   ylabel=f"precision@{first['k']}",
                   title=f"top-{first['k']} coordinates that move a factor the classifier uses\n"
                         f"(>= {first.get('min_factor_change', MIN_FACTOR_CHANGE):g} of its range towards the "
                         f"new class; * = exposes {first['spurious']})")
        row[1].grid(axis="y", alpha=0.3)
        row[1].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
