"""The user study (the paper's second claim): are AttFind's attributes distinct to people?

A two-alternative forced choice (2AFC) questionnaire, as in the paper and the replication (top 6
AttFind attributes x 3 questions = 18 questions). Each question shows

* two **example** GIFs: one attribute (StyleSpace coordinate) swept on two different images;
* two **candidate** GIFs, left and right, both on the same third image: one sweeps the same
  attribute, the other a different attribute (the *distractor*, never the attribute itself).

The participant picks the candidate that shows the same change as the examples. Both candidates
use the same image, so the only thing that tells them apart is the change itself.

The pieces, from questionnaire to numbers, one module each (every name below is importable
from ``repro.userstudy`` itself):

1. ``design``: :func:`plan_questionnaire` (pure: seed, counts -> which attribute, distractor,
   images and correct side per question) and :func:`make_questionnaire` (renders the plan with a
   trained model into a self-contained folder: ``gifs/``, ``frames.npz`` and ``manifest.json``).
2. ``answers``: :class:`AnswerLog`, one append-only JSON Lines file per participant under
   ``answers/``; a participant can stop and resume, and a crash loses at most the answer being
   written.
3. ``app``: :func:`questionnaire_app`, an ipywidgets app for JupyterLab; :func:`export_html`, one
   self-contained web page (template ``questionnaire.html``) that records answers in the browser
   and downloads them as a file in the same format, to be dropped into ``answers/``.
4. ``analysis``: :func:`analyse` and :func:`plot_accuracy`, accuracy per attribute and overall,
   people and simulated observers kept apart (its docstring says which ± the numbers carry);
   :func:`summary_rows` (the table) and :func:`findings` (the text the notebook shows).
5. ``simulated``: :func:`simulate_observer`, a stand-in participant that answers from a
   ground-truth factor probe (synthetic data only), written as a *simulated* participant.
"""

from repro.userstudy.analysis import (REFERENCES, SUMMARY_COLUMNS, accuracy_text, analyse, findings, plot_accuracy,
                                      summary_rows)
from repro.userstudy.answers import (ANSWERS, PARTICIPANT_ID, SIDES, SIMULATED_PREFIX, AnswerLog, read_answers,
                                     validate_participant_id)
from repro.userstudy.app import INSTRUCTIONS, QuestionnaireApp, export_html, questionnaire_app
from repro.userstudy.design import (FORMAT, FRAMES, MANIFEST, QuestionPlan, load_frames, load_manifest,
                                    make_questionnaire, plan_questionnaire, preview_question)
from repro.userstudy.simulated import describe_changes, gif_changes, observer_choice, simulate_observer

__all__ = [
    "ANSWERS", "FORMAT", "FRAMES", "INSTRUCTIONS", "MANIFEST", "PARTICIPANT_ID", "REFERENCES", "SIDES",
    "SIMULATED_PREFIX", "SUMMARY_COLUMNS", "AnswerLog", "QuestionPlan", "QuestionnaireApp", "accuracy_text",
    "analyse", "describe_changes", "export_html", "findings", "gif_changes", "summary_rows",
    "load_frames", "load_manifest", "make_questionnaire", "observer_choice", "plan_questionnaire", "plot_accuracy",
    "preview_question", "questionnaire_app", "read_answers", "simulate_observer", "validate_participant_id",
]
