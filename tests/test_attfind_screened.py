"""Screened AttFind: the first-order estimate, the screen's renders, verification, and share 1 == exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import tiny_nets
from repro.attfind import (SCREEN_RUNNERS_UP, AttFindConfig, EffectResult, _contenders, _greedy, compute_effects,
                           first_order_effects, get_preset, run_attfind, screened_attfind)


@pytest.fixture(scope="module")
def tiny_setup():
    return tiny_nets.tiny_setup(inference_tensors=True)


@pytest.fixture(scope="module")
def exact(tiny_setup):
    return compute_effects(*tiny_setup, progress=False)


CONFIG = AttFindConfig(num_indices=5, effect_threshold=0.1)


def test_share_one_is_exact_bit_for_bit(tiny_setup, exact):
    screened = compute_effects(*tiny_setup, screen=1.0, progress=False)
    assert torch.equal(screened.effect, exact.effect) and torch.equal(screened.base_logits, exact.base_logits)
    assert bool(screened.exact.all()) and exact.exact is None and exact.screen is None
    info = screened.screen
    assert info["share"] == 1.0 and info["candidates"] == 3 * 2 * exact.num_styles
    assert info["renders"] == int((exact.effect != 0).any(-1).sum())  # every edit but the null ones
    for config in (CONFIG, get_preset("authors"), get_preset("authors-one-vs-all"), get_preset("authors-image-fraction")):
        attrs, result = screened_attfind(*tiny_setup, config, screen=1.0, progress=False)
        reference = run_attfind(exact, config)
        assert torch.equal(result.effect, exact.effect)
        assert attrs.coords == reference.coords and attrs.scores == reference.scores
        assert attrs.mean_effect == reference.mean_effect
        assert attrs.details["screen"]["rounds"] == 0 and attrs.details["screen"]["verified_coordinates"] == []


def test_share_one_is_exact_with_small_batches_subsets_and_shift(tiny_setup):
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    S = sum(c.shape[1] for c in conv)
    kwargs = dict(shift_size=0.5, batch_size=3, coords=[0, 5, 9, 17, S - 1], progress=False)
    exact = compute_effects(G, C, conv, rgb, noise, smin, smax, **kwargs)
    screened = compute_effects(G, C, conv, rgb, noise, smin, smax, screen=1.0, **kwargs)
    assert torch.equal(screened.effect, exact.effect)
    assert screened.screen["candidates"] == 3 * 2 * 5
    assert not screened.exact[:, :, ~exact.computed].any()  # coordinates not computed are 0, not exact
    half = compute_effects(G, C, conv, rgb, noise, smin, smax, screen=0.5, **kwargs)
    assert not half.effect[:, :, ~exact.computed].any() and not half.exact[:, :, ~exact.computed].any()
    assert half.screen["renders"] <= 3 * 5  # half of each image's 2 x 5 candidate edits


def test_first_order_estimate_is_the_gradient_times_the_shift(tiny_setup, exact):
    """For a small shift the first-order estimate is nearly the effect; for the full shift it correlates."""
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    small = compute_effects(G, C, conv, rgb, noise, smin, smax, shift_size=0.01, progress=False)
    est_small = first_order_effects(G, C, conv, rgb, noise, smin, smax, shift_size=0.01)
    moved = small.effect != 0
    assert np.corrcoef(small.effect[moved], est_small[moved])[0, 1] > 0.99  # measured 0.998
    assert float((est_small - small.effect).abs().max()) < 0.2 * float(small.effect.abs().max())  # measured 0.08
    est = first_order_effects(G, C, conv, rgb, noise, smin, smax)
    assert est.shape == exact.effect.shape and est.dtype == torch.float32 and est.device.type == "cpu"
    moved = exact.effect != 0
    assert np.corrcoef(exact.effect[moved], est[moved])[0, 1] > 0.5  # measured 0.70 (edits to the min / max)
    assert bool((est[~moved.any(-1)] == 0).all())  # null edits: exactly 0, as in the effect tensor


def test_screen_renders_the_top_share_and_fills_the_rest(tiny_setup, exact):
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    S = exact.num_styles
    est = first_order_effects(G, C, conv, rgb, noise, smin, smax)
    result = compute_effects(*tiny_setup, screen=0.25, progress=False)
    rendered = result.exact & (exact.effect != 0).any(-1)
    per_image = int(np.ceil(0.25 * 2 * S))
    assert bool((result.exact.flatten(1).sum(1) >= per_image).all())
    assert result.screen["renders"] == int(rendered.sum()) <= 3 * per_image
    # rendered entries are the exact effects (other batches: float rounding), the rest the estimate
    torch.testing.assert_close(result.effect[result.exact], exact.effect[result.exact], atol=1e-5, rtol=1e-5)
    assert torch.equal(result.effect[~result.exact], est[~result.exact])
    # the rendered ones are each image's largest |estimate| on the other class's logit
    other = 1 - exact.base_logits.argmax(1)
    for n in range(3):
        score = est[n, :, :, other[n]].abs()
        assert score[rendered[n]].min() >= score[~result.exact[n]].max()
    zero = compute_effects(*tiny_setup, screen=0.25, screen_fill="zero", progress=False)
    assert torch.equal(zero.exact, result.exact) and not zero.effect[~zero.exact].any()
    one_vs_all = compute_effects(*tiny_setup, screen=0.25, screen_logit=0, progress=False)
    assert one_vs_all.screen["logit"] == 0


@pytest.mark.parametrize("preset, missed", [("replication", 0), ("authors", 0), ("authors-one-vs-all", 0),
                                            ("authors-image-fraction", 1)])
def test_screened_attfind_verifies_its_picks_and_agrees_with_exact(tiny_setup, exact, preset, missed):
    """Share 0.25 on the 3-image tiny model: every pick is an exact column, and the top list is
    exact AttFind's (measured, shares 0.1 to 0.5: the same list for the greedy presets; the
    image-fraction variant misses 1 of 8 below share 0.5, its counts of 3 images being mostly ties)."""
    config = dataclasses.replace(get_preset(preset), effect_threshold=0.1)
    attrs, result = screened_attfind(*tiny_setup, config, screen=0.25, progress=False)
    reference = run_attfind(exact, config)
    info = attrs.details["screen"]
    assert info["renders"] < info["candidates"] and info["runners_up"] == SCREEN_RUNNERS_UP
    picked = {i for key in ("class_0", "class_1") for _, i in attrs.details.get(key, [])}
    assert picked and all(bool(result.exact[:, :, i].all()) for i in picked)
    assert set(info["verified_coordinates"]) <= set(range(exact.num_styles))
    for i in picked:  # verified columns hold the exact effects
        torch.testing.assert_close(result.effect[:, :, i], exact.effect[:, :, i], atol=1e-5, rtol=1e-5)
    top, top_ref = attrs.coords[:10], reference.coords[:10]
    assert len(set(top) & set(top_ref)) >= len(top_ref) - missed
    if not missed:
        np.testing.assert_allclose(attrs.scores[:len(top)], reference.scores[:len(top)], atol=1e-5)
    # with runners_up 0 fewer columns are verified, never more
    lean, lean_result = screened_attfind(*tiny_setup, config, screen=0.25, runners_up=0, progress=False)
    assert lean.details["screen"]["renders"] <= info["renders"]


def test_contenders_leave_the_greedy_unchanged():
    rng = np.random.default_rng(0)
    effect = rng.normal(size=(12, 2, 30, 2))
    images = np.arange(12)
    picks, gains = _greedy(effect, images, 0, 6, 1.0, None)
    found: set[int] = set()
    picks2, gains2 = _greedy(effect, images, 0, 6, 1.0, None, found, 2)
    assert picks == picks2 and gains == gains2
    assert set(picks) <= found and len(found) <= 3 * len(picks)  # flat columns into [2S]


@pytest.mark.parametrize("preset", ["replication", "authors-one-vs-all", "authors-image-fraction"])
def test_verification_covers_what_the_selection_reads(preset):
    """The entries verification renders (_contenders) are all the selection reads: with every other
    entry set to 0 the same list and scores come out; and they are fewer than whole columns of the
    same coordinates (a contender is read in one direction, on its class's images)."""
    rng = np.random.default_rng(1)
    effect = torch.as_tensor(0.5 * rng.normal(size=(16, 2, 24, 2)), dtype=torch.float32)  # no unstable image
    base = torch.as_tensor(rng.normal(size=(16, 2)), dtype=torch.float32)
    config = dataclasses.replace(get_preset(preset), num_indices=3, effect_threshold=0.1)
    full = EffectResult(effect, base)
    needed = _contenders(full, config, None, 2)
    attrs = run_attfind(full, config)
    assert not attrs.details["unstable_images"]
    for _, i in attrs.coords:  # every listed coordinate: both directions, every image
        assert bool(needed[:, :, i].all())
    only = run_attfind(EffectResult(torch.where(needed[..., None], effect, torch.zeros(())), base), config)
    assert only.coords == attrs.coords and only.scores == pytest.approx(attrs.scores, abs=1e-12)
    touched = needed.any(1).any(0)
    assert int(needed.sum()) < 16 * 2 * int(touched.sum())


def test_screened_effects_save_load_and_bad_arguments(tiny_setup, tmp_path):
    result = compute_effects(*tiny_setup, screen=0.5, progress=False)
    loaded = EffectResult.load(result.save(tmp_path / "effects.pt"))
    assert torch.equal(loaded.exact, result.exact) and loaded.screen == result.screen
    for bad in (0, 0.0, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="screen"):
            compute_effects(*tiny_setup, screen=bad, progress=False)
    with pytest.raises(ValueError, match="screen_fill"):
        compute_effects(*tiny_setup, screen=0.5, screen_fill="mean", progress=False)
    with pytest.raises(ValueError, match="screen_logit"):
        compute_effects(*tiny_setup, screen=0.5, screen_logit=2, progress=False)
    with pytest.raises(ValueError, match="runners_up"):
        screened_attfind(*tiny_setup, runners_up=-1, progress=False)
    with pytest.raises(ValueError, match="discriminator"):
        screened_attfind(*tiny_setup, AttFindConfig(discriminator_threshold=0.2), progress=False)
    with pytest.raises(ValueError, match="exact must be"):
        EffectResult(result.effect, result.base_logits, exact=torch.ones(3, 2, 2, dtype=torch.bool))


def test_eval_config_attfind_screen():
    from repro.config import EvalConfig

    assert EvalConfig().attfind_screen is None  # exact AttFind stays the default
    assert EvalConfig(attfind_screen=0.1).attfind_screen == 0.1
    for bad in (0, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="attfind_screen"):
            EvalConfig(attfind_screen=bad)


def test_explain_with_screened_attfind(tmp_path):
    """EvalConfig.attfind_screen reaches explain_model: share 1 reproduces exact AttFind's list,
    a smaller share records its screen; changing it recomputes instead of reusing the results."""
    from fake_runs import fake_finished_run

    from repro.explain import explain_model

    profile, task = fake_finished_run(tmp_path, ("stylex",))

    def explain(screen):
        profile.eval = dataclasses.replace(profile.eval, attfind_screen=screen, curve_ks=[1, 4], repeats=1)
        return explain_model(profile, task, "stylex", device="cpu", progress=False, top_single=1).results

    exact = explain(None)["methods"]["attfind"]["attributes"]
    full = explain(1.0)["methods"]["attfind"]["attributes"]
    assert full["coords"] == exact["coords"] and full["scores"] == exact["scores"]
    assert full["details"]["screen"]["share"] == 1.0 and "screen" not in exact["details"]
    screened = explain(0.3)["methods"]["attfind"]["attributes"]["details"]["screen"]
    assert screened["share"] == 0.3 and screened["renders"] < screened["candidates"]


def test_benchmark_summary_shows_screened_attfind(tmp_path):
    """A record of benchmarks/attfind_screened.py becomes a row of the README's speed block."""
    import json

    from repro.report import benchmark_summary

    record = {"date": "2026-11-28T06:21:06+00:00", "device": "cpu: test (1 threads)",
              "model": {"kind": "trained", "model": "runs/x/ckpt-0001500.pt", "run": "r1-0.2", "iteration": 1500,
                        "mode": "stylex"},
              "config": {"images": 32, "num_styles": 448, "screen": 0.1, "runners_up": 6},
              "load_average": {"before": 0.5, "after": 1.9}, "entries": 28672,
              "reference": {"images": 1, "coords": 448, "seconds": 19.754, "cpu_seconds": 9.772, "renders_per_s": 45.36},
              "exact": {"images": 32, "seconds": 62.244, "cpu_seconds": 50.108, "renders_per_s": 460.6},
              "screened": {"seconds": 12.402, "cpu_seconds": 12.281, "renders_share": 0.1706,
                           "effective_renders_per_s": 2311.8},
              "speedup_vs_reference": 50.97, "speedup_vs_exact": 5.02,
              "agreement": {"overlap": 10, "of": 10, "flip_rate": {"exact": 0.782, "screened": 0.782}}}
    (tmp_path / "attfind_screened.jsonl").write_text(json.dumps(record) + "\n")
    summary = benchmark_summary(tmp_path)
    row = next(line for line in summary.splitlines() if line.startswith("| cpu: test"))
    assert "r1-0.2 (stylex, iteration 1500)" in row and "| 17.1% |" in row and "| 10/10 |" in row
    assert "| 51.0 / 25.5 |" in row  # x reference per wall second / per CPU second
    assert "0.782 / 0.782" in row
