"""Fidelity you can check: the report's headline measures per model, over training seeds, and its targets.

A flip rate and a reconstruction agreement can both pass on images a person would
not recognise, because G is trained to satisfy C. The measures that tell a real explanation from
an adversarial one are gathered here per task and model, averaged over the training seeds of
``profile.seeds`` (mean and ``_std``), and written to ``figures/fidelity.json``:

- reconstructions (:func:`reconstruction_records`): LPIPS (VGG) and L1 of held-out
  reconstructions, C's agreement, and the second observer C''s accuracy on the originals and on
  their reconstructions (:mod:`repro.observer`);
- counterfactuals (:func:`explanation_record`): per method (AttFind, Wu, random) the top-k flip
  rate of C and of C' (C' among the images both agreed on before the edit) and the edit size
  in /255, from each model's ``explain.json``;
- known causes: precision@4 and the purity of the top attributes (:mod:`repro.groundtruth`),
  where notebook 04 measured them.

``TARGETS`` holds every target the report checks, in one place; :func:`verdicts` reads them.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from repro.probe import mean_r2
from repro.utils import write_atomic

# The report's targets, by the field of fidelity.json they apply to.
TARGETS: dict[str, float] = {
    "agreement_C": 0.95,                 # C keeps its decision on reconstructions
    "acc_Cprime_ratio": 0.9,             # C' reads reconstructions >= 0.9 x as well as originals
    "attfind_flip_C": 0.8,               # top-10 AttFind edits flip C
    "attfind_flip_Cprime": 0.6,          # ... and C' (among images both agreed on)
    "attfind_flip_ratio": 0.75,          # C' flips >= 0.75 x as often as C
    "attfind_pixel_max_255": 32.0,       # a visible change at the full edit
    "precision_at_4": 0.75,              # top-4 attributes move factors C truly uses
    "purity": 0.5,                       # ... each mostly one factor
}
RECONSTRUCTION_IMAGES = 512


def model_runs(profile, task, mode: str) -> list[tuple[int, Path]]:
    """(seed, run directory) of every finished training seed of a model (``stylex``: all of
    ``profile.seeds``; other modes: the primary seed)."""
    from repro.model import FINAL

    seeds = profile.seeds if mode == "stylex" else profile.seeds[:1]
    return [(s, profile.model_dir(task.name, mode, s)) for s in seeds
            if (profile.model_dir(task.name, mode, s) / FINAL).exists()]


def mean_std(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Field-wise mean over records (numbers only; None where any is missing), with a ``<field>_std``
    sibling (sample std) when there is more than one record; nested dicts are averaged recursively."""
    out: dict[str, Any] = {}
    if not records:
        return out
    for key in records[0]:
        values = [r.get(key) for r in records]
        if all(isinstance(v, Mapping) for v in values):
            out[key] = mean_std(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            out[key] = values[0] if all(v == values[0] for v in values) else statistics.fmean(values)
            if len(values) > 1:
                out[f"{key}_std"] = statistics.stdev(values)
        elif all(v == values[0] for v in values):
            out[key] = values[0]
        else:
            out[key] = None
    return out


@torch.inference_mode()
def reconstruction_records(profile, task, mode: str, *, device: str | torch.device = "cpu",
                           n: int = RECONSTRUCTION_IMAGES, lpips=None, observer=None, classifier=None,
                           ) -> tuple[list[dict[str, Any]], torch.Tensor | None, torch.Tensor | None]:
    """Per training seed of a model with an encoder: its reconstruction metrics on ``n`` held-out
    test images (:func:`repro.evaluation.reconstruction_metrics`, with LPIPS and C').

    Returns (records, originals, the primary seed's reconstructions); records carry ``seed``.
    """
    from repro.classifier import load_classifier
    from repro.data import load_split
    from repro.evaluation import reconstruction_metrics
    from repro.model import load_stylex

    if classifier is None:
        classifier = load_classifier(profile.run_dir(task.name, "classifier"), device=device).model
    test = load_split(task.stylex_data, "test")
    records, x0, rec0 = [], None, None
    for seed, run_dir in model_runs(profile, task, mode):
        model = load_stylex(run_dir, device=device).model
        if model.encoder is None:
            return [], None, None
        m, x, rec = reconstruction_metrics(model, classifier, test, n=min(n, len(test)), seed=0, lpips=lpips,
                                           observer=observer)
        records.append({"seed": seed, **m})
        if x0 is None:
            x0, rec0 = x, rec
    return records, x0, rec0


def reconstruction_rows(summary: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Notebook 03's table: one row per model, mean ± std over seeds."""
    rows = []
    for key, m in summary.items():
        rows.append({"model": key, "seeds": len(m.get("seeds") or []), "images": int(m.get("n") or 0),
                     "LPIPS (vgg)": _pm(m, "lpips"), "L1": _pm(m, "l1"),
                     "C agreement": _pm(m, "agreement_C"),
                     "C' acc. originals": _pm(m, "acc_Cprime_originals"),
                     "C' acc. reconstructions": _pm(m, "acc_Cprime_reconstructions")})
    return rows


def summarise(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seed records, with ``seeds`` (the list) and C''s accuracy ratio."""
    out = mean_std([{k: v for k, v in r.items() if k != "seed"} for r in records])
    out["seeds"] = [r["seed"] for r in records]
    a, b = out.get("acc_Cprime_originals"), out.get("acc_Cprime_reconstructions")
    out["acc_Cprime_ratio"] = b / a if isinstance(a, float) and isinstance(b, float) and a > 0 else None
    return out


def reconstruction_findings(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Notebook 03's closing lines: each model's reconstruction measures against ``TARGETS``."""
    lines = []
    for key, m in summary.items():
        v = verdicts(m)
        agree = f"C agreement {_pm(m, 'agreement_C')} ({_word(v['agreement_C'])} the {TARGETS['agreement_C']} target)"
        if m.get("acc_Cprime_ratio") is None:
            cp = "C' unavailable (python -m repro train-observer)"
        else:
            cp = (f"C' reads the class from {_pm(m, 'acc_Cprime_reconstructions')} of the reconstructions against "
                  f"{_pm(m, 'acc_Cprime_originals')} of the originals (ratio {m['acc_Cprime_ratio']:.2f}, "
                  f"{_word(v['acc_Cprime_ratio'])} the {TARGETS['acc_Cprime_ratio']} target)")
        lines.append(f"{key} ({len(m.get('seeds') or [])} seed(s), {m.get('n')} held-out images): {agree}; {cp}; "
                     f"LPIPS {_pm(m, 'lpips')}, L1 {_pm(m, 'l1')}.")
    return lines


def _word(ok: bool | None) -> str:
    return "not measured against" if ok is None else ("meets" if ok else "misses")


def explanation_record(results: Mapping[str, Any], k: int) -> dict[str, Any]:
    """The counterfactual measures of one model's ``explain.json``: per method flip_C, flip_Cprime,
    n_agreed, pixel_mean_255, pixel_max_255 (the top-k edit)."""
    methods = {}
    for name, m in results["methods"].items():
        obs = m.get("observer") or {}
        methods[name] = {"flip_C": m["flip_rate"]["mean"], "flip_Cprime": obs.get("flip_Cprime"),
                         "n_agreed": obs.get("n_agreed"), "pixel_mean_255": obs.get("pixel_mean_255"),
                         "pixel_max_255": obs.get("pixel_max_255")}
    return {"k": k, "methods": methods}


def explanation_summary(profile, primary: Mapping[tuple[str, str], Mapping[str, Any]],
                        other_seeds: Mapping[tuple[str, int], Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """fidelity.json's counterfactual part per ``<task>/<mode>``: :func:`explanation_record` of the
    primary model's results, averaged with the other training seeds' (``stylex`` only), over seeds."""
    out = {}
    for (task, mode), results in primary.items():
        records = [explanation_record(results, profile.eval.k)]
        seeds = [profile.seeds[0]]
        if mode == "stylex":
            for (t, seed), res in sorted(other_seeds.items()):
                if t == task:
                    records.append(explanation_record(res, profile.eval.k))
                    seeds.append(seed)
        out[f"{task}/{mode}"] = {**mean_std(records), "explained_seeds": seeds,
                                 # each seed's AttFind flip rate of C, in the order of explained_seeds
                                 "attfind_flip_C_per_seed": [r["methods"].get("attfind", {}).get("flip_C")
                                                             for r in records]}
    return out


def explanation_rows(summary: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per model and method: C and C' flip rates of the top-k edit and its size, ± std over seeds."""
    rows = []
    for key, rec in summary.items():
        for method, m in (rec.get("methods") or {}).items():
            rows.append({"model": key, "method": method, "seeds": len(rec.get("explained_seeds", [])),
                         "flip C": _pm(m, "flip_C"), "flip C' (agreed)": _pm(m, "flip_Cprime"),
                         "edit mean /255": _pm(m, "pixel_mean_255", 1), "edit max /255": _pm(m, "pixel_max_255", 1)})
    return rows


def groundtruth_record(result: Mapping[str, Any]) -> dict[str, Any]:
    """AttFind's ground-truth measures of one :func:`repro.groundtruth.evaluate` result:
    ``precision_at_<k>``, the mean ``purity`` of its top-k coordinates, ``spurious_exposed``
    (0/1), and where the probe was validated on the model's reconstructions its mean R^2 over
    the factors on the originals and on the reconstructions (``probe_r2_originals``,
    ``probe_r2_reconstructions``) and, where measured, that of the probe refitted to the
    reconstructions and of the same recipe on the originals (``probe_r2_refit``,
    ``probe_r2_refit_originals``; ``repro.groundtruth.probe_on_reconstructions``)."""
    att = result["methods"]["attfind"]
    coords = att["coords"]
    record = {f"precision_at_{result['k']}": float(att["precision_at_k"]),
              "purity": statistics.fmean(c["purity"] for c in coords) if coords else None,
              "spurious_exposed": float(bool(att["spurious_exposed"]))}
    validation = result.get("probe_validation")
    if validation:
        record["probe_r2_originals"] = mean_r2(validation["originals"])
        record["probe_r2_reconstructions"] = mean_r2(validation["reconstructions"])
        for part in ("refit", "refit_originals"):
            if part in validation:
                record[f"probe_r2_{part}"] = mean_r2(validation[part])
    return record


def groundtruth_summary(primary: Mapping[tuple[str, str], Mapping[str, Any]],
                        other_seeds: Mapping[tuple[str, int], Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """fidelity.json's ground-truth part per ``<task>/<mode>``, mean ± std over the stylex seeds."""
    out = {}
    for (task, mode), result in primary.items():
        records = [groundtruth_record(result)]
        if mode == "stylex":
            records += [groundtruth_record(r) for (t, _), r in sorted(other_seeds.items()) if t == task]
        out[f"{task}/{mode}"] = {**mean_std(records), "groundtruth_seeds": len(records)}
    return out


def verdicts(record: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each target of ``TARGETS`` against a fidelity.json model record (None where not measured)."""
    att = (record.get("methods") or {}).get("attfind") or {}
    values = {"agreement_C": record.get("agreement_C"), "acc_Cprime_ratio": record.get("acc_Cprime_ratio"),
              "attfind_flip_C": att.get("flip_C"), "attfind_flip_Cprime": att.get("flip_Cprime"),
              "attfind_flip_ratio": (att["flip_Cprime"] / att["flip_C"]
                                     if att.get("flip_Cprime") is not None and att.get("flip_C") else None),
              "attfind_pixel_max_255": att.get("pixel_max_255"),
              "precision_at_4": record.get("precision_at_4"), "purity": record.get("purity")}
    return {k: None if v is None else bool(v >= TARGETS[k]) for k, v in values.items()}


def write_fidelity(models: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Merge model records (keyed ``<task>/<mode>``) into ``fidelity.json`` atomically; each gets its verdicts."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {"targets": TARGETS, "models": {}}
    data["targets"] = TARGETS
    for key, record in models.items():
        merged = {**data["models"].get(key, {}), **record}
        merged["verdicts"] = verdicts(merged)
        data["models"][key] = merged
    return write_atomic(path, json.dumps(data, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _pm(m: Mapping[str, Any], key: str, digits: int = 3) -> str:
    value = m.get(key)
    if value is None:
        return "unavailable"
    std = m.get(f"{key}_std")
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
