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
from repro.utils import write_atomic


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


def class_names(data: DataConfig) -> tuple[str, ...]:
    """Names of a task's classes in label order (:func:`repro.data.class_names`)."""
    from repro.data import class_names as names

    return names(data)


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


# The paper's schedule (the original: 250k iterations at global batch 16, on 8 GPUs).
PAPER_ITERATIONS, PAPER_BATCH = 250_000, 16
PAPER_ATTFIND_IMAGES = 250
GPU_RECIPE_COMMAND = ("python benchmarks/train_speed.py --device cuda --profiles paper-afhq --modes stylex "
                      "--iterations 66 --precision bf16 --channels-last")


def projected_hours(images_per_s: float, gpus: int = 1, iterations: int = PAPER_ITERATIONS,
                    batch: int = PAPER_BATCH) -> float:
    """Wall-clock hours for ``iterations`` x ``batch`` images at ``images_per_s`` per GPU, on ``gpus``
    GPUs scaling linearly (an assumption for ``gpus > 1``: data-parallel overheads are ignored)."""
    return iterations * batch / (images_per_s * gpus) / 3600


def _is_cuda(record: dict[str, Any]) -> bool:
    if "device_type" in record:
        return record["device_type"] == "cuda"
    return not str(record.get("device", "cpu")).startswith("cpu")


def _precision(record: dict[str, Any]) -> str:
    """``fp32`` (older records did not say: they ran fp32), plus ``+ channels-last``."""
    return record.get("precision", "fp32") + (" + channels-last" if record.get("channels_last") else "")


def _images_per_s(record: dict[str, Any]) -> float:
    """batch / mean s per iteration; older records kept only the median."""
    if "images_per_s" in record:
        return float(record["images_per_s"])
    return record["batch_size"] / record["sec_per_iter_median"]


def _timed_iterations(record: dict[str, Any]) -> int:
    """Iterations the s/iter figures come from: all but the first two (older records did not say)."""
    if "timed_iterations" in record:
        return int(record["timed_iterations"])
    return record["iterations"] - 2 if record["iterations"] > 2 else record["iterations"]


def _load(record: dict[str, Any]) -> str:
    load = record.get("load_average")
    if not load or load.get("before") is None or load.get("after") is None:
        return "not recorded"
    return f"{load['before']:.1f} / {load['after']:.1f}"


def _attfind_projection(attfind: list[dict[str, Any]]) -> str:
    """Paper-scale AttFind (64 px, 512 channels, N = 250, all conv coordinates) projected from the
    newest CUDA measurement at that model size, or a statement that there is none."""
    newest = {r["device"]: r for r in attfind
              if _is_cuda(r) and (r["config"]["resolution"], r["config"]["channels"]) == (64, 512)}
    if not newest:
        return ("Paper-scale AttFind (64 px, 512 channels, N = 250 images, all conv coordinates; target <= 10 "
                "minutes on one H100): not measured on a GPU yet (`python benchmarks/attfind_speed.py --device cuda "
                "--resolution 64 --channels 512 --images 16 --coords 512` measures it).")
    lines = []
    for r in newest.values():
        renders = PAPER_ATTFIND_IMAGES * 2 * r["config"]["num_styles"]
        minutes = renders / r["batched"]["renders_per_s"] / 60
        lines.append(f"Paper-scale AttFind on {r['device']}: {r['batched']['renders_per_s']:.0f} renders/s measured "
                     f"({r['config']['images']} images x {r['config']['coords']} coordinates, {r['date'][:10]}), so "
                     f"{PAPER_ATTFIND_IMAGES} images x 2 x {r['config']['num_styles']} coordinates = {renders:,} "
                     f"renders project to {minutes:.1f} minutes (target <= 10).")
    return " ".join(lines)


def _screened_row(r: dict[str, Any]) -> dict[str, Any]:
    """One row of the screened-AttFind table from an ``attfind_screened.jsonl`` record."""
    model = r["model"]
    iteration = model.get("iteration")
    known = isinstance(iteration, int) and iteration >= 0  # -1: the record has none
    name = ("fresh (untrained)" if model["kind"] == "fresh" else
            f"{model.get('run', '?')} ({model.get('mode', '?')}{f', iteration {iteration}' if known else ''})")
    agreement = r.get("agreement", {})
    flip = agreement.get("flip_rate")
    # the same rates per CPU second (process time): steadier than wall time on a shared machine
    cpu = {"reference": r["reference"]["images"] * 2 * r["reference"].get("coords", r["config"]["num_styles"])
           / r["reference"]["cpu_seconds"],
           "exact": r["exact"]["images"] * 2 * r["config"]["num_styles"] / r["exact"]["cpu_seconds"],
           "screened": r["entries"] / r["screened"]["cpu_seconds"]}
    return {"device": r["device"], "model": name,
            "N x S": f"{r['config']['images']} x {r['config']['num_styles']}",
            "share / runners-up": f"{r['config']['screen']} / {r['config']['runners_up']}",
            "rendered": f"{100 * r['screened']['renders_share']:.1f}%",
            "screened eff. renders/s": r["screened"]["effective_renders_per_s"],
            "exact renders/s": r["exact"]["renders_per_s"], "reference renders/s": r["reference"]["renders_per_s"],
            "x reference (wall / CPU)": f"{r['speedup_vs_reference']:.1f} / {cpu['screened'] / cpu['reference']:.1f}",
            "x exact (wall / CPU)": f"{r['speedup_vs_exact']:.1f} / {cpu['screened'] / cpu['exact']:.1f}",
            "top-10 overlap": f"{agreement['overlap']}/{agreement['of']}" if agreement else "not measured",
            "flip rate screened / exact": f"{flip['screened']:.3f} / {flip['exact']:.3f}" if flip else "not measured",
            "load before / after": _load(r), "date": r["date"][:10]}


def _gpu_recipe(train: list[dict[str, Any]]) -> str:
    """Projected paper-schedule wall time from the newest CUDA paper-afhq StylEx training records."""
    newest: dict[tuple, dict[str, Any]] = {}
    for r in train:
        if _is_cuda(r) and r.get("profile") == "paper-afhq" and r.get("mode") == "stylex":
            newest[(r["device"], _precision(r))] = r
    head = (f"**GPU recipe, measured and projected** (paper profile, {PAPER_ITERATIONS:,} iterations x {PAPER_BATCH} images; "
            "this reproduction's target is >= 500 images/s of StylEx training on one H100).")
    if not newest:
        return (f"{head} No GPU run has been measured yet: `benchmarks/results/train_speed.jsonl` has no CUDA "
                f"record of paper-afhq StylEx training, so no GPU throughput or projected time is given. On a "
                f"GPU machine `bash benchmarks/run.sh` (or `{GPU_RECIPE_COMMAND}`) measures one, and "
                f"`python -m repro readme` puts it here.")
    rows = []
    for r in newest.values():
        ips = _images_per_s(r)
        rows.append({"device": r["device"], "precision": _precision(r), "images/s (measured)": ips,
                     "iterations timed": _timed_iterations(r),
                     "1 GPU, projected (h)": projected_hours(ips, 1),
                     "8 GPUs, projected, linear scaling assumed (h)": projected_hours(ips, 8),
                     "date": r["date"][:10]})
    return (f"{head} Images/s is measured (`benchmarks/train_speed.py`, one GPU, synthetic 64 px images); "
            f"the hours are projected from it as {PAPER_ITERATIONS:,} x {PAPER_BATCH} / (images/s x GPUs) / 3600. "
            "The 8-GPU column assumes linear scaling under torchrun: an assumption, not a measurement.\n\n"
            + markdown_table(rows, floatfmt=".1f"))


def benchmark_summary(results: str | Path = "benchmarks/results") -> str:
    """Markdown tables of the benchmark results files (``benchmarks/*.py`` append to them): the
    newest measurement per (profile, mode, device, precision) of ``train_speed.jsonl``, per
    (device, resolution, channels) of ``attfind_speed.jsonl`` and ``fliprate_speed.jsonl`` (older
    runs stay in the files), and the GPU recipe: the paper schedule's projected wall time from a
    measured CUDA training record, or a plain statement that none was measured. Empty when no
    results file exists."""
    results = Path(results)
    parts = []
    train = _read_jsonl(results / "train_speed.jsonl")
    if train:
        newest: dict[tuple, dict[str, Any]] = {}
        for r in train:
            newest[(r["profile"], r["mode"], r["device"], _precision(r))] = r
        rows = [{"profile": r["profile"], "mode": r["mode"], "resolution / channels": f"{r['resolution']} / {r['channels']}",
                 "batch": r["batch_size"], "precision": _precision(r), "s/iter (median)": r["sec_per_iter_median"],
                 "images/s": _images_per_s(r),
                 "peak memory (MB)": (f"{round(r['peak_cuda_mb'])} CUDA" if "peak_cuda_mb" in r
                                      else f"{round(r['peak_rss_mb'])} RSS"),
                 "iterations timed": _timed_iterations(r),
                 "device": r["device"], "date": r["date"][:10]} for r in newest.values()]
        parts.append("Training (`benchmarks/train_speed.py`; images/s = batch / mean s per timed iteration, or / the "
                     "median for rows that recorded only that; peak memory: RSS on CPU, "
                     "`torch.cuda.max_memory_allocated` on CUDA):\n\n" + markdown_table(rows, floatfmt=".3g"))
    attfind = list({(r["device"], r["config"]["resolution"], r["config"]["channels"]): r
                    for r in _read_jsonl(results / "attfind_speed.jsonl")}.values())
    if attfind:
        rows = [{"device": r["device"], "resolution / channels": f"{r['config']['resolution']} / {r['config']['channels']}",
                 "images x coordinates": f"{r['config']['images']} x {r['config']['coords']}",
                 "batched renders/s": r["batched"]["renders_per_s"], "reference renders/s": r["reference"]["renders_per_s"],
                 "ratio": r["ratio"], "load before / after": _load(r), "date": r["date"][:10]} for r in attfind]
        parts.append("AttFind effect tensor, newest run per device and model size (`benchmarks/attfind_speed.py`):\n\n"
                     + markdown_table(rows, floatfmt=".1f"))
    screened = list({(r["device"], r["model"].get("model", r["model"]["kind"]), r["config"]["num_styles"],
                      r["config"]["images"], r["config"]["screen"]): r
                     for r in _read_jsonl(results / "attfind_screened.jsonl")}.values())
    if screened:
        rows = [_screened_row(r) for r in screened]
        parts.append("Screened AttFind against exact AttFind on the same model and images, newest run per device, "
                     "model, size and share (`benchmarks/attfind_screened.py`; effective renders/s = N x 2S edits "
                     "per wall second; exact = the batched path, reference = one render per edit; speed-ups per "
                     "wall second and per CPU second of the process; flip rates at k = 10 on held-out images, "
                     "mean over repeats):\n\n" + markdown_table(rows, floatfmt=".1f"))
    # "resumed layer": where the fast path's edited renders start (0: from the constant, e.g. when
    # the stored layer inputs of all images would exceed repro.fliprate's memory cap).
    fliprate = list({(r["device"], r["config"]["resolution"], r["config"]["channels"], r["config"]["ks"]): r
                     for r in _read_jsonl(results / "fliprate_speed.jsonl")}.values())
    if fliprate:
        rows = [{"device": r["device"], "resolution / channels": f"{r['config']['resolution']} / {r['config']['channels']}",
                 "images x k values": f"{r['config']['images']} x {r['config']['ks']}",
                 "first edited / resumed layer": f"{r['config']['start_layer']} / {r['config'].get('resumed_layer', '?')}",
                 "fast edited renders/s": r["fast"]["edited_renders_per_s"],
                 "reference edited renders/s": r["reference"]["edited_renders_per_s"],
                 "fast images/s": r["fast"]["images_per_s"], "ratio": r["ratio"],
                 "max logit diff (of max logit)": ("not recorded" if r.get("max_abs_logit_diff") is None
                                                   else f"{r['max_abs_logit_diff']:.1e} ({r.get('max_abs_logit', float('nan')):.1e})"),
                 "decisions differing": r["flip_disagreements"] + r["base_class_disagreements"],
                 "load before / after": _load(r), "date": r["date"][:10]} for r in fliprate]
        parts.append("Flip-rate evaluation, fast path against the reference path on the same model, images and "
                     "coordinates, newest run per device, model size and number of k values (`benchmarks/fliprate_speed.py`):\n\n"
                     + markdown_table(rows, floatfmt=".1f"))
    if parts:
        parts.append(_gpu_recipe(train) + "\n\n" + _attfind_projection(_read_jsonl(results / "attfind_speed.jsonl")))
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
        elif name == "ablation":
            from repro.ablation import ablation_table
            rows = ablation_table(Path(figures) / "ablation.json")
            content = markdown_table(rows) if rows else ""
        elif name == "measured_models":
            from repro.ablation import measured_models
            per_model, over_seeds = measured_models(Path(benchmarks) / "train_step.jsonl")
            content = (f"{markdown_table(over_seeds)}\n\nEach model:\n\n{markdown_table(per_model)}"
                       if per_model else "")
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
    write_atomic(readme, text)
    return changed


README_CAPTIONS = {
    "ablation": "**The StylEx recipe, chosen by measurement** ([notebook 02](notebooks/02_stylex_training.ipynb), `python -m repro ablation`): each row one training run of the synth-age stylex model (seed 0) with the settings of `repro.ablation.ROWS`, `precision` its training's (fp32, or bf16 autocast); LPIPS (VGG) and L1 of 512 held-out reconstructions; on the flip rate's held-out images (`flip_images` per repeat; AttFind on `attfind_images`: rows measured before the default's 500 / 400 used 32 / 80, so compare their flip rates among themselves), C's agreement between originals and their reconstructions, the second observer C''s accuracy on originals and reconstructions, and the top-10 AttFind / random edits' flip rates of C and C' (C' among images both agreed on) and edit size (max /255); then notebook 04's ground truth of AttFind's top 4 (`precision_at_4`, `purity`) and the attribute probe's mean R² on the reconstructions: the renders' probe (`probe_r2_reconstructions`) and one refitted to that model's reconstructions (`probe_r2_refit`, what they still hold; both empty for rows measured before).",
    "measured_models": "**Training length and seeds** ([notebook 02](notebooks/02_stylex_training.ipynb), `python -m repro measure --out benchmarks/results/train_step.jsonl`): every default-recipe stylex model measured so far by the ablation's measures, as mean ± std over its training seeds (sample std; `acc_Cprime_ratio` = C' on reconstructions / on originals), then one row per model; `train_step` 2 is the reverted faster training step, `precision` bf16 a bf16-autocast training (*Speed*) and `lr_rampdown` the share of the iterations over which the learning rates fell to 0 (None: constant); `attfind_images` is the number of images AttFind ran on (32, then 128, then 500 in the default profile), `attfind_screen` screened AttFind's share (of each image's edits, those its first-order estimate ranks highest are rendered, plus the coordinates the selection picks or ranks; None: exact AttFind) and `flip_images` the flip rate's images per repeat, whose style min / max are the edits' targets (80, then 400). The last six columns are notebook 04's ground-truth measures of AttFind's top 4 (records made before `measure` took them leave them empty): `precision_at_4`, `purity` (share of the probe-read change in the dominant factor, mean over the 4), `spurious_exposed` (synth-age's planted glasses among the dominant factors: 1 / 0), the single edits' size (`single_pixel_max_255`: per attribute the mean over images of the largest |pixel change| /255, mean over the 4; `_min`: the smallest of the 4; the target wants each >= 32) and `probe_r2_reconstructions` (the attribute probe's R^2 on the model's reconstructions against the originals' true factors, mean over factors; 0.97 on the originals). `gt_rule` says how precision@4 and the shortcut counted an edit: `unsigned` (older records) any visible change, `signed >= 0.05` only a move of the dominant factor by 5 % of its range towards the class the edit pushes to.",
    "fidelity": "**Does an independent observer confirm the explanations?** ([notebook 06](notebooks/06_flip_rate.ipynb)): the top-10 edit of each method, flip rate of C and of the second observer C' (among images both agreed on before the edit) and its size in /255, mean ± std over training seeds.",
    "benchmarks": "**Speed** (run by hand, appended to `benchmarks/results/`; measurements, never pass/fail tests).",
    "classifier_metrics": "**Classifiers** ([notebook 01](notebooks/01_classifier.ipynb)): held-out accuracy of MobileNetV2 trained from scratch.",
    "stylex_training_runs": "**Training runs** ([notebook 02](notebooks/02_stylex_training.ipynb)): cost of each model on this machine.",
    "reconstruction_metrics": "**Claim 1, reconstruction** ([notebook 03](notebooks/03_reconstruction.ipynb)), held-out test images, fixed noise, EMA generator + EMA encoder.",
    "run_times": "**How long it took** (written by `run_all.sh`): wall-clock seconds per notebook of the run that produced these results.",
    "top_attributes": "**Claim 2, attributes** ([notebook 04](notebooks/04_attributes.ipynb)): the top AttFind attributes of each model; pictures and GIFs are under `figures/`.",
    "ground_truth": "**Ground truth** ([notebook 04](notebooks/04_attributes.ipynb)): do the found coordinates change the factors the classifier truly uses? Precision@k of the dominant factor (read by an attribute probe) against the classifier's true factor importance (measured by re-rendering with one factor changed). A coordinate counts only when its edit moves the dominant factor, on average over the images, by at least 5 % of its range towards the class it pushes to (signed by the classifier's own direction for that factor; the hues, which have no direction, unsigned); each dominant factor carries that move, in brackets where it does not count.",
    "probe_validation": "**The attribute probe on generator output** ([notebook 04](notebooks/04_attributes.ipynb)): its R² per factor on 512 held-out test images (`originals`) and on each model's reconstructions of them, both against the originals' true factors (1: read perfectly; 0: no better than guessing the mean; below 0: worse). `refit`: a fresh probe fitted to 2,048 of that model's reconstructions of training images, read on the same test reconstructions (`originals refit`: the same recipe on the originals): what the reconstructions still hold, read or not.",
    "user_study_table": "**Claim 2, user study** ([notebook 05](notebooks/05_user_study.ipynb)): accuracy of a *simulated* observer (an attribute probe, not people) on the report's questionnaire design, beside the report's 0.918 ± 0.038 (people) and the paper's 0.983 ± 0.037.",
    "flip_rate_table": "**Claim 3, flip rate of the top-10 coordinates** ([notebook 06](notebooks/06_flip_rate.ipynb)), mean ± std over repeats on held-out images; the report's numbers beside ours for the real-data rows.",
}
