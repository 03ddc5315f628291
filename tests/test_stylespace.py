"""StyleSpace: layout (flat index <-> layer, channel), attribute lists, the edit rule and its targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repro.networks import Generator
from repro.stylespace import (Attributes, apply_edits, check_range, class_direction, decode_index, decode_indices,
                              edit_styles, edit_targets, edit_values, flat_index, flatten_styles, style_range,
                              toward_class, unflatten_styles)

RES, CH, W_DIM, B = 32, 16, 514, 3


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return Generator(RES, CH).eval()


@pytest.fixture(scope="module")
def conv(G):
    with torch.no_grad():
        return G.styles(torch.randn(B, W_DIM, generator=torch.Generator().manual_seed(1)))[0]


# ---------------------------------------------------------------------------------------------
# Layout

def test_flatten_unflatten_and_index_conversions(G, conv):
    flat = flatten_styles(conv)
    assert flat.shape == (B, G.num_styles)
    assert all(torch.equal(a, b) for a, b in zip(unflatten_styles(flat, G.style_dims), conv))
    dims = [3, 5, 2]
    for i in range(sum(dims)):
        assert flat_index(*decode_index(i, dims), dims) == i
    assert decode_index(3, dims) == (1, 0) and flat_index(2, 1, dims) == 9
    with pytest.raises(IndexError):
        decode_index(10, dims)


def test_decode_index():
    dims = [4, 4, 2]
    assert decode_index(0, dims) == (0, 0)
    assert decode_index(5, dims) == (1, 1)
    assert decode_index(9, dims) == (2, 1)
    assert decode_index(np.int64(9), dims) == (2, 1) and decode_index(torch.tensor(4), dims) == (1, 0)
    for bad in (10, -1):
        with pytest.raises(IndexError):
            decode_index(bad, dims)
    with pytest.raises(IndexError):
        flat_index(1, 4, dims)


def test_decode_indices_of_an_attribute_list():
    assert decode_indices([(0, 0), (1, 5), (0, 9)], [4, 4, 2]) == ([0, 1, 2], [0, 1, 1])
    assert decode_indices([], [4, 4, 2]) == ([], [])


def test_edit_styles_returns_new_list_and_does_not_mutate(G, conv):
    before = [c.clone() for c in conv]
    i, j = flat_index(2, 5, G.style_dims), flat_index(4, 0, G.style_dims)
    edited = edit_styles(conv, [i, j], torch.tensor([[7.0, -3.0]]))
    assert all(torch.equal(a, b) for a, b in zip(conv, before))
    assert (edited[2][:, 5] == 7).all() and (edited[4][:, 0] == -3).all()
    flat_e, flat_o = flatten_styles(edited), flatten_styles(conv)
    others = torch.ones(G.num_styles, dtype=torch.bool)
    others[[i, j]] = False
    assert torch.equal(flat_e[:, others], flat_o[:, others])
    per_image = edit_styles(conv, [i], torch.arange(B, dtype=torch.float32)[:, None])
    assert per_image[2][:, 5].tolist() == [0.0, 1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Attribute lists and directions

def test_attributes_dict_round_trip():
    a = Attributes("attfind", [(0, 3), (1, 5)], [0.5, float("nan")], [(0.1, 0.2), (0.3, 0.4)], [0, 1], [3, 1],
                   {"num_indices": 8}, {"class_0": [[0, 3]]})
    b = Attributes.from_dict(a.to_dict())
    assert b.coords == a.coords and b.layers == a.layers and b.config == a.config
    assert b.scores[0] == 0.5 and np.isnan(b.scores[1])
    assert a.to_dict()["scores"][1] is None
    with pytest.raises(ValueError):
        Attributes("x", [(0, 1)], [])


def test_toward_class_pushes_each_class_to_the_other():
    """Lists read class 1 -> class 0: class-1 images get the direction as is, class-0 images its opposite."""
    assert toward_class((0, 7), 1) == (0, 7) and toward_class((0, 7), 0) == (1, 7)
    assert toward_class((1, 7), 1) == (1, 7) and toward_class((1, 7), 0) == (0, 7)
    base = torch.tensor([1, 0, 1, 0])
    assert class_direction(1, base).tolist() == [1, 0, 1, 0]
    assert class_direction(0, base).tolist() == [0, 1, 0, 1]
    assert [toward_class((1, 7), int(b))[0] for b in base] == class_direction(1, base).tolist()


# ---------------------------------------------------------------------------------------------
# Targets and the edit rule

def test_style_range_and_targets():
    flat = torch.tensor([[0.0, 5.0, -1.0], [2.0, 3.0, -4.0], [1.0, 4.0, -2.0]])
    smin, smax = style_range(flat)
    assert smin.tolist() == [0.0, 3.0, -4.0] and smax.tolist() == [2.0, 5.0, -1.0]
    per_layer = style_range([flat[:, :1], flat[:, 1:]])
    assert all(torch.equal(a, b) for a, b in zip(per_layer, (smin, smax)))
    with pytest.raises(ValueError):
        style_range(flat[0])
    assert edit_targets(0, 1, smin, smax).item() == 3.0 and edit_targets(1, 1, smin, smax).item() == 5.0
    assert edit_targets([0, 1, 1], [2, 0, 2], smin, smax).tolist() == [-4.0, 2.0, -1.0]
    assert edit_targets(torch.tensor([1, 0]), 2, smin, smax).tolist() == [-1.0, -4.0]
    assert edit_targets(1, np.int64(0), smin, smax).item() == 2.0


def test_check_range():
    smin, smax = check_range([[0.0, 1.0]], torch.tensor([2.0, 3.0], dtype=torch.float64), 2, "cpu", torch.float32)
    assert smin.shape == smax.shape == (2,) and smin.dtype == smax.dtype == torch.float32
    with pytest.raises(ValueError, match="S = 3 entries"):
        check_range(smin, smax, 3, "cpu", torch.float32)


def test_edit_rule_amounts():
    s = torch.tensor([0.5, -2.0, 1.0])
    t = torch.tensor([1.5, 2.0, 1.0])
    assert torch.equal(edit_values(s, t, 0.0), s)
    assert torch.allclose(edit_values(s, t, 1.0), t)
    assert torch.allclose(edit_values(s, t, 0.5), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(edit_values(s, t, 2.0), torch.tensor([2.5, 6.0, 1.0]))  # overshoot
    assert torch.equal(edit_values(s, t, 0.25), s + 0.25 * (t - s))  # exactly the formula


def test_exact_target_is_bitwise_and_only_at_amount_one():
    """``s + 1 * (t - s)`` can miss ``t`` in the last bit; ``exact`` returns the target itself."""
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(10_000, generator=gen), 2 * torch.randn(10_000, generator=gen)
    formula = edit_values(s, t, 1.0)
    assert torch.equal(formula, s + 1.0 * (t - s)) and not torch.equal(formula, t)
    assert torch.allclose(formula, t, atol=1e-6)
    assert torch.equal(edit_values(s, t, 1.0, exact=True), t)
    assert torch.equal(edit_values(s, t[0], 1.0, exact=True), t[0].expand(10_000))  # broadcasts
    with pytest.raises(ValueError, match="amount 1"):
        edit_values(s, t, 0.5, exact=True)


def test_apply_edits_moves_only_the_edited_coordinates(G, conv):
    flat = flatten_styles(conv)
    smin, smax = style_range(flat)
    edits = [(0, 3), (1, 40)]
    out = flatten_styles(apply_edits(conv, edits, 1.0, smin, smax))
    assert torch.allclose(out[:, 3], smin[3].expand(B)) and torch.allclose(out[:, 40], smax[40].expand(B))
    others = torch.ones(G.num_styles, dtype=torch.bool)
    others[[3, 40]] = False
    assert torch.equal(out[:, others], flat[:, others])
    assert torch.equal(flatten_styles(apply_edits(conv, edits, 0.0, smin, smax)), flat)
    assert all(a is b for a, b in zip(apply_edits(conv, [], 1.0, smin, smax), conv))
    # one amount per edit equals the edits applied one at a time
    both = flatten_styles(apply_edits(conv, edits, [0.3, 0.8], smin, smax))
    one = flatten_styles(apply_edits(conv, edits[:1], 0.3, smin, smax))
    two = flatten_styles(apply_edits(conv, edits[1:], 0.8, smin, smax))
    assert torch.equal(both[:, 3], one[:, 3]) and torch.equal(both[:, 40], two[:, 40])
    assert torch.equal(both[:, 3], flat[:, 3] + 0.3 * (smin[3] - flat[:, 3]))
    with pytest.raises(ValueError, match="2 edits but 1 amounts"):
        apply_edits(conv, edits, [0.3], smin, smax)
