"""What the notebooks share: opening a profile from papermill parameters, where figures go,
class names, and small tables.

The default profile writes the committed report's figures to ``figures/``; every other profile
writes to ``runs/<profile>/figures/`` so that a CI run never overwrites the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from repro.config import DataConfig, Profile, get_profile


@dataclass
class Context:
    """A notebook's view of its run.

    Parameters:
        profile: the profile in use.
        figures: the folder figures are written to.
        device: the device string passed to the library.
        force: recompute finished stages.
    """

    profile: Profile
    figures: Path
    device: str
    force: bool


def open_profile(profile: str, data_root: str = "", device: str = "auto", force: bool = False) -> Context:
    """Build the Context from a notebook's papermill parameters."""
    prof = get_profile(profile, data_root=data_root or None)
    figures = Path("figures") if prof.name == "default" else Path(prof.run_root) / prof.name / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    return Context(prof, figures, device, bool(force))


def class_names(data: DataConfig) -> tuple[str, str]:
    """Names of class 0 and class 1 of a task."""
    if data.dataset == "synthetic":
        from repro.data import synthetic

        return tuple(synthetic.TASKS[data.task].class_names)
    if data.dataset == "afhq":
        return ("cat", "dog")
    if data.dataset in ("celeba", "ffhq"):
        return ("young", "old")
    return ("class 0", "class 1")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
    """A GitHub markdown table from a list of dicts."""
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def benchmark_summary(results: str | Path = "benchmarks/results") -> str:
    """Markdown tables of the benchmark results files (``benchmarks/*.py`` append to them): the
    newest measurement per (profile, mode, device) of ``train_speed.jsonl`` and per device of
    ``attfind_speed.jsonl`` (older runs stay in the files). Empty when neither file exists."""
    results = Path(results)
    parts = []
    train = _read_jsonl(results / "train_speed.jsonl")
    if train:
        newest: dict[tuple, dict[str, Any]] = {}
        for r in train:
            newest[(r["profile"], r["mode"], r["device"])] = r
        rows = [{"profile": r["profile"], "mode": r["mode"], "resolution / channels": f"{r['resolution']} / {r['channels']}",
                 "batch": r["batch_size"], "s/iter (median)": r["sec_per_iter_median"],
                 "peak RSS (MB)": round(r["peak_rss_mb"]), "iterations timed": r["iterations"],
                 "device": r["device"], "date": r["date"][:10]} for r in newest.values()]
        parts.append("Training (`benchmarks/train_speed.py`):\n\n" + markdown_table(rows, floatfmt=".3g"))
    attfind = list({r["device"]: r for r in _read_jsonl(results / "attfind_speed.jsonl")}.values())
    if attfind:
        rows = [{"device": r["device"], "images x coordinates": f"{r['config']['images']} x {r['config']['coords']}",
                 "batched renders/s": r["batched"]["renders_per_s"], "reference renders/s": r["reference"]["renders_per_s"],
                 "ratio": r["ratio"], "load before / after": (f"{r['load_average']['before']:.1f} / {r['load_average']['after']:.1f}"
                                                               if "load_average" in r else "not recorded"),
                 "date": r["date"][:10]} for r in attfind]
        parts.append("AttFind effect tensor, default-size model, newest run per device (`benchmarks/attfind_speed.py`):\n\n"
                     + markdown_table(rows, floatfmt=".1f"))
    return "\n\n".join(parts)


def update_readme(readme: str | Path = "README.md", figures: str | Path = "figures",
                  benchmarks: str | Path = "benchmarks/results") -> list[str]:
    """Replace each ``<!-- results:NAME -->...<!-- /results:NAME -->`` block of the README with
    ``figures/NAME.md`` (a table a notebook wrote), so README numbers always come from a run; the
    block ``benchmarks`` gets :func:`benchmark_summary` of the benchmark results files."""
    import re

    readme = Path(readme)
    text = readme.read_text()
    changed = []

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1)
        source = Path(figures) / f"{name}.md"
        if name == "benchmarks":
            content = benchmark_summary(benchmarks)
        elif source.exists():
            content = source.read_text()
        else:
            content = ""
        if not content.strip():
            return match.group(0)
        changed.append(name)
        caption = README_CAPTIONS.get(name, "")
        body = (f"{caption}\n\n" if caption else "") + content.strip()
        return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"

    text = re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", fill, text, flags=re.S)
    readme.write_text(text)
    return changed


README_CAPTIONS = {
    "benchmarks": "**Speed** (run by hand, appended to `benchmarks/results/`; measurements, never pass/fail tests).",
    "classifier_metrics": "**Classifiers** ([notebook 01](notebooks/01_classifier.ipynb)): held-out accuracy of MobileNetV2 trained from scratch.",
    "stylex_training_runs": "**Training runs** ([notebook 02](notebooks/02_stylex_training.ipynb)): cost of each model on this machine.",
    "reconstruction_metrics": "**Claim 1, reconstruction** ([notebook 03](notebooks/03_reconstruction.ipynb)), held-out test images, fixed noise, EMA generator + EMA encoder.",
    "run_times": "**How long it took** (written by `run_all.sh`): wall-clock seconds per notebook of the run that produced these results.",
    "top_attributes": "**Claim 2, attributes** ([notebook 04](notebooks/04_attributes.ipynb)): the top AttFind attributes of each model; pictures and GIFs are under `figures/`.",
    "ground_truth": "**Ground truth** ([notebook 04](notebooks/04_attributes.ipynb)): do the found coordinates change the factors the classifier truly uses? Precision@k of the dominant factor (read by an attribute probe) against the classifier's true factor importance (measured by re-rendering with one factor changed).",
    "user_study_table": "**Claim 2, user study** ([notebook 05](notebooks/05_user_study.ipynb)): accuracy of a *simulated* observer (an attribute probe, not people) on the report's questionnaire design, beside the report's 0.918 ± 0.038 (people) and the paper's 0.983 ± 0.037.",
    "flip_rate_table": "**Claim 3, flip rate of the top-10 coordinates** ([notebook 06](notebooks/06_flip_rate.ipynb)), mean ± std over repeats on held-out images; the report's numbers beside ours for the real-data rows.",
}
