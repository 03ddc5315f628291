"""Analysis: accuracy per attribute and overall, people and simulated observers kept apart.

:func:`analyse` scores every answer file against the manifest; :func:`plot_accuracy` draws the
result beside the published numbers (:data:`REFERENCES`).

**Which ± the numbers carry.** The replication reports 0.918 ± 0.038 for 61 people and 18
questions and does not say what the ± is. It cannot be the standard deviation over participants:
with 18 questions and accuracy 0.918, binomial noise alone gives a per-participant standard
deviation of sqrt(0.918 * 0.082 / 18) = 0.065 (0.064 if the questions' difficulty varies by the
reported 0.038; differences between people only add to it). It matches the standard deviation over the 18
questions of each question's accuracy (the share of participants who answered it correctly):
binomial noise alone gives sqrt(0.918 * 0.082 / 61) = 0.035. So :func:`analyse` reports
``mean ± std over questions`` (population std, ``ddof=0``) overall, and per attribute over that
attribute's questions; the per-participant mean ± std is reported beside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from repro.userstudy.answers import SIMULATED_PREFIX, read_answers

# The published numbers, drawn as references by plot_accuracy: (mean, ±, label).
REFERENCES: dict[str, tuple[float, float, str]] = {
    "replication": (0.918, 0.038, "replication (61 people, 18 questions)"),
    "paper": (0.983, 0.037, "original paper"),
}


def _answer_files(answers: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(answers, (str, Path)):
        answers = [answers]
    files: list[Path] = []
    for a in answers:
        a = Path(a)
        files += sorted(a.glob("*.jsonl")) if a.is_dir() else [a]
    return files


def _is_simulated(record: Mapping[str, Any]) -> bool:
    return bool(record.get("simulated")) or str(record.get("participant", "")).startswith(SIMULATED_PREFIX)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std())


def _summarise(records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy of a set of scored records (see :func:`analyse` for the keys)."""
    questions = {q["id"]: q for q in manifest["questions"]}
    per_question: dict[str, dict[str, Any]] = {}
    for qid, q in questions.items():
        marks = [r["_correct"] for r in records if r["question"] == qid]
        per_question[qid] = {"attribute": q["attribute"], "answers": len(marks),
                             "accuracy": float(np.mean(marks)) if marks else None}
    answered = [s for s in per_question.values() if s["answers"]]
    mean, std = _mean_std([s["accuracy"] for s in answered])
    per_attribute = {}
    for a in sorted({q["attribute"] for q in questions.values()}):
        acc = [s["accuracy"] for s in answered if s["attribute"] == a]
        m, sd = _mean_std(acc)
        per_attribute[a] = {"mean": m, "std": sd, "questions": len(acc),
                            "answers": sum(s["answers"] for s in answered if s["attribute"] == a)}
    by_participant: dict[str, list[bool]] = {}
    for r in records:
        by_participant.setdefault(r["participant"], []).append(r["_correct"])
    p_mean, p_std = _mean_std([float(np.mean(v)) for v in by_participant.values()])
    times = [r["response_time_s"] for r in records if isinstance(r.get("response_time_s"), (int, float))]
    return {
        "participants": len(by_participant), "answers": len(records),
        "overall": {"mean": mean, "std": std, "questions": len(answered)},
        "pooled": float(np.mean([r["_correct"] for r in records])) if records else None,
        "per_participant": {"mean": p_mean, "std": p_std},
        "per_attribute": per_attribute, "per_question": per_question,
        "median_response_time_s": float(np.median(times)) if times else None,
    }


def analyse(answers: str | Path | Iterable[str | Path], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy of every answer file in ``answers`` (a folder, a file, or a list of either).

    Each answer is scored against the manifest (``choice == question["correct"]``). Answers to
    another questionnaire (another manifest id), to unknown questions, or repeated (same
    participant and question: the first in file order stands) are left out and counted under
    ``skipped``. People and simulated observers (``"simulated": true`` or an id starting with
    ``simulated-``) are never pooled.

    Returns ``{"questionnaire", "std", "people", "simulated", "skipped", "attributes"}`` where
    ``people`` (None without human answers) summarises all people together and ``simulated``
    maps each simulated observer's id to its own summary. A summary holds ``overall`` (mean and
    population std over questions of each question's accuracy, the share of its answers that are
    correct; questions nobody answered are left out), ``per_attribute`` (the same over that
    attribute's questions, keyed by attribute position), ``per_question``, ``pooled`` (all
    answers together), ``per_participant`` (mean and std of each participant's accuracy),
    ``participants``, ``answers`` and ``median_response_time_s``.
    """
    questions = {q["id"]: q for q in manifest["questions"]}
    skipped = {"other_questionnaire": 0, "unknown_question": 0, "duplicate": 0}
    seen: set[tuple[str, str]] = set()
    people: list[dict[str, Any]] = []
    simulated: dict[str, list[dict[str, Any]]] = {}
    for path in _answer_files(answers):
        for r in read_answers(path):
            if r.get("questionnaire") != manifest["id"]:
                skipped["other_questionnaire"] += 1
                continue
            if r["question"] not in questions:
                skipped["unknown_question"] += 1
                continue
            pid = str(r.get("participant", path.stem))
            if (pid, r["question"]) in seen:
                skipped["duplicate"] += 1
                continue
            seen.add((pid, r["question"]))
            scored = {**r, "participant": pid, "_correct": r["choice"] == questions[r["question"]]["correct"]}
            if _is_simulated(r):
                simulated.setdefault(pid, []).append(scored)
            else:
                people.append(scored)
    if any(skipped.values()):
        warnings.warn(f"answers left out of the analysis: {skipped}")
    return {
        "questionnaire": manifest["id"],
        "std": "population std over questions of each question's accuracy (overall; per attribute over its questions)",
        "people": _summarise(people, manifest) if people else None,
        "simulated": {pid: _summarise(recs, manifest) for pid, recs in sorted(simulated.items())},
        "skipped": skipped,
        "attributes": manifest.get("attributes", []),
    }


def accuracy_text(summary: Mapping[str, Any]) -> str:
    """``"mean ± std"`` of a summary's overall accuracy (std over questions)."""
    o = summary["overall"]
    return f"{o['mean']:.3f} ± {o['std']:.3f}"


ACCURACY_COLUMN = "accuracy (mean ± std over questions)"


def summary_rows(analyses: Mapping[str, Mapping[str, Any]], manifests: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The user-study table: one row per observer (people, each simulated one) of each study, then
    the published numbers (:data:`REFERENCES`); a study without answers gets a "no answers yet" row."""
    rows: list[dict[str, Any]] = []
    for name, res in analyses.items():
        observers = ([("people", res["people"])] if res["people"] else []) + list(res["simulated"].items())
        if not observers:
            rows.append({"who": f"ours, {name}", "participants": 0, "questions": len(manifests[name]["questions"]),
                         ACCURACY_COLUMN: "no answers yet"})
        for who, s in observers:
            rows.append({"who": f"ours, {name}: {who}", "participants": s["participants"],
                         "questions": s["overall"]["questions"], ACCURACY_COLUMN: accuracy_text(s),
                         "per attribute": " / ".join(f"{v['mean']:.2f}" for v in s["per_attribute"].values())})
    rows += [{"who": label, "participants": "61" if key == "replication" else "unknown",
              "questions": "18" if key == "replication" else "unknown", ACCURACY_COLUMN: f"{m:.3f} ± {sd:.3f}"}
             for key, (m, sd, label) in REFERENCES.items()]
    return rows


SUMMARY_COLUMNS = ["who", "participants", "questions", ACCURACY_COLUMN, "per attribute"]
DISTINCT = 0.8  # simulated accuracy at which the top attributes count as moving the factors distinguishably


def findings(analyses: Mapping[str, Mapping[str, Any]], manifests: Mapping[str, Mapping[str, Any]],
             folders: Mapping[str, Path], attribute_change: Mapping[str, Mapping[int, np.ndarray]],
             min_change: float) -> str:
    """Notebook 05's "what this notebook found" in markdown, generated from the run's numbers.

    ``attribute_change[name]``: the simulated observer's per-attribute factor change
    (:func:`repro.userstudy.simulate_observer`); an attribute whose summed change is below
    ``min_change`` is called too faint to see."""
    r_mean, r_std, _ = REFERENCES["replication"]
    p_mean, p_std, _ = REFERENCES["paper"]
    lines = []
    for name, res in analyses.items():
        n_q = len(manifests[name]["questions"])
        if res["people"]:
            p = res["people"]
            lines.append(f"* **{name}, people**: {p['participants']} participant(s), {p['answers']} answers; accuracy "
                         f"{accuracy_text(p)} (report {r_mean} ± {r_std}, paper {p_mean} ± {p_std}).")
        else:
            lines.append(f"* **{name}, people**: no answers yet; the {n_q}-question questionnaire is ready in "
                         f"`{folders[name]}` (app above or `questionnaire.html`).")
        for who, s in res["simulated"].items():
            worst = min(s["per_attribute"].items(), key=lambda kv: kv[1]["mean"])
            change = {a: float(v.sum()) for a, v in attribute_change[name].items()}
            faint = [f"#{a + 1} ({c:.3f})" for a, c in change.items() if c < min_change]
            line = (f"* **{name}, {who}** (a factor probe, not a person): {accuracy_text(s)} over "
                    f"{s['overall']['questions']} questions, chance 0.5; weakest attribute #{worst[0] + 1} at "
                    f"{worst[1]['mean']:.2f}. ")
            line += ("The top attributes move the known factors in distinguishable ways. "
                     if s["overall"]["mean"] >= DISTINCT else
                     "Some top attributes move the same factors, so even an observer that reads the factors cannot "
                     "tell them apart. ")
            if faint:
                line += (f"But {len(faint)} of {len(change)} attributes change the factors by less than {min_change} "
                         f"(summed, normalised units): {', '.join(faint)}; there the observer compares directions of "
                         f"changes too small to see, and a person would likely see no change at all.")
            lines.append(line)
    return "\n".join(lines) if lines else "No StylEx model in this profile."


def _by_id(table: Mapping[Any, Any], key: int) -> dict[str, Any]:
    """``table[key]`` whether keys are ints or, after a JSON round trip, strings."""
    return dict(table.get(key, table.get(str(key), {})))


def _clipped(means: Sequence[float], stds: Sequence[float]) -> np.ndarray:
    """Error bars [2, n] of ± std, cut at 0 and 1 (an accuracy cannot leave them)."""
    m, s = np.asarray(means, float), np.asarray(stds, float)
    return np.stack([np.minimum(s, m), np.minimum(s, 1.0 - m)])


def plot_accuracy(analysis: Mapping[str, Any], path: str | Path,
                  references: Mapping[str, tuple[float, float, str]] = REFERENCES):
    """Overall and per-attribute accuracy (mean ± std over questions), references drawn beside.

    ``analysis`` is one result of :func:`analyse`, or a mapping name -> result (one row each,
    e.g. per task). People and each simulated observer are separate bars; the published numbers
    are bars on the left panel and dashed lines with a band on the right one; chance is 0.5.
    Error bars are cut at 0 and 1.
    """
    from repro.figures import _mpl, _save

    analyses = {"": analysis} if "questionnaire" in analysis else dict(analysis)
    plt = _mpl()
    fig, axes = plt.subplots(len(analyses), 2, figsize=(12, 3.6 * len(analyses)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (name, res) in zip(axes, analyses.items()):
        groups = ([("people", res["people"])] if res["people"] else []) + list(res["simulated"].items())
        ax = row[0]
        labels, means, stds = [], [], []
        for g, s in groups:
            labels.append(f"ours:\n{g}\n{s['participants']} part., {s['overall']['questions']} q.")
            means.append(s["overall"]["mean"])
            stds.append(s["overall"]["std"])
        for _, (m, sd, lab) in references.items():
            labels.append(lab.replace(" (", "\n").replace(", ", "\n").rstrip(")"))
            means.append(m)
            stds.append(sd)
        x = np.arange(len(labels))
        bar_colours = [colours[i % len(colours)] for i in range(len(groups))] + ["0.6"] * len(references)
        ax.bar(x, means, yerr=_clipped(means, stds), capsize=3, color=bar_colours)
        ax.set_xticks(x, labels, fontsize=7)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name + ': ' if name else ''}overall (± std over questions)", fontsize=9)

        ax = row[1]
        attrs = res["attributes"] or [{"id": a} for a in (groups[0][1]["per_attribute"] if groups else [])]
        width = 0.8 / max(1, len(groups))
        for k, (g, s) in enumerate(groups):
            vals = [_by_id(s["per_attribute"], a["id"]) for a in attrs]
            ax.bar(np.arange(len(attrs)) + (k - (len(groups) - 1) / 2) * width,
                   [v.get("mean") or 0.0 for v in vals], width,
                   yerr=_clipped([v.get("mean") or 0.0 for v in vals], [v.get("std") or 0.0 for v in vals]),
                   capsize=2, label=f"ours: {g}", color=colours[k % len(colours)])
        for j, (_, (m, sd, lab)) in enumerate(references.items()):
            ax.axhline(m, color=f"{0.2 + 0.3 * j}", ls="--", lw=1, label=f"{lab}: {m:.3f} ± {sd:.3f}")
            ax.axhspan(m - sd, min(m + sd, 1.08), color=f"{0.2 + 0.3 * j}", alpha=0.08)
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xticks(np.arange(len(attrs)),
                      [f"#{a.get('rank', a['id'] + 1)}" + (f"\ns{a['index']}" if "index" in a else "") for a in attrs],
                      fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_title("per AttFind attribute (rank, StyleSpace index; ± std over its questions)", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, path)
