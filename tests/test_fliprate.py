"""Flip rate, the Wu et al. baseline and the random floor, on toys whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repro.baselines import random_attributes, wu_attributes
from repro.fliprate import (FlipResult, flip_rate, flip_rate_curve, flip_rate_repeats, load_results,
                            save_results)
from repro.stylespace import Attributes


# ---------------------------------------------------------------------------------------------
# A minimal stand-in generator: the image is a uniform grey set by StyleSpace coordinate 0
# (layer 0, channel 0); every other coordinate is ignored. The toy classifier says class 1
# iff the image is bright, so coordinate 0 decides the class and the others do nothing.

class ToyGenerator(nn.Module):
    style_dims = [3, 2]
    num_conv_layers = 2
    num_styles = 5

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.5))

    def synthesis(self, conv_styles, rgb_styles, noise=None, **kwargs):
        v = conv_styles[0][:, 0] * self.gain
        return v.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()

    def zero_noise(self, batch, device=None):
        return [torch.zeros(batch, 1, 4, 4, device=device) for _ in range(self.num_conv_layers)]


class ToyClassifier(nn.Module):
    def forward(self, img):
        m = img.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], 1)


def toy_styles(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    flat = torch.randn(n, 5, generator=g)
    flat[:, 0] = torch.linspace(-1.0, 1.0, n) + 0.05   # no image exactly at 0; about half each class
    conv = list(torch.split(flat, [3, 2], 1))
    rgb = [torch.randn(n, 4, generator=g)]
    noise = ToyGenerator().zero_noise(n)
    return conv, rgb, noise


@pytest.fixture
def toy():
    return ToyGenerator(), ToyClassifier(), *toy_styles()


def attrs(*coords):
    return Attributes("test", list(coords), [0.0] * len(coords))


def test_right_coordinate_flips_everything_null_flips_nothing(toy):
    G, C, conv, rgb, noise = toy
    right = flip_rate(G, C, conv, rgb, noise, attrs((0, 0)), k=1)
    assert right.rate == 1.0 and bool(right.flipped.all())
    assert right.base_class.tolist() == (conv[0][:, 0] > 0).long().tolist()
    assert 0 < int(right.base_class.sum()) < len(right.base_class)
    assert right.per_class == [1.0, 1.0]
    null = flip_rate(G, C, conv, rgb, noise, attrs((0, 3)), k=1)
    assert null.rate == 0.0 and null.per_class == [0.0, 0.0]
    # (1, 0) pushes class 1 to the max and class 0 to the min: each stays where it is
    wrong = flip_rate(G, C, conv, rgb, noise, attrs((1, 0)), k=1)
    assert wrong.rate == 0.0


def test_direction_is_d_for_class_1_and_1_minus_d_for_class_0(toy):
    """With both targets negative, only the images sent to the minimum's side can end up in class 0."""
    G, C, conv, rgb, noise = toy
    smin = torch.full((5,), -1.0)
    smax = torch.full((5,), -0.5)
    res = flip_rate(G, C, conv, rgb, noise, attrs((0, 0)), k=1, style_min=smin, style_max=smax)
    # class 1 gets d = 0 (min, negative): flips; class 0 gets 1 - d = 1 (max, still negative): stays
    assert res.per_class == [0.0, 1.0]
    n1 = int(res.base_class.sum())
    assert res.rate == pytest.approx(n1 / len(res.flipped))
    res = flip_rate(G, C, conv, rgb, noise, attrs((1, 0)), k=1, style_min=-smax, style_max=-smin)
    # class 1 gets d = 1 (max, positive): stays; class 0 gets 0 (min, positive): flips
    assert res.per_class == [1.0, 0.0]


def test_k_edits_applied_together(toy):
    G, C, conv, rgb, noise = toy
    a = attrs((0, 3), (1, 4), (0, 0))
    assert flip_rate(G, C, conv, rgb, noise, a, k=2).rate == 0.0
    assert flip_rate(G, C, conv, rgb, noise, a, k=3).rate == 1.0
    with pytest.warns(UserWarning, match="only 3"):
        res = flip_rate(G, C, conv, rgb, noise, a, k=5)
    assert res.rate == 1.0 and res.k_used == 3


def test_curve_matches_single_k_calls_on_toy(toy):
    G, C, conv, rgb, noise = toy
    a = attrs((0, 3), (1, 4), (0, 0), (1, 1))
    curve = flip_rate_curve(G, C, conv, rgb, noise, a, ks=range(1, 5))
    singles = [flip_rate(G, C, conv, rgb, noise, a, k=k).rate for k in range(1, 5)]
    assert curve.mean == singles == [0.0, 0.0, 1.0, 1.0]
    assert curve.ks == [1, 2, 3, 4] and curve.std == [0.0] * 4


def test_curve_matches_single_k_calls_on_tiny_generator():
    from repro.networks import Generator

    torch.manual_seed(0)
    G = Generator(32, 8).eval()
    torch.manual_seed(3)
    C = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.LazyLinear(2))
    C(torch.zeros(1, 3, 32, 32))
    with torch.no_grad():
        conv, rgb = G.styles(torch.randn(12, 514, generator=torch.Generator().manual_seed(4)))
    noise = G.make_noise(12, generator=torch.Generator().manual_seed(5))
    S = sum(G.style_dims)
    a = random_attributes(S, 6, seed=7)
    curve = flip_rate_curve(G, C, conv, rgb, noise, a, ks=[1, 3, 6], batch_size=5)
    singles = [flip_rate(G, C, conv, rgb, noise, a, k=k, batch_size=7).flipped for k in (1, 3, 6)]
    assert curve.mean == [float(f.float().mean()) for f in singles]


def test_repeats_use_disjoint_subsets_with_their_own_range(toy):
    G, C, conv, rgb, noise = toy
    a = attrs((0, 0))
    rep = flip_rate_repeats(G, C, conv, rgb, noise, a, k=1, repeats=2, images_per_repeat=5, seed=3)
    assert rep.mean == pytest.approx(np.mean(rep.rates)) and rep.std == pytest.approx(np.std(rep.rates))
    perm = np.random.default_rng(3).permutation(10)
    for r in range(2):
        idx = torch.as_tensor(np.sort(perm[r * 5:(r + 1) * 5]))
        sub = flip_rate(G, C, [c[idx] for c in conv], [x[idx] for x in rgb], [t[idx] for t in noise], a, k=1)
        assert sub.rate == rep.rates[r]
    with pytest.raises(ValueError, match="disjoint"):
        flip_rate_repeats(G, C, conv, rgb, noise, a, k=1, repeats=3, images_per_repeat=4)


def test_curve_column_equals_repeats_at_that_k(toy):
    G, C, conv, rgb, noise = toy
    a = attrs((0, 0), (1, 2), (0, 4))
    curve = flip_rate_curve(G, C, conv, rgb, noise, a, ks=[1, 2, 3], repeats=2, images_per_repeat=5, seed=1)
    for k in (1, 2, 3):
        rep = flip_rate_repeats(G, C, conv, rgb, noise, a, k=k, repeats=2, images_per_repeat=5, seed=1)
        assert curve.at(k).to_dict() == rep.to_dict()
    with pytest.raises(ValueError, match="not on the curve"):
        curve.at(7)


def test_repeats_over_random_seeds(toy):
    G, C, conv, rgb, noise = toy
    seen = []

    def factory(r):
        seen.append(r)
        return random_attributes(5, 1, seed=r)

    rep = flip_rate_repeats(G, C, conv, rgb, noise, factory, k=1, repeats=5, images_per_repeat=2)
    assert seen == [0, 1, 2, 3, 4] and len(rep.rates) == 5
    perm = np.random.default_rng(0).permutation(10)
    for r in range(5):
        idx = torch.as_tensor(np.sort(perm[2 * r:2 * r + 2]))
        sub = flip_rate(G, C, [c[idx] for c in conv], [x[idx] for x in rgb], [t[idx] for t in noise],
                        random_attributes(5, 1, seed=r), k=1)
        assert sub.rate == rep.rates[r]
    assert len({tuple(random_attributes(5, 1, seed=r).coords) for r in range(5)}) > 1


# ---------------------------------------------------------------------------------------------
# Baselines

def separable_styles(n=200, S=10, planted=4, seed=0):
    """Class 0 has a high value of coordinate ``planted``; probs follow the class confidently."""
    rng = np.random.default_rng(seed)
    styles = rng.normal(size=(n, S))
    labels = rng.integers(0, 2, n)
    styles[:, planted] += np.where(labels == 0, 2.0, -2.0)
    p0 = np.where(labels == 0, 0.97, 0.03)
    probs = np.stack([p0, 1 - p0], 1)
    return torch.from_numpy(styles).float(), torch.from_numpy(probs).float()


def test_wu_ranks_the_planted_coordinate_first_with_the_class1_to_class0_direction():
    styles, probs = separable_styles()
    a0 = wu_attributes(styles, probs, target_class=0, k=3)
    assert a0.coords[0] == (1, 4)   # class 0 is high on coordinate 4: to max moves towards class 0
    assert a0.scores == sorted(a0.scores, reverse=True) and a0.method == "wu"
    a1 = wu_attributes(styles, probs, target_class=1, k=3)
    assert a1.details["wu_direction"][0] == 0   # Wu's own direction: towards class 1 = to min
    assert a1.coords[0] == (1, 4)               # returned in the class-1 -> class-0 convention
    assert len({i for _, i in a0.coords}) == 3
    with pytest.raises(ValueError, match="softmax"):
        wu_attributes(styles, probs, target_class=0, k=3, threshold=0.99)


def test_wu_direction_flips_the_toy():
    """End to end: Wu's list, read in AttFind's convention by the flip rate, flips every image."""
    G, C = ToyGenerator(), ToyClassifier()
    conv, rgb, noise = toy_styles(n=40)
    flat = torch.cat(conv, 1)
    with torch.no_grad():
        probs = torch.softmax(C(G.synthesis(conv, rgb, noise)) * 20, 1)
    for target in (0, 1):
        a = wu_attributes(flat, probs, target_class=target, k=1, threshold=0.6, style_dims=G.style_dims)
        assert a.coords[0][1] == 0 and a.layers == [0] and a.channels == [0]
        assert flip_rate(G, C, conv, rgb, noise, a, k=1).rate == 1.0


def test_random_attributes_deterministic_and_distinct():
    a, b = random_attributes(50, 10, seed=1), random_attributes(50, 10, seed=1)
    assert a.coords == b.coords and len({i for _, i in a.coords}) == 10
    assert random_attributes(50, 10, seed=2).coords != a.coords
    assert set(a.directions) <= {0, 1} and all(0 <= i < 50 for i in a.indices)
    with pytest.raises(ValueError):
        random_attributes(5, 6, seed=0)


# ---------------------------------------------------------------------------------------------
# JSON

def test_results_json_round_trip(toy, tmp_path):
    G, C, conv, rgb, noise = toy
    a = Attributes("attfind", [(0, 0), (1, 3)], [0.7, float("nan")], [(0.2, 0.5), (0.0, 0.1)], [0, 1], [0, 0],
                   {"num_indices": 8}, {"class_0": [[0, 0]]})
    fr = flip_rate(G, C, conv, rgb, noise, a, k=2)
    rep = flip_rate_repeats(G, C, conv, rgb, noise, a, k=1, repeats=2)
    path = save_results(tmp_path / "out" / "results.json",
                        {"attributes": a, "flip": fr, "repeats": rep, "array": np.arange(3), "tensor": torch.ones(2)})
    assert not list(path.parent.glob(".*tmp*"))
    back = load_results(path)
    b = Attributes.from_dict(back["attributes"])
    assert b.coords == a.coords and b.mean_effect == a.mean_effect and np.isnan(b.scores[1])
    assert back["flip"]["rate"] == fr.rate and back["flip"]["flipped"] == fr.flipped.tolist()
    assert back["repeats"]["rates"] == rep.rates
    assert back["array"] == [0, 1, 2] and back["tensor"] == [1.0, 1.0]
    assert isinstance(fr, FlipResult)


def test_fast_path_matches_reference_on_a_real_generator():
    """InferenceSynthesis + folded classifier + resuming at the first edited layer: the same
    flips as rendering every image from the start with Generator.synthesis."""
    from repro.fliprate import _flip_matrix
    from repro.networks import Generator

    torch.manual_seed(0)
    G = Generator(resolution=32, channels=16, w_dim=18).eval()

    class Projection(nn.Module):  # class 1 iff a fixed random projection of the image is above its median
        def __init__(self, weight, bias):
            super().__init__()
            self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

        def forward(self, img):
            m = (img * self.weight).flatten(1).sum(1) - self.bias
            return torch.stack([-m, m], 1)

    n = 24
    conv, rgb = G.styles(torch.randn(n, 18))
    noise = G.make_noise(n, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        C = Projection(weight, (G.synthesis(conv, rgb, noise) * weight).flatten(1).sum(1).median()).eval()
    dims = [c.shape[1] for c in conv]
    later = sum(dims[:2])  # coordinates in layers >= 2 only: the fast path resumes at layer 2
    coords = [(j % 2, later + 5 * j) for j in range(6)]
    for cs in (coords, [(0, 1)] + coords):  # and one that starts at layer 0
        fast, base_f = _flip_matrix(G, C, conv, rgb, noise, cs, [1, 3, 6], None, None, 10, False, fast=True)
        ref, base_r = _flip_matrix(G, C, conv, rgb, noise, cs, [1, 3, 6], None, None, 10, False, fast=False)
        assert torch.equal(base_f, base_r)
        assert (fast != ref).float().mean() <= 1 / 72  # at most one borderline decision differs
        assert ref.any(), "the test needs some flips to compare"
