"""A simulated observer: a stand-in participant that answers from a factor probe.

On synthetic data the attribute probe (``repro.probe``) reads the factors of every GIF's
unedited and edited frames (:func:`gif_changes`); :func:`observer_choice` picks the candidate
whose change is most like the examples', and :func:`simulate_observer` writes the answers as a
*simulated* participant, never pooled with people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from repro.userstudy.answers import ANSWERS, AnswerLog, validate_participant_id
from repro.userstudy.design import load_frames


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


def describe_changes(attribute_change: Mapping[int, np.ndarray], factor_names: Sequence[str], top: int = 3) -> list[str]:
    """One line per attribute: the ``top`` factors its GIFs change most (a simulated observer's
    ``attribute_change``), e.g. ``attribute #1: moves hair_grey 0.412, wrinkles 0.105, ...``."""
    lines = []
    for a, change in attribute_change.items():
        order = np.argsort(-np.asarray(change), kind="stable")[:top]
        lines.append(f"attribute #{a + 1}: moves " + ", ".join(f"{factor_names[j]} {change[j]:.3f}" for j in order))
    return lines
