"""AttFind: the batched effect tensor against the plain loop, and the selection against a literal
NumPy transcription of the spec (section 5, steps 3-6) written here, independently of the library."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tiny_nets
from repro.attfind import (PRESETS, AttFindConfig, EffectResult, combine, compute_effects, compute_effects_reference,
                           filter_unstable, get_preset, run_attfind, select_class)
from repro.stylespace import decode_index


# ---------------------------------------------------------------------------------------------
# Tiny networks (module-scoped: built once)

@pytest.fixture(scope="module")
def tiny_setup():
    return tiny_nets.tiny_setup()


# ---------------------------------------------------------------------------------------------
# Effect tensor: fast path == reference path

def test_effects_fast_equals_reference(tiny_setup):
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    fast = compute_effects(G, C, conv, rgb, noise, smin, smax, progress=False)
    ref = compute_effects_reference(G, C, conv, rgb, noise, smin, smax, progress=False)
    S = sum(c.shape[1] for c in conv)
    assert fast.effect.shape == (3, 2, S, 2) and fast.effect.dtype == torch.float32
    assert fast.effect.device.type == "cpu"
    assert fast.effect.abs().max() > 1e-2, "effects too small for the parity test to mean anything"
    torch.testing.assert_close(fast.base_logits, ref.base_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.effect, ref.effect, atol=1e-4, rtol=1e-4)
    assert fast.style_dims == list(G.style_dims) and bool(fast.computed.all())


def test_effects_chunking_subset_and_shift(tiny_setup):
    """Small batches split layers and images mid-way; a coordinate subset leaves the rest at 0."""
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    S = sum(c.shape[1] for c in conv)
    coords = [0, 5, 9, 17, S - 1]
    fast = compute_effects(G, C, conv, rgb, noise, smin, smax, shift_size=0.5, batch_size=3,
                           coords=coords, progress=False)
    ref = compute_effects_reference(G, C, conv, rgb, noise, smin, smax, shift_size=0.5, coords=coords,
                                    progress=False)
    torch.testing.assert_close(fast.effect, ref.effect, atol=1e-4, rtol=1e-4)
    others = torch.ones(S, dtype=torch.bool)
    others[coords] = False
    assert fast.effect[:, :, others].abs().max() == 0
    assert fast.computed.sum() == len(coords)


class _DataDependent(nn.Module):
    """A classifier torch.fx cannot trace (control flow on a tensor's value)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) if x.sum() > -1e9 else -self.inner(x)


def test_effects_with_batchnorm_and_untraceable_classifiers(tiny_setup):
    """The fast path folds BatchNorm into the classifier's convs (and puts it in eval mode, then
    back); a classifier it cannot trace is used as it is, with a warning. Same effects."""
    G, _, conv, rgb, noise, smin, smax = tiny_setup
    torch.manual_seed(3)
    C = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    with torch.no_grad():
        C[1].running_mean.normal_(0.0, 0.5)
        C[1].running_var.uniform_(0.5, 2.0)
        C[1].weight.normal_(1.0, 0.3)
        C[1].bias.normal_(0.0, 0.3)
        C[-1].weight.mul_(20.0)
    S = sum(c.shape[1] for c in conv)
    coords = [0, 9, 30, S - 1]
    ref = compute_effects_reference(G, C, conv, rgb, noise, smin, smax, coords=coords, progress=False)
    assert ref.effect.abs().max() > 1e-2
    C.train()
    fast = compute_effects(G, C, conv, rgb, noise, smin, smax, coords=coords, progress=False)
    assert C.training
    torch.testing.assert_close(fast.effect, ref.effect, atol=1e-4, rtol=1e-4)
    with pytest.warns(UserWarning, match="torch.fx"):
        fallback = compute_effects(G, _DataDependent(C), conv, rgb, noise, smin, smax, coords=coords, progress=False)
    torch.testing.assert_close(fallback.effect, ref.effect, atol=1e-4, rtol=1e-4)


def test_effect_of_a_null_edit_is_zero(tiny_setup):
    """Targets equal to the current styles change nothing: the resumed render equals the base one."""
    G, C, conv, rgb, noise, _, _ = tiny_setup
    one = [c[:1] for c in conv]
    flat = torch.cat(one, 1)[0]
    res = compute_effects(G, C, one, [r[:1] for r in rgb], [t[:1] for t in noise], flat, flat, progress=False)
    assert res.effect.abs().max() < 1e-4


def test_effect_result_save_load(tiny_setup, tmp_path):
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    res = compute_effects(G, C, conv, rgb, noise, smin, smax, coords=[1, 2], progress=False)
    back = EffectResult.load(res.save(tmp_path / "effects.pt"))
    torch.testing.assert_close(back.effect, res.effect)
    assert back.style_dims == res.style_dims and back.shift_size == res.shift_size


def test_run_attfind_on_real_effects(tiny_setup):
    G, C, conv, rgb, noise, smin, smax = tiny_setup
    res = compute_effects(G, C, conv, rgb, noise, smin, smax, progress=False)
    attrs = run_attfind(res, AttFindConfig(num_indices=3, effect_threshold=0.05))
    assert attrs.method == "attfind" and len(attrs) >= 1
    assert attrs.scores == sorted(attrs.scores, reverse=True)
    for (d, i), layer, ch in zip(attrs.coords, attrs.layers, attrs.channels):
        assert d in (0, 1) and decode_index(i, G.style_dims) == (layer, ch)


# ---------------------------------------------------------------------------------------------
# Literal transcription of spec section 5, steps 3-6 (independent of repro.attfind)

def spec_attfind(effect, base_logits, num_indices, effect_threshold, unstable_threshold, unstable_max_count):
    effect = np.array(effect, dtype=np.float64)
    S = effect.shape[2]
    # 3. Drop unstable images: more than max_count entries with |effect| > threshold -> zeroed out.
    unstable = np.sum(np.abs(effect) > unstable_threshold, axis=(1, 2, 3)) > unstable_max_count
    effect[unstable] = 0
    # 4. Split images by argmax(base). To explain class c, use the images predicted as the other class.
    labels = np.argmax(base_logits, axis=1)
    lists = {}
    for c in (0, 1):
        sub = effect[labels == 1 - c]
        # 5. E = max(0, effect[:, :, :, c]) reshaped to [N, 2S]; greedy with soft image removal.
        E = np.maximum(0, sub[:, :, :, c].reshape(sub.shape[0], 2 * S))
        images_effect = np.zeros(sub.shape[0])
        max_image_effect = 5 * effect_threshold
        picked = []
        for _ in range(num_indices):
            keep = images_effect < max_image_effect
            assert keep.any(), "test data must not exhaust the image set"
            mean = np.mean(E[keep], axis=0)
            assert mean.max() > 0, "test data must keep a positive effect"
            nxt = int(np.argmax(mean))
            picked.append(nxt)
            images_effect += E[:, nxt]
            E[:, nxt] = 0
        lists[c] = [(nxt // S, nxt % S) for nxt in picked]
    # 6. Combine: class-1 pairs flipped and dropped if the index is in class 0's list; rank by
    #    mean(effect[:, d, i, 0]) + mean(effect[:, 1-d, i, 1]) over all images, descending.
    class0_indices = [i for _, i in lists[0]]
    joined = [(1 - d, i) for d, i in lists[1] if i not in class0_indices] + lists[0]
    scores = [np.mean(effect[:, d, i, 0]) + np.mean(effect[:, 1 - d, i, 1]) for d, i in joined]
    order = sorted(range(len(joined)), key=lambda j: -scores[j])  # the data has no ties
    return [joined[j] for j in order], [scores[j] for j in order], lists, unstable


def planted_effects(seed: int, n: int = 12, S: int = 7):
    """Noise plus structure: a strong class-0 coordinate that saturates half of the class-1 images
    (so the soft removal matters), an index found by both classes (so the drop matters), and one
    unstable image."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0.0, 0.1, size=(n, 2, S, 2))
    base = rng.normal(0.0, 1.0, size=(n, 2))
    labels = np.array([0] * (n // 2) + [1] * (n - n // 2))
    rng.shuffle(labels)
    base[:, 1] = base[:, 0] + np.where(labels == 1, 1.0, -1.0) * rng.uniform(0.5, 2.0, n)
    cls1, cls0 = np.nonzero(labels == 1)[0], np.nonzero(labels == 0)[0]
    effect[cls1[: len(cls1) // 2], 1, 2, 0] += 1.3   # (1, 2) raises class 0 strongly on half of class 1
    effect[cls1, 0, 4, 0] += rng.uniform(0.2, 0.4, len(cls1))   # (0, 4) raises class 0 moderately
    effect[cls1, 0, 3, 0] += 0.25                     # index 3 helps class 0 ...
    effect[cls0, 1, 3, 1] += 0.5                      # ... and class 1: drop on combine
    effect[cls0, 0, 5, 1] += rng.uniform(0.3, 0.6, len(cls0))
    effect[cls1[-1]] += np.sign(effect[cls1[-1]]) * 3.0  # unstable image
    return effect.astype(np.float32), base.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("num_indices,effect_threshold", [(3, 0.2), (4, 0.2), (3, 0.3)])
def test_run_attfind_matches_spec_transcription(seed, num_indices, effect_threshold):
    effect, base = planted_effects(seed)
    config = AttFindConfig(num_indices=num_indices, effect_threshold=effect_threshold, unstable_max_count=10)
    want, want_scores, want_lists, want_unstable = spec_attfind(effect, base, num_indices, effect_threshold,
                                                                2.0, 10)
    assert want_unstable.sum() == 1
    res = EffectResult(torch.from_numpy(effect), torch.from_numpy(base), [3, 4])
    got = run_attfind(res, config)
    assert got.coords == want
    np.testing.assert_allclose(got.scores, want_scores, rtol=1e-9, atol=1e-12)
    assert [tuple(p) for p in got.details["class_0"]] == want_lists[0]
    assert [tuple(p) for p in got.details["class_1"]] == want_lists[1]
    assert got.details["unstable_images"] == np.nonzero(want_unstable)[0].tolist()
    # The pieces agree as well.
    filtered, mask = filter_unstable(effect, 2.0, 10)
    assert mask.tolist() == want_unstable.tolist()
    assert select_class(filtered, base, 0, config) == want_lists[0]
    assert select_class(filtered, base, 1, config) == want_lists[1]
    assert combine(filtered, want_lists[0], want_lists[1]) == want


def test_planted_structure_is_found():
    effect, base = planted_effects(0)
    got = run_attfind(EffectResult(torch.from_numpy(effect), torch.from_numpy(base)),
                      AttFindConfig(num_indices=3, unstable_max_count=10))
    class0 = [tuple(p) for p in got.details["class_0"]]
    assert class0[0] == (1, 2)                          # the strongest first
    assert (0, 4) in class0                             # found on the images left after removal
    if any(i == 3 for _, i in class0):                  # class 1's (1, 3) is dropped, not flipped in
        assert sum(i == 3 for _, i in got.coords) == 1


def test_soft_removal_changes_the_second_pick():
    """Without removal the second pick would be the mean over all images; with it, only the rest count."""
    n, S = 8, 3
    effect = np.zeros((n, 2, S, 2))
    base = np.tile([0.0, 1.0], (n, 1))           # all class 1: they explain class 0
    effect[:4, 0, 0, 0] = 2.0                     # saturates images 0-3 (cap 1.0)
    effect[:4, 0, 1, 0] = 0.9                     # helps only the saturated images: mean 0.45 over all
    effect[4:, 0, 2, 0] = 0.6                     # helps the rest: mean 0.3 over all
    picks = select_class(effect, base, 0, AttFindConfig(num_indices=2))
    assert picks == [(0, 0), (0, 2)]


def test_greedy_stops_when_no_image_or_effect_is_left():
    n, S = 4, 3
    effect = np.zeros((n, 2, S, 2))
    base = np.tile([0.0, 1.0], (n, 1))
    effect[:, 1, 1, 0] = 5.0                      # one pick removes every image
    assert select_class(effect, base, 0, AttFindConfig(num_indices=4)) == [(1, 1)]
    assert select_class(np.zeros_like(effect), base, 0, AttFindConfig(num_indices=4)) == []
    assert select_class(effect, base, 1, AttFindConfig(num_indices=4)) == []  # no class-0 images


def test_one_vs_all_uses_all_images_and_class_0():
    effect, base = planted_effects(1)
    config = get_preset("authors-one-vs-all")
    assert config.effect_threshold == 0.1 and config.image_effect_cap == pytest.approx(0.5)
    # the filter as run_attfind applies it: the authors' share of the 4S entries at this S
    filtered, _ = filter_unstable(effect, config.unstable_threshold, config.unstable_limit(effect.shape[2]))
    got = run_attfind(EffectResult(torch.from_numpy(effect), torch.from_numpy(base)), config)
    # transcription: the greedy of step 5 for class 0 over every image
    S = effect.shape[2]
    E = np.maximum(0, filtered[:, :, :, 0].reshape(len(filtered), 2 * S))
    images_effect, picked = np.zeros(len(filtered)), []
    for _ in range(config.num_indices):
        keep = images_effect < 0.5
        if not keep.any():
            break
        nxt = int(np.argmax(E[keep].mean(0)))
        picked.append((nxt // S, nxt % S))
        images_effect += E[:, nxt]
        E[:, nxt] = 0
    assert got.coords == picked
    assert "class_1" not in got.details


def test_image_fraction_variant():
    n, S = 10, 4
    effect = np.zeros((n, 2, S, 2))
    base = np.tile([0.0, 1.0], (n, 1))
    effect[:6, 1, 2, 0] = 0.5    # 6 images moved past 0.2
    effect[:3, 0, 1, 0] = 0.9    # 3 images, bigger mean but fewer images
    effect[:, 0, 3, 0] = 0.1     # every image but below the threshold
    config = AttFindConfig(variant="image-fraction", num_indices=3, min_changed_images_fraction=0.25)
    assert select_class(effect, base, 0, config) == [(1, 2), (0, 1)]
    got = run_attfind(EffectResult(torch.from_numpy(effect).float(), torch.from_numpy(base).float()), config)
    assert set(got.coords) == {(1, 2), (0, 1)}


def test_check_vetoes_a_coordinate():
    effect, base = planted_effects(0)
    config = AttFindConfig(num_indices=3, unstable_max_count=10, discriminator_threshold=0.2)
    res = EffectResult(torch.from_numpy(effect), torch.from_numpy(base))
    with pytest.raises(ValueError, match="discriminator"):
        run_attfind(res, config)
    seen = []

    def reject_index_2(eff, cls, index, images):
        seen.append((cls, index, len(images)))
        return index != 2

    got = run_attfind(res, config, check=reject_index_2)
    assert all(i != 2 for _, i in got.coords) and (0, 2, 6) in seen
    assert (0, 4) in [tuple(p) for p in got.details["class_0"]]


def test_presets_and_config():
    assert PRESETS["authors"].num_indices == 8 and PRESETS["authors"].effect_threshold == 0.2
    assert PRESETS["authors"].image_effect_cap == pytest.approx(1.0)
    assert PRESETS["authors"].unstable_threshold == 2.0 and PRESETS["authors"].unstable_max_count is None
    assert PRESETS["authors"].unstable_max_share == 750 / (2 * 2 * 5760)  # 750 at the authors' S
    assert PRESETS["authors"].unstable_limit(5760) == 750
    assert PRESETS["replication"].num_indices == 10 and PRESETS["replication"].image_effect_cap == pytest.approx(2.5)
    assert AttFindConfig(max_image_effect=0.7).image_effect_cap == 0.7
    with pytest.raises(ValueError):
        AttFindConfig(variant="nope")
    p = get_preset("authors")
    p.num_indices = 99
    assert PRESETS["authors"].num_indices == 8


def test_folded_classifier_is_cached_and_rebuilt_when_weights_change():
    from repro.inference import fast_classifier
    from repro.networks import build_classifier

    torch.manual_seed(0)
    clf = build_classifier(2).eval()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    first = fast_classifier(clf)
    assert fast_classifier(clf) is first  # the fold is reused
    before = first(img)
    with torch.no_grad():
        clf.classifier[-1].bias.add_(torch.tensor([1.0, -1.0]))  # in place: bumps the version counter
    again = fast_classifier(clf)
    assert again is not first
    assert torch.allclose(again(img), clf(img), atol=1e-5)
    assert torch.allclose(again(img) - before, torch.tensor([1.0, -1.0]).expand(2, 2), atol=1e-5)
