"""The flip-rate table (the report's Table 2) and the flip-rate-vs-k plot, from ``explain.json`` results.

The report's Table 2 has one row per data set and three columns: Wu et al. (on a StyleGAN2),
AttFind on a StyleGAN2, AttFind on StylEx. Ours adds AttFind on StylEx-alt (the authors'
alternating recipe) and the random floor (on the StylEx model). Each cell is the top-k flip rate
on held-out images, mean ± std over repeats. For the real-data tasks the report's own numbers
(its re-run and the original paper's, as the report quotes them) are printed beside ours.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

# Report Table 2 (64 px; flip rate of the top-10 coordinates). "-" in the report is None here.
REPORT_TABLE2: dict[str, dict[str, dict[str, tuple[float, float | None] | None]]] = {
    "afhq": {"replication": {"wu": (0.247, 0.012), "attfind-stylegan2": (0.391, 0.022), "attfind-stylex": (0.042, 0.006)},
             "original": {"wu": (0.010, None), "attfind-stylegan2": None, "attfind-stylex": (0.250, None)}},
    "ffhq": {"replication": {"wu": (0.253, 0.015), "attfind-stylegan2": (0.678, 0.016), "attfind-stylex": (0.429, 0.013)},
             "original": {"wu": (0.169, None), "attfind-stylegan2": None, "attfind-stylex": (0.939, None)}},
}

# (column name, model mode, method): which explain.json result fills each column.
COLUMNS: list[tuple[str, str, str]] = [
    ("Wu et al.", "stylegan2", "wu"),
    ("AttFind with StyleGAN2", "stylegan2", "attfind"),
    ("AttFind with StylEx", "stylex", "attfind"),
    ("AttFind with StylEx-alt", "stylex-alt", "attfind"),
    ("Random (StylEx)", "stylex", "random"),
]
_REPORT_KEY = {"Wu et al.": "wu", "AttFind with StyleGAN2": "attfind-stylegan2", "AttFind with StylEx": "attfind-stylex"}

Results = Mapping[tuple[str, str], Mapping[str, Any]]  # (task, mode) -> explain.json contents


def fmt_rate(mean: float | None, std: float | None = None) -> str:
    """``0.391 (± 0.022)`` as the report writes it; ``-`` for a missing value."""
    if mean is None:
        return "-"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} (± {std:.3f})"


def flip_rate_rows(results: Results) -> list[dict[str, str]]:
    """Rows of the Table-2-shaped table: ours per task, then the report's rows for real-data tasks."""
    tasks = list(dict.fromkeys(task for task, _ in results))
    rows = []
    for task in tasks:
        row = {"": "ours", "task": task}
        for column, mode, method in COLUMNS:
            res = results.get((task, mode))
            top = res["methods"][method]["flip_rate"] if res else None
            row[column] = fmt_rate(top["mean"], top["std"]) if top else "-"
        rows.append(row)
    for task in tasks:
        for source, cells in REPORT_TABLE2.get(task, {}).items():
            row = {"": f"report: {source}", "task": task}
            for column, _, _ in COLUMNS:
                key = _REPORT_KEY.get(column)
                cell = cells.get(key) if key else None
                row[column] = fmt_rate(*cell) if cell else "-"
            rows.append(row)
    return rows


def long_rows(results: Results) -> list[dict[str, Any]]:
    """Every (task, model, method) with its top-k flip rate, per-class rates and AttFind image counts."""
    rows = []
    for (task, mode), res in results.items():
        for method, entry in res["methods"].items():
            top = entry["flip_rate"]
            rows.append({"task": task, "model": mode, "method": method, "k": top["k"],
                         "flip_rate": round(top["mean"], 4), "std": round(top["std"], 4),
                         "class0": None if top["per_class_mean"][0] is None else round(top["per_class_mean"][0], 4),
                         "class1": None if top["per_class_mean"][1] is None else round(top["per_class_mean"][1], 4),
                         "repeats": top["repeats"], "images_per_repeat": top["images_per_repeat"]})
    return rows


def write_table(rows: list[dict[str, Any]], md_path: str | Path, csv_path: str | Path | None = None,
                title: str = "") -> str:
    """Write rows as a markdown table (and CSV); returns the markdown."""
    from repro.report import markdown_table

    md = (f"{title}\n\n" if title else "") + markdown_table(rows) + "\n"
    Path(md_path).write_text(md)
    if csv_path is not None:
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return md


def plot_flip_curves(results: Results, path: str | Path):
    """Flip rate vs k (mean ± std over repeats), one panel per task, one line per model and method."""
    from repro.figures import _mpl, _save

    plt = _mpl()
    tasks = list(dict.fromkeys(task for task, _ in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.8), squeeze=False, sharey=True)
    styles = {"attfind": "-", "wu": "--", "random": ":"}
    colours = {"stylex": "C0", "stylegan2": "C1", "stylex-alt": "C2"}
    for ax, task in zip(axes[0], tasks):
        for (t, mode), res in results.items():
            if t != task:
                continue
            for method, entry in res["methods"].items():
                if method == "random" and mode != "stylex":
                    continue  # one random floor per task keeps the plot readable
                curve = entry["curve"]
                ks, mean, std = curve["ks"], curve["mean"], curve["std"]
                label = f"{method} · {mode}" if method != "random" else "random floor"
                colour = "0.5" if method == "random" else colours.get(mode, "C3")
                ax.plot(ks, mean, styles.get(method, "-"), color=colour, label=label)
                ax.fill_between(ks, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=colour, alpha=0.12)
        ax.set_title(task)
        ax.set_xlabel("k (coordinates edited together)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")  # each panel its own: the tasks may have different models
    axes[0][0].set_ylabel("flip rate (held-out images)")
    fig.tight_layout()
    return _save(fig, path)


def chosen_coordinates(explanations: Mapping[tuple[str, str], Any], k: int) -> str:
    """The top-k (direction, layer, channel) of each model's methods, one text line per method;
    "min"/"max" is the edit that moves an image of class 1 towards class 0."""
    lines = []
    for (task, mode), e in explanations.items():
        lines.append(f"{task}/{mode}")
        for method, attrs in e.attributes.items():
            top = [f"{'max' if d else 'min'} L{layer}c{ch}" for (d, _), layer, ch in
                   zip(attrs.coords[:k], attrs.layers or [None] * k, attrs.channels or [None] * k)]
            lines.append(f"  {method:8s} " + ", ".join(top))
    return "\n".join(lines)


def claim3_findings(results: Results, tasks: list[str], k: int,
                    over_seeds: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Notebook 06's reading of claim 3, in markdown, generated from the run's numbers: per task
    AttFind on StylEx against Wu et al., the random floor, AttFind on the StyleGAN2 and StylEx-alt,
    and the flip-rate target (``repro.fidelity.TARGETS["attfind_flip_C"]``).

    ``over_seeds`` (:func:`repro.fidelity.explanation_summary`): when it holds the stylex model's
    other training seeds, the target is judged on their mean, as the target is set, and the line
    gives mean ± std and each seed's rate; otherwise on the primary model's rate."""
    from repro.fidelity import TARGETS

    def rate(task: str, mode: str, method: str) -> float | None:
        res = results.get((task, mode))
        return None if res is None else res["methods"][method]["flip_rate"]["mean"]

    target = TARGETS["attfind_flip_C"]
    lines = []
    for task in tasks:
        a, w, r = rate(task, "stylex", "attfind"), rate(task, "stylegan2", "wu"), rate(task, "stylex", "random")
        g, alt = rate(task, "stylegan2", "attfind"), rate(task, "stylex-alt", "attfind")
        if a is None:
            continue
        verdict = []
        if w is not None:
            verdict.append(f"{'above' if a > w else 'not above'} Wu et al. ({w:.3f})")
        if r is not None:
            verdict.append(f"{'above' if a > r else 'not above'} the random floor ({r:.3f})")
        if g is not None:
            verdict.append(f"{'above' if a > g else 'below'} AttFind on the StyleGAN2 ({g:.3f})")
        line = f"* **{task}**: AttFind on StylEx flips {a:.3f} of held-out images with k = {k}: " + "; ".join(verdict)
        if alt is not None:
            line += f"; the alternating recipe (StylEx-alt) gives {alt:.3f}"
        seeds = (over_seeds or {}).get(f"{task}/stylex") or {}
        if len(seeds.get("explained_seeds") or []) > 1:
            att = seeds["methods"]["attfind"]
            mean, std = att["flip_C"], att.get("flip_C_std")
            per_seed = ", ".join(f"seed {s} {v:.3f}" for s, v in zip(seeds["explained_seeds"],
                                                                      seeds.get("attfind_flip_C_per_seed") or [])
                                 if v is not None)
            line += (f". Over the {len(seeds['explained_seeds'])} training seeds {mean:.3f}"
                     + (f" ± {std:.3f}" if std is not None else "") + (f" ({per_seed})" if per_seed else "")
                     + f"; target >= {target} on that mean: {'met' if mean >= target else 'missed'}.")
        else:
            line += f". Target >= {target}: {'met' if a >= target else 'missed'}."
        lines.append(line)
    return "\n".join(lines)
