"""The user study (claim 2 of the spec, section 8): are AttFind's attributes distinct to people?

A two-alternative forced choice (2AFC) questionnaire, as in the paper and the replication (top 6
AttFind attributes x 3 questions = 18 questions). Each question shows

* two **example** GIFs: one attribute (StyleSpace coordinate) swept on two different images;
* two **candidate** GIFs, left and right, both on the same third image: one sweeps the same
  attribute, the other a different attribute (the *distractor*, never the attribute itself).

The participant picks the candidate that shows the same change as the examples. Both candidates
use the same image, so the only thing that tells them apart is the change itself.

The pieces, from questionnaire to numbers:

1. :func:`plan_questionnaire` (pure: seed, counts -> which attribute, distractor, images and
   correct side per question) and :func:`make_questionnaire` (renders the plan with a trained
   model into a self-contained folder: ``gifs/``, ``frames.npz`` and ``manifest.json``).
2. :class:`AnswerLog`: one append-only JSON Lines file per participant under ``answers/``;
   a participant can stop and resume, and a crash loses at most the answer being written.
3. :func:`questionnaire_app`: an ipywidgets app for JupyterLab; :func:`export_html`: one
   self-contained web page that records answers in the browser and downloads them as a file in
   the same format, to be dropped into ``answers/``.
4. :func:`analyse` and :func:`plot_accuracy`: accuracy per attribute and overall, people and
   simulated observers kept apart.
5. :func:`simulate_observer`: a stand-in participant that answers from a ground-truth factor
   probe (synthetic data only), written as a *simulated* participant.

**Which ± the numbers carry.** The replication reports 0.918 ± 0.038 for 61 people and 18
questions and does not say what the ± is. It cannot be the standard deviation over participants:
with 18 questions and accuracy 0.918, binomial noise alone gives a per-participant standard
deviation of sqrt(0.918 * 0.082 / 18) = 0.065 (0.064 if the questions' difficulty varies by the
reported 0.038; differences between people only add to it). It matches the standard deviation over the 18
questions of each question's accuracy (the share of participants who answered it correctly):
binomial noise alone gives sqrt(0.918 * 0.082 / 61) = 0.035. So :func:`analyse` reports
``mean ± std over questions`` (population std, ``ddof=0``) overall, and per attribute over that
attribute's questions; the per-participant mean ± std is reported beside it.

Answer records (one JSON object per line; the web page writes the same fields)::

    {"participant": "p01", "questionnaire": "3f2a...", "question": "q07", "choice": "left",
     "correct": true, "response_time_s": 4.2, "timestamp": "2025-01-01T12:00:00+00:00",
     "simulated": false, "source": "widget"}

``correct`` is what the collecting tool knew (``null`` from the web page, which does not carry
the answers); :func:`analyse` always scores ``choice`` against the manifest.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # the model-facing imports are only needed to render a questionnaire
    from repro.explain import Explanation

FORMAT = "stylex-user-study/1"
MANIFEST = "manifest.json"
FRAMES = "frames.npz"
ANSWERS = "answers"
SIDES = ("left", "right")
SIMULATED_PREFIX = "simulated-"
PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# The published numbers, drawn as references by plot_accuracy: (mean, ±, label).
REFERENCES: dict[str, tuple[float, float, str]] = {
    "replication": (0.918, 0.038, "replication (61 people, 18 questions)"),
    "paper": (0.983, 0.037, "original paper"),
}

INSTRUCTIONS = (
    "Each question shows two example animations in which the same kind of change is applied to two "
    "different pictures. Below them are two candidate animations of a third picture. Pick the candidate "
    "that shows the <b>same kind of change</b> as the examples. The animations loop: a change and its "
    "reverse count as the same change. There is no time limit, but go with your first impression."
)


# ---------------------------------------------------------------------------------------------
# Planning (pure)

@dataclass(frozen=True)
class QuestionPlan:
    """What one question shows, before anything is rendered.

    Parameters:
        id: ``q01``, ``q02``, ... in presentation order.
        attribute: position of the asked attribute in the ranked list (0 = AttFind's top).
        distractor: position of the other candidate's attribute (never ``attribute``).
        example_images: per example GIF, the indices (into the image pool) of its images.
        candidate_images: the images both candidate GIFs show (disjoint from the examples').
        correct: the side (``left`` / ``right``) of the candidate that shows ``attribute``.
    """

    id: str
    attribute: int
    distractor: int
    example_images: tuple[tuple[int, ...], ...]
    candidate_images: tuple[int, ...]
    correct: str


def plan_questionnaire(n_attributes: int, questions_per_attribute: int, n_images: int, *,
                       images_per_gif: int = 1, seed: int = 0) -> list[QuestionPlan]:
    """The questions of a questionnaire, a pure function of its arguments.

    Every attribute is asked ``questions_per_attribute`` times. Its distractors are drawn
    without replacement from the other attributes (so they differ between its questions while
    there are enough), the correct sides are balanced (half left, half right, shuffled), each
    question draws ``3 * images_per_gif`` distinct images from the pool, and the question order
    is shuffled. Everything random comes from one ``numpy`` generator seeded with ``seed``.
    """
    if n_attributes < 2:
        raise ValueError(f"a 2AFC question needs a distractor: n_attributes must be >= 2, got {n_attributes}")
    if questions_per_attribute < 1:
        raise ValueError(f"questions_per_attribute must be >= 1, got {questions_per_attribute}")
    if images_per_gif < 1:
        raise ValueError(f"images_per_gif must be >= 1, got {images_per_gif}")
    need = 3 * images_per_gif
    if n_images < need:
        raise ValueError(f"each question shows {need} distinct images ({images_per_gif} per GIF) "
                         f"but the pool has {n_images}")
    rng = np.random.default_rng(seed)
    total = n_attributes * questions_per_attribute
    sides = rng.permutation(np.array([0] * ((total + 1) // 2) + [1] * (total // 2)))
    drafts = []
    for a in range(n_attributes):
        others = [b for b in range(n_attributes) if b != a]
        order: list[int] = []
        while len(order) < questions_per_attribute:
            order += [int(b) for b in rng.permutation(others)]
        for distractor in order[:questions_per_attribute]:
            images = [int(i) for i in rng.choice(n_images, size=need, replace=False)]
            drafts.append((a, distractor, images))
    plans = []
    for number, k in enumerate(rng.permutation(total)):
        a, distractor, images = drafts[int(k)]
        g = images_per_gif
        plans.append(QuestionPlan(
            id=f"q{number + 1:02d}", attribute=a, distractor=distractor,
            example_images=(tuple(images[:g]), tuple(images[g:2 * g])),
            candidate_images=tuple(images[2 * g:]), correct=SIDES[int(sides[number])]))
    return plans


# ---------------------------------------------------------------------------------------------
# Rendering

def _gif_entry(name: str, attribute: int, images: Sequence[int], directions: Sequence[int]) -> dict[str, Any]:
    return {"gif": f"gifs/{name}.gif", "frames": name, "attribute": attribute,
            "images": list(images), "directions": list(directions)}


def _manifest_files(manifest: Mapping[str, Any]) -> list[str]:
    """Every file a manifest points to, relative to its folder."""
    return [FRAMES] + [g["gif"] for q in manifest["questions"] for g in [*q["examples"], q["left"], q["right"]]]


def load_frames(folder: str | Path) -> dict[str, np.ndarray]:
    """The key frames of every GIF of a questionnaire: GIF entry ``frames`` -> uint8 [2, N, R, R, 3]."""
    with np.load(Path(folder) / FRAMES) as data:
        return {k: data[k] for k in data.files}


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a questionnaire folder."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: make the questionnaire first (make_questionnaire)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): it was cut short or edited by hand; make the "
                         f"questionnaire again (make_questionnaire) into a fresh folder") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path} is not a {FORMAT} manifest (format {found!r}); point at the folder "
                         f"make_questionnaire wrote")
    return manifest


def make_questionnaire(explanation: "Explanation", out_dir: str | Path, *, n_attributes: int = 6,
                       questions_per_attribute: int = 3, images_per_gif: int = 1, steps: int = 8,
                       scale: int = 1, colors: int | None = 64, duration_ms: int = 110, image_pool: int = 64,
                       seed: int = 0, method: str = "attfind", meta: Mapping[str, Any] | None = None,
                       overwrite: bool = False) -> dict[str, Any]:
    """Render a questionnaire for the top ``n_attributes`` of ``method`` into ``out_dir``.

    Images come from the explanation's held-out set (the first ``image_pool`` images), never from
    the images AttFind ranked coordinates on. Each image is edited towards the other class
    (``repro.stylespace.toward_class`` of the classifier's decision on its render), the
    coordinate swept to the target of its direction over the AttFind images (the explanation's
    ``targets``) and back
    (``sweep_frames``, ``2 * steps`` frames), written as ``gifs/NAME.gif`` at ``scale`` x the
    model's resolution with one shared palette of ``colors`` colours (the app and the web page
    show them enlarged, pixelated). ``frames.npz`` keeps, under key ``NAME``, uint8
    [2, N, R, R, 3]: the unedited frame and the fully edited one (frames 0 and ``steps - 1`` of
    the sweep) at the model's resolution, exact (no palette), for :func:`simulate_observer`.

    The manifest (returned, and written to ``manifest.json``) is a pure function of the
    arguments, the attribute list and the model's fingerprint; its ``id`` is a hash of that, so
    the same call gives the same manifest. If ``out_dir`` already holds this manifest and its
    files, nothing is rendered again. A different questionnaire is not written over people's
    answers (``answers/`` files of non-simulated participants) unless ``overwrite``.
    """
    import torch

    from repro.counterfactual import class_probability, save_gif, sweep_frames
    from repro.evaluation import render
    from repro.stylespace import decode_index, toward_class

    out_dir = Path(out_dir)
    attributes = explanation.attributes[method]
    if len(attributes) < n_attributes:
        warnings.warn(f"{method} found {len(attributes)} attributes, fewer than the {n_attributes} asked for; "
                      f"using {len(attributes)}")
        n_attributes = len(attributes)
    model = explanation.model
    pool = explanation.eval_set.subset(slice(0, min(image_pool, len(explanation.eval_set))))
    plans = plan_questionnaire(n_attributes, questions_per_attribute, len(pool),
                               images_per_gif=images_per_gif, seed=seed)

    style_dims = model.generator.style_dims
    attr_rows = []
    for a, (d, i) in enumerate(attributes.top(n_attributes)):
        layer, channel = decode_index(i, style_dims)
        attr_rows.append({"id": a, "rank": a + 1, "direction": d, "index": i, "layer": layer, "channel": channel,
                          "score": None if not math.isfinite(attributes.scores[a]) else float(attributes.scores[a])})
    model_id = explanation.results.get("fingerprint") if explanation.results else None
    if not model_id:  # no explain.json (e.g. a hand-made Explanation): fingerprint the latents
        model_id = hashlib.sha256(pool.w.detach().float().cpu().numpy().round(4).tobytes()).hexdigest()[:16]
    design = {"method": method, "n_attributes": n_attributes, "questions_per_attribute": questions_per_attribute,
              "images_per_gif": images_per_gif, "steps": steps, "scale": scale, "colors": colors,
              "duration_ms": duration_ms, "image_pool": len(pool),
              "image_source": f"held-out evaluation images ({pool.source})", "seed": seed}
    body = {"design": design, "attributes": attr_rows, "model": model_id, "meta": dict(meta or {}),
            "plan": [asdict(p) for p in plans]}
    qid = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    old = None
    if (out_dir / MANIFEST).exists():
        try:
            old = load_manifest(out_dir)
        except (ValueError, json.JSONDecodeError):
            old = None
    if old is not None and old.get("id") == qid and all((out_dir / f).exists() for f in _manifest_files(old)):
        return old
    if old is not None and old.get("id") != qid and not overwrite:
        people = [p for p in (out_dir / ANSWERS).glob("*.jsonl") if not p.stem.startswith(SIMULATED_PREFIX)]
        if people:
            raise FileExistsError(f"{out_dir} holds another questionnaire ({old.get('id')}) with answers of "
                                  f"{len(people)} participant(s); pass overwrite=True or choose another folder")
    if old is not None:  # drop the files of the questionnaire being replaced (only those)
        for f in _manifest_files(old):
            (out_dir / f).unlink(missing_ok=True)
    (out_dir / "gifs").mkdir(parents=True, exist_ok=True)

    smin, smax = explanation.targets
    with torch.inference_mode():
        base_class = (class_probability(explanation.classifier, render(model, pool)) > 0.5).long().tolist()
    # every (image, attribute) sweep the plan needs, rendered in one batch per edit
    needed: dict[tuple[int, int], list[int]] = {}
    for p in plans:
        for a, images in [(p.attribute, p.example_images[0]), (p.attribute, p.example_images[1]),
                          (p.attribute, p.candidate_images), (p.distractor, p.candidate_images)]:
            for j in images:
                edit = toward_class(attributes.coords[a], base_class[j])
                if j not in needed.setdefault(edit, []):
                    needed[edit].append(j)
    cache: dict[tuple[int, tuple[int, int]], np.ndarray] = {}
    for edit, images in needed.items():
        frames = sweep_frames(model, pool.subset(torch.tensor(images)), edit, smin, smax, steps)
        for k, j in enumerate(images):
            cache[(j, edit)] = frames[:, k:k + 1]

    def sweep(image: int, a: int) -> tuple[np.ndarray, int]:
        """Frames [T, 1, R, R, 3] of attribute ``a`` on pool image ``image``, and the direction used."""
        edit = toward_class(attributes.coords[a], base_class[image])
        return cache[(image, edit)], edit[0]

    keys: dict[str, np.ndarray] = {}

    def write(name: str, a: int, images: Sequence[int]) -> dict[str, Any]:
        parts = [sweep(j, a) for j in images]
        frames = np.concatenate([f for f, _ in parts], axis=1)
        save_gif(frames, out_dir / "gifs" / f"{name}.gif", scale=scale, duration_ms=duration_ms, colors=colors)
        keys[name] = np.stack([frames[0], frames[steps - 1]])
        return _gif_entry(name, a, images, [d for _, d in parts])

    questions = []
    for p in plans:
        sides = {p.correct: p.attribute, SIDES[1 - SIDES.index(p.correct)]: p.distractor}
        questions.append({
            "id": p.id, "attribute": p.attribute, "distractor": p.distractor, "correct": p.correct,
            "examples": [write(f"{p.id}_example{k + 1}", p.attribute, imgs) for k, imgs in enumerate(p.example_images)],
            "left": write(f"{p.id}_left", sides["left"], p.candidate_images),
            "right": write(f"{p.id}_right", sides["right"], p.candidate_images),
        })
    with open(out_dir / (FRAMES + ".tmp"), "wb") as f:
        np.savez_compressed(f, **keys)
    os.replace(out_dir / (FRAMES + ".tmp"), out_dir / FRAMES)
    manifest = {"format": FORMAT, "id": qid, **body, "questions": questions}
    del manifest["plan"]  # the questions say the same, with file names
    _write_json(out_dir / MANIFEST, manifest)
    return manifest


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def preview_question(folder: str | Path, manifest: Mapping[str, Any] | None = None, index: int = 0,
                     path: str | Path | None = None):
    """A static picture of one question (the unedited and fully edited frame of each of its four
    GIFs), for places that cannot play GIFs or run widgets (papermill, a PDF). Returns the figure."""
    from repro.figures import _mpl, _save

    folder = Path(folder)
    manifest = manifest or load_manifest(folder)
    q = manifest["questions"][index]
    frames = load_frames(folder)
    entries = [("example 1", q["examples"][0]), ("example 2", q["examples"][1]),
               ("candidate: left", q["left"]), ("candidate: right", q["right"])]
    plt = _mpl()
    fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.6))
    for ax, (name, g) in zip(axes, entries):
        key = frames[g["frames"]]  # [2, N, R, R, 3]
        rows = [np.concatenate(list(key[t]), axis=1) for t in range(2)]
        gap = np.full((2, rows[0].shape[1], 3), 255, np.uint8)
        ax.imshow(np.concatenate([rows[0], gap, rows[1]], axis=0), interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{q['id']}: top row unedited, bottom row edited; which candidate shows the examples' change? "
                 f"(answer: {q['correct']})", fontsize=9)
    fig.tight_layout()
    if path is not None:
        _save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------
# Answers

def validate_participant_id(participant_id: str, *, simulated: bool = False) -> str:
    """Return ``participant_id`` if it is safe as a file name, else raise ValueError.

    Allowed: 1-64 characters of ``A-Z a-z 0-9 _ -`` (so no ``/``, ``.``, ``..``, absolute path or
    empty id can name a file outside the answers folder). Ids starting with ``simulated-`` are
    reserved for simulated observers, so they can never be mixed up with people.
    """
    if not isinstance(participant_id, str) or not PARTICIPANT_ID.fullmatch(participant_id):
        raise ValueError(f"participant id {participant_id!r} is not allowed: use 1-64 letters, digits, "
                         f"'_' or '-' (no '/', '.', spaces or empty ids)")
    if participant_id.startswith(SIMULATED_PREFIX) != simulated:
        raise ValueError(f"participant id {participant_id!r}: ids starting with {SIMULATED_PREFIX!r} are reserved "
                         f"for simulated observers" if not simulated else
                         f"a simulated observer's id must start with {SIMULATED_PREFIX!r}, got {participant_id!r}")
    return participant_id


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """The answer records of one JSON Lines file, skipping (with a warning) lines that do not parse.

    A crash while writing can leave a truncated last line; it is skipped and every complete line
    before it is kept. Records without a question id or with a choice other than left/right are
    skipped too.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            last = number == len(lines)  # no newline after it: a write cut short
            warnings.warn(f"{path}:{number}: skipping {'a truncated last' if last else 'an unreadable'} line")
            continue
        if not (isinstance(record, dict) and isinstance(record.get("question"), str) and record.get("choice") in SIDES):
            warnings.warn(f"{path}:{number}: skipping a record without a question id and a left/right choice")
            continue
        records.append(record)
    return records


class AnswerLog:
    """One participant's answers: an append-only JSON Lines file ``answers_dir/<participant_id>.jsonl``.

    Every answer is one line, written with the file opened in append mode, flushed and fsynced
    before :meth:`record` returns, so stopping (or a crash) loses at most the answer being
    written; reopening the log with the same id resumes where the participant stopped
    (:meth:`answered`). Nothing is ever rewritten: answering a question that already has an
    answer is **ignored** (returns False, the first answer stands), so a double click cannot
    duplicate it.

    Parameters:
        answers_dir: the folder of answer files (created if missing).
        participant_id: see :func:`validate_participant_id`.
        questionnaire: the manifest id; answers are stamped with it and only answers to this
            questionnaire count as answered. None: every answer in the file counts.
        simulated: a simulated observer (its id must start with ``simulated-``).
        source: what collected the answers (``widget``, ``simulated``, ...), stored per line.
    """

    def __init__(self,
                 answers_dir: str | Path,         # folder of <participant>.jsonl files
                 participant_id: str,             # safe file-name id
                 *,
                 questionnaire: str | None = None,  # manifest id stamped on every answer
                 simulated: bool = False,         # a simulated observer, not a person
                 source: str = "python"):         # free text stored per answer
        self.participant_id = validate_participant_id(participant_id, simulated=simulated)
        self.answers_dir = Path(answers_dir)
        self.path = self.answers_dir / f"{participant_id}.jsonl"
        if self.path.resolve().parent != self.answers_dir.resolve():  # belt and braces
            raise ValueError(f"participant id {participant_id!r} names a file outside {self.answers_dir}")
        self.questionnaire = questionnaire
        self.simulated = simulated
        self.source = source
        self._records = [r for r in read_answers(self.path) if self._counts(r)]
        self._answered = {r["question"] for r in self._records}

    def _counts(self, record: Mapping[str, Any]) -> bool:
        return self.questionnaire is None or record.get("questionnaire") == self.questionnaire

    def answered(self) -> set[str]:
        """Ids of the questions this participant has answered."""
        return set(self._answered)

    def records(self) -> list[dict[str, Any]]:
        """This participant's answers (to this questionnaire), first answer per question."""
        seen, out = set(), []
        for r in self._records:
            if r["question"] not in seen:
                seen.add(r["question"])
                out.append(dict(r))
        return out

    def record(self, question_id: str, choice: str, *, correct: bool | None = None,
               response_time_s: float | None = None) -> bool:
        """Append one answer; False (and nothing written) if the question was answered already."""
        if choice not in SIDES:
            raise ValueError(f"choice must be one of {SIDES}, got {choice!r}")
        if question_id in self._answered:
            return False
        entry = {"participant": self.participant_id, "questionnaire": self.questionnaire, "question": question_id,
                 "choice": choice, "correct": correct,
                 "response_time_s": None if response_time_s is None else round(float(response_time_s), 3),
                 "timestamp": _now(), "simulated": self.simulated, "source": self.source}
        self.answers_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:  # a crash may have left a last line without its newline: start afresh
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(entry) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self._records.append(entry)
        self._answered.add(question_id)
        return True


# ---------------------------------------------------------------------------------------------
# Collecting answers: a JupyterLab app and a static web page

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


_HTML_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
.row { display: flex; gap: 2rem; margin: .5rem 0 1.2rem; }
.cell { text-align: center; } img { width: 150px; image-rendering: pixelated; border: 1px solid #ccc; }
button { font-size: 1rem; padding: .4rem 1rem; margin-top: .3rem; } .hidden { display: none; }
#status { color: #555; }
</style></head><body>
<h1>__TITLE__</h1>
<p>__INSTRUCTIONS__</p>
<div id="start">
  <label>Your participant id (letters, digits, _ or -): <input id="pid" maxlength="64"></label>
  <button id="begin">Start / resume</button> <span id="piderr" style="color:#b00"></span>
</div>
<div id="quiz" class="hidden">
  <p id="progress"></p>
  <b>Examples</b><div class="row"><img id="ex0" alt="example 1"><img id="ex1" alt="example 2"></div>
  <b>Which candidate shows the same change?</b>
  <div class="row">
    <div class="cell"><img id="left" alt="left candidate"><br><button id="choose-left">left: same change</button></div>
    <div class="cell"><img id="right" alt="right candidate"><br><button id="choose-right">right: same change</button></div>
  </div>
</div>
<p id="done" class="hidden"><b>All questions answered, thank you.</b> Please download your answers and send the file back.</p>
<p><button id="download">Download answers (JSON Lines)</button> <span id="status"></span></p>
<script id="questionnaire" type="application/json">__DATA__</script>
<script>
(function () {
  const Q = JSON.parse(document.getElementById("questionnaire").textContent);
  const $ = (id) => document.getElementById(id);
  let pid = null, answers = [], shownAt = 0, current = null;
  const key = () => "stylex-user-study/" + Q.id + "/" + pid;
  const save = () => { try { localStorage.setItem(key(), JSON.stringify(answers)); } catch (e) {} };
  function next() {
    const done = new Set(answers.map((a) => a.question));
    current = Q.questions.find((q) => !done.has(q.id)) || null;
    if (!current) { $("quiz").classList.add("hidden"); $("done").classList.remove("hidden"); return; }
    $("progress").textContent = "Question " + (done.size + 1) + " of " + Q.questions.length;
    $("ex0").src = Q.gifs[current.examples[0]]; $("ex1").src = Q.gifs[current.examples[1]];
    $("left").src = Q.gifs[current.left]; $("right").src = Q.gifs[current.right];
    shownAt = performance.now();
  }
  function choose(side) {
    if (!current) return;
    answers.push({participant: pid, questionnaire: Q.id, question: current.id, choice: side, correct: null,
                  response_time_s: Math.round(performance.now() - shownAt) / 1000,
                  timestamp: new Date().toISOString(), simulated: false, source: "html"});
    save(); $("status").textContent = answers.length + " answer(s) kept in this browser"; next();
  }
  $("begin").onclick = function () {
    const v = $("pid").value.trim();
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(v) || v.startsWith("simulated-")) {
      $("piderr").textContent = "use 1-64 letters, digits, _ or - (not starting with simulated-)"; return; }
    pid = v; $("piderr").textContent = "";
    try { answers = JSON.parse(localStorage.getItem(key()) || "[]"); } catch (e) { answers = []; }
    $("start").classList.add("hidden"); $("quiz").classList.remove("hidden");
    $("status").textContent = answers.length ? "resumed: " + answers.length + " answer(s) so far" : ""; next();
  };
  $("choose-left").onclick = () => choose("left");
  $("choose-right").onclick = () => choose("right");
  $("download").onclick = function () {
    if (!pid) { $("status").textContent = "start first"; return; }
    const text = answers.map((a) => JSON.stringify(a)).join("\\n") + (answers.length ? "\\n" : "");
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], {type: "application/x-ndjson"}));
    link.download = pid + ".jsonl"; link.click();
  };
})();
</script></body></html>
"""


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
    page = (_HTML_TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__INSTRUCTIONS__", INSTRUCTIONS)
            .replace("__DATA__", data))
    path = folder / "questionnaire.html" if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Analysis

def _answer_files(answers: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(answers, (str, Path)):
        answers = [answers]
    files: list[Path] = []
    for a in answers:
        a = Path(a)
        files += sorted(a.glob("*.jsonl")) if a.is_dir() else [a]
    return files


def _is_simulated(record: Mapping[str, Any]) -> bool:
    return bool(record.get("simulated")) or str(record.get("participant", "")).startswith(SIMULATED_PREFIX)


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std())


def _summarise(records: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy of a set of scored records (see :func:`analyse` for the keys)."""
    questions = {q["id"]: q for q in manifest["questions"]}
    per_question: dict[str, dict[str, Any]] = {}
    for qid, q in questions.items():
        marks = [r["_correct"] for r in records if r["question"] == qid]
        per_question[qid] = {"attribute": q["attribute"], "answers": len(marks),
                             "accuracy": float(np.mean(marks)) if marks else None}
    answered = [s for s in per_question.values() if s["answers"]]
    mean, std = _mean_std([s["accuracy"] for s in answered])
    per_attribute = {}
    for a in sorted({q["attribute"] for q in questions.values()}):
        acc = [s["accuracy"] for s in answered if s["attribute"] == a]
        m, sd = _mean_std(acc)
        per_attribute[a] = {"mean": m, "std": sd, "questions": len(acc),
                            "answers": sum(s["answers"] for s in answered if s["attribute"] == a)}
    by_participant: dict[str, list[bool]] = {}
    for r in records:
        by_participant.setdefault(r["participant"], []).append(r["_correct"])
    p_mean, p_std = _mean_std([float(np.mean(v)) for v in by_participant.values()])
    times = [r["response_time_s"] for r in records if isinstance(r.get("response_time_s"), (int, float))]
    return {
        "participants": len(by_participant), "answers": len(records),
        "overall": {"mean": mean, "std": std, "questions": len(answered)},
        "pooled": float(np.mean([r["_correct"] for r in records])) if records else None,
        "per_participant": {"mean": p_mean, "std": p_std},
        "per_attribute": per_attribute, "per_question": per_question,
        "median_response_time_s": float(np.median(times)) if times else None,
    }


def analyse(answers: str | Path | Iterable[str | Path], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Accuracy of every answer file in ``answers`` (a folder, a file, or a list of either).

    Each answer is scored against the manifest (``choice == question["correct"]``). Answers to
    another questionnaire (another manifest id), to unknown questions, or repeated (same
    participant and question: the first in file order stands) are left out and counted under
    ``skipped``. People and simulated observers (``"simulated": true`` or an id starting with
    ``simulated-``) are never pooled.

    Returns ``{"questionnaire", "std", "people", "simulated", "skipped", "attributes"}`` where
    ``people`` (None without human answers) summarises all people together and ``simulated``
    maps each simulated observer's id to its own summary. A summary holds ``overall`` (mean and
    population std over questions of each question's accuracy, the share of its answers that are
    correct; questions nobody answered are left out), ``per_attribute`` (the same over that
    attribute's questions, keyed by attribute position), ``per_question``, ``pooled`` (all
    answers together), ``per_participant`` (mean and std of each participant's accuracy),
    ``participants``, ``answers`` and ``median_response_time_s``.
    """
    questions = {q["id"]: q for q in manifest["questions"]}
    skipped = {"other_questionnaire": 0, "unknown_question": 0, "duplicate": 0}
    seen: set[tuple[str, str]] = set()
    people: list[dict[str, Any]] = []
    simulated: dict[str, list[dict[str, Any]]] = {}
    for path in _answer_files(answers):
        for r in read_answers(path):
            if r.get("questionnaire") != manifest["id"]:
                skipped["other_questionnaire"] += 1
                continue
            if r["question"] not in questions:
                skipped["unknown_question"] += 1
                continue
            pid = str(r.get("participant", path.stem))
            if (pid, r["question"]) in seen:
                skipped["duplicate"] += 1
                continue
            seen.add((pid, r["question"]))
            scored = {**r, "participant": pid, "_correct": r["choice"] == questions[r["question"]]["correct"]}
            if _is_simulated(r):
                simulated.setdefault(pid, []).append(scored)
            else:
                people.append(scored)
    if any(skipped.values()):
        warnings.warn(f"answers left out of the analysis: {skipped}")
    return {
        "questionnaire": manifest["id"],
        "std": "population std over questions of each question's accuracy (overall; per attribute over its questions)",
        "people": _summarise(people, manifest) if people else None,
        "simulated": {pid: _summarise(recs, manifest) for pid, recs in sorted(simulated.items())},
        "skipped": skipped,
        "attributes": manifest.get("attributes", []),
    }


def _by_id(table: Mapping[Any, Any], key: int) -> dict[str, Any]:
    """``table[key]`` whether keys are ints or, after a JSON round trip, strings."""
    return dict(table.get(key, table.get(str(key), {})))


def _clipped(means: Sequence[float], stds: Sequence[float]) -> np.ndarray:
    """Error bars [2, n] of ± std, cut at 0 and 1 (an accuracy cannot leave them)."""
    m, s = np.asarray(means, float), np.asarray(stds, float)
    return np.stack([np.minimum(s, m), np.minimum(s, 1.0 - m)])


def plot_accuracy(analysis: Mapping[str, Any], path: str | Path,
                  references: Mapping[str, tuple[float, float, str]] = REFERENCES):
    """Overall and per-attribute accuracy (mean ± std over questions), references drawn beside.

    ``analysis`` is one result of :func:`analyse`, or a mapping name -> result (one row each,
    e.g. per task). People and each simulated observer are separate bars; the published numbers
    are bars on the left panel and dashed lines with a band on the right one; chance is 0.5.
    Error bars are cut at 0 and 1.
    """
    from repro.figures import _mpl, _save

    analyses = {"": analysis} if "questionnaire" in analysis else dict(analysis)
    plt = _mpl()
    fig, axes = plt.subplots(len(analyses), 2, figsize=(12, 3.6 * len(analyses)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (name, res) in zip(axes, analyses.items()):
        groups = ([("people", res["people"])] if res["people"] else []) + list(res["simulated"].items())
        ax = row[0]
        labels, means, stds = [], [], []
        for g, s in groups:
            labels.append(f"ours:\n{g}\n{s['participants']} part., {s['overall']['questions']} q.")
            means.append(s["overall"]["mean"])
            stds.append(s["overall"]["std"])
        for _, (m, sd, lab) in references.items():
            labels.append(lab.replace(" (", "\n").replace(", ", "\n").rstrip(")"))
            means.append(m)
            stds.append(sd)
        x = np.arange(len(labels))
        bar_colours = [colours[i % len(colours)] for i in range(len(groups))] + ["0.6"] * len(references)
        ax.bar(x, means, yerr=_clipped(means, stds), capsize=3, color=bar_colours)
        ax.set_xticks(x, labels, fontsize=7)
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name + ': ' if name else ''}overall (± std over questions)", fontsize=9)

        ax = row[1]
        attrs = res["attributes"] or [{"id": a} for a in (groups[0][1]["per_attribute"] if groups else [])]
        width = 0.8 / max(1, len(groups))
        for k, (g, s) in enumerate(groups):
            vals = [_by_id(s["per_attribute"], a["id"]) for a in attrs]
            ax.bar(np.arange(len(attrs)) + (k - (len(groups) - 1) / 2) * width,
                   [v.get("mean") or 0.0 for v in vals], width,
                   yerr=_clipped([v.get("mean") or 0.0 for v in vals], [v.get("std") or 0.0 for v in vals]),
                   capsize=2, label=f"ours: {g}", color=colours[k % len(colours)])
        for j, (_, (m, sd, lab)) in enumerate(references.items()):
            ax.axhline(m, color=f"{0.2 + 0.3 * j}", ls="--", lw=1, label=f"{lab}: {m:.3f} ± {sd:.3f}")
            ax.axhspan(m - sd, min(m + sd, 1.08), color=f"{0.2 + 0.3 * j}", alpha=0.08)
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xticks(np.arange(len(attrs)),
                      [f"#{a.get('rank', a['id'] + 1)}" + (f"\ns{a['index']}" if "index" in a else "") for a in attrs],
                      fontsize=8)
        ax.set_ylim(0, 1.08)
        ax.set_title("per AttFind attribute (rank, StyleSpace index; ± std over its questions)", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# A simulated observer

def gif_changes(folder: str | Path, manifest: Mapping[str, Any], factors_of: Callable[[np.ndarray], np.ndarray],
                cyclic: Sequence[int] = ()) -> dict[str, np.ndarray]:
    """Per GIF file name, its signed factor-change vector [F].

    For each GIF, ``factors_of(edited) - factors_of(unedited)`` averaged over its images, where
    unedited / edited are the two frames stored in ``frames.npz`` (sweep frames 0 and
    ``steps - 1``: the coordinate at its original value and at the target). ``factors_of`` is
    called once on all frames: uint8 [M, R, R, 3] -> [M, F]. Columns in ``cyclic`` are values on
    a circle of circumference 1 (hues): their difference is wrapped to [-0.5, 0.5) and doubled, so
    that, as for a factor scaled to [0, 1], a change of 1 is the largest possible.
    """
    folder = Path(folder)
    entries = {g["gif"]: g for q in manifest["questions"] for g in [*q["examples"], q["left"], q["right"]]}
    frames = load_frames(folder)
    keys = {name: frames[g["frames"]] for name, g in entries.items()}  # [2, N, R, R, 3]
    stacked = np.concatenate([k.reshape(-1, *k.shape[2:]) for k in keys.values()])
    factors = np.asarray(factors_of(stacked), dtype=np.float64)
    if factors.ndim != 2 or factors.shape[0] != len(stacked):
        raise ValueError(f"factors_of must return [{len(stacked)}, F] for {len(stacked)} images, got {factors.shape}")
    out, start = {}, 0
    for name, k in keys.items():
        n = k.shape[1]
        f = factors[start:start + 2 * n].reshape(2, n, -1)
        delta = f[1] - f[0]
        for j in cyclic:
            delta[:, j] = 2.0 * (np.remainder(delta[:, j] + 0.5, 1.0) - 0.5)
        out[name] = delta.mean(0)
        start += 2 * n
    return out


def _abs_cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else abs(float(a @ b) / (na * nb))


def observer_choice(examples: Sequence[np.ndarray], left: np.ndarray, right: np.ndarray) -> tuple[str, float, float]:
    """The simulated observer's rule: (choice, score left, score right).

    A looping GIF shows a change and its reverse, and images of the other class are pushed the
    other way, so a change vector and its negative are the same attribute: the examples' vectors
    are sign-aligned to the first one and summed, and each candidate scores the absolute cosine
    similarity of its vector to that sum. The higher score wins; a tie goes to ``left``.
    """
    ref = np.asarray(examples[0], dtype=float).copy()
    for e in examples[1:]:
        e = np.asarray(e, dtype=float)
        ref += e if float(ref @ e) >= 0 else -e
    s_left, s_right = _abs_cos(ref, np.asarray(left, float)), _abs_cos(ref, np.asarray(right, float))
    return ("left" if s_left >= s_right else "right"), s_left, s_right


def simulate_observer(folder: str | Path, manifest: Mapping[str, Any], factors_of: Callable[[np.ndarray], np.ndarray],
                      answers_dir: str | Path | None = None, participant_id: str = "simulated-probe", *,
                      cyclic: Sequence[int] = ()) -> dict[str, Any]:
    """Answer the questionnaire with a factor probe instead of a person (see :func:`observer_choice`).

    ``factors_of``: uint8 images [N, H, W, 3] -> factors [N, F], on comparable scales (e.g. the
    synthetic renderer's factors in [0, 1], as a ground-truth probe predicts them; ``cyclic``: the
    columns that are hues, see :func:`gif_changes`). The answers
    are written with an :class:`AnswerLog` marked simulated, under ``answers_dir`` (None:
    ``folder/answers``). A simulated observer is deterministic, so its file is rewritten on every
    call rather than resumed (only ``simulated-`` files are ever deleted).

    Returns ``{"participant", "path", "accuracy", "ties", "attribute_change"}`` where
    ``attribute_change[a]`` is the mean absolute factor change [F] over every GIF of attribute
    ``a`` (which factors an attribute moves, as the probe sees it).
    """
    answers_dir = Path(folder) / ANSWERS if answers_dir is None else Path(answers_dir)
    validate_participant_id(participant_id, simulated=True)
    (answers_dir / f"{participant_id}.jsonl").unlink(missing_ok=True)
    log = AnswerLog(answers_dir, participant_id, questionnaire=manifest["id"], simulated=True, source="simulated")
    changes = gif_changes(folder, manifest, factors_of, cyclic)
    correct, ties = [], 0
    for q in manifest["questions"]:
        choice, s_left, s_right = observer_choice([changes[g["gif"]] for g in q["examples"]],
                                                  changes[q["left"]["gif"]], changes[q["right"]["gif"]])
        ties += s_left == s_right
        correct.append(choice == q["correct"])
        log.record(q["id"], choice, correct=choice == q["correct"], response_time_s=None)
    per_attr: dict[int, list[np.ndarray]] = {}
    for q in manifest["questions"]:
        for g in [*q["examples"], q["left"], q["right"]]:
            per_attr.setdefault(g["attribute"], []).append(np.abs(changes[g["gif"]]))
    return {"participant": participant_id, "path": str(log.path), "accuracy": float(np.mean(correct)),
            "ties": int(ties), "attribute_change": {a: np.mean(v, axis=0) for a, v in sorted(per_attr.items())}}
