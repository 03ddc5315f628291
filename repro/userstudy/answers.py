"""Answers: one append-only JSON Lines file per participant under the questionnaire's ``answers/``.

A participant can stop and resume, and a crash loses at most the answer being written
(:class:`AnswerLog`); :func:`read_answers` recovers every complete line of a file whose last
line was cut short. One answer record per line (the web page of ``repro.userstudy.app`` writes
the same fields)::

    {"participant": "p01", "questionnaire": "3f2a...", "question": "q07", "choice": "left",
     "correct": true, "response_time_s": 4.2, "timestamp": "2025-01-01T12:00:00+00:00",
     "simulated": false, "source": "widget"}

``correct`` is what the collecting tool knew (``null`` from the web page, which does not carry
the answers); ``repro.userstudy.analysis.analyse`` always scores ``choice`` against the manifest.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

ANSWERS = "answers"  # the answer files' folder inside a questionnaire folder
SIDES = ("left", "right")  # a choice: the left or the right candidate
SIMULATED_PREFIX = "simulated-"  # participant ids reserved for simulated observers
PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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

