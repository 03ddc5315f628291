"""The user study: planning, the answers store, analysis, the simulated observer, the exports."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest
import torch

from repro import userstudy as us
from repro.config import get_profile
from repro.counterfactual import save_gif
from repro.evaluation import Latents, fixed_noise
from repro.explain import Explanation
from repro.model import StylExArch
from repro.networks import build_classifier
from repro.stylespace import Attributes


# ---------------------------------------------------------------------------------------------
# Planning

def test_plan_is_deterministic_for_a_seed_and_differs_between_seeds():
    a = us.plan_questionnaire(6, 3, 40, seed=0)
    assert a == us.plan_questionnaire(6, 3, 40, seed=0)
    assert a != us.plan_questionnaire(6, 3, 40, seed=1)
    assert [p.id for p in a] == [f"q{i:02d}" for i in range(1, 19)]


@pytest.mark.parametrize("n_attr, per_attr, images_per_gif", [(6, 3, 1), (2, 5, 2), (4, 1, 1)])
def test_plan_design(n_attr, per_attr, images_per_gif):
    plans = us.plan_questionnaire(n_attr, per_attr, 9, images_per_gif=images_per_gif, seed=3)
    assert Counter(p.attribute for p in plans) == {a: per_attr for a in range(n_attr)}
    assert all(p.distractor != p.attribute and 0 <= p.distractor < n_attr for p in plans)
    sides = Counter(p.correct for p in plans)
    assert abs(sides["left"] - sides["right"]) <= 1
    for p in plans:
        images = [*p.example_images[0], *p.example_images[1], *p.candidate_images]
        assert len(images) == 3 * images_per_gif == len(set(images))  # all distinct within a question
    if per_attr <= n_attr - 1:  # enough other attributes: an attribute's distractors all differ
        for a in range(n_attr):
            ds = [p.distractor for p in plans if p.attribute == a]
            assert len(set(ds)) == len(ds)


def test_plan_rejects_impossible_designs():
    with pytest.raises(ValueError, match="distractor"):
        us.plan_questionnaire(1, 3, 10)
    with pytest.raises(ValueError, match="distinct images"):
        us.plan_questionnaire(3, 1, 5, images_per_gif=2)


# ---------------------------------------------------------------------------------------------
# Answers

@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/b", "", "..", ".", "a b", "x" * 65, "a\\b", None])
def test_unsafe_participant_ids_are_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="not allowed"):
        us.AnswerLog(tmp_path, bad)
    assert not any(tmp_path.iterdir())


def test_simulated_prefix_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        us.AnswerLog(tmp_path, "simulated-me")
    with pytest.raises(ValueError, match="must start"):
        us.AnswerLog(tmp_path, "probe", simulated=True)


def test_answers_survive_interruption_without_loss_or_duplicates(tmp_path):
    log = us.AnswerLog(tmp_path, "p01", questionnaire="Q")
    assert log.record("q01", "left", correct=True, response_time_s=1.5)
    assert log.record("q02", "right", correct=False, response_time_s=2.0)
    del log
    log = us.AnswerLog(tmp_path, "p01", questionnaire="Q")  # resume
    assert log.answered() == {"q01", "q02"}
    assert not log.record("q01", "right")  # already answered: ignored, the first answer stands
    assert log.record("q03", "left", correct=True, response_time_s=0.7)
    lines = (tmp_path / "p01.jsonl").read_text().splitlines()
    assert [json.loads(x)["question"] for x in lines] == ["q01", "q02", "q03"]
    assert json.loads(lines[0])["choice"] == "left"
    # answers to another questionnaire do not count as answered to this one
    assert us.AnswerLog(tmp_path, "p01", questionnaire="other").answered() == set()


def test_truncated_last_line_is_skipped_and_appending_goes_on(tmp_path):
    log = us.AnswerLog(tmp_path, "p02", questionnaire="Q")
    log.record("q01", "left", correct=True)
    log.record("q02", "left", correct=True)
    path = tmp_path / "p02.jsonl"
    path.write_bytes(path.read_bytes() + b'{"participant": "p02", "question": "q03", "cho')  # a crash mid-write
    with pytest.warns(UserWarning, match="truncated"):
        log = us.AnswerLog(tmp_path, "p02", questionnaire="Q")
    assert log.answered() == {"q01", "q02"}
    assert log.record("q03", "right", correct=False)
    with pytest.warns(UserWarning, match="unreadable"):  # the broken line stays, now mid-file
        records = us.read_answers(path)
    assert [r["question"] for r in records] == ["q01", "q02", "q03"]


# ---------------------------------------------------------------------------------------------
# Analysis, on a hand-made questionnaire

def toy_manifest(qid="Q1"):
    # 4 questions: attribute 0 asked by q01, q02; attribute 1 by q03, q04
    correct = {"q01": "left", "q02": "right", "q03": "left", "q04": "left"}
    attr = {"q01": 0, "q02": 0, "q03": 1, "q04": 1}
    return {"id": qid, "attributes": [{"id": 0, "rank": 1, "index": 5}, {"id": 1, "rank": 2, "index": 9}],
            "questions": [{"id": q, "attribute": attr[q], "distractor": 1 - attr[q], "correct": c} for q, c in correct.items()]}


def write_answers(folder, pid, choices, simulated=False, questionnaire="Q1"):
    log = us.AnswerLog(folder, pid, questionnaire=questionnaire, simulated=simulated)
    for q, c in choices.items():
        log.record(q, c, response_time_s=1.0)


def test_analyse_matches_hand_computed_numbers(tmp_path):
    # alice: q01 ok, q02 ok, q03 ok, q04 wrong  -> 3/4
    # bob:   q01 ok, q02 wrong, q03 ok           -> 2/3 (stopped before q04)
    write_answers(tmp_path, "alice", {"q01": "left", "q02": "right", "q03": "left", "q04": "right"})
    write_answers(tmp_path, "bob", {"q01": "left", "q02": "left", "q03": "left"})
    # a simulated observer: all wrong; must not be pooled with the people
    write_answers(tmp_path, "simulated-probe", {"q01": "right", "q02": "left", "q03": "right", "q04": "right"},
                  simulated=True)
    # answers to another questionnaire are left out
    write_answers(tmp_path, "carol", {"q01": "right"}, questionnaire="OLD")
    with pytest.warns(UserWarning, match="left out"):
        res = us.analyse(tmp_path, toy_manifest())
    people = res["people"]
    # per-question accuracy: q01 1.0, q02 0.5, q03 1.0, q04 0.0
    assert people["per_question"]["q02"] == {"attribute": 0, "answers": 2, "accuracy": 0.5}
    assert people["overall"]["mean"] == pytest.approx(0.625)            # (1 + .5 + 1 + 0) / 4
    assert people["overall"]["std"] == pytest.approx(0.41457809879)     # sqrt(((.375)^2*2 + .125^2 + .625^2) / 4)
    assert people["per_attribute"][0]["mean"] == pytest.approx(0.75)    # q01, q02
    assert people["per_attribute"][0]["std"] == pytest.approx(0.25)
    assert people["per_attribute"][1]["mean"] == pytest.approx(0.5)     # q03, q04
    assert people["per_attribute"][1]["std"] == pytest.approx(0.5)
    assert people["pooled"] == pytest.approx(5 / 7)
    assert people["per_participant"]["mean"] == pytest.approx((0.75 + 2 / 3) / 2)
    assert people["per_participant"]["std"] == pytest.approx((0.75 - 2 / 3) / 2)
    assert people["participants"] == 2 and people["answers"] == 7
    assert list(res["simulated"]) == ["simulated-probe"]
    assert res["simulated"]["simulated-probe"]["overall"]["mean"] == 0.0
    assert res["skipped"]["other_questionnaire"] == 1
    # a single file is read the same way
    alone = us.analyse(tmp_path / "alice.jsonl", toy_manifest())
    assert alone["people"]["overall"]["mean"] == pytest.approx(0.75)


def test_plot_accuracy_writes_a_figure(tmp_path):
    write_answers(tmp_path, "alice", {"q01": "left", "q02": "right", "q03": "left", "q04": "right"})
    res = us.analyse(tmp_path, toy_manifest())
    res = json.loads(json.dumps(res))  # the figure also reads a JSON round trip (string keys)
    us.plot_accuracy({"toy": res}, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Simulated observer, on a constructed questionnaire: factor k of an image = mean of channel k

def test_observer_rule_is_sign_invariant():
    e1, e2 = np.array([1.0, 0.1, 0.0]), np.array([-0.9, 0.0, 0.1])   # same attribute, opposite ways
    assert us.observer_choice([e1, e2], np.array([0.0, 1.0, 0.0]), np.array([-1.0, 0.0, 0.0]))[0] == "right"


def test_cyclic_factor_changes_wrap(tmp_path):
    frames = np.zeros((2, 1, 2, 2, 3), np.uint8)
    frames[1] += 1  # the fake probe below reads hue 0.95 before, 0.05 after: a +0.1 turn, not -0.9
    np.savez(tmp_path / us.FRAMES, a=frames)
    manifest = {"questions": [{"examples": [{"gif": "a.gif", "frames": "a"}] * 2,
                               "left": {"gif": "a.gif", "frames": "a"}, "right": {"gif": "a.gif", "frames": "a"}}]}
    fake = lambda x: np.where(x[:, :1, 0, 0] > 0, 0.05, 0.95)  # noqa: E731  [N, 1]
    assert us.gif_changes(tmp_path, manifest, fake, cyclic=[0])["a.gif"] == pytest.approx([0.2])
    assert us.gif_changes(tmp_path, manifest, fake)["a.gif"] == pytest.approx([-0.9])


def test_simulated_observer_picks_the_right_candidate(tmp_path):
    rng = np.random.default_rng(0)

    def gif_frames(channel, sign):  # [2, 1, 4, 4, 3]: the edit moves one colour channel
        before = rng.integers(60, 180, (1, 4, 4, 3)).astype(np.uint8)
        after = before.copy()
        after[..., channel] = np.clip(before[..., channel].astype(int) + sign * 50, 0, 255)
        return np.stack([before, after])

    questions, keys = [], {}
    for number, (attr, distractor, correct) in enumerate([(0, 1, "left"), (1, 2, "right"), (2, 0, "left")]):
        entries = {}
        for name, a, sign in [("example1", attr, 1), ("example2", attr, -1),
                              (correct, attr, 1), ("right" if correct == "left" else "left", distractor, 1)]:
            stem = f"q{number}_{name}"
            keys[stem] = gif_frames(a, sign)
            entries[name] = {"gif": f"{stem}.gif", "frames": stem, "attribute": a}
        questions.append({"id": f"q{number}", "attribute": attr, "distractor": distractor, "correct": correct,
                          "examples": [entries["example1"], entries["example2"]],
                          "left": entries["left"], "right": entries["right"]})
    np.savez(tmp_path / us.FRAMES, **keys)
    manifest = {"id": "SIM", "questions": questions}

    def factors_of(images):
        assert images.dtype == np.uint8 and images.ndim == 4
        return images.reshape(len(images), -1, 3).mean(1) / 255.0

    out = us.simulate_observer(tmp_path, manifest, factors_of, tmp_path / "answers")
    assert out["accuracy"] == 1.0
    res = us.analyse(tmp_path / "answers", manifest)
    assert res["people"] is None
    assert res["simulated"]["simulated-probe"]["overall"]["mean"] == 1.0
    records = us.read_answers(tmp_path / "answers" / "simulated-probe.jsonl")
    assert len(records) == 3 and all(r["simulated"] for r in records)
    assert np.argmax(out["attribute_change"][1]) == 1  # attribute 1 moves channel 1
    us.simulate_observer(tmp_path, manifest, factors_of, tmp_path / "answers")  # rerun: rewritten, not duplicated
    assert len(us.read_answers(tmp_path / "answers" / "simulated-probe.jsonl")) == 3


# ---------------------------------------------------------------------------------------------
# GIFs and the end-to-end questionnaire on a tiny untrained model

def test_gif_round_trip(tmp_path):
    from PIL import Image, ImageSequence

    frames = np.random.default_rng(0).integers(0, 255, (6, 2, 8, 8, 3), dtype=np.uint8)  # [T, N, H, W, 3]
    path = save_gif(frames, tmp_path / "a.gif", scale=2, pad=2)
    with Image.open(path) as im:
        assert im.n_frames == 6
        assert im.size == (2 * (2 * (8 + 2) + 2), 2 * (8 + 2 * 2))  # (W, H): N images side by side, padded, x2
        assert all(f.size == im.size for f in ImageSequence.Iterator(im))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-1 renders of a tiny net: threads only add contention on a shared CPU
    torch.manual_seed(0)
    cfg = get_profile("quick").stylex
    model = StylExArch.of("stylex", 32, cfg).build().eval()
    classifier = build_classifier().eval()

    def lat(n, seed):
        w = torch.randn(n, model.generator.w_dim, generator=torch.Generator().manual_seed(seed))
        return Latents(w, fixed_noise(model, n, seed), "encoded")

    n_styles = model.generator.num_styles
    attrs = Attributes("attfind", [(1, 3), (0, n_styles // 2), (1, n_styles - 1)], [0.3, 0.2, 0.1])
    exp = Explanation(model, classifier, lat(6, 0), lat(5, 1), {"attfind": attrs}, {})
    folder = tmp_path_factory.mktemp("study")
    kwargs = dict(n_attributes=3, questions_per_attribute=1, steps=3, image_pool=5, seed=0)
    manifest = us.make_questionnaire(exp, folder, **kwargs)
    yield exp, folder, manifest, kwargs
    torch.set_num_threads(threads)


def test_make_questionnaire_end_to_end(tiny_study):
    exp, folder, manifest, kwargs = tiny_study
    assert us.load_manifest(folder) == manifest
    assert len(manifest["questions"]) == 3
    frames = us.load_frames(folder)
    assert [a["index"] for a in manifest["attributes"]] == [i for _, i in exp.attributes["attfind"].coords]
    for q in manifest["questions"]:
        assert q["distractor"] != q["attribute"]
        assert q[q["correct"]]["attribute"] == q["attribute"]
        assert {q["left"]["attribute"], q["right"]["attribute"]} == {q["attribute"], q["distractor"]}
        assert q["left"]["images"] == q["right"]["images"]
        assert not set(q["left"]["images"]) & set(q["examples"][0]["images"] + q["examples"][1]["images"])
        for g in [*q["examples"], q["left"], q["right"]]:
            assert not g["gif"].startswith("/") and (folder / g["gif"]).exists()
            assert frames[g["frames"]].shape == (2, 1, 32, 32, 3)
    # same call, same manifest: reused in place, and rendered afresh elsewhere
    assert us.make_questionnaire(exp, folder, **kwargs) == manifest
    again = folder.parent / "again"
    assert us.make_questionnaire(exp, again, **kwargs) == manifest
    assert all(np.array_equal(v, us.load_frames(again)[k]) for k, v in frames.items())
    # a different questionnaire is not written over people's answers
    us.AnswerLog(again / us.ANSWERS, "p01", questionnaire=manifest["id"]).record("q01", "left")
    with pytest.raises(FileExistsError, match="another questionnaire"):
        us.make_questionnaire(exp, again, **{**kwargs, "seed": 1})


def test_questionnaire_app_records_and_resumes(tiny_study, tmp_path):
    _, folder, manifest, _ = tiny_study
    app = us.questionnaire_app(folder, tmp_path, "p01")
    first = app.current["id"]
    app._buttons[0].click()  # "left"
    assert app.log.answered() == {first}
    del app
    app = us.questionnaire_app(folder, tmp_path, "p01")
    assert app.current["id"] != first and "1 of 3" in app.summary()
    app.choose("right")
    app.choose("left")
    assert app.current is None
    res = us.analyse(tmp_path, manifest)
    assert res["people"]["answers"] == 3 and res["people"]["participants"] == 1


def test_export_html_embeds_every_gif(tiny_study, tmp_path):
    _, folder, manifest, _ = tiny_study
    path = us.export_html(folder, tmp_path / "q.html")
    text = path.read_text()
    n = len(manifest["questions"])
    assert text.count("data:image/gif;base64,") == 4 * n
    data = json.loads(re.search(r'<script id="questionnaire" type="application/json">(.*?)</script>', text, re.S).group(1))
    assert data["id"] == manifest["id"] and len(data["questions"]) == n
    assert '"correct"' not in json.dumps(data)  # the page does not give the answers away


def test_summary_rows_and_findings_from_an_analysis():
    import numpy as np

    from repro import userstudy

    summary = {"overall": {"mean": 0.9, "std": 0.05, "questions": 18}, "participants": 1, "answers": 18,
               "per_attribute": {0: {"mean": 1.0}, 1: {"mean": 0.5}}}
    analyses = {"synth-age": {"people": None, "simulated": {"simulated-probe": summary}},
                "synth-species": {"people": None, "simulated": {}}}
    manifests = {"synth-age": {"questions": [0] * 18}, "synth-species": {"questions": [0] * 6}}
    rows = userstudy.summary_rows(analyses, manifests)
    assert rows[0]["who"] == "ours, synth-age: simulated-probe" and rows[0]["per attribute"] == "1.00 / 0.50"
    assert rows[1]["accuracy (mean ± std over questions)"] == "no answers yet" and rows[1]["questions"] == 6
    assert [r["who"] for r in rows[2:]] == [label for _, _, label in userstudy.REFERENCES.values()]
    changes = {"synth-age": {0: np.array([0.5, 0.2]), 1: np.array([0.01, 0.0])}}
    text = userstudy.findings(analyses, manifests, {"synth-age": "a", "synth-species": "b"}, changes, min_change=0.05)
    assert "weakest attribute #2 at 0.50" in text and "distinguishable" in text
    assert "1 of 2 attributes change the factors by less than 0.05" in text and "#2 (0.010)" in text
    assert "no answers yet; the 6-question questionnaire is ready in `b`" in text
    assert userstudy.describe_changes(changes["synth-age"], ["hue", "size"]) == [
        "attribute #1: moves hue 0.500, size 0.200", "attribute #2: moves hue 0.010, size 0.000"]
