"""Networks: shapes, the StyleSpace API (round trip, edits, resuming from a layer's state),
fixed noise, encoder batch independence and the conditional discriminator. Tiny configs."""

from __future__ import annotations

import pytest
import torch

from repro.networks import (Discriminator, Encoder, Generator, InferenceSynthesis, MappingNetwork, SynthesisState,
                            assert_shape, build_classifier)
from repro.stylespace import edit_styles, flat_index

RES, CH, W_DIM, B = 32, 16, 514, 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = Generator(RES, CH).eval()
    with torch.no_grad():  # non-zero noise strengths, so that noise matters in the tests
        for layer in g.layers:
            layer.noise_strength.fill_(0.5)
    return g


@pytest.fixture(scope="module")
def inputs(G):
    w = torch.randn(B, W_DIM, generator=_gen(1))
    noise = G.make_noise(B, generator=_gen(2))
    with torch.no_grad():
        conv, rgb = G.styles(w)
        img, states = G.synthesis(conv, rgb, noise, return_states=True)
    return w, noise, conv, rgb, img, states


# ---------------------------------------------------------------------------------------------
# shapes

@pytest.mark.parametrize("res, layers", [(32, 7), (64, 9)])
def test_shapes_of_every_network(res, layers):
    torch.manual_seed(0)
    G, E, D = Generator(res, 8), Encoder(res, 8, out_dim=512), Discriminator(res, 8)
    M = MappingNetwork(z_dim=32, w_dim=32, num_layers=2)
    assert G.num_conv_layers == layers and G.style_dims == [8] * layers and G.num_styles == 8 * layers
    assert [t.shape[-1] for t in G.make_noise(1)] == [4] + [2 ** (3 + i // 2) for i in range(layers - 1)]
    with torch.no_grad():
        img = G(torch.randn(2, 514), G.zero_noise(2))
        c = torch.softmax(torch.randn(2, 2), 1)
        assert img.shape == (2, 3, res, res)
        assert E(img).shape == (2, 512)
        assert D(img, c).shape == (2,)
        assert M(torch.randn(2, 32)).shape == (2, 32)


def test_paper_style_space_size():
    G = Generator(64, 512)
    assert G.num_conv_layers == 9 and G.num_styles == 4608 and len(G.to_rgb) == 5


def test_batch_size_one_works(G, inputs):
    w, noise = inputs[0], inputs[1]
    with torch.no_grad():
        one = G(w[:1], [t[:1] for t in noise])
    assert torch.allclose(one, inputs[4][:1], atol=1e-5)


def test_assert_shape_names_tensor_and_both_shapes():
    assert_shape(torch.zeros(2, 3), [None, 3], "ok")
    with pytest.raises(AssertionError, match=r"w: expected shape \[\*, 514\], got \[2, 512\]"):
        assert_shape(torch.zeros(2, 512), [None, 514], "w")
    with pytest.raises(AssertionError, match="w"):
        Generator(32, 8).styles(torch.zeros(2, 512))
    with pytest.raises(AssertionError, match="image"):
        Encoder(32, 8)(torch.zeros(1, 3, 64, 64))


def test_classifier_builds_untrained():
    assert build_classifier(2)(torch.randn(2, 3, 32, 32)).shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# StyleSpace API

def test_style_space_round_trip_is_exact(G, inputs):
    w, noise, conv, rgb, img, _ = inputs
    assert [c.shape for c in conv] == [(B, d) for d in G.style_dims]
    with torch.no_grad():
        assert torch.equal(G.synthesis(*G.styles(w), noise), G(w, noise))
        assert torch.equal(G(w, noise), img)


def test_resume_from_every_state_equals_full_render(G, inputs):
    _, noise, conv, rgb, img, states = inputs
    assert len(states) == G.num_conv_layers and states[0].img is None
    with torch.no_grad():
        for l in range(G.num_conv_layers):
            out = G.synthesis(conv, rgb, noise, start_layer=l, state=states[l])
            assert torch.equal(out, img), l


def test_edit_of_layer_l_leaves_earlier_states_untouched(G, inputs):
    _, noise, conv, rgb, img, states = inputs
    with torch.no_grad():
        for l in range(G.num_conv_layers):
            edited = edit_styles(conv, [flat_index(l, 1, G.style_dims)], conv[l][:, 1:2] + 3.0)
            out, st = G.synthesis(edited, rgb, noise, return_states=True)
            for k in range(l + 1):  # states[k] is the input of layer k: nothing before l changed
                assert torch.equal(st[k].x, states[k].x), (l, k)
                assert (st[k].img is None and states[k].img is None) or torch.equal(st[k].img, states[k].img)
            assert not torch.allclose(out, img), l


def test_batched_edits_from_one_expanded_state_equal_separate_renders(G, inputs):
    _, noise, conv, rgb, _, states = inputs
    layer, n = 3, 5
    conv0, rgb0, noise0 = [c[:1] for c in conv], [r[:1] for r in rgb], [t[:1] for t in noise]
    channels = torch.arange(n)
    values = torch.linspace(-2, 2, n)
    edited = [c.expand(n, -1).clone() for c in conv0]
    edited[layer][torch.arange(n), channels] = values
    state = states[layer].index([0]).expand(n)
    with torch.no_grad():
        batched = G.synthesis(edited, [r.expand(n, -1) for r in rgb0], [t.expand(n, -1, -1, -1) for t in noise0],
                              start_layer=layer, state=state)
        for k in range(n):
            single = edit_styles(conv0, [flat_index(layer, k, G.style_dims)], values[k])
            assert torch.allclose(batched[k:k + 1], G.synthesis(single, rgb0, noise0), atol=1e-5, rtol=0), k


def test_state_helpers():
    s = SynthesisState(torch.arange(2.0).reshape(2, 1, 1, 1), None)
    assert s.repeat_interleave(2).x.flatten().tolist() == [0, 0, 1, 1]
    assert s.index(torch.tensor([1, 1, 0])).x.flatten().tolist() == [1, 1, 0]
    assert s.index([1]).expand(3).x.flatten().tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        s.expand(4)


# ---------------------------------------------------------------------------------------------
# inference fast path == Generator.synthesis (reference parity)

def _parity_generator(res: int) -> Generator:
    """Non-zero noise strengths and biases, so that every term of the epilogue is exercised."""
    torch.manual_seed(0)
    g = Generator(res, 8).eval()
    with torch.no_grad():
        for layer in g.layers:
            layer.noise_strength.fill_(0.5)
            layer.bias.normal_(0.0, 0.3, generator=_gen(7))
        for t in g.to_rgb:
            t.bias.normal_(0.0, 0.3, generator=_gen(8))
    return g


@pytest.mark.parametrize("res", [32, 64])
def test_inference_synthesis_equals_synthesis(res):
    """Non-fused modulation (shared-weight conv over the batch) == fused (grouped conv), also when
    resuming from every layer's state."""
    G = _parity_generator(res)
    fast = InferenceSynthesis(G)
    noise = G.make_noise(B, generator=_gen(2))
    with torch.no_grad():
        conv, rgb = G.styles(torch.randn(B, W_DIM, generator=_gen(1)))
        img, states = G.synthesis(conv, rgb, noise, return_states=True)
    out, fast_states = fast.synthesis(conv, rgb, noise, return_states=True)
    torch.testing.assert_close(out, img, atol=1e-4, rtol=1e-4)
    for l in range(G.num_conv_layers):
        torch.testing.assert_close(fast_states[l].x, states[l].x, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fast.synthesis(conv, rgb, noise, start_layer=l, state=states[l]), img,
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("res", [32, 64])
def test_render_edits_equal_renders_of_the_edited_styles(res):
    """Each row == the reference render of its image with one style coordinate set, for every
    layer; rows repeat and interleave images and are split over several passes."""
    G = _parity_generator(res)
    fast = InferenceSynthesis(G)
    noise = G.make_noise(B, generator=_gen(2))
    with torch.no_grad():
        conv, rgb = G.styles(torch.randn(B, W_DIM, generator=_gen(1)))
    _, states = fast.synthesis(conv, rgb, noise, return_states=True)
    image, channel = torch.tensor([0, 2, 1, 2, 0]), torch.tensor([0, 3, 7, 5, 3])
    value = torch.randn(5, generator=_gen(3)) * 2
    for l in range(G.num_conv_layers):
        rows = fast.render_edits(l, states[l], conv, rgb, noise, image, channel, value, rows_per_pass=2)
        with torch.no_grad():
            want = torch.cat([G.synthesis(edit_styles([c[i:i + 1] for c in conv], [flat_index(l, int(ch), G.style_dims)], v),
                                          [r[i:i + 1] for r in rgb], [t[i:i + 1] for t in noise])
                              for i, ch, v in zip(image, channel, value)])
        assert rows.shape == (5, 3, res, res)
        torch.testing.assert_close(rows, want, atol=1e-4, rtol=1e-4, msg=f"layer {l}")


# ---------------------------------------------------------------------------------------------
# noise

def test_fixed_noise_is_deterministic_and_random_noise_is_not(G, inputs):
    w, noise = inputs[0], inputs[1]
    with torch.no_grad():
        assert torch.equal(G(w, noise), G(w, noise))
        assert not torch.equal(G(w), G(w))  # None = fresh noise (training only)
        zero = G(w, G.zero_noise(B))
        assert torch.equal(zero, G(w, G.zero_noise(B)))
        assert not torch.allclose(zero, G(w, noise))
    assert all(float(t.abs().sum()) == 0 for t in G.zero_noise(2))


def test_make_noise_reproducible_with_seeded_generator(G):
    a, b = G.make_noise(2, generator=_gen(5)), G.make_noise(2, generator=_gen(5))
    c = G.make_noise(2, generator=_gen(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert [t.shape for t in a] == [(2, *s) for s in G.noise_shapes]


# ---------------------------------------------------------------------------------------------
# encoder / discriminator

@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, RES, RES, generator=_gen(3))


def test_encoder_is_batch_independent_discriminator_is_not(images):
    torch.manual_seed(0)
    E, D = Encoder(RES, CH, out_dim=32).eval(), Discriminator(RES, CH).eval()
    c = torch.softmax(torch.randn(4, 2, generator=_gen(4)), 1)
    with torch.no_grad():
        assert torch.allclose(E(images)[:1], E(images[:1]), atol=1e-5, rtol=0)
        assert not torch.allclose(D(images, c)[:1], D(images[:1], c[:1]), atol=1e-5)
        assert D(images[:3], c[:3]).shape == (3,)  # batch not divisible by the group size


def test_discriminator_uses_its_condition(images):
    torch.manual_seed(0)
    D = Discriminator(RES, CH)
    with torch.no_grad():
        a = D(images, torch.tensor([[1.0, 0.0]]).expand(4, 2))
        b = D(images, torch.tensor([[0.0, 1.0]]).expand(4, 2))
    assert not torch.allclose(a, b)


def test_mapping_network_tracks_w_avg_and_truncates():
    torch.manual_seed(0)
    M = MappingNetwork(z_dim=16, w_dim=16, num_layers=2)
    z = torch.randn(8, 16)
    M.train()(z)
    assert M.w_avg.abs().sum() > 0
    M.eval()
    with torch.no_grad():
        assert torch.allclose(M(z, truncation_psi=0.0), M.w_avg.expand(8, 16))


def test_device_agnostic_on_the_meta_device():
    """Every tensor is created on the device of the inputs/parameters (stands in for CUDA here)."""
    G, E, D = Generator(32, 8).to("meta"), Encoder(32, 8).to("meta"), Discriminator(32, 8).to("meta")
    w = torch.randn(2, 514, device="meta")
    conv, rgb = G.styles(w)
    noise = G.make_noise(2, generator=_gen(0))  # drawn on the CPU generator, moved to G's device
    img, states = G.synthesis(conv, rgb, noise, return_states=True)
    edited = edit_styles(conv, [5, 50], 1.0)
    resumed = G.synthesis(edited, rgb, G.zero_noise(2), start_layer=3, state=states[3])
    fast = InferenceSynthesis(G)
    rows = torch.tensor([0, 1], device="meta")
    edits = fast.render_edits(3, states[3], conv, rgb, noise, rows, rows, torch.ones(2, device="meta"))
    c = torch.rand(2, 2, device="meta")
    outs = [img, resumed, noise[0], E(img), D(img, c), G(w), fast.synthesis(conv, rgb, noise), edits]
    assert all(t.device.type == "meta" for t in outs)
