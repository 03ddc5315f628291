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
