"""Wu et al. from enough images (repro.baselines.wu_images) and AttFind's unstable-image filter as a
share of the effect entries (repro.attfind.unstable_max_count): issue 14, item 4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.attfind import (UNSTABLE_MAX_SHARE, AttFindConfig, EffectResult, filter_unstable, get_preset, run_attfind,
                           unstable_max_count)
from repro.baselines import WU_SEED_OFFSET, wu_attributes, wu_images, wu_positive_threshold
from repro.config import EvalConfig, get_profile


# -- the unstable filter: the authors' 750 as a share of 2 x 2 x S entries -----------------------

def test_unstable_share_is_the_authors_750_of_23040_entries():
    assert UNSTABLE_MAX_SHARE == 750 / (2 * 2 * 5760) == pytest.approx(0.032552, abs=1e-6)
    # floor(750 * S / 5760): the authors' count at their S, proportionally elsewhere
    assert [unstable_max_count(s) for s in (5760, 2880, 11520, 4608, 448, 1)] == [750, 375, 1500, 600, 58, 0]
    for s in range(1, 6000, 37):
        assert unstable_max_count(s) == (750 * s) // 5760
    config = get_preset("authors")
    assert config.unstable_max_count is None and config.unstable_limit(448) == 58
    assert AttFindConfig(unstable_max_count=750).unstable_limit(448) == 750  # a fixed count stays fixed
    assert AttFindConfig(unstable_max_share=0.5).unstable_limit(10) == 20
    with pytest.raises(ValueError, match="share"):
        AttFindConfig(unstable_max_share=1.5)


def _effects_with_loud_entries(num_styles: int, loud: list[int], seed: int = 0) -> np.ndarray:
    """One image per entry of ``loud``: that many of its 4S entries have |effect| 3 (> 2), the rest 0.1."""
    rng = np.random.default_rng(seed)
    effect = np.full((len(loud), 2, num_styles, 2), 0.1)
    for n, count in enumerate(loud):
        flat = effect[n].reshape(-1)
        flat[rng.choice(flat.size, size=count, replace=False)] = rng.choice([-3.0, 3.0], size=count)
    return effect


@pytest.mark.parametrize("num_styles", [448, 1000, 2880, 5760])
def test_unstable_count_scales_with_S(num_styles):
    """An image is unstable above the same share of its entries at every S: the count scales."""
    limit = unstable_max_count(num_styles)
    entries = 4 * num_styles
    # exactly at the limit: kept; one more: dropped; 3 % of the entries: kept; 3.5 %: dropped, at any S
    loud = [limit, limit + 1, int(0.03 * entries), int(np.ceil(0.035 * entries))]
    effect = _effects_with_loud_entries(num_styles, loud)
    filtered, unstable = filter_unstable(effect)  # the default: the authors' share
    assert unstable.tolist() == [False, True, False, True]
    assert np.all(filtered[1] == 0) and np.all(filtered[0] == effect[0])
    base = np.tile([[1.0, 0.0], [0.0, 1.0]], (2, 1))
    got = run_attfind(EffectResult(torch.from_numpy(effect), torch.from_numpy(base)), get_preset("replication"))
    assert got.details["unstable_images"] == [1, 3]
    assert got.details["unstable_max_count"] == limit and got.details["unstable_entries_per_image"] == entries
    # the notebook's literal count means something else at small S: none of these images is dropped
    assert filter_unstable(effect, 2.0, 750)[1].tolist() == ([False, False, False, False] if num_styles < 5760
                                                            else [False, True, False, True])


# -- Wu: positives, and the images its statistics come from ----------------------------------------

def test_wu_positive_threshold_replication_rule_then_top_2_percent():
    p0 = torch.linspace(0.0, 0.95, 100)
    probs = torch.stack([p0, 1 - p0], 1)
    assert wu_positive_threshold(probs, 0.9) == 0.9  # some images pass 0.9
    used = wu_positive_threshold(probs, 0.97)          # none passes: Wu's own top 2 %
    assert int((p0 > used).sum()) == 2
    assert used == pytest.approx(float(torch.quantile(p0, 0.98)) - 1e-6)
    assert int((probs[:, 1] > wu_positive_threshold(probs, 0.99, target_class=1)).sum()) == 2


def test_eval_config_wu_images_must_be_positive():
    assert EvalConfig().wu_images == 1000 and get_profile("default").eval.wu_images >= 1000
    quick = get_profile("quick").eval
    assert quick.wu_images > quick.attfind_images
    with pytest.raises(ValueError, match="wu_images must be a positive integer"):
        EvalConfig(wu_images=0)


def _tiny_run(tmp_path, wu_images: int = 64):
    """A quick-profile run root with (untrained) tiny stylex and stylegan2 models and a classifier."""
    from fake_runs import fake_finished_run

    profile, task = fake_finished_run(tmp_path, ("stylex", "stylegan2"))
    profile.eval.wu_images = wu_images
    return profile, task


def _load(profile, task, mode):
    from repro.classifier import load_classifier
    from repro.model import load_stylex

    return (load_stylex(profile.run_dir(task.name, mode)).model,
            load_classifier(profile.run_dir(task.name, "classifier")).model)


def _rows_in(rows: torch.Tensor, table: torch.Tensor, tol: float = 1e-4) -> int:
    """How many of ``rows`` are (up to batch-size float noise) a row of ``table``."""
    return int((torch.cdist(rows.double(), table.double()) < tol).any(1).sum())


def test_wu_images_stylex_encodes_val_then_train_never_the_held_out(tmp_path):
    from repro.data import load_split
    from repro.explain import image_sets
    from repro.inference import classify_images
    from repro.stylespace import flatten_styles

    profile, task = _tiny_run(tmp_path, wu_images=64)
    model, classifier = _load(profile, task, "stylex")
    wu = wu_images(model, classifier, task, profile.eval)
    assert len(wu) == 64 > profile.eval.attfind_images
    assert wu.source == "encoded" and wu.probs_of == "real images"
    assert wu.record()["splits"] == {"val": 8, "train": 56} and wu.record()["n"] == 64
    assert wu.styles.shape == (64, model.generator.num_styles) and wu.probs.shape == (64, 2)
    # the probabilities are the classifier's softmax on the real images (val first, then train)
    real = torch.cat([load_split(task.stylex_data, "val").batch(slice(0, 8)),
                      load_split(task.stylex_data, "train").batch(slice(0, 56))])
    torch.testing.assert_close(wu.probs, torch.softmax(classify_images(classifier, real), 1))
    found, held_out = image_sets(model, classifier, task, profile)
    assert _rows_in(flatten_styles(found.styles(model)[0]), wu.styles) == len(found)  # AttFind's are among them
    assert _rows_in(flatten_styles(held_out.styles(model)[0]), wu.styles) == 0        # the held-out never
    profile.eval.wu_images = 5000  # more than val + train hold: all of them, with a warning
    with pytest.warns(UserWarning, match="hold only 1032"):
        assert len(wu_images(model, classifier, task, profile.eval)) == 1032


def test_wu_images_stylegan2_samples_a_fresh_seed_and_classifies_renders(tmp_path):
    from repro.evaluation import latents, render
    from repro.explain import image_sets
    from repro.inference import classify_images
    from repro.stylespace import flatten_styles

    profile, task = _tiny_run(tmp_path, wu_images=40)
    model, classifier = _load(profile, task, "stylegan2")
    wu = wu_images(model, classifier, task, profile.eval, batch_size=16)  # batches of 16: same numbers
    assert len(wu) == 40 and wu.source == "sampled" and wu.probs_of == "renders"
    assert wu.record()["seed"] == profile.eval.seed + WU_SEED_OFFSET
    lat = latents(model, classifier, n=40, seed=profile.eval.seed + WU_SEED_OFFSET)
    torch.testing.assert_close(wu.probs, torch.softmax(classify_images(classifier, render(model, lat)), 1))
    torch.testing.assert_close(wu.styles, flatten_styles(lat.styles(model)[0]))
    found, held_out = image_sets(model, classifier, task, profile)
    for other in (found, held_out):
        assert _rows_in(flatten_styles(other.styles(model)[0]), wu.styles) == 0


def test_explain_json_records_wu_images_and_the_unstable_share(tmp_path):
    """Wu's list on a tiny model comes from wu_images (64 images), not the 8 AttFind images."""
    from repro.explain import explain_model

    profile, task = _tiny_run(tmp_path, wu_images=64)
    exp = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1)
    res = exp.results
    assert res["attfind_images"]["n"] == 8
    rec = res["wu_images"]
    assert rec["n"] == rec["requested"] == 64 and rec["splits"] == {"val": 8, "train": 56}
    assert rec["probs_of"] == "real images" and rec["n_positives"] >= 1
    assert exp.attributes["wu"].details["num_images"] == 64
    model, classifier = _load(profile, task, "stylex")
    wu = wu_images(model, classifier, task, profile.eval)
    threshold = wu_positive_threshold(wu.probs, profile.eval.wu_threshold)
    assert res["wu_threshold_used"] == pytest.approx(threshold)
    want = wu_attributes(wu.styles, wu.probs, target_class=0, k=profile.eval.k_max, threshold=threshold)
    assert exp.attributes["wu"].coords == want.coords
    S = res["num_styles"]
    assert res["attfind_unstable"]["share"] == res["attfind_config"]["unstable_max_share"] == UNSTABLE_MAX_SHARE
    assert res["attfind_unstable"]["max_count"] == unstable_max_count(S) and res["attfind_unstable"]["entries_per_image"] == 4 * S
    assert res["seconds"]["wu"] >= 0
    again = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results
    assert again == res  # reused
    profile.eval.wu_images = 32  # another Wu procedure: recomputed (the AttFind effects are reused)
    changed = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results
    assert changed["wu_images"]["n"] == 32 and changed["wu_images"]["splits"] == {"val": 8, "train": 24}


def test_explain_recomputes_when_the_evaluation_settings_change(tmp_path):
    """A cached explanation (and AttFind effect tensor) is reused only for the settings it was computed with:
    fewer AttFind images recompute the effects on those images; another flip-rate size recomputes the results."""
    from repro.attfind import EffectResult
    from repro.explain import EFFECTS, explain_model

    profile, task = _tiny_run(tmp_path, wu_images=16)
    first = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results
    run_dir = profile.model_dir(task.name, "stylex")
    assert EffectResult.load(run_dir / EFFECTS).num_images == first["attfind_images"]["n"] == 8
    assert first["eval_config"]["attfind_images"] == 8 and first["eval_config"]["top_single"] == 1
    profile.eval.attfind_images = 6  # the fixture's val split holds 8
    more = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results
    assert more["attfind_images"]["n"] == 6 and EffectResult.load(run_dir / EFFECTS).num_images == 6
    profile.eval.images_per_repeat = 8
    fewer = explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results
    assert fewer["methods"]["attfind"]["flip_rate"]["images_per_repeat"] == 8 != more["methods"]["attfind"]["flip_rate"]["images_per_repeat"]
    assert explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=2).results["eval_config"]["top_single"] == 2
