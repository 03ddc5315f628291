"""Attribute figures, GIFs and the explorer on a tiny untrained model (no trained run needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from repro import attribute_figures as af
from repro.config import get_profile
from repro.counterfactual import edit_render
from repro.data import ImageSet
from repro.evaluation import fixed_noise, latents
from repro.explain import Explanation
from repro.explorer import Explorer, _upload_content, explorer, render_signed
from repro.model import StylExArch
from repro.networks import build_classifier
from repro.stylespace import Attributes, decode_index, flatten_styles, style_range

NAMES = ("young", "old")
R = 32


def _random_images(n: int, seed: int) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, R, R), generator=gen, dtype=torch.uint8)
    return ImageSet(images, torch.zeros(n, dtype=torch.long), name=f"random/{seed}")


def _attributes(method: str, coords: list[tuple[int, int]], style_dims: list[int]) -> Attributes:
    where = [decode_index(i, style_dims) for _, i in coords]
    return Attributes(method, coords, scores=[1.0 / (r + 1) for r in range(len(coords))],
                      mean_effect=[(0.1 * (r + 1), 0.05) for r in range(len(coords))],
                      layers=[l for l, _ in where], channels=[c for _, c in where])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches of a tiny net: extra threads only add contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(one_thread):
    """A tiny untrained StylEx model, MobileNetV2 and an Explanation with hand-made attributes.

    The attributes are the coordinates of layer 0 whose range over the AttFind images is widest,
    so that an edit visibly changes even an untrained model's images.
    """
    torch.manual_seed(0)
    cfg = get_profile("quick").stylex
    model = StylExArch.of("stylex", R, cfg).build().eval()
    classifier = build_classifier().eval()
    found = latents(model, classifier, _random_images(8, 0), seed=0)
    held_out = latents(model, classifier, _random_images(12, 1), seed=1)
    smin, smax = style_range(flatten_styles(found.styles(model)[0]))
    dims = model.generator.style_dims
    widest = torch.argsort(smax[:dims[0]] - smin[:dims[0]], descending=True)[:4].tolist()
    coords = [(r % 2, i) for r, i in enumerate(widest)]
    attrs = {"attfind": _attributes("attfind", coords, dims),
             "wu": _attributes("wu", coords[::-1], dims)}
    exp = Explanation(model, classifier, found, held_out, attrs, {"task": "tiny", "mode": "stylex"})
    return exp


def test_choose_images_splits_and_fills(tiny, monkeypatch):
    both = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.6, 0.4]])
    monkeypatch.setattr(af, "base_classes", lambda exp, pool=af.POOL: both)
    choice = af.choose_images(tiny, 4)
    assert choice.indices == [0, 2, 1, 3] and choice.base_class == [0, 0, 1, 1]
    only_zero = torch.tensor([[0.9, 0.1]] * 5)
    monkeypatch.setattr(af, "base_classes", lambda exp, pool=af.POOL: only_zero)
    choice = af.choose_images(tiny, 4)
    assert choice.indices == [0, 1, 2, 3] and choice.base_class == [0] * 4


def test_affected_images_are_those_the_edit_moves_most(tiny, tmp_path):
    """Per base class, the chosen images are the ones whose probability of the other class the
    edit raises most (checked against counterfactuals of every image); figures and GIFs take them."""
    edit = tiny.attributes["attfind"].coords[0]
    smin, smax = tiny.targets
    pool = len(tiny.eval_set)
    every = af.choose_images(tiny, pool, pool=pool)  # all images, with their base classes
    cf = af.counterfactuals(tiny, edit, every, smin, smax)
    gain = {i: cf.p_edited[j] - cf.p_original[j] for j, i in enumerate(every.indices)}
    choice = af.affected_images(tiny, edit, 4, pool=pool)
    assert len(choice.indices) == 4 and choice.base_class == sorted(choice.base_class)
    for j, i in enumerate(choice.indices):
        same_class = [k for k, b in zip(every.indices, every.base_class) if b == choice.base_class[j]]
        rank = sorted(same_class, key=lambda k: -gain[k]).index(i)
        assert rank < choice.base_class.count(choice.base_class[j]), (i, rank)
    af.plot_attributes(tiny, "attfind", tmp_path / "affected.png", top=2, n_images=4, class_names=NAMES,
                       affected=True)
    paths = af.attribute_gifs(tiny, "attfind", tmp_path, top=1, n_images=4, steps=3, affected=True)
    assert (tmp_path / "affected.png").stat().st_size > 0 and paths[0].exists()


def test_counterfactuals_push_each_class_the_other_way(tiny):
    choice = af.ImageChoice([0, 1, 2], [0, 1, 0])
    smin, smax = tiny.targets
    edit = tiny.attributes["attfind"].coords[0]
    cf = af.counterfactuals(tiny, edit, choice, smin, smax)
    assert cf.original.shape == cf.edited.shape == (3, R, R, 3) and cf.original.dtype == np.uint8
    assert cf.edits == [(1 - edit[0], edit[1]), edit, (1 - edit[0], edit[1])]
    assert not np.array_equal(cf.original, cf.edited)
    assert np.all((0 <= cf.p_edited) & (cf.p_edited <= 1))


def test_panel_and_figures_have_the_expected_size(tiny, tmp_path):
    fig = af.attribute_panel(tiny, "attfind", 0, n_images=4, class_names=NAMES)
    fig.savefig(tmp_path / "panel.png", dpi=af.DPI)
    w, h = af.panel_size(4)
    size = Image.open(tmp_path / "panel.png").size
    assert abs(size[0] - w * af.DPI) <= 1 and abs(size[1] - h * af.DPI) <= 1

    af.plot_attributes(tiny, "wu", tmp_path / "wu.png", top=3, n_images=4, class_names=NAMES)
    size = Image.open(tmp_path / "wu.png").size  # 3 panels: 2 columns x 2 rows
    assert abs(size[0] - 2 * w * af.DPI) <= 1 and abs(size[1] - (2 * h + 0.3) * af.DPI) <= 1

    af.plot_effects({"tiny/stylex": tiny, "again": tiny}, tmp_path / "effects.png", top=4)
    assert (tmp_path / "effects.png").stat().st_size > 0
    assert af.attribute_label(tiny.attributes["attfind"], 0, tiny.model.generator.style_dims).startswith(
        "AttFind #1: layer 0, channel ")


def test_gifs_frames_and_width(tiny, tmp_path):
    steps, n = 4, 3
    paths = af.attribute_gifs(tiny, "attfind", tmp_path, top=2, n_images=n, steps=steps, scale=2)
    assert [p.name for p in paths] == ["tiny_stylex_attfind_attr1.gif", "tiny_stylex_attfind_attr2.gif"]
    gif = Image.open(paths[0])
    pad = 2  # save_gif's default
    assert gif.size == ((n * (R + pad) + pad) * 2, (R + 2 * pad) * 2)
    assert gif.n_frames == 2 * steps - 2
    assert paths[0].stat().st_size < 100_000


def test_explorer_headless_update_and_identity(tiny):
    app = explorer(tiny, top=3, class_names=NAMES)
    assert app.upload is not None and len(app.sliders) == 3 and app.image.value
    before = app.image.value
    app.sliders[0].value = 1.0  # the observer redraws
    assert app.image.value != before
    assert "p(old)" in app.label.value

    app.set_values([0.0, 0.0, 0.0])
    assert app.image.value == before
    out = app.render()
    ref = edit_render(tiny.model, app.current, [], 0.0, app.style_min, app.style_max)
    assert torch.equal(out["edited"], ref) and torch.equal(out["original"], ref)

    # a negative value uses the opposite target of a positive one
    pos = render_signed(tiny.model, app.current, app.coords, [1.0, 0, 0], app.style_min, app.style_max)
    neg = render_signed(tiny.model, app.current, app.coords, [-1.0, 0, 0], app.style_min, app.style_max)
    assert not torch.equal(pos, neg)

    app.picker.value = 3
    assert app.current_name == "held-out #3" and torch.equal(app.current.w, tiny.eval_set.w[3:4])


def test_explorer_upload_resizes_and_encodes(tiny):
    app = Explorer(tiny, top=2, class_names=NAMES, max_images=4)
    app.load_image(np.random.default_rng(0).integers(0, 256, (50, 40, 3), dtype=np.uint8))
    assert app.current.source == "uploaded" and app.current.images.shape == (1, 3, R, R)
    assert app.current.w.shape == tiny.eval_set.w[:1].shape
    assert torch.equal(app.current.noise[0], fixed_noise(tiny.model, 1, app.noise_seed)[0])

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(buf, format="PNG")
    value = ({"name": "grey.png", "type": "image/png", "size": buf.tell(), "content": memoryview(buf.getvalue())},)
    assert _upload_content(value)[0] == "grey.png"
    app._on_upload({"new": value})
    assert app.current_name == "grey.png" and "grey.png" in app.label.value


def test_explorer_static_figure(tiny, tmp_path):
    app = explorer(tiny, top=2, class_names=NAMES, max_images=4)
    app.static_figure(n_images=2, path=tmp_path / "static.png")
    assert Image.open(tmp_path / "static.png").size[0] > 0
    app.show()  # outside IPython: nothing is displayed, nothing fails


def test_explorer_without_encoder_has_no_upload(tiny):
    cfg = get_profile("quick").stylex
    model = StylExArch.of("stylegan2", R, cfg).build().eval()
    sampled = latents(model, tiny.classifier, n=4, seed=0)
    exp = Explanation(model, tiny.classifier, sampled, sampled, tiny.attributes, {"task": "tiny", "mode": "stylegan2"})
    app = explorer(exp, top=2, class_names=NAMES)
    assert app.upload is None and app.current.images is None
    with pytest.raises(ValueError, match="no encoder"):
        app.load_image(np.zeros((8, 8, 3), np.uint8))


def test_one_thread_restores_the_setting():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inside = af.one_thread(torch.get_num_threads)()
        assert inside == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_attribute_findings_say_what_a_single_attribute_does(tiny):
    """The closing words give the single top attributes' flip share and edit size (what the figures show),
    and the purity of real factor changes beside an edit's."""
    flip = {"mean": 0.5, "std": 0.1}
    single = [{"flip_C": 0.05, "pixel_max_255": 21.3}, {"flip_C": 0.0125, "pixel_max_255": 14.7}]
    results = {"task": "tiny", "mode": "stylex", "methods": {
        "attfind": {"flip_rate": flip, "observer": {"single": single}},
        "wu": {"flip_rate": flip}, "random": {"flip_rate": flip}}}
    exp = Explanation(tiny.model, tiny.classifier, tiny.attfind_set, tiny.eval_set, tiny.attributes, results,
                      tiny.targets)
    text = af.attribute_findings({("tiny", "stylex"): exp}, {}, get_profile("quick"), top=2)
    assert "flips the classifier on at most 5% of held-out images" in text and "15-21 /255" in text
    rows = [{"factor": "a", "step": 0.25, "purity": 0.45}, {"factor": "b", "step": 0.25, "purity": 0.68},
            {"factor": "a", "step": 1.0, "purity": 0.81}]
    assert af._reference_purity(rows) == (" The same probe reads real one-factor changes of the renderer at purity "
                                          "0.45-0.68 for a change of 0.25 of a factor's range and 0.81-0.81 for a "
                                          "change of 1 of a factor's range.")


def test_probe_reading_names_the_used_factors_it_cannot_read():
    from repro.attribute_figures import _probe_reading

    def part(**r2):
        return {f: {"r2": v, "mae": 0.1} for f, v in r2.items()}

    validation = {"originals": part(wrinkles=0.9, bg_hue=1.0, glasses=0.95),
                  "reconstructions": part(wrinkles=0.2, bg_hue=0.97, glasses=0.6)}
    text = _probe_reading(validation, ["wrinkles", "glasses"])
    assert "mean R² 0.59 (0.95 on the originals)" in text
    assert "only for bg_hue, glasses, not for the used wrinkles" in text
    assert text.endswith("weak.")
    assert _probe_reading(validation, ["glasses"]).endswith("only for bg_hue, glasses.")
    # a probe refitted to the reconstructions tells a lost factor from an unread one
    refitted = {**validation, "refit": part(wrinkles=0.1, bg_hue=0.99, glasses=0.8),
                "refit_originals": part(wrinkles=0.9, bg_hue=1.0, glasses=0.98)}
    text = _probe_reading(refitted, ["wrinkles", "glasses"])
    assert "refitted to this model's reconstructions reads them at 0.63 (0.96, the same recipe" in text
    assert "wrinkles, used by the classifier, stays below R² 0.5 even for it" in text and "glasses, used" not in text
    assert text.endswith("too little of it for an edit of this generator to show it cleanly.")
    both = {**refitted, "refit": part(wrinkles=0.1, bg_hue=0.99, glasses=0.2)}
    assert _probe_reading(both, ["wrinkles", "glasses"]).endswith(
        "wrinkles, glasses, used by the classifier, stay below R² 0.5 even for it: the reconstructions keep too "
        "little of them for an edit of this generator to show them cleanly.")
    assert _probe_reading(refitted, ["glasses"]).endswith("it recovers every used factor, so they are kept in a "
                                                          "form the renders' probe was never shown.")
