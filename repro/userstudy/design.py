"""Question design and rendering: which attribute each question asks, and its GIFs.

:func:`plan_questionnaire` is pure (seed, counts -> which attribute, distractor, images and
correct side per question); :func:`make_questionnaire` renders the plan with a trained model into
a self-contained folder (``gifs/``, ``frames.npz`` and ``manifest.json``, the questionnaire's
id and questions), which :func:`load_manifest` and :func:`load_frames` read back;
:func:`preview_question` draws one question as a static picture.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from repro.userstudy.answers import ANSWERS, SIDES, SIMULATED_PREFIX
from repro.utils import atomic_write, write_atomic

if TYPE_CHECKING:  # the model-facing imports are only needed to render a questionnaire
    from repro.explain import Explanation

FORMAT = "stylex-user-study/1"
MANIFEST = "manifest.json"
FRAMES = "frames.npz"


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

    from repro.counterfactual import save_gif, sweep_frames
    from repro.inference import class_probability
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
    with atomic_write(out_dir / FRAMES) as f:
        np.savez_compressed(f, **keys)
    manifest = {"format": FORMAT, "id": qid, **body, "questions": questions}
    del manifest["plan"]  # the questions say the same, with file names
    write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return manifest


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
