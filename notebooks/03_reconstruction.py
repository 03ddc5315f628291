# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Reconstruction (claim 1)
#
# Claim 1: a StylEx model reconstructs images faithfully, *including the classifier's decision on
# them*. On held-out test images, with fixed noise and the EMA generator paired with the EMA
# encoder, this notebook measures per model:
#
# * mean L1 pixel error (images in [-1, 1]);
# * LPIPS, when its backbone weights are present (otherwise reported as unavailable, never faked);
# * **classifier agreement**: the share of images with argmax C(x) == argmax C(G(E(x), C(x)));
# * mean |Δp|: the mean absolute change of the classifier's class-1 probability.
#
# It also regenerates the report's Figure 2: originals over reconstructions.
# Agreement alone is a weak quality signal (it passes 0.9 while images are still blurry), so read
# it with the L1 and the pictures.

# %% tags=["parameters"]
profile = "default"
data_root = ""
device = "auto"
force = False

# %%
# NBVAL_CHECK_OUTPUT
import json
import warnings

from IPython.display import Markdown, display

from repro import figures, report
from repro.classifier import load_classifier
from repro.data import load_split
from repro.evaluation import latents, reconstruction_metrics, render
from repro.losses import LPIPSLoss
from repro.training import load_stylex
from repro.utils import pick_device

ctx = report.open_profile(profile, data_root, device, force)
P = ctx.profile
dev = pick_device(ctx.device)
with warnings.catch_warnings():  # the status line below says the same, without a kernel-specific path
    warnings.simplefilter("ignore")
    lpips = LPIPSLoss()
print("LPIPS:", lpips.status)
lpips = lpips.to(dev) if lpips.available else None
n_eval = min(512, P.tasks[0].stylex_data.n_test) if P.tasks[0].stylex_data.dataset == "synthetic" else 512

# %%
metrics, rows_fig = {}, {}
for t in P.tasks:
    classifier = load_classifier(P.run_dir(t.name, "classifier"), device=dev).model
    test = load_split(t.stylex_data, "test")
    grid = {}
    for mode in t.modes:
        model = load_stylex(P.run_dir(t.name, mode), device=dev).model
        if model.encoder is None:  # stylegan2: no reconstruction, show samples instead
            samples = render(model, latents(model, classifier, n=8, seed=0))
            figures.save_image_grid(samples, ctx.figures / f"samples_{t.name}_{mode}.png", nrow=8, scale=2)
            continue
        m, x, rec = reconstruction_metrics(model, classifier, test, n=n_eval, seed=0, lpips=lpips)
        metrics[f"{t.name}/{mode}"] = m
        grid.setdefault("original", x)
        grid[mode] = rec
    if grid:
        figures.plot_reconstructions(grid, ctx.figures / f"reconstruction_{t.name}.png", n=8)

# %%
rows = [{"model": k, "images": m["n"], "L1": m["l1"], "LPIPS": "unavailable" if m["lpips"] is None else m["lpips"],
         "classifier agreement": m["agreement"], "mean |Δp|": m["mean_abs_delta_prob"]} for k, m in metrics.items()]
table = report.markdown_table(rows)
(ctx.figures / "reconstruction_metrics.md").write_text(table + "\n")
(ctx.figures / "reconstruction_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
display(Markdown(table))

# %% [markdown]
# ## What this notebook found

# %%
for k, m in metrics.items():
    verdict = "meets" if m["agreement"] >= 0.9 else "misses"
    print(f"{k}: classifier agreement {m['agreement']:.3f} ({verdict} the 0.9 target), L1 {m['l1']:.3f}, "
          f"mean |Δp| {m['mean_abs_delta_prob']:.3f} on {m['n']} held-out images")
