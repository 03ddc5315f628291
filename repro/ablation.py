"""The training-recipe ablation behind the default profile's StylEx settings (notebook 02).

Each row is one measured training run: the profile's ``stylex`` model of one task with a few
settings changed (``ROWS``). ``train_row`` trains it (resumable; reused once finished) into
``runs/<profile>/<task>/ablation/<row>/``; ``measure_row`` judges it by the fidelity measures
the report uses for every model (``repro.fidelity``) and ``save_rows`` merges the records into
``figures/ablation.json``, which notebook 02 shows. Rows are trained by the command line,
not by the report (they cost far more than its budget):

    python -m repro ablation --profile default --task synth-age --row landed --iterations 1500

``measure_model`` (``python -m repro measure``) applies the same measures to any trained stylex
model, e.g. each training seed, or a run resumed to another length; ``measured_models`` turns
those records into notebook 02's table of lengths and seeds (mean ± std over seeds).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from repro.config import Profile, StylExConfig, TaskConfig
from repro.utils import write_atomic

# Settings changed from the profile's StylExConfig, by dotted name ("losses.x" is LossWeights.x).
ROWS: dict[str, dict[str, Any]] = {
    # The landed default before this ablation: FFHQ-1024's R1 gamma and path length, L1 only.
    "landed": {"losses.r1_gamma": 10.0, "losses.pl_weight": 2.0, "losses.lpips": 0.0, "losses.img_l1": 5.0,
               "ema_rampup": None},
    # R1 gamma for 32 px, no path-length term, still L1 only.
    "r1-0.2": {"losses.r1_gamma": 0.2, "losses.pl_weight": 0.0, "losses.lpips": 0.0, "losses.img_l1": 5.0},
    # The default recipe (these settings) with a wider generator, encoder and discriminator.
    "channels-96": {"channels": 96},
    # The default recipe with the adversarial term at a tenth: does the discriminator cost the
    # reconstructions?
    "adv-0.1": {"losses.adv": 0.1},
    # R1 gamma 0.2 and the paper's LPIPS term (AlexNet backbone) beside L1.
    "r1-0.2+lpips": {"losses.r1_gamma": 0.2, "losses.pl_weight": 0.0, "losses.lpips": 0.5,
                     "losses.lpips_net": "alex", "losses.img_l1": 1.0},
    # The landed recipe with the paper's LPIPS term at the paper's weight beside it.
    "landed+lpips": {"losses.r1_gamma": 10.0, "losses.pl_weight": 2.0, "losses.lpips": 0.1,
                     "losses.lpips_net": "alex", "losses.img_l1": 5.0, "ema_rampup": None},
    # The control: the default recipe's networks untrained (iteration 0) through the same measures.
    "untrained": {"iterations": 0},
    # stylegan2-ada's automatic gamma (0.0002 * res^2 / batch = 0.0128 at 32 px, batch 16).
    "r1-0.0128+lpips": {"losses.r1_gamma": 0.0128, "losses.pl_weight": 0.0, "losses.lpips": 0.5,
                        "losses.lpips_net": "alex", "losses.img_l1": 1.0},
}


def row_config(base: StylExConfig, row: str) -> StylExConfig:
    """``base`` with the row's settings applied (an unknown row or setting is a ValueError)."""
    if row not in ROWS:
        raise ValueError(f"unknown ablation row {row!r}; choose one of: {', '.join(ROWS)}")
    top: dict[str, Any] = {}
    losses: dict[str, Any] = {}
    for name, value in ROWS[row].items():
        if name == "iterations":
            continue  # a row's own training length (train_row), not a setting of the recipe
        (losses if name.startswith("losses.") else top)[name.removeprefix("losses.")] = value
    return dataclasses.replace(base, **top, losses=dataclasses.replace(base.losses, **losses))


def row_dir(profile: Profile, task: TaskConfig, row: str) -> Path:
    return profile.run_dir(task.name, "ablation") / row


def train_row(profile: Profile, task: TaskConfig, row: str, *, iterations: int, device: str = "auto",
              force: bool = False, progress: bool | None = None):
    """Train (or resume, or reuse) one row's ``stylex`` model for ``iterations`` iterations."""
    from repro.classifier import load_classifier
    from repro.training import train_stylex

    iterations = ROWS[row].get("iterations", iterations)
    config = dataclasses.replace(row_config(profile.stylex, row), iterations=max(1, iterations))
    classifier = load_classifier(profile.run_dir(task.name, "classifier")).model
    return train_stylex("stylex", task.stylex_data, config, classifier, row_dir(profile, task, row),
                        device=device, force=force, progress=progress, iterations=iterations)


def measure_row(profile: Profile, task: TaskConfig, row: str, *, device: str = "auto",
                progress: bool | None = None, n_reconstructions: int = 512) -> dict[str, Any]:
    """One ablation row's record: its name and settings, and :func:`measure_model` of its run."""
    record = measure_model(profile, task, row_dir(profile, task, row), device=device, progress=progress,
                           n_reconstructions=n_reconstructions)
    return {"task": task.name, "row": row, "settings": ROWS[row], **record}


def measure_model(profile: Profile, task: TaskConfig, run_dir: str | Path, *, device: str = "auto",
                  progress: bool | None = None, n_reconstructions: int = 512, force: bool = False,
                  ground_truth: bool = True) -> dict[str, Any]:
    """The fidelity measures of one trained stylex model (an ablation row's, or a seed's): the
    run's cost; LPIPS (VGG, the usual metric backbone) and L1 of ``n_reconstructions`` held-out
    test reconstructions (:func:`repro.evaluation.reconstruction_metrics`); from the model's
    ``repro.explain.explain_model`` results (cached in its run directory), on the flip rate's
    held-out images: what C and C' read from the reconstructions, and the AttFind / random
    top-k edits' flip rates of C and C' (C' among the images both agreed on) and edit size.
    ``force`` recomputes the explanation instead of reusing it. ``ground_truth`` (synthetic tasks):
    also the report's ground-truth measures (:func:`ground_truth_measures`).
    """
    import statistics

    from repro.data import load_split
    from repro.evaluation import reconstruction_metrics
    from repro.explain import explain_model
    from repro.perceptual import LPIPSLoss

    run_dir = Path(run_dir)
    exp = explain_model(profile, task, "stylex", device=device, progress=progress, run_dir=run_dir, force=force)
    lpips = LPIPSLoss("vgg")
    if lpips.available:
        lpips = lpips.to(next(exp.model.parameters()).device)
    rec, _, _ = reconstruction_metrics(exp.model, exp.classifier, load_split(task.stylex_data, "test"),
                                       n=n_reconstructions, lpips=lpips if lpips.available else None,
                                       refine_steps=profile.eval.refine_steps)
    log_file = run_dir / "log.jsonl"
    log = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()] if log_file.exists() else []
    observed = exp.results["observer"]["reconstruction"] or {}
    methods = exp.results["methods"]

    def read(name: str) -> dict[str, Any]:
        return json.loads((run_dir / name).read_text()) if (run_dir / name).exists() else {}

    record: dict[str, Any] = {
        "iterations": log[-1]["iteration"] if log else 0, "seed": read("config.json").get("stylex", {}).get("seed"),
        "train_step": read("metadata.json").get("train_step", 1),  # repro.training.TRAIN_STEP
        "sec_per_iter": statistics.median(r["sec_per_iter"] for r in log) if log else None,
        "precision": read("metadata.json").get("precision", "fp32"),  # StylExConfig.precision of the training
        "lr_rampdown": read("config.json").get("stylex", {}).get("lr_rampdown"),  # None: constant learning rates
        "attfind_images": exp.results["attfind_images"]["n"],
        "attfind_screen": exp.results["eval_config"]["attfind_screen"],  # None: exact AttFind
        "refine_steps": profile.eval.refine_steps,  # 0: the encoder's w; N: refined per image (EvalConfig)
        # the flip rate's images per repeat: their style min / max are the edits' targets
        "flip_images": exp.results["methods"]["attfind"]["flip_rate"]["images_per_repeat"],
        "lpips_vgg": rec["lpips"], "lpips_source": lpips.status, "l1": rec["l1"],
        **{key: observed.get(key) for key in ("agreement_C", "acc_Cprime_originals", "acc_Cprime_reconstructions")},
        "k": profile.eval.k,
        # How much of each conv layer's output is per-pixel noise (learned strength): a large last
        # value is the speckle of the reconstruction grids, detail no style coordinate controls.
        "noise_strength": [round(float(layer.noise_strength), 4) for layer in exp.model.generator.layers],
    }
    for name in ("attfind", "random"):
        summary = methods[name]["observer"]
        record[f"{name}_flip_C"] = summary.get("flip_C")
        record[f"{name}_flip_Cprime"] = summary.get("flip_Cprime")
        record[f"{name}_pixel_max_255"] = summary.get("pixel_max_255")
    if ground_truth:
        record.update(ground_truth_measures(profile, task, exp, device=device))
    return record


def ground_truth_measures(profile: Profile, task: TaskConfig, exp: Any, *, device: str = "auto") -> dict[str, Any]:
    """The report's ground-truth measures (notebook 04, ``figures/fidelity.json``) of one
    explanation on a synthetic task ({} on real data): ``precision_at_4``, ``purity`` (mean over
    AttFind's top 4), ``spurious_exposed`` (0 / 1; None where the training split has no planted
    shortcut, ``spurious_p`` 0.5), the size of the single top-4 AttFind edits:
    ``single_pixel_max_255`` (per attribute the mean over images of the largest |pixel change|,
    averaged over the 4) and ``single_pixel_max_255_min`` (the smallest of the 4: the target wants
    each >= 32), the probe's mean R^2 on the reconstructions (``probe_r2_reconstructions``) and
    that of a probe refitted to them (``probe_r2_refit``; ``_originals``: the same recipe on the
    originals; ``repro.groundtruth.probe_on_reconstructions``), and ``probe_sha256`` (the first
    12 hex digits of the probe's weights)."""
    from repro.fidelity import groundtruth_record
    from repro.groundtruth import GT_RULE, evaluate
    from repro.probe import PROBE_CHECKPOINT, load_or_train_probe, probe_dir
    from repro.utils import pick_device
    from repro.weights import sha256_file

    if task.classifier_data.dataset != "synthetic":
        return {}
    dev = pick_device(device)
    probe = load_or_train_probe(profile, task, device=dev)
    result = evaluate(profile, task, "stylex", exp, probe=probe, device=dev)
    gt = groundtruth_record(result)
    single = [s["pixel_max_255"] for s in exp.results["methods"]["attfind"]["observer"].get("single", [])]
    return {"gt_rule": GT_RULE, "precision_at_4": gt[f"precision_at_{result['k']}"], "purity": gt["purity"],
            "spurious_exposed": gt["spurious_exposed"] if task.classifier_data.planted else None,
            "single_pixel_max_255": sum(single) / len(single) if single else None,
            "single_pixel_max_255_min": min(single) if single else None,
            "probe_r2_reconstructions": gt.get("probe_r2_reconstructions"),
            # a probe refitted to the model's reconstructions, and that recipe on the originals
            "probe_r2_refit": gt.get("probe_r2_refit"), "probe_r2_refit_originals": gt.get("probe_r2_refit_originals"),
            # which probe read the edits: each run root trains its own (the same seed and data)
            "probe_sha256": sha256_file(probe_dir(profile, task) / PROBE_CHECKPOINT)[:12]}


ROW_MEASURES = ("lpips_vgg", "l1", "agreement_C", "acc_Cprime_originals", "acc_Cprime_reconstructions",
                "attfind_flip_C", "attfind_flip_Cprime", "attfind_pixel_max_255", "random_flip_C", "random_flip_Cprime")
# notebook 02's ablation table: how each row was trained and measured, the measures, and the
# ground truth of AttFind's top 4 with the probe's reading of the reconstructions (rows measured
# before the ground truth existed leave those empty)
ROW_GROUND_TRUTH = ("precision_at_4", "purity", "probe_r2_reconstructions", "probe_r2_refit")
ROW_COLUMNS = ("row", "iterations", "precision", "attfind_images", "flip_images", *ROW_MEASURES, *ROW_GROUND_TRUTH)


def ablation_table(path: str | Path = "figures/ablation.json", task: str | None = None) -> list[dict[str, Any]]:
    """The measured rows of ``path`` (one task, or all) with the columns notebook 02 shows; a
    setting older records lack is what it was then (:data:`MEASURED_DEFAULTS`), a ground-truth
    measure they lack "-" (not measured then)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["rows"]
    return [{c: r.get(c) if r.get(c) is not None else MEASURED_DEFAULTS.get(c, "-" if c in ROW_GROUND_TRUTH else None)
             for c in (("task",) if task is None else ()) + ROW_COLUMNS}
            for r in rows if task is None or r["task"] == task]


MEASURES_FILE = "benchmarks/results/train_step.jsonl"  # records of `python -m repro measure`
# How a model was trained and measured: rows differing in any of these are not seeds of one recipe.
# gt_rule: how precision@4 and "spurious exposed" counted an edit (repro.groundtruth.GT_RULE);
# records made before the signed rule counted any visible change ("unsigned").
TRAINING_SETTINGS = ("train_step", "precision", "lr_rampdown")
MEASUREMENT_SETTINGS = ("attfind_images", "attfind_screen", "flip_images", "gt_rule", "refine_steps")
MEASURED_SETTINGS = TRAINING_SETTINGS + MEASUREMENT_SETTINGS
# The ground-truth measures (synthetic tasks; records before they existed lack them).
GROUND_TRUTH_COLUMNS = ("precision_at_4", "purity", "spurious_exposed", "single_pixel_max_255",
                        "single_pixel_max_255_min", "probe_r2_reconstructions", "probe_r2_refit")
MEASURED_COLUMNS = ("task", "seed", "iterations", *MEASURED_SETTINGS) + ROW_MEASURES + GROUND_TRUTH_COLUMNS
# What records written before these fields existed were: fp32 training at a constant learning
# rate, exact AttFind on 32 images, flip rates over 80 images per repeat, the unsigned ground truth,
# the encoder's w unrefined.
MEASURED_DEFAULTS = {"train_step": 1, "precision": "fp32", "lr_rampdown": None, "attfind_images": 32,
                     "attfind_screen": None, "flip_images": 80, "gt_rule": "unsigned", "refine_steps": 0}


def _measured_records(path: str | Path) -> list[dict[str, Any]]:
    """The newest record per model and measurement (run folder, iterations, AttFind and flip-rate
    settings) of a ``measure`` results file, in file order, with :data:`MEASURED_DEFAULTS` filled in."""
    path = Path(path)
    if not path.exists():
        return []
    newest: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = {**MEASURED_DEFAULTS, **json.loads(line)}
            key = (r.get("run_dir"), r.get("iterations"), *(r[c] for c in MEASUREMENT_SETTINGS))
            newest.pop(key, None)
            newest[key] = r
    return list(newest.values())


def measured_models(path: str | Path = MEASURES_FILE) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The trained stylex models measured by ``python -m repro measure --out path``: (one row per
    model, one row per task, iterations and :data:`MEASURED_SETTINGS` with the mean ± std over its
    seeds).
    The second table is what decides the default's length: every seed of a recipe, not one run."""
    from repro.fidelity import mean_std

    def settings(r: dict[str, Any]) -> tuple:
        return tuple(r[c] for c in MEASURED_SETTINGS)

    records = sorted(_measured_records(path), key=lambda r: (r["task"], r.get("iterations") or 0,
                                                            *(-1 if v is None else v for v in settings(r)),
                                                            r.get("seed") or 0))
    per_model = [{c: r.get(c, "-" if c in GROUND_TRUTH_COLUMNS else None) for c in MEASURED_COLUMNS}
                 for r in records]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], r.get("iterations"), *settings(r)), []).append(r)
    measures = MEASURED_COLUMNS[3 + len(MEASURED_SETTINGS):]
    summary = []

    def ratio(r: dict[str, Any]) -> float | None:  # per model, so that its spread over seeds shows
        orig, rec = r.get("acc_Cprime_originals"), r.get("acc_Cprime_reconstructions")
        return rec / orig if orig and rec is not None else None

    for (task, iterations, *setting), rs in groups.items():
        stats = mean_std([{**{m: r.get(m) for m in measures}, "acc_Cprime_ratio": ratio(r)} for r in rs])
        row: dict[str, Any] = {"task": task, "iterations": iterations, **dict(zip(MEASURED_SETTINGS, setting)),
                               "seeds": ", ".join(str(r.get("seed")) for r in rs)}
        for m in (*measures[:5], "acc_Cprime_ratio", *measures[5:]):
            mean, std = stats.get(m), stats.get(f"{m}_std")
            digits = 1 if "_255" in m else 3
            row[m] = (None if mean is None else f"{mean:.{digits}f}" if std is None
                      else f"{mean:.{digits}f} ± {std:.{digits}f}")
            if row[m] is None and m in GROUND_TRUTH_COLUMNS:
                row[m] = "-"  # a record made before measure took the ground truth (None means exact AttFind)
        summary.append(row)
    return per_model, summary


def copy_samples(profile: Profile, task: TaskConfig, row: str, figures: str | Path) -> Path | None:
    """The row's last training grid (held-out originals over EMA reconstructions) as
    ``figures/ablation_<task>_<row>.png``, so the rows can be compared by eye."""
    return copy_last_grid(row_dir(profile, task, row), Path(figures) / f"ablation_{task.name}_{row}.png")


def copy_last_grid(run_dir: str | Path, dest: str | Path) -> Path | None:
    """Copy a training run's last grid (held-out originals over EMA reconstructions, written by the
    trainer every ``sample_every`` iterations) to ``dest``; None when the run wrote none."""
    import shutil

    grids = sorted((Path(run_dir) / "samples").glob("iter-*.png"))
    if not grids:
        return None
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grids[-1], dest)
    return Path(dest)


def refine_grid(profile: Profile, task: TaskConfig, run_dir: str | Path, dest: str | Path, *, steps: int,
                n: int = 8, device: str = "auto") -> Path:
    """The first ``n`` held-out test images over the model's reconstructions from the encoder's w
    and from w refined by ``steps`` steps (``repro.evaluation.refine_latents``), with the fixed
    noise of the reconstruction measures, as a PNG at ``dest``."""
    from repro.classifier import load_classifier
    from repro.data import load_split
    from repro.evaluation import latents, render
    from repro.figures import plot_reconstructions
    from repro.model import load_stylex
    from repro.utils import pick_device

    if steps <= 0:
        raise ValueError(f"refine_grid compares refined reconstructions with the encoder's: steps must be "
                         f"above 0, got {steps}")
    dev = pick_device(device)
    model = load_stylex(run_dir, device=dev).model
    classifier = load_classifier(profile.run_dir(task.name, "classifier"), device=dev).model
    test = load_split(task.stylex_data, "test")
    plain = latents(model, classifier, test, n=n, progress=False)
    refined = latents(model, classifier, test, n=n, refine_steps=steps, progress=False)
    rows = {"original": plain.images, "encoder": render(model, plain).clamp(-1.0, 1.0),
            f"refined, {steps} steps": render(model, refined).clamp(-1.0, 1.0)}
    plot_reconstructions({k: v.cpu() for k, v in rows.items()}, dest, n=n)
    return Path(dest)


def save_rows(records: list[dict[str, Any]], path: str | Path = "figures/ablation.json") -> Path:
    """Merge ``records`` (keyed by task and row) into the ablation file, atomically."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    keep = {(r["task"], r["row"]) for r in records}
    rows = [r for r in old["rows"] if (r["task"], r["row"]) not in keep] + records
    rows.sort(key=lambda r: (r["task"], list(ROWS).index(r["row"]) if r["row"] in ROWS else 99))
    return write_atomic(path, json.dumps({"rows": rows}, indent=2) + "\n")
