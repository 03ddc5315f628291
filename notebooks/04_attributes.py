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
# # 04 · The attributes AttFind finds (claim 2)
#
# Claim 2: AttFind finds StyleSpace coordinates that are interpretable *and* move the
# classifier. For every trained model of the profile this notebook
#
# * runs (or reuses) AttFind, the Wu et al. ranking and a random floor (`repro.explain`);
# * draws AttFind's top attributes like the report's Figures 3-6: held-out images over their
#   counterfactuals, **both directions** (images the classifier puts in one class pushed towards
#   the other), each image labelled with the classifier's probability of the class it is pushed
#   towards; and Wu et al.'s top attributes the same way (the report's Figure 9);
# * writes one GIF per top AttFind attribute (the coordinate swept smoothly, several images);
# * compares the effect of each top attribute on the classifier, AttFind vs Wu;
# * offers an interactive explorer (sliders per attribute; upload your own image for models with
#   an encoder), with a static view for headless runs;
# * on synthetic data, checks the attributes against the **ground truth**: which factors the
#   classifier really uses, and which factor each top coordinate changes.
#
# Originals are unedited renders G(s) with fixed noise, so an original and its counterfactual
# differ only by the edit; edit targets are each coordinate's min / max over the AttFind images.

# %% tags=["parameters"]
profile = "default"
data_root = ""
device = "auto"
force = False

# %%
import json

from IPython.display import Image, Markdown, display

from repro import attribute_figures as af
from repro import fidelity, report
from repro.explain import explain_classes, explain_model, explanation_class_names
from repro.explorer import explorer
from repro.utils import pick_device, timed

ctx = report.open_profile(profile, data_root, device, force)
P = ctx.profile
dev = pick_device(ctx.device)
gif_dir = ctx.figures / "gifs"
TOP = 4  # attributes per figure, as the report's Figures 4, 5 and 9

# %% [markdown]
# ## Explanations
# One per model: AttFind on the AttFind images, flip rates on disjoint held-out images
# (cached in each run directory as `explain.json`; recomputed when the weights change). A task of
# K > 2 classes (your own folder) has one explanation per class, one-vs-rest, labelled `<task>-<class>`.

# %%
explanations, names = {}, {}
with timed() as t_explain:
    for t in P.tasks:
        for mode in t.modes:
            for label, exp in explain_classes(P, t, mode, device=ctx.device, force=ctx.force).items():
                names[label] = explanation_class_names(exp, t)
                explanations[(label, mode)] = exp
                rates = ", ".join(f"{m} {r['flip_rate']['mean']:.3f}" for m, r in exp.results["methods"].items())
                print(f"{label}/{mode}: flip rate at k={P.eval.k}: {rates}; base classes of the AttFind images "
                      f"{exp.results['base_class_counts']}")
print(f"{len(explanations)} models explained in {t_explain['seconds']:.0f} s")

# %% [markdown]
# ## AttFind's top attributes (report Figures 4-6)
# Per attribute: top row the unedited renders, bottom row the counterfactuals; the label between
# them says which way the image is pushed, and each title the classifier's probability of that
# target class (blue before, red after). Each attribute is drawn on the held-out images it moves
# most (of the first 64, half of each class): what it does where it matters. On most images a
# single coordinate moves the classifier much less (the single-edit flip rates below).

# %%
for (task, mode), exp in explanations.items():
    af.plot_attributes(exp, "attfind", ctx.figures / f"attributes_{task}_{mode}_attfind.png", top=TOP,
                       class_names=names[task], affected=True)

# %% [markdown]
# ## Wu et al.'s top attributes (report Figure 9)
# The same layout for the coordinates Wu et al.'s ranking picks (class-specific StyleSpace
# statistics, no classifier effect involved), each again on the images it moves most.

# %%
for (task, mode), exp in explanations.items():
    af.plot_attributes(exp, "wu", ctx.figures / f"attributes_{task}_{mode}_wu.png", top=TOP,
                       class_names=names[task], affected=True)

# %% [markdown]
# ## The top attributes in numbers
# `e0` / `e1`: the mean change of the class-0 logit when the attribute is applied towards class
# 0, and of the class-1 logit when applied towards class 1, over the AttFind images (in-sample
# for AttFind, which selected on these very numbers). "direction" is the one that moves class 1
# towards class 0.

# %%
rows = af.top_attribute_rows(explanations, TOP)
table = report.markdown_table(rows, floatfmt=".3g")
(ctx.figures / "top_attributes.md").write_text(table + "\n")
display(Markdown(table))

# %%
af.plot_effects({f"{task}/{mode}": exp for (task, mode), exp in explanations.items()},
                ctx.figures / "attribute_effects.png", top=6, methods=("attfind", "wu", "random"))

# %% [markdown]
# ## GIFs
# One per top AttFind attribute and model, `gifs/{task}_{model}_attfind_attr{rank}.gif`: four
# held-out images side by side, the coordinate moving from each image's own value to the target
# that pushes it towards the other class and back. Shown here: each model's top attribute.

# %%
# NBVAL_CHECK_OUTPUT
gifs = {}
for (task, mode), exp in explanations.items():
    gifs[(task, mode)] = af.attribute_gifs(exp, "attfind", gif_dir, top=TOP, n_images=4, steps=6, affected=True)
    print(f"{task}/{mode}: " + ", ".join(p.name for p in gifs[(task, mode)]))
    display(Image(filename=str(gifs[(task, mode)][0])))

# %% [markdown]
# ## Explorer
# Pick a held-out image (or, for a model with an encoder, upload one: it is resized to the
# model's resolution, classified and encoded as w = [E(x), C(x)]), then move the sliders: +1
# applies an attribute fully towards class 0, −1 fully towards class 1, 0 leaves it alone. The
# pictures (input, unedited render, counterfactual) and the classifier's probabilities update
# live when a Jupyter front end is attached. A headless run (papermill) cannot show a live
# widget, so a static view follows it: each attribute alone, then all together, at ±1 towards
# each image's other class.

# %%
with_encoder = [k for k, e in explanations.items() if e.model.encoder is not None]
task, mode = (with_encoder or list(explanations))[0]
app = explorer(explanations[(task, mode)], top=6, class_names=names[task])
app.show(path=ctx.figures / f"explorer_static_{task}_{mode}.png")

# %% [markdown]
# ## Ground truth (synthetic data)
# The synthetic images are drawn from known factors, so claim 2 can be checked without people:
#
# * **used factors**: re-render held-out images with one factor changed (everything else kept)
#   and measure how much the classifier's decision margin moves; a factor counts as used above a
#   threshold relative to the largest;
# * **what a coordinate changes**: a probe network trained to read every factor back from an
#   image is applied before and after each top-k edit; the factor that moves most is the
#   coordinate's dominant factor;
# * **precision@k**: the share of a method's top-k coordinates whose dominant factor is a used
#   one *and* moves: on average over the images by at least 5 % of its range
#   (`groundtruth.MIN_FACTOR_CHANGE`) in the direction the classifier reads as the class the edit
#   pushes to (signed by the classifier's own direction for that factor; the hues, which have no
#   direction, by their unsigned change). In the table each dominant factor carries that signed
#   move, in brackets where it does not count; **spurious exposed**: whether some top-k
#   coordinate is dominated by the task's planted spurious factor and moves it.

# %%
synthetic_tasks = [t for t in P.tasks if t.stylex_data.dataset == "synthetic" and t.classifier_data.dataset == "synthetic"]
gt_results, gt_seeds, probes = {}, {}, {}
if not synthetic_tasks:
    display(Markdown("No task of this profile uses synthetic data: there is no ground truth to compare with."))
else:
    from repro import groundtruth

    with timed() as t_gt:
        for t in synthetic_tasks:
            probe = probes[t.name] = groundtruth.load_or_train_probe(P, t, device=dev)
            effects = groundtruth.factor_effects(explanations[(t.name, t.modes[0])].classifier,
                                                 t.classifier_data, device=dev)
            for mode in t.modes:
                gt_results[(t.name, mode)] = groundtruth.evaluate(P, t, mode, explanations[(t.name, mode)], probe=probe,
                                                                  effects=effects, k=TOP, device=dev)
            for seed in P.seeds[1:]:  # the other training seeds of the stylex model, for mean ± std
                e = explain_model(P, t, "stylex", device=ctx.device, force=ctx.force, seed=seed)
                gt_seeds[(t.name, seed)] = groundtruth.evaluate(P, t, "stylex", e, probe=probe, effects=effects,
                                                                k=TOP, device=dev)
    gt_table = report.markdown_table(groundtruth.fidelity_rows(gt_results))
    (ctx.figures / "ground_truth.md").write_text(gt_table + "\n")
    (ctx.figures / "ground_truth.json").write_text(json.dumps(list(gt_results.values()), indent=1, default=list) + "\n")
    display(Markdown(gt_table))
    fidelity.write_fidelity(fidelity.groundtruth_summary(gt_results, gt_seeds), ctx.figures / "fidelity.json")
    groundtruth.plot_fidelity(gt_results, ctx.figures / "ground_truth.png")
    print(f"ground truth of {len(gt_results)} models in {t_gt['seconds']:.0f} s")

# %% [markdown]
# **The probe on generator output.** The probe was trained on renders and has never seen a
# generator's image. Its R² per factor on the held-out test images and on each model's
# reconstructions of them, both against the originals' true factors, says how far its reading
# of an edit can be trusted: a factor it cannot read on reconstructions is a factor whose moves
# it cannot see either. The `refit` columns tell why: a fresh probe fitted to 2,048 of that
# model's reconstructions of training images (their originals' true factors as targets), read on
# the same test reconstructions, beside the same recipe fitted to the originals. A factor the
# refit reads well was kept in a form the renders' probe was never shown; one it cannot read
# either was lost in the reconstruction, and no edit of that generator can show it cleanly.

# %%
if gt_results:
    validation_rows = groundtruth.probe_validation_rows(gt_results)
    validation_table = report.markdown_table(validation_rows, floatfmt=".2f")
    (ctx.figures / "probe_validation.md").write_text(validation_table + "\n")
    display(Markdown(validation_table))

# %% [markdown]
# **The purity a real change reads at.** The probe never reads one factor alone: a picture in
# which only the wrinkles changed also moves its other readings a little. So the same probe reads
# real one-factor changes of the renderer (a quarter of the factor's range, and its whole range),
# everything else kept: their purity is what a perfectly disentangled edit of that size would
# score, the reference for the purity of the edits above.

# %%
purity_reference = None
if synthetic_tasks:
    t = synthetic_tasks[0]
    purity_reference = groundtruth.real_change_purity(probes[t.name], t.stylex_data)
    (ctx.figures / "purity_reference.json").write_text(json.dumps(purity_reference, indent=1) + "\n")
    purity_table = report.markdown_table(groundtruth.real_change_rows(purity_reference), floatfmt=".2f")
    (ctx.figures / "purity_reference.md").write_text(purity_table + "\n")
    display(Markdown(purity_table))

# %% [markdown]
# ## Files written

# %%
n_files, n_bytes = af.folder_size(ctx.figures)
n_gifs, gif_bytes = af.folder_size(gif_dir)
print(f"{ctx.figures}: {n_files} files, {n_bytes / 1e6:.2f} MB in all; "
      f"{n_gifs} GIFs, {gif_bytes / 1e6:.2f} MB ({gif_bytes / max(n_gifs, 1) / 1e3:.0f} KB each on average)")

# %% [markdown]
# ## What this notebook found

# %%
display(Markdown(af.attribute_findings(explanations, gt_results, P, top=TOP, purity_reference=purity_reference)))
