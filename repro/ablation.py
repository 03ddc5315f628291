"""The training-recipe ablation behind the default profile's StylEx settings (notebook 02).

Each row is one measured training run: the profile's ``stylex`` model of one task with a few
settings changed (``ROWS``). ``train_row`` trains it (resumable; reused once finished) into
``runs/<profile>/<task>/ablation/<row>/``; ``measure_row`` judges it by the fidelity measures
the report uses for every model (``repro.fidelity``) and ``save_rows`` merges the records into
``figures/ablation.json``, which notebook 02 shows. Rows are trained by the command line,
not by the report (they cost far more than its budget):

    python -m repro ablation --profile default --task synth-age --row landed --iterations 1500
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from repro.config import Profile, StylExConfig, TaskConfig

# Settings changed from the profile's StylExConfig, by dotted name ("losses.x" is LossWeights.x).
ROWS: dict[str, dict[str, Any]] = {
    # The landed default before this ablation: FFHQ-1024's R1 gamma and path length, L1 only.
    "landed": {"losses.r1_gamma": 10.0, "losses.pl_weight": 2.0, "losses.lpips": 0.0, "losses.img_l1": 5.0,
               "ema_rampup": None},
    # R1 gamma for 32 px, no path-length term, still L1 only.
    "r1-0.2": {"losses.r1_gamma": 0.2, "losses.pl_weight": 0.0, "losses.lpips": 0.0, "losses.img_l1": 5.0},
    # ... and the paper's LPIPS term (AlexNet backbone) beside L1.
    "r1-0.2+lpips": {"losses.r1_gamma": 0.2, "losses.pl_weight": 0.0, "losses.lpips": 0.5,
                     "losses.lpips_net": "alex", "losses.img_l1": 1.0},
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
        (losses if name.startswith("losses.") else top)[name.removeprefix("losses.")] = value
    return dataclasses.replace(base, **top, losses=dataclasses.replace(base.losses, **losses))


def row_dir(profile: Profile, task: TaskConfig, row: str) -> Path:
    return profile.run_dir(task.name, "ablation") / row


def train_row(profile: Profile, task: TaskConfig, row: str, *, iterations: int, device: str = "auto",
              force: bool = False, progress: bool | None = None):
    """Train (or resume, or reuse) one row's ``stylex`` model for ``iterations`` iterations."""
    from repro.classifier import load_classifier
    from repro.training import train_stylex

    config = dataclasses.replace(row_config(profile.stylex, row), iterations=iterations)
    classifier = load_classifier(profile.run_dir(task.name, "classifier")).model
    return train_stylex("stylex", task.stylex_data, config, classifier, row_dir(profile, task, row),
                        device=device, force=force, progress=progress)


def save_rows(records: list[dict[str, Any]], path: str | Path = "figures/ablation.json") -> Path:
    """Merge ``records`` (keyed by task and row) into the ablation file, atomically."""
    path = Path(path)
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    keep = {(r["task"], r["row"]) for r in records}
    rows = [r for r in old["rows"] if (r["task"], r["row"]) not in keep] + records
    rows.sort(key=lambda r: (r["task"], list(ROWS).index(r["row"]) if r["row"] in ROWS else 99))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    os.replace(tmp, path)
    return path
