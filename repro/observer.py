"""The second observer C' and the edit size: telling a semantic explanation from an adversarial one.

G is fed C's softmax and trained to satisfy C, so reconstructions and AttFind counterfactuals can
carry a signal only C reads. Two measures check that:

- **A second observer** C': a classifier of another architecture and seed (``profile.observer``,
  by default the plain CNN of :class:`repro.networks.PlainCNN`), trained by the classifier stage
  (:func:`repro.classifier.train_classifier`) on the same training split into
  ``profile.run_dir(task, "observer")``, and used nowhere in StylEx training or AttFind.
  Semantic reconstructions keep its accuracy (:func:`reconstruction_scores`); semantic
  counterfactuals flip it too, counted only among the images where C and C' agreed before the
  edit (:func:`validity_summary`, :func:`counterfactual_validity`).
- **The edit size in pixels**: mean and max |pixel change| in /255 of the top-k edit and of each
  single top attribute (:func:`counterfactual_validity`), beside the size of a real one-factor
  change of the synthetic renderer (:func:`renderer_factor_sizes`). Adversarial edits are a few
  /255; glasses or wrinkles are tens to hundreds.

Every number here comes from the renders the flip rate itself makes (an
:class:`repro.fliprate.EditRecorder` rides along), with the same edit rule, the same images, the
same repeats and the same style ranges, so ``flip_C`` equals the flip rate exactly. Renders are
clamped to [-1, 1] before any classifier and before pixel differences; one level is 2/255 of
that range, so ``|delta| * 127.5`` is the change in /255.

Numbers per image: ``pixel_mean_255`` is the mean over pixels and channels of |change|,
``pixel_max_255`` its maximum; summaries average these over images (``pixel_max_255_max`` is
the largest over images).

``repro.explain.explain_model`` stores these per model and method in ``explain.json``
(``methods.<m>.observer``, ``observer.reconstruction``); :func:`write_observer_tables` (notebook 06)
turns them into tables. ``python -m repro train-observer`` trains C'.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from repro.classifier import CHECKPOINT, ClassifierRun, load_classifier, run_config, train_classifier
from repro.config import Profile, TaskConfig
from repro.fliprate import (AttributesOrFactory, EditRecorder, flip_rate_curve, flip_rate_repeats,
                            pixel_change_255)
from repro.inference import classify_images
from repro.stylespace import Attributes
from repro.utils import pick_device

COMPONENT = "observer"  # run directory: profile.run_dir(task, "observer")
TOP_SINGLE = 4  # single top attributes whose edit size (and flips) are measured one at a time


# ---------------------------------------------------------------------------------------------
# Training and loading C'

def observer_dir(profile: Profile, task: TaskConfig) -> Path:
    """``runs/<profile>/<task>/observer``."""
    return profile.run_dir(task.name, COMPONENT)


def train_observer(profile: Profile, task: TaskConfig, *, device: str = "auto", force: bool = False,
                   progress: bool | None = None) -> ClassifierRun:
    """Train (or reuse, or resume) the second observer C' of a task: the classifier stage run with
    ``profile.observer`` (its architecture and seed) on the task's classifier data, the same
    training split as C. Raises ValueError when ``profile.observer`` trains the same network as
    ``profile.classifier`` (same architecture and seed); warns when only the seed differs."""
    obs, clf = profile.observer, profile.classifier
    if obs.arch == clf.arch:
        if obs.seed == clf.seed:
            raise ValueError(f"profile.observer trains the same network as profile.classifier ({obs.arch}, seed "
                             f"{obs.seed}); give the observer another arch (e.g. 'cnn') and another seed")
        warnings.warn(f"the observer has the classifier's architecture ({obs.arch}); only the seed differs, so it "
                      f"may share the classifier's blind spots", stacklevel=2)
    return train_classifier(task.classifier_data, obs, observer_dir(profile, task), device=device, force=force,
                            progress=progress)


def observer_rows(profile: Profile, observers: Mapping[str, ClassifierRun],
                  classifiers: Mapping[str, ClassifierRun]) -> list[dict[str, Any]]:
    """Notebook 01's table: per task, C' and its held-out accuracy beside C's, and its training time."""
    obs = profile.observer
    return [{"task": name, "observer": f"{obs.arch} (seed {obs.seed})", "test accuracy": run.metrics["test"]["accuracy"],
             "C test accuracy": classifiers[name].metrics["test"]["accuracy"],
             "train time (s)": round(run.metrics["train_seconds"], 1)} for name, run in observers.items()]


def missing_observer_note(profile: Profile, task: TaskConfig) -> str:
    """The sentence results carry when C' has not been trained."""
    return (f"no trained second observer in {observer_dir(profile, task)}; run `python -m repro train-observer "
            f"--profile {profile.name} --task {task.name}` (with the same --run-root) for the C' measures")


def load_observer(profile: Profile, task: TaskConfig, *, device: str | torch.device = "cpu") -> ClassifierRun | None:
    """The trained C' of a task (eval mode, gradients off), or None when there is none yet.

    A checkpoint written with another configuration than ``profile.observer`` (another arch, seed,
    data) is refused with a ``CheckpointError`` naming the fields, as the classifier stage does."""
    run_dir = observer_dir(profile, task)
    if not (run_dir / CHECKPOINT).exists() or not (run_dir / "metrics.json").exists():
        return None
    return load_classifier(run_dir, device=pick_device(device) if isinstance(device, str) else device,
                           expected_config=run_config(task.classifier_data, profile.observer))


# ---------------------------------------------------------------------------------------------
# Reconstructions

def _accuracy(logits: torch.Tensor, labels: torch.Tensor | None) -> float | None:
    if labels is None or len(labels) == 0 or bool((labels < 0).any()):
        return None
    return float((logits.argmax(1).cpu() == labels.cpu()).float().mean())


@torch.inference_mode()
def reconstruction_scores(classifier: nn.Module, originals: torch.Tensor, reconstructions: torch.Tensor,
                          labels: torch.Tensor | None = None, observer: nn.Module | None = None, *,
                          batch_size: int = 256) -> dict[str, Any]:
    """What C and C' read from held-out originals and from their reconstructions.

    ``originals`` / ``reconstructions``: float [N, 3, R, R] in [-1, 1] (clamped before classifying,
    :func:`repro.inference.classify_images`); ``labels``: long [N] (None or any -1: no accuracies).
    Returns ``n``; ``agreement_C`` (share with argmax C(x) == argmax C(G(x))); ``acc_C_originals``
    and ``acc_C_reconstructions``; and for C' (None without ``observer``): ``acc_Cprime_originals``,
    ``acc_Cprime_reconstructions``, their ratio ``acc_Cprime_ratio`` (the target is >= 0.9) and
    ``agreement_Cprime`` (argmax C'(x) == argmax C'(G(x))).
    """
    if originals.shape != reconstructions.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and reconstructions {tuple(reconstructions.shape)} "
                         f"must have one shape")
    c_x, c_rec = classify_images(classifier, originals, batch_size), classify_images(classifier, reconstructions, batch_size)
    out: dict[str, Any] = {
        "n": len(originals),
        "agreement_C": float((c_x.argmax(1) == c_rec.argmax(1)).float().mean()) if len(originals) else None,
        "acc_C_originals": _accuracy(c_x, labels), "acc_C_reconstructions": _accuracy(c_rec, labels),
        "acc_Cprime_originals": None, "acc_Cprime_reconstructions": None, "acc_Cprime_ratio": None,
        "agreement_Cprime": None,
    }
    if observer is not None:
        o_x, o_rec = classify_images(observer, originals, batch_size), classify_images(observer, reconstructions, batch_size)
        a_x, a_rec = _accuracy(o_x, labels), _accuracy(o_rec, labels)
        out.update(acc_Cprime_originals=a_x, acc_Cprime_reconstructions=a_rec,
                   acc_Cprime_ratio=None if a_x is None or a_rec is None or a_x == 0 else a_rec / a_x,
                   agreement_Cprime=float((o_x.argmax(1) == o_rec.argmax(1)).float().mean()) if len(originals) else None)
    return out


# ---------------------------------------------------------------------------------------------
# Counterfactual validity and edit size (from an EditRecorder that rode along a flip rate)

def _std_or_none(values: list[float]) -> float | None:
    return float(np.std(values)) if values else None


def validity_summary(recorder: EditRecorder, k: int, observer: int = 0) -> dict[str, Any]:
    """C's and C''s flips and the pixel size of the edit at ``k``, over every pass the recorder saw.

    Returns (pooled over repeats unless named ``_std``, which is the std over repeats):
      ``k``, ``n_images``;
      ``flip_C``: C's flip rate on all images (equals the flip rate's mean; ``flip_C_std``);
      ``n_agreed``: images where argmax C' == argmax C on the unedited render; ``agreement`` = share;
      ``flip_C_agreed``: C's flip rate among those; ``flip_Cprime``: C''s flip rate among those
      (C' changed its decision; ``flip_Cprime_std``); ``flip_ratio`` = flip_Cprime / flip_C_agreed;
      ``pixel_mean_255`` / ``pixel_max_255``: mean over images of the per-image mean / max
      |pixel change| in /255; ``pixel_max_255_max``: the largest per-image max.
    The C' fields are None when the recorder had no observers; the pixel fields when it skipped pixels.
    """
    records = [r for r in recorder.records if k in r.ks]
    if not records:
        raise ValueError(f"the recorder saw no pass at k = {k} (its passes had ks {[r.ks for r in recorder.records]})")
    rows = [r.ks.index(k) for r in records]
    flips = [r.flipped[j].float() for r, j in zip(records, rows)]
    n_images = sum(len(f) for f in flips)
    out: dict[str, Any] = {"k": k, "n_images": n_images, "flip_C": float(torch.cat(flips).mean()),
                           "flip_C_std": _std_or_none([float(f.mean()) for f in flips])}
    has_obs = all(r.observer_base.shape[0] > observer for r in records)
    if has_obs:
        agreed = [r.observer_base[observer] == r.base_class for r in records]
        c_flip = [f[a] for f, a in zip(flips, agreed)]
        o_flip = [(r.observer_edited[observer, j] != r.observer_base[observer])[a].float()
                  for r, j, a in zip(records, rows, agreed)]
        n_agreed = int(sum(int(a.sum()) for a in agreed))
        fc = float(torch.cat(c_flip).mean()) if n_agreed else None
        fo = float(torch.cat(o_flip).mean()) if n_agreed else None
        out.update(n_agreed=n_agreed, agreement=n_agreed / n_images if n_images else None, flip_C_agreed=fc,
                   flip_Cprime=fo, flip_Cprime_std=_std_or_none([float(f.mean()) for f in o_flip if len(f)]),
                   flip_ratio=None if fc is None or fo is None or fc == 0 else fo / fc)
    else:
        out.update(n_agreed=None, agreement=None, flip_C_agreed=None, flip_Cprime=None, flip_Cprime_std=None,
                   flip_ratio=None)
    if all(r.pixel_mean_255 is not None for r in records):
        mean = torch.cat([r.pixel_mean_255[j] for r, j in zip(records, rows)])
        peak = torch.cat([r.pixel_max_255[j] for r, j in zip(records, rows)])
        out.update(pixel_mean_255=float(mean.mean()), pixel_max_255=float(peak.mean()),
                   pixel_max_255_max=float(peak.max()))
    else:
        out.update(pixel_mean_255=None, pixel_max_255=None, pixel_max_255_max=None)
    return out


def validity_curve(recorder: EditRecorder, observer: int = 0) -> dict[str, list]:
    """:func:`validity_summary` at every k the recorder's passes share: ``{"ks", "flip_C",
    "flip_C_agreed", "flip_Cprime", "pixel_mean_255", "pixel_max_255"}``, one value per k."""
    ks = sorted(set.intersection(*(set(r.ks) for r in recorder.records))) if recorder.records else []
    rows = [validity_summary(recorder, k, observer) for k in ks]
    names = ("flip_C", "flip_C_agreed", "flip_Cprime", "pixel_mean_255", "pixel_max_255")
    return {"ks": ks, **{name: [r[name] for r in rows] for name in names}}


def _single(attributes: AttributesOrFactory, j: int) -> AttributesOrFactory:
    """The j-th pair of a list (or of each repeat's list) as a list of one."""
    def one(attrs: Attributes) -> Attributes:
        return Attributes(attrs.method, [attrs.coords[j]], [attrs.scores[j]] if len(attrs.scores) > j else [0.0])
    if callable(attributes) and not isinstance(attributes, Attributes):
        return lambda r: one(attributes(r))
    return one(attributes)


def single_attribute_edits(G: nn.Module, classifier: nn.Module, observers: Sequence[nn.Module],
                           conv_styles: Sequence[torch.Tensor], rgb_styles: Sequence[torch.Tensor],
                           noise: Sequence[torch.Tensor] | None, attributes: AttributesOrFactory, *,
                           n: int = TOP_SINGLE, repeats: int = 1, images_per_repeat: int | None = None,
                           seed: int = 0, batch_size: int = 256, progress: bool | None = False) -> list[dict[str, Any]]:
    """Each of the top ``n`` pairs edited alone (k = 1), on the flip rate's images and repeats.

    Returns one :func:`validity_summary` per pair (its ``coord`` added; for a per-repeat factory,
    as the random floor is, the coordinate of repeat 0): pixel size of that one attribute's full
    edit, C's flips and C''s flips among the agreed images (None without observers).
    """
    first = attributes(0) if callable(attributes) and not isinstance(attributes, Attributes) else attributes
    out = []
    for j in range(min(n, len(first))):
        recorder = EditRecorder(observers)
        flip_rate_repeats(G, classifier, conv_styles, rgb_styles, noise, _single(attributes, j), k=1, repeats=repeats,
                          images_per_repeat=images_per_repeat, seed=seed, batch_size=batch_size, progress=progress,
                          recorder=recorder)
        out.append({"coord": tuple(first.coords[j]), **validity_summary(recorder, 1)})
    return out


def counterfactual_validity(G: nn.Module, classifier: nn.Module, observer: nn.Module | None,
                            conv_styles: Sequence[torch.Tensor], rgb_styles: Sequence[torch.Tensor],
                            noise: Sequence[torch.Tensor] | None, attributes: AttributesOrFactory, *, k: int = 10,
                            ks: Sequence[int] | None = None, repeats: int = 1, images_per_repeat: int | None = None,
                            seed: int = 0, top_single: int = TOP_SINGLE, batch_size: int = 256,
                            progress: bool | None = False) -> dict[str, Any]:
    """The top-k counterfactuals of one method judged by C' and measured in pixels.

    Runs the flip rate (:func:`repro.fliprate.flip_rate_curve`, same images, repeats and ranges)
    with an :class:`~repro.fliprate.EditRecorder` holding ``observer`` (None: pixels only). Returns
    :func:`validity_summary` at ``k`` plus ``curve`` (:func:`validity_curve` over ``ks``, default
    just k) and ``single`` (:func:`single_attribute_edits` of the top ``top_single`` pairs).
    """
    observers = [] if observer is None else [observer]
    recorder = EditRecorder(observers)
    ks = sorted(set(ks or []) | {k})
    flip_rate_curve(G, classifier, conv_styles, rgb_styles, noise, attributes, ks=ks, repeats=repeats,
                    images_per_repeat=images_per_repeat, seed=seed, batch_size=batch_size, progress=progress,
                    recorder=recorder)
    single = single_attribute_edits(G, classifier, observers, conv_styles, rgb_styles, noise, attributes,
                                    n=top_single, repeats=repeats, images_per_repeat=images_per_repeat, seed=seed,
                                    batch_size=batch_size, progress=progress) if top_single > 0 else []
    return {**validity_summary(recorder, k), "curve": validity_curve(recorder), "single": single}


# ---------------------------------------------------------------------------------------------
# The size of a real one-factor change of the synthetic renderer

def _as_float_images(uint8_hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(uint8_hwc).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def renderer_factor_change(factors: np.ndarray, name: str, a: float | np.ndarray, b: float | np.ndarray,
                           size: int = 32) -> dict[str, Any]:
    """Pixel change when factor ``name`` goes from ``a`` to ``b`` on otherwise identical renders.

    ``factors``: float32 [N, F] rows (:func:`repro.data.synthetic.sample_factors`); both versions
    are rendered at ``size`` px. Returns ``n``, ``pixel_mean_255`` / ``pixel_max_255`` (mean over
    images of the per-image mean / max |change| in /255, the units of :func:`validity_summary`),
    ``pixel_max_255_max`` and the per-image ``per_image_mean_255`` / ``per_image_max_255`` lists.
    ``a == b`` gives 0 everywhere (the renderer is deterministic per row).
    """
    from repro.data import synthetic

    before = _as_float_images(synthetic.render(synthetic.intervene(factors, name, a), size))
    after = _as_float_images(synthetic.render(synthetic.intervene(factors, name, b), size))
    mean, peak = pixel_change_255(before, after)
    return {"n": len(factors), "pixel_mean_255": float(mean.mean()), "pixel_max_255": float(peak.mean()),
            "pixel_max_255_max": float(peak.max()), "per_image_mean_255": mean.tolist(),
            "per_image_max_255": peak.tolist()}


def renderer_factor_sizes(size: int = 32, n: int = 64, *, seed: int = 0, split: str = "test",
                          names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per factor of the synthetic renderer, the pixel size of its full change on ``n`` faces.

    Each factor goes over its whole range on the same rows: binary ones 0 -> 1, continuous ones
    low -> high, cyclic ones (the hues, where 0 and 1 are the same) 0 -> 0.5 (``change`` says
    which), so this is about the largest change that factor alone makes; ``detail_seed`` (no
    meaning) is skipped. Returns ``{factor: {"change", "n", "pixel_mean_255",
    "pixel_max_255", "pixel_max_255_max"}}`` (:func:`renderer_factor_change`, without per-image lists).
    """
    from repro.data import synthetic

    factors = synthetic.sample_factors(n, seed=seed, split=split)
    by_name = {f.name: f for f in synthetic.FACTORS}
    unknown = [name for name in (names or []) if name not in by_name]
    if unknown:
        raise ValueError(f"unknown factor(s) {unknown}; choose from: {', '.join(synthetic.FACTOR_NAMES)}")
    out = {}
    for name in names or [f.name for f in synthetic.FACTORS if f.kind != "id"]:
        f = by_name[name]
        high = (f.low + f.high) / 2 if "cyclic" in f.role else f.high
        res = renderer_factor_change(factors, name, f.low, high, size)
        out[name] = {"change": f"{f.low:g} -> {high:g}", "n": res["n"], "pixel_mean_255": res["pixel_mean_255"],
                     "pixel_max_255": res["pixel_max_255"], "pixel_max_255_max": res["pixel_max_255_max"]}
    return out


# ---------------------------------------------------------------------------------------------
# Tables (for notebooks 03 / 06 and the report): rows from explain.json results

Results = Mapping[tuple[str, str], Mapping[str, Any]]  # (task, mode) -> explain.json contents


def _r(value: Any, digits: int) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def validity_rows(results: Results) -> list[dict[str, Any]]:
    """One row per (task, model, method): the top-k edit's ``flip_C`` (all images), ``flip_C_agreed``
    and ``flip_Cprime`` (among the ``n_agreed`` images where C and C' agreed before the edit) and
    its ``pixel_mean_255`` / ``pixel_max_255``. C' columns are None where C' was unavailable (the
    results' ``observer.note`` says why); results written before these measures give Nones."""
    rows = []
    for (task, mode), res in results.items():
        for method, entry in res.get("methods", {}).items():
            v = entry.get("observer") or {}
            rows.append({"task": task, "model": mode, "method": method, "k": v.get("k"),
                         **{key: _r(v.get(key), 3) for key in ("flip_C", "flip_C_agreed", "flip_Cprime")},
                         "n_agreed": v.get("n_agreed"), "n_images": v.get("n_images"),
                         **{key: _r(v.get(key), 2) for key in ("pixel_mean_255", "pixel_max_255")}})
    return rows


def single_rows(results: Results) -> list[dict[str, Any]]:
    """One row per (task, model, method, rank) of the top single attributes, each edited alone:
    its coordinate, pixel size and flips of C and C' (among agreed images)."""
    rows = []
    for (task, mode), res in results.items():
        for method, entry in res.get("methods", {}).items():
            for rank, v in enumerate((entry.get("observer") or {}).get("single", []), 1):
                rows.append({"task": task, "model": mode, "method": method, "rank": rank,
                             "coord": tuple(v["coord"]), **{key: _r(v.get(key), 2) for key in
                                                           ("pixel_mean_255", "pixel_max_255", "pixel_max_255_max")},
                             **{key: _r(v.get(key), 3) for key in ("flip_C", "flip_Cprime")},
                             "n_agreed": v.get("n_agreed")})
    return rows


def reconstruction_rows(results: Results) -> list[dict[str, Any]]:
    """One row per (task, model) with an encoder: C's agreement and C''s accuracy on the held-out
    originals and on their reconstructions (:func:`reconstruction_scores`)."""
    rows = []
    for (task, mode), res in results.items():
        rec = (res.get("observer") or {}).get("reconstruction")
        if rec:
            rows.append({"task": task, "model": mode, **{key: _r(value, 3) for key, value in rec.items()}})
    return rows


def renderer_rows(sizes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`renderer_factor_sizes` as rows: factor, change, pixel mean / max in /255."""
    return [{"factor": name, "change": v["change"], "n": v["n"],
             **{key: _r(v[key], 2) for key in ("pixel_mean_255", "pixel_max_255", "pixel_max_255_max")}}
            for name, v in sizes.items()]


def write_observer_tables(results: Results, figures: str | Path, *, renderer_size: int | None = None,
                          renderer_n: int = 64) -> dict[str, str]:
    """Write the second-observer and edit-size tables under ``figures`` and return their markdown.

    ``second_observer`` (:func:`validity_rows`), ``edit_size_single`` (:func:`single_rows`) and
    ``reconstruction_observer`` (:func:`reconstruction_rows`), each as ``.md`` and ``.csv``;
    with ``renderer_size`` (synthetic data) also ``renderer_factor_size``
    (:func:`renderer_factor_sizes` on ``renderer_n`` test faces). A table without rows is not
    written. ``second_observer`` opens with the reason wherever C' was unavailable.
    """
    from repro.tables import write_table

    figures = Path(figures)
    notes = [f"{task}/{mode}: {res['observer']['note']}" for (task, mode), res in results.items()
             if (res.get("observer") or {}).get("note")]
    if any("observer" not in res for res in results.values()):
        notes.append("results computed before these measures existed hold none: re-run the explain stage")
    tables = {"second_observer": validity_rows(results), "edit_size_single": single_rows(results),
              "reconstruction_observer": reconstruction_rows(results)}
    if renderer_size is not None:
        tables["renderer_factor_size"] = renderer_rows(renderer_factor_sizes(renderer_size, renderer_n))
    out = {}
    for name, rows in tables.items():
        if rows:
            title = "\n".join(f"* {note}" for note in notes) if name == "second_observer" else ""
            out[name] = write_table(rows, figures / f"{name}.md", figures / f"{name}.csv", title=title)
    return out
