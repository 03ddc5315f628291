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


def update_readme(readme: str | Path = "README.md", figures: str | Path = "figures") -> list[str]:
    """Replace each ``<!-- results:NAME -->...<!-- /results:NAME -->`` block of the README with
    ``figures/NAME.md`` (a table a notebook wrote), so README numbers always come from a run."""
    import re

    readme = Path(readme)
    text = readme.read_text()
    changed = []

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1)
        source = Path(figures) / f"{name}.md"
        if not source.exists():
            return match.group(0)
        changed.append(name)
        caption = README_CAPTIONS.get(name, "")
        body = (f"{caption}\n\n" if caption else "") + source.read_text().strip()
        return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"

    text = re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", fill, text, flags=re.S)
    readme.write_text(text)
    return changed


README_CAPTIONS = {
    "classifier_metrics": "**Classifiers** ([notebook 01](notebooks/01_classifier.ipynb)): held-out accuracy of MobileNetV2 trained from scratch.",
    "stylex_training_runs": "**Training runs** ([notebook 02](notebooks/02_stylex_training.ipynb)): cost of each model on this machine.",
    "reconstruction_metrics": "**Claim 1, reconstruction** ([notebook 03](notebooks/03_reconstruction.ipynb)), held-out test images, fixed noise, EMA generator + EMA encoder.",
    "run_times": "**How long it took** (written by `run_all.sh`): wall-clock seconds per notebook of the run that produced these results.",
    "top_attributes": "**Claim 2, attributes** ([notebook 04](notebooks/04_attributes.ipynb)): the top AttFind attributes of each model; pictures and GIFs are under `figures/`.",
    "ground_truth": "**Ground truth** ([notebook 04](notebooks/04_attributes.ipynb)): do the found coordinates change the factors the classifier truly uses? Precision@k of the dominant factor (read by an attribute probe) against the classifier's true factor importance (measured by re-rendering with one factor changed).",
    "user_study_table": "**Claim 2, user study** ([notebook 05](notebooks/05_user_study.ipynb)): accuracy of a *simulated* observer (an attribute probe, not people) on the report's questionnaire design, beside the report's 0.918 ± 0.038 (people) and the paper's 0.983 ± 0.037.",
    "flip_rate_table": "**Claim 3, flip rate of the top-10 coordinates** ([notebook 06](notebooks/06_flip_rate.ipynb)), mean ± std over repeats on held-out images; the report's numbers beside ours for the real-data rows.",
}
