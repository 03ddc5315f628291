"""Collecting answers: an ipywidgets app for JupyterLab and one self-contained web page.

:func:`questionnaire_app` shows the questions one by one and records each click in an
:class:`~repro.userstudy.answers.AnswerLog`. :func:`export_html` writes the questionnaire as one
web page (the template ``questionnaire.html`` beside this module, with the GIFs embedded) that
keeps answers in the browser and downloads them as a file in the same format, to be dropped
into ``answers/``.
"""

from __future__ import annotations

import base64
import html
import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

from repro.userstudy.answers import ANSWERS, SIDES, AnswerLog
from repro.userstudy.design import load_manifest

TEMPLATE = "questionnaire.html"  # package data: __TITLE__, __INSTRUCTIONS__ and __DATA__ are filled in
INSTRUCTIONS = (
    "Each question shows two example animations in which the same kind of change is applied to two "
    "different pictures. Below them are two candidate animations of a third picture. Pick the candidate "
    "that shows the <b>same kind of change</b> as the examples. The animations loop: a change and its "
    "reverse count as the same change. There is no time limit, but go with your first impression."
)


class QuestionnaireApp:
    """The questionnaire as ipywidgets: display it in JupyterLab and click.

    Shows the next unanswered question (the two example GIFs above the two candidates, each with
    its button), records the choice and the response time (seconds from showing the question to
    the click) in an :class:`AnswerLog`, and moves on. Closing the notebook and opening the app
    again with the same participant id resumes. Without a frontend (papermill) it builds and
    shows a one-line text summary instead.

    Parameters:
        folder: the questionnaire folder (``manifest.json``, ``gifs/``).
        answers_dir: where the answer files go (normally ``folder / "answers"``).
        participant_id: this participant's id.
    """

    def __init__(self,
                 folder: str | Path,          # questionnaire folder
                 answers_dir: str | Path,     # answer files folder
                 participant_id: str):        # the participant answering
        import ipywidgets as w

        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)
        self.log = AnswerLog(answers_dir, participant_id, questionnaire=self.manifest["id"], source="widget")
        done = self.log.answered()
        self.questions = list(self.manifest["questions"])
        self.remaining = [q for q in self.questions if q["id"] not in done]
        self._shown_at = time.monotonic()

        size = "160"  # shown enlarged, pixelated (the GIFs are at about the model's resolution)
        self._progress = w.HTML()
        self._examples = [w.Image(format="gif", width=size) for _ in range(2)]
        self._candidates = [w.Image(format="gif", width=size) for _ in range(2)]
        for img in self._examples + self._candidates:
            img.add_class("stylex-us-gif")
        self._buttons = [w.Button(description=f"{side}: same change", button_style="info") for side in SIDES]
        for side, button in zip(SIDES, self._buttons):
            button.on_click(lambda _b, side=side: self.choose(side))
        self._status = w.HTML()
        self.widget = w.VBox([
            w.HTML("<style>.stylex-us-gif { image-rendering: pixelated; }</style>"
                   f"<p>{INSTRUCTIONS}</p>"), self._progress,
            w.HTML("<b>Examples</b>"), w.HBox(self._examples),
            w.HTML("<b>Which candidate shows the same change?</b>"),
            w.HBox([w.VBox([img, b]) for img, b in zip(self._candidates, self._buttons)]),
            self._status,
        ])
        self._show()

    @property
    def current(self) -> dict[str, Any] | None:
        """The question on screen, None when all are answered."""
        return self.remaining[0] if self.remaining else None

    def _gif(self, entry: Mapping[str, Any]) -> bytes:
        return (self.folder / entry["gif"]).read_bytes()

    def _show(self) -> None:
        q = self.current
        total = len(self.questions)
        if q is None:
            self._progress.value = (f"<b>All {total} questions answered, thank you.</b> "
                                    f"Answers: <code>{html.escape(str(self.log.path))}</code>")
            for b in self._buttons:
                b.disabled = True
            return
        self._progress.value = f"Question {total - len(self.remaining) + 1} of {total}"
        for img, g in zip(self._examples, q["examples"]):
            img.value = self._gif(g)
        for img, side in zip(self._candidates, SIDES):
            img.value = self._gif(q[side])
        self._shown_at = time.monotonic()

    def choose(self, side: str) -> None:
        """Answer the current question with ``side`` (what the buttons call)."""
        q = self.current
        if q is None:
            return
        elapsed = time.monotonic() - self._shown_at
        self.log.record(q["id"], side, correct=side == q["correct"], response_time_s=elapsed)
        self.remaining.pop(0)
        self._status.value = f"Saved your answer to {q['id']}."
        self._show()

    def summary(self) -> str:
        n = len(self.questions)
        return (f"questionnaire {self.manifest['id']}: participant {self.log.participant_id!r} has answered "
                f"{n - len(self.remaining)} of {n} questions; answers in {self.log.path}")

    def __repr__(self) -> str:
        return f"<QuestionnaireApp: {self.summary()}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = self.summary()
        return bundle


def questionnaire_app(folder: str | Path, answers_dir: str | Path | None, participant_id: str) -> QuestionnaireApp:
    """The JupyterLab questionnaire for one participant (``answers_dir`` None: ``folder/answers``)."""
    return QuestionnaireApp(folder, Path(folder) / ANSWERS if answers_dir is None else answers_dir, participant_id)


def export_html(folder: str | Path, path: str | Path | None = None, *,
                title: str = "Which change is the same?") -> Path:
    """One self-contained web page of the questionnaire (``path`` None: ``folder/questionnaire.html``).

    The GIFs are embedded as base64 data URIs, so the file can be mailed or hosted anywhere. The
    page asks for a participant id, keeps answers in the browser (localStorage, so a reload
    resumes) and offers them as ``<participant>.jsonl`` in the answer-file format; put those
    files in the questionnaire's ``answers/`` folder and run :func:`analyse`. The page does not
    contain the correct sides (its records carry ``"correct": null``).
    """
    folder = Path(folder)
    manifest = load_manifest(folder)
    gifs: dict[str, str] = {}
    questions = []
    for q in manifest["questions"]:
        for g in [*q["examples"], q["left"], q["right"]]:
            gifs[g["gif"]] = "data:image/gif;base64," + base64.b64encode((folder / g["gif"]).read_bytes()).decode()
        questions.append({"id": q["id"], "examples": [g["gif"] for g in q["examples"]],
                          "left": q["left"]["gif"], "right": q["right"]["gif"]})
    data = json.dumps({"id": manifest["id"], "questions": questions, "gifs": gifs}).replace("</", "<\\/")
    page = (files("repro.userstudy").joinpath(TEMPLATE).read_text(encoding="utf-8").replace("__TITLE__", html.escape(title)).replace("__INSTRUCTIONS__", INSTRUCTIONS)
            .replace("__DATA__", data))
    path = folder / "questionnaire.html" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
