"""Explaining one trained model: AttFind, the Wu et al. and random baselines, and their flip rates.

``explain_model`` is what notebooks 04-06 and ``python -m repro explain`` call. Per model it

1. takes the AttFind images (the validation split, encoded; or samples of a StyleGAN2) and
   disjoint **held-out** evaluation images (the test split; or samples from another seed),
   each with fixed per-image noise;
2. computes the AttFind effect tensor (cached as ``attfind_effects.pt``);
3. selects coordinates with AttFind, Wu et al. (target class 0, so the list reads "class 1 ->
   class 0" like AttFind's; its statistics over ``EvalConfig.wu_images`` images, styles only,
   disjoint from the held-out ones: :func:`repro.baselines.wu_images`) and the random floor;
4. measures the flip rate of each on the held-out images: top-k (mean ± std over repeats) and
   the curve over k = 1..k_max;
5. judges the same renders with the second observer C' and measures their pixel change
   (:mod:`repro.observer`): per method ``methods.<m>.observer`` holds ``flip_C``, ``flip_Cprime``
   (among the ``n_agreed`` images where C and C' agreed before the edit), ``pixel_mean_255`` and
   ``pixel_max_255`` of the top-k edit, its curve over k and (``single``) each of the top single
   attributes edited alone on the first repeat's images;
   ``observer.reconstruction`` holds C's agreement and C''s accuracy on originals and
   reconstructions (models with an encoder). Without a trained C' the C' fields are None and
   ``observer.note`` says how to train it; the pixel sizes are measured either way;
6. writes everything to ``explain.json`` in the model's run directory, the stage's completion
   marker (``repro.stage``; a crash mid-way leaves no such file, so the stage is redone). It is
   reused while the model, classifier and observer weights are the ones it was computed from.

**K > 2 classes** (your own folder): each class ``c`` is explained one-vs-rest, as the authors'
notebook's one-vs-all variant does: :class:`OneVsRest` turns C (and C') into the two-class
decision "rest (0) vs c (1)" with logits ``[logsumexp of the other classes' logits, logit c]``
(the softmax of that pair is exactly ``[1 - p_c, p_c]``), and the whole pipeline above runs on
it, so AttFind selects coordinates per class and the flip rate is reported per target class (of
the decision c vs rest) in ``<model>/class-<c>/explain.json``. The generator and the encoder
still see the K-way softmax. :func:`explain_classes` runs every class (or, at K = 2, the
paper's two-class explanation, unchanged).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repro.attfind import EffectResult, compute_effects, get_preset, run_attfind, screened_attfind
from repro.baselines import mean_effects, random_attributes, wu_attributes, wu_images, wu_positive_threshold
from repro.checkpoint import CheckpointError
from repro.classifier import CHECKPOINT, load_classifier
from repro.config import EvalConfig, Profile, TaskConfig
from repro.data import class_names, load_split
from repro.evaluation import Latents, latents, render
from repro.fliprate import EditRecorder, flip_rate_curve, load_results, save_results
from repro.model import FINAL, StylExModel, load_stylex
from repro.observer import (TOP_SINGLE, load_observer, missing_observer_note, observer_dir, reconstruction_scores,
                            single_attribute_edits, validity_curve, validity_summary)
from repro.stage import StageDir
from repro.stylespace import Attributes, flatten_styles, style_range
from repro.utils import pick_device, timed

RESULTS = "explain.json"
EFFECTS = "attfind_effects.pt"
METHODS = ("attfind", "wu", "random")


@dataclass
class Explanation:
    """A model's explanation inputs and results, loaded for figures and the user study.

    Parameters:
        model: the EMA networks.
        classifier: the frozen classifier.
        attfind_set / eval_set: the AttFind and held-out images as latents with fixed noise.
        attributes: per method, its ranked list.
        results: the contents of ``explain.json``.
        targets: the edit targets ``(style_min, style_max)``, [S] each: every StyleSpace
            coordinate's min / max over the AttFind images (:func:`repro.stylespace.style_range`),
            the targets of direction 0 and 1 for AttFind and for every figure, GIF, explorer and
            user-study edit of this explanation. ``explain_model`` passes the ones AttFind used;
            left out (None), they are computed from ``attfind_set`` on construction.
    """

    model: StylExModel
    classifier: torch.nn.Module
    attfind_set: Latents
    eval_set: Latents
    attributes: dict[str, Attributes]
    results: dict[str, Any]
    targets: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.targets is None:
            self.targets = style_range(flatten_styles(self.attfind_set.styles(self.model)[0]))


class OneVsRest(nn.Module):
    """A K-class classifier as the two-class decision "rest (0) vs ``target`` (1)".

    Logits ``[logsumexp_{j != target} l_j, l_target]``: their softmax is ``[1 - p_target, p_target]``
    of the K-way softmax, so a flip of this decision is the K-way argmax entering or leaving
    ``target``. Parameters: classifier (K outputs), target (its class index)."""

    def __init__(self, classifier: nn.Module, target: int):
        super().__init__()
        self.classifier = classifier
        self.target = int(target)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(x)
        others = torch.cat([logits[:, :self.target], logits[:, self.target + 1:]], dim=1)
        return torch.stack([torch.logsumexp(others, dim=1), logits[:, self.target]], dim=1)


def class_dir(run_dir: Path, target_class: int | None) -> Path:
    """Where one class's explanation lives: the model's run directory (two classes), or ``class-<c>/`` in it."""
    return run_dir if target_class is None else run_dir / f"class-{target_class}"


def _fingerprint(*files: Path) -> str:
    """A hash of the weight files results were computed from, so a retrained model invalidates them."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def check_eval_config(ev: EvalConfig, num_styles: int) -> None:
    """Raise ValueError, before any rendering, if the flip-rate ks ask for more than the S coordinates."""
    ks = sorted(set(ev.curve_ks or range(1, ev.k_max + 1)) | {ev.k, ev.k_max})
    if ks[-1] > num_styles:
        raise ValueError(f"EvalConfig asks to edit k = {ks[-1]} coordinates (k = {ev.k}, k_max = {ev.k_max}, "
                         f"curve_ks = {ev.curve_ks}) but the model has only S = {num_styles} style coordinates; "
                         f"set k, k_max and curve_ks to at most {num_styles}")


def image_sets(model: StylExModel, classifier: torch.nn.Module, task: TaskConfig, profile: Profile, *,
               progress: bool | None = None) -> tuple[Latents, Latents]:
    """(AttFind images, held-out evaluation images), disjoint, with fixed noise (encodings refined
    per image where ``EvalConfig.refine_steps`` asks)."""
    ev = profile.eval
    n_eval = ev.repeats * ev.images_per_repeat
    if model.encoder is not None:
        val, test = load_split(task.stylex_data, "val"), load_split(task.stylex_data, "test")
        if len(test) < n_eval:
            raise ValueError(f"{ev.repeats} repeats x {ev.images_per_repeat} images need {n_eval} held-out "
                             f"images but {test.name} has {len(test)}; lower EvalConfig.repeats or "
                             f"EvalConfig.images_per_repeat so that their product is at most {len(test)}")
        refine = {"refine_steps": ev.refine_steps, "progress": progress}
        return (latents(model, classifier, val, n=ev.attfind_images, seed=ev.seed, **refine),
                latents(model, classifier, test, n=n_eval, seed=ev.seed + 1, **refine))
    return (latents(model, classifier, n=ev.attfind_images, seed=ev.seed),
            latents(model, classifier, n=n_eval, seed=ev.seed + 10_000))


def explain_model(profile: Profile, task: TaskConfig, mode: str, *, device: str = "auto", force: bool = False,
                  progress: bool | None = None, top_single: int = TOP_SINGLE, seed: int | None = None,
                  run_dir: str | Path | None = None, target_class: int | None = None) -> Explanation:
    """Run (or reuse) AttFind, the baselines and the flip rates of one trained model, with the second
    observer's verdict and the edit sizes (``top_single``: single top attributes measured alone).

    The model is ``profile.model_dir(task, mode, seed)`` (``seed`` None: the primary training
    seed), or the model in ``run_dir`` when given (e.g. an ablation row's).
    Results are reused when the model, classifier and observer weights are the ones they were
    computed from (training C' later recomputes them, reusing the cached AttFind effects).

    ``target_class``: with K > 2 classes, the class explained one-vs-rest (module docstring;
    results in ``class-<c>/``); None (two classes) is the paper's explanation. With
    ``EvalConfig.refine_steps`` N > 0 the encodings are refined per image first and the results
    live in ``refine-N/`` below that, beside the encoder's own."""
    config = get_preset(profile.eval.attfind_preset)  # a bad name fails now, not after the effects
    dev = pick_device(device)
    run_dir = Path(run_dir) if run_dir is not None else profile.model_dir(task.name, mode, seed)
    clf_dir = profile.run_dir(task.name, "classifier")
    for path, command in ((run_dir / FINAL, f"train-stylex --mode {mode}"), (clf_dir / CHECKPOINT, "train-classifier")):
        if not path.exists():
            raise FileNotFoundError(f"no trained model {path} to explain; run `python -m repro {command} "
                                    f"--profile {profile.name} --task {task.name}` first (with the same --run-root)")
    model = load_stylex(run_dir, device=dev).model
    check_eval_config(profile.eval, model.generator.num_styles)
    full_classifier = load_classifier(clf_dir, device=dev).model
    num_classes = len(class_names(task.stylex_data))
    if (num_classes > 2) != (target_class is not None) or not 0 <= (target_class or 0) < num_classes:
        raise ValueError(f"{task.name} has {num_classes} classes: give target_class " +
                         (f"0..{num_classes - 1} (one-vs-rest; explain_classes runs them all)" if num_classes > 2
                          else "None (the two-class explanation)") + f", not {target_class!r}")
    classifier = full_classifier if target_class is None else OneVsRest(full_classifier, target_class)
    observer_run, observer_note = None, None
    try:
        observer_run = load_observer(profile, task, device=dev)
        if observer_run is None:
            observer_note = missing_observer_note(profile, task)
    except CheckpointError as err:
        observer_note = f"the second observer in {observer_dir(profile, task)} was not used: {err}"
    observer = None if observer_run is None else (
        observer_run.model if target_class is None else OneVsRest(observer_run.model, target_class))
    found, held_out = image_sets(model, full_classifier, task, profile, progress=progress)  # w = [E(x), K-way softmax]
    if target_class is not None and held_out.labels is not None:  # labels of the decision c vs rest
        held_out.labels = torch.where(held_out.labels < 0, held_out.labels, (held_out.labels == target_class).long())
    G, ev = model.generator, profile.eval
    model_dir, run_dir = run_dir, class_dir(run_dir, target_class)
    if ev.refine_steps:  # another procedure: its results beside, not over, the encoder's own
        run_dir = run_dir / f"refine-{ev.refine_steps}"

    stamp = _fingerprint(model_dir / FINAL, profile.run_dir(task.name, "classifier") / CHECKPOINT)
    if target_class is not None:
        stamp = f"{stamp} one-vs-rest class={target_class}"
    if ev.attfind_screen is not None:  # screened effects depend on the share and the selection that verified them
        stamp = f"{stamp} screen={ev.attfind_screen} {ev.attfind_preset}"
    observer_stamp = _fingerprint(observer_run.run_dir / CHECKPOINT) if observer_run is not None else "none"
    procedure = {**dataclasses.asdict(ev), "top_single": top_single}
    if not ev.refine_steps:  # results computed before the setting existed stay valid: they used none
        del procedure["refine_steps"]
    else:
        stamp = f"{stamp} refine={ev.refine_steps}"

    def reuse() -> Explanation:  # the stage's config check: the weights the results were computed from
        results = load_results(run_dir / RESULTS)
        if results.get("fingerprint") != stamp or results.get("observer_fingerprint") != observer_stamp:
            raise CheckpointError("it was computed from other model, classifier or observer weights")
        # and the procedure: the image counts and seed, the flip-rate settings, AttFind's selection
        # (e.g. its unstable share) and how many single attributes were measured
        if results.get("eval_config") != procedure or results.get("attfind_config") != config.to_dict():
            raise CheckpointError("it was computed with other evaluation settings (EvalConfig, the AttFind "
                                  "selection or top_single)")
        attrs = {m: Attributes.from_dict(results["methods"][m]["attributes"]) for m in METHODS}
        return Explanation(model, classifier, found, held_out, attrs, results)

    done = StageDir(run_dir, RESULTS).reuse(reuse, force=force, again="recomputing")
    if done is not None:
        return done

    conv, rgb = found.styles(model)
    flat = flatten_styles(conv)
    smin, smax = style_range(flat)
    effects_path = run_dir / EFFECTS
    with timed() as t_eff:
        stamped = effects_path.with_suffix(".fingerprint")
        # the effects depend on the weights and on which images AttFind used (their number and draw)
        effects_stamp = f"{stamp} images={ev.attfind_images} seed={ev.seed}"
        if not force and effects_path.exists() and stamped.exists() and stamped.read_text() == effects_stamp:
            effects = EffectResult.load(effects_path)
        else:
            if ev.attfind_screen is None:
                effects = compute_effects(G, classifier, conv, rgb, found.noise, smin, smax,
                                          progress=progress)
            else:
                _, effects = screened_attfind(G, classifier, conv, rgb, found.noise, smin, smax, config,
                                              screen=ev.attfind_screen, progress=progress)
            effects.save(effects_path)
            stamped.write_text(effects_stamp)
    # Wu: styles and class probabilities of ev.wu_images images (no effect tensor: Wu has no
    # unstable filter, that is AttFind's step 3); positives: softmax > threshold (the replication's
    # rule), or, when no image passes it, Wu's own top 2% (recorded in wu_threshold_used).
    # mean_effect: AttFind's effect tensor on its own images, a diagnostic the ranking never reads.
    with timed() as t_wu:
        wu_set = wu_images(model, full_classifier, task, ev, progress=progress)
        if target_class is not None:  # the K-way softmax as the decision c vs rest: [1 - p_c, p_c]
            p = wu_set.probs[:, target_class]
            wu_set.probs = torch.stack([1.0 - p, p], dim=1)
        wu_threshold = wu_positive_threshold(wu_set.probs, ev.wu_threshold, target_class=0)
        wu = wu_attributes(wu_set.styles, wu_set.probs, target_class=0, k=ev.k_max, threshold=wu_threshold,
                           style_dims=G.style_dims, effect=effects.effect)
    attrs = {
        "attfind": run_attfind(effects, config),
        "wu": wu,
        # one fixed draw for the figures; the flip rate redraws per repeat (below)
        "random": random_attributes(G.num_styles, ev.k_max, seed=ev.seed, style_dims=G.style_dims),
    }
    attrs["random"].mean_effect = mean_effects(effects.effect, attrs["random"].coords)

    e_conv, e_rgb = held_out.styles(model)
    methods: dict[str, Any] = {}
    ks = sorted(set(ev.curve_ks or range(1, ev.k_max + 1)) | {ev.k})
    observers = [] if observer is None else [observer]
    t_single = 0.0
    with timed() as t_flip:
        for name, attributes in attrs.items():
            source = (lambda r: random_attributes(G.num_styles, ev.k_max, seed=ev.seed + 1 + r)) if name == "random" else attributes
            recorder = EditRecorder(observers)  # rides along: the flip rate's own renders, no extra edits
            curve = flip_rate_curve(G, classifier, e_conv, e_rgb, held_out.noise, source, ks=ks, repeats=ev.repeats,
                                    images_per_repeat=ev.images_per_repeat, seed=ev.seed, progress=progress,
                                    recorder=recorder)
            with timed() as t:
                # one repeat (the curve's first: same images, style range and random draw) keeps
                # this at a fifth of a flip-rate curve's cost in the default profile
                single = single_attribute_edits(G, classifier, observers, e_conv, e_rgb, held_out.noise, source,
                                                n=top_single, repeats=1, images_per_repeat=ev.images_per_repeat,
                                                seed=ev.seed, progress=progress)
            t_single += t["seconds"]
            methods[name] = {"attributes": attributes, "flip_rate": curve.at(ev.k), "curve": curve,
                             "observer": {**validity_summary(recorder, ev.k), "curve": validity_curve(recorder),
                                          "single": single}}
    reconstruction, t_rec = None, {"seconds": 0.0}
    if held_out.images is not None:  # encoded real images: judge their reconstructions too
        with timed() as t_rec:
            rec = render(model, held_out).clamp(-1.0, 1.0)
            reconstruction = reconstruction_scores(classifier, held_out.images, rec, held_out.labels, observer)
    obs_cfg = profile.observer
    observer_info = {
        "available": observer_run is not None, "note": observer_note, "arch": obs_cfg.arch, "seed": obs_cfg.seed,
        "run_dir": str(observer_dir(profile, task)),
        "test_accuracy": observer_run.metrics.get("test", {}).get("accuracy") if observer_run is not None else None,
        "reconstruction": reconstruction, "top_single": top_single,
    }
    results = {
        "task": task.name, "mode": mode, "profile": profile.name, "fingerprint": stamp,
        **({} if target_class is None else {"target_class": target_class,
                                            "class_names": [f"not {class_names(task.stylex_data)[target_class]}",
                                                            class_names(task.stylex_data)[target_class]]}),
        "attfind_images": {"n": len(found), "source": found.source},
        "eval_images": {"n": len(held_out), "source": held_out.source},
        "base_class_counts": torch.bincount(effects.base_logits.argmax(1), minlength=2).tolist(),
        "eval_config": procedure,
        "attfind_config": config.to_dict(), "wu_threshold_used": wu_threshold, "num_styles": G.num_styles, "style_dims": G.style_dims,
        "wu_images": {**wu_set.record(), "n_positives": wu.details["num_positives"]},
        # AttFind's unstable-image filter: the authors' 750 of 2 x 2 x 5,760 entries as a share of 4S
        "attfind_unstable": {"share": config.unstable_max_share,
                             "max_count": attrs["attfind"].details["unstable_max_count"],
                             "entries_per_image": attrs["attfind"].details["unstable_entries_per_image"],
                             "n_unstable": len(attrs["attfind"].details["unstable_images"])},
        # flip_rates: the flip rates with the recorder riding along; observer_extra: the single-attribute
        # passes and the reconstructions, which only the observer measures add
        "seconds": {"effects": t_eff["seconds"], "wu": t_wu["seconds"], "flip_rates": t_flip["seconds"] - t_single,
                    "observer_extra": t_single + t_rec["seconds"]},
        "observer_fingerprint": observer_stamp, "observer": observer_info,
        "methods": methods,
    }
    save_results(run_dir / RESULTS, results)
    return Explanation(model, classifier, found, held_out, attrs, load_results(run_dir / RESULTS), (smin, smax))


def explain_classes(profile: Profile, task: TaskConfig, mode: str, **kwargs: Any) -> dict[str, Explanation]:
    """Every explanation of one model by label: ``{task: explain_model(...)}`` for two classes (the
    paper's, unchanged), or ``{"<task>-<class>": explain_model(..., target_class=c)}`` for each of K > 2
    classes (one-vs-rest; module docstring). The labels stand in for task names in the notebooks'
    tables and figure file names. ``kwargs`` go to :func:`explain_model`."""
    names = class_names(task.stylex_data)
    if len(names) == 2:
        return {task.name: explain_model(profile, task, mode, **kwargs)}
    return {f"{task.name}-{name}": explain_model(profile, task, mode, target_class=c, **kwargs)
            for c, name in enumerate(names)}


def explanation_class_names(exp: Explanation, task: TaskConfig) -> tuple[str, str]:
    """Names of the two sides of an explanation: the task's two classes, or ("not c", "c") one-vs-rest."""
    return tuple(exp.results.get("class_names") or class_names(task.stylex_data))
