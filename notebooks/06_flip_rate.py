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
# # 06 · Flipping the classifier's decision (claim 3, the report's Table 2)
#
# Claim 3: the attributes AttFind finds in a StylEx model explain the classifier better than
# earlier methods. The measure is the **flip rate**: edit an image's top-k StyleSpace coordinates
# together (each set to its minimum or maximum, pushing the image towards the other class) and
# count how often the classifier's decision changes.
#
# For every trained model of the profile this notebook runs (or reuses, see `explain.json`):
#
# * **AttFind** (the authors' selection, here with the replication's preset: 10 coordinates,
#   threshold 0.5) on the AttFind images (validation encodings, or samples of a StyleGAN2);
# * **Wu et al.**: coordinates whose style differs most between confidently classified images
#   and the rest, normalised by the coordinate's spread;
# * **random**: k random coordinates with random directions, redrawn per repeat (the floor).
#
# Flip rates are measured on **held-out** images AttFind never saw (test-split encodings, or
# StyleGAN2 samples from another seed), with fixed noise, as mean ± std over disjoint repeats.
# The table has the report's shape; the report's own numbers stand beside ours for the real-data
# rows (the synthetic tasks have no report numbers: they are ours only).

# %% tags=["parameters"]
profile = "default"  # quick | default | paper-afhq | paper-ffhq
data_root = ""
device = "auto"
force = False

# %%
# NBVAL_CHECK_OUTPUT
import json

from IPython.display import Markdown, display

from repro import fidelity, observer, report, tables
from repro.explain import explain_classes

ctx = report.open_profile(profile, data_root, device, force)
P = ctx.profile
print(f"AttFind images: {P.eval.attfind_images}; held-out: {P.eval.repeats} repeats x "
      f"{P.eval.images_per_repeat} images; k = {P.eval.k} (curve up to {P.eval.k_max}); preset {P.eval.attfind_preset!r}")

# %% [markdown]
# ## AttFind and the baselines on every model
# The effect tensor (N images x 2 directions x S coordinates x 2 classes) is the expensive part;
# it is cached per model and recomputed only when the model or classifier weights change.

# %%
explanations, results = {}, {}
for t in P.tasks:
    for mode in t.modes:
        print(f"explaining {t.name}/{mode} ...", flush=True)
        # per task, or per target class (one-vs-rest, "<task>-<class>") of a task of K > 2 classes
        for label, e in explain_classes(P, t, mode, device=ctx.device, force=ctx.force).items():
            explanations[(label, mode)] = e
            results[(label, mode)] = e.results
            sec = e.results["seconds"]
            print(f"  {label}: effects {sec['effects']:.0f} s, flip rates {sec['flip_rates']:.0f} s; "
                  f"AttFind images by class {e.results['base_class_counts']}")

# %% [markdown]
# The `stylex` model of each task is trained with every seed of `P.seeds`; the other seeds are
# explained the same way, so the headline numbers below are mean ± std over training seeds (the
# figures and per-coordinate tables show the primary seed).

# %%
seed_results = {}
for t in P.tasks:
    for seed in P.seeds[1:]:
        print(f"explaining {t.name}/stylex, seed {seed} ...", flush=True)
        for label, e in explain_classes(P, t, "stylex", device=ctx.device, force=ctx.force, seed=seed).items():
            seed_results[(label, seed)] = e.results
over_seeds = fidelity.explanation_summary(P, results, seed_results)
fidelity.write_fidelity(over_seeds, ctx.figures / "fidelity.json")
fid_table = report.markdown_table(fidelity.explanation_rows(over_seeds))
(ctx.figures / "fidelity.md").write_text(fid_table + "\n")
display(Markdown(fid_table))

# %% [markdown]
# ## Table 2: flip rate of the top-k coordinates

# %%
rows = tables.flip_rate_rows(results)
md = tables.write_table(rows, ctx.figures / "flip_rate_table.md", ctx.figures / "flip_rate_table.csv")
display(Markdown(md))

# %% [markdown]
# Every model and method, with the flip rate split by the image's original class (class 0 images
# pushed to class 1 and vice versa):

# %%
long = tables.long_rows(results)
display(Markdown(tables.write_table(long, ctx.figures / "flip_rate_all.md", ctx.figures / "flip_rate_all.csv")))

# %% [markdown]
# ## Flip rate as a function of k
# All k from 1 to k_max, same held-out images and repeats; shaded: ± one std over repeats.

# %%
tables.plot_flip_curves(results, ctx.figures / "flip_rate_vs_k.png")

# %% [markdown]
# ## The coordinates each method chose
# (direction, layer, channel) of the top-k; direction "min"/"max" is the edit that moves an
# image of class 1 towards class 0 (the opposite edit moves class 0 towards class 1).

# %%
print(tables.chosen_coordinates(explanations, P.eval.k))

# %% [markdown]
# ## Does a second classifier see the change? (spec section 9)
# G is fed the classifier's softmax and trained to satisfy it, so an edit can flip C with a
# change no one else reads. A **second observer** C' (another architecture and seed, trained on
# the same split by `python -m repro train-observer`, used nowhere in training or AttFind) judges
# the very renders the flip rate made: `flip_Cprime` counts C' flips among the `n_agreed` images
# where C and C' agreed before the edit, beside C's flips on the same images (`flip_C_agreed`).
# The **edit size** is the mean and max |pixel change| in /255 of the top-k edit, then of each top
# attribute alone, beside the size of a real one-factor change of the renderer (its full range).

# %%
synthetic = all(t.stylex_data.dataset == "synthetic" for t in P.tasks)
second = observer.write_observer_tables(results, ctx.figures,
                                        renderer_size=P.tasks[0].stylex_data.resolution if synthetic else None)
for name in ("second_observer", "edit_size_single", "reconstruction_observer", "renderer_factor_size"):
    if name in second:
        display(Markdown(f"**{name.replace('_', ' ')}**\n\n" + second[name]))

# %% [markdown]
# ## Reading the numbers against claim 3
# The text below is generated from this run's numbers.

# %%
# each task, or <task>-<class> (one-vs-rest) of a task of K > 2 classes
display(Markdown(tables.claim3_findings(results, list(dict.fromkeys(label for label, _ in results)), P.eval.k,
                                        over_seeds=over_seeds)))

# %% [markdown]
# Claim 3 holds on a task when AttFind on StylEx beats both Wu et al. and the random floor. The
# report found it did not on real data (AFHQ 0.042 vs Wu 0.247) and blamed the missing
# mapping-network passes; the StylEx-alt column tests that explanation directly. On the synthetic
# tasks the classifier's true causes are known, and notebook 04 checks whether the coordinates
# that flip the decision are the causal ones rather than artefacts. Flip rate alone rewards any
# edit that changes the decision, including ones that leave the data distribution; read it with
# the attribute figures.
