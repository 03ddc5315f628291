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
# # 05 · The user study (claim 2: the attributes are distinct and interpretable)
#
# The paper backs claim 2 with a user study, and the replication redid it: 61 people, 18
# two-alternative forced-choice (2AFC) questions (AttFind's top 6 attributes x 3 questions),
# accuracy **0.918 ± 0.038**; the paper reported **0.983 ± 0.037**. Each question shows two
# example GIFs of one StyleSpace coordinate changing on two images, then two candidate GIFs of a
# third image: one changes the same coordinate, the other a different one. People pick the
# candidate that shows the same change.
#
# This notebook, for each task's StylEx model:
#
# 1. builds that questionnaire (`repro.userstudy.make_questionnaire`: held-out images, each
#    edited towards the other class, question order and sides drawn from a fixed seed) into a
#    self-contained folder, and exports it as one web page with the GIFs embedded;
# 2. shows the JupyterLab app people answer in (a static picture of a question when run
#    headless, as `run_all.sh` does);
# 3. since no people take part in an automated run, answers it with a **simulated observer**:
#    the ground-truth factor probe of notebook 04 reads each GIF's unedited and edited frames,
#    and the observer picks the candidate whose factor change points the same way as the
#    examples'. Its answers are stored and analysed apart from people's, never pooled;
# 4. analyses every answer file present: accuracy overall and per attribute as mean ± std over
#    questions (why that std: see `repro/userstudy/analysis.py`), beside the report's and the paper's.
#
# The simulated observer is not a person. It measures whether the attributes are *distinct in
# the factors that make the synthetic images* (a necessary condition for people to tell them
# apart), not whether people find them meaningful.

# %% tags=["parameters"]
profile = "default"
data_root = ""
device = "auto"
force = False

# %%
# NBVAL_CHECK_OUTPUT
import json
import time

from IPython.display import Markdown, display

from repro import report, userstudy
from repro.explain import explain_classes
from repro.groundtruth import CYCLIC, MIN_CHANGE, load_or_train_probe
from repro.utils import pick_device

ctx = report.open_profile(profile, data_root, device, force)
P = ctx.profile
dev = pick_device(ctx.device)
# the replication's design; GIFs at the model's resolution, 64 colours, shown enlarged (small files)
DESIGN = dict(n_attributes=6, questions_per_attribute=3, images_per_gif=1, steps=6, scale=1, colors=64, seed=0)
tasks = [t for t in P.tasks if "stylex" in t.modes]
print(f"profile {P.name}: tasks {[t.name for t in tasks]}; design {DESIGN}")

# %% [markdown]
# ## 1. The questionnaires
# One folder per task under the figures folder: `gifs/` (what people see), `frames.npz` (the
# unedited and fully edited frame of each GIF, exact, for the simulated observer), `manifest.json`
# (questions, correct sides, attributes) and `questionnaire.html`. Re-running with the same
# model and seed gives the same manifest and renders nothing.

# %%
studies = {}
for t in tasks:
    # one questionnaire per task, or per class (one-vs-rest, "<task>-<class>") of a task of K > 2 classes
    for name, exp in explain_classes(P, t, "stylex", device=ctx.device).items():
        start = time.perf_counter()
        folder = ctx.figures / "user_study" / name
        manifest = userstudy.make_questionnaire(exp, folder, **DESIGN,
                                                meta={"profile": P.name, "task": name, "mode": "stylex"})
        page = userstudy.export_html(folder, title=f"Which change is the same? ({name})")
        size = sum(f.stat().st_size for f in (folder / "gifs").glob("*.gif"))
        studies[name] = (exp, folder, manifest)
        attrs = ", ".join(f"#{a['rank']} s{a['index']} (L{a['layer']}c{a['channel']}, {'max' if a['direction'] else 'min'})"
                          for a in manifest["attributes"])
        print(f"{name}: questionnaire {manifest['id']}, {len(manifest['questions'])} questions, "
              f"GIFs {size / 1e3:.0f} kB, page {page.stat().st_size / 1e3:.0f} kB, {time.perf_counter() - start:.1f} s")
        print(f"  attributes: {attrs}")

# %% [markdown]
# A question as a still picture (top row of each panel: unedited; bottom: fully edited; the
# GIFs loop between the two):

# %%
for name, (_, folder, manifest) in studies.items():
    path = ctx.figures / f"user_study_question_{name}.png"
    userstudy.preview_question(folder, manifest, 0, path)

# %% [markdown]
# ## 2. Running it with people
# * **In JupyterLab**: set `participant_id` below to one id per person (letters, digits, `_`,
#   `-`; ids starting with `simulated-` are reserved) and run the cell; the app shows one question
#   at a time and saves each click at once to `<questionnaire folder>/answers/<participant_id>.jsonl`
#   (append-only). Stopping is safe: running the cell again with the same id resumes.
# * **As a web page**: send `questionnaire.html` (one file, nothing to install). Each person
#   enters an id, answers, and clicks "Download answers"; put the downloaded
#   `<participant_id>.jsonl` files into the same `answers/` folder.
# * **Analysis**: re-run this notebook (or `userstudy.analyse(folder / "answers", manifest)`):
#   every answer file present is counted, people pooled together, simulated observers apart.
#
# In a headless run (papermill) the app below only prints a one-line summary.

# %%
participant_id = "demo"  # change to the participant's id
first = next(iter(studies.values()), None)
if first is not None:
    app = userstudy.questionnaire_app(first[1], None, participant_id)
    display(app)

# %% [markdown]
# ## 3. The simulated observer
# Per GIF, the probe reads the factors of the unedited and the fully edited frame; the change
# (edited minus unedited, hues on the circle) averaged over the GIF's images is its *change
# vector*. The observer sign-aligns the two examples' vectors (a looping GIF shows a change and
# its reverse), sums them, and picks the candidate with the larger |cosine| to that sum. It needs
# the synthetic data's known factors, so it runs on synthetic tasks only.

# %%
simulated = {}
for t in tasks:
    if t.stylex_data.dataset != "synthetic":
        print(f"{t.name}: real data has no known factors; no simulated observer")
        continue
    probe = load_or_train_probe(P, t, device=dev, force=ctx.force)
    _, folder, manifest = studies[t.name]
    cyclic = [j for j, n in enumerate(probe.factor_names) if n in CYCLIC]
    simulated[t.name] = userstudy.simulate_observer(folder, manifest, probe.predict_uint8, cyclic=cyclic)
    print(f"{t.name}: simulated observer accuracy {simulated[t.name]['accuracy']:.3f} "
          f"({simulated[t.name]['ties']} ties) -> {simulated[t.name]['path']}")
    print("\n".join("  " + line for line in userstudy.describe_changes(simulated[t.name]["attribute_change"],
                                                                       probe.factor_names)))

# %% [markdown]
# ## 4. Analysis: every answer file present
# Accuracy of a question = the share of its answers that are correct; overall and per attribute
# = mean ± population std over questions. The report's ± is read the same way (its 0.038 is
# below sqrt(0.918 x 0.082 / 18) = 0.065, the per-participant std that binomial noise alone gives
# on 18 questions, so it cannot be a std over participants; it matches a std over questions).

# %%
analyses = {name: userstudy.analyse(folder / userstudy.ANSWERS, manifest) for name, (_, folder, manifest) in studies.items()}

manifests = {name: manifest for name, (_, _, manifest) in studies.items()}
rows = userstudy.summary_rows(analyses, manifests)
table = report.markdown_table(rows, userstudy.SUMMARY_COLUMNS)
(ctx.figures / "user_study_table.md").write_text(table + "\n")
(ctx.figures / "user_study.json").write_text(json.dumps(analyses, indent=1, default=str) + "\n")
display(Markdown(table))

# %%
if analyses:
    userstudy.plot_accuracy(analyses, ctx.figures / "user_study_accuracy.png")

# %% [markdown]
# ## What this notebook found
# Generated from this run's numbers.

# %%
folders = {name: folder for name, (_, folder, _) in studies.items()}
changes = {name: sim["attribute_change"] for name, sim in simulated.items()}
display(Markdown(userstudy.findings(analyses, manifests, folders, changes, MIN_CHANGE)))

# %% [markdown]
# How to read this. The simulated observer checks one thing people's answers rest on: whether
# the top attributes change the images' known factors in different directions. High accuracy with
# clearly visible changes says the attributes are distinct in the factors (necessary, not
# sufficient, for people to reach the report's 0.918); high accuracy on changes below the
# visibility threshold says little, since the observer reads differences no one would see. Low
# accuracy says some attributes move the same factors, though people might still tell them apart
# by what the factors do not describe (texture, per-image detail). On the quick profile the
# models are trained for seconds, so its numbers only show that the pipeline runs. Only people's
# answers test claim 2 as the paper states it; the app and the web page above collect them in the
# same format, and this notebook analyses every answer file present.
