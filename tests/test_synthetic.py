"""The synthetic face data set: determinism, factors, labels, spurious planting, interventions, caching."""

from __future__ import annotations

import numpy as np
import pytest

from repro.data import synthetic as S

N_STATS = 2000  # rows for the statistical checks (factors only: no rendering)


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return S.sample_factors(12, seed=7, split="train")


@pytest.fixture(scope="module")
def base_images(base) -> np.ndarray:
    return S.render(base, 32)


def _column(name: str) -> int:
    return S.FACTOR_NAMES.index(name)


# ---------------------------------------------------------------------------------------------
# The factor table and the tasks


def test_factor_table_has_the_required_roles():
    semantic = [f for f in S.FACTORS if f.kind != "id"]
    assert len(semantic) >= 8
    assert S.FACTOR_NAMES == [f.name for f in S.FACTORS]
    assert len(set(S.FACTOR_NAMES)) == len(S.FACTOR_NAMES)
    assert all(f.kind in ("continuous", "binary", "id") and f.low < f.high and f.role for f in S.FACTORS)
    nuisance = [f.name for f in semantic if f.role.startswith("nuisance")]
    assert len(nuisance) >= 3
    for name, spec in S.TASKS.items():
        assert spec.name == name and len(spec.causal) >= 2 and len(spec.class_names) == 2
        for factor in spec.causal:
            assert S.FACTORS[_column(factor)].role.startswith(f"causal ({name})")
        spurious = S.FACTORS[_column(spec.spurious)]
        assert spurious.kind == "binary" and spurious.role.startswith(f"spurious ({name})")
        assert not set(spec.causal) & set(nuisance) and spec.spurious not in spec.causal
    assert S.TASKS["synth-age"].class_names == ("young", "old")
    assert S.TASKS["synth-species"].class_names == ("cat", "dog")


@pytest.mark.parametrize("split", S.SPLITS)
def test_factors_stay_in_their_declared_ranges(split):
    factors = S.sample_factors(N_STATS, seed=1, split=split)
    assert factors.dtype == np.float32 and factors.shape == (N_STATS, len(S.FACTORS))
    for i, f in enumerate(S.FACTORS):
        col = factors[:, i]
        assert col.min() >= f.low and col.max() <= f.high, f.name
        if f.kind == "binary":
            assert set(np.unique(col)) == {0.0, 1.0}, f.name
        elif f.kind == "id":
            assert np.all(col == np.floor(col)), f.name
        else:  # uniform on [low, high]: spread over the whole range
            assert np.quantile(col, 0.05) < f.low + 0.1 * (f.high - f.low) < f.high - 0.1 * (f.high - f.low) \
                < np.quantile(col, 0.95), f.name


def test_factors_are_independent():
    factors = S.sample_factors(N_STATS, seed=2)
    semantic = [i for i, f in enumerate(S.FACTORS) if f.kind != "id"]
    corr = np.corrcoef(factors[:, semantic].T)
    off_diagonal = corr[~np.eye(len(semantic), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.1


# ---------------------------------------------------------------------------------------------
# Determinism


def test_a_row_depends_only_on_seed_split_and_index():
    whole = S.sample_factors(40, seed=3)
    np.testing.assert_array_equal(S.sample_factors(40, seed=3), whole)
    np.testing.assert_array_equal(S.sample_factors(10, seed=3), whole[:10])
    np.testing.assert_array_equal(S.sample_factors(15, seed=3, start=25), whole[25:])
    assert not np.array_equal(S.sample_factors(40, seed=4), whole)


def test_splits_never_share_images():
    rows = {split: S.sample_factors(200, seed=0, split=split) for split in S.SPLITS}
    for a in S.SPLITS:
        for b in S.SPLITS:
            if a < b:
                shared = (rows[a][:, None, :] == rows[b][None, :, :]).all(-1)
                assert not shared.any(), (a, b)


def test_render_is_deterministic_across_calls_and_chunk_sizes(base, base_images):
    assert base_images.dtype == np.uint8 and base_images.shape == (len(base), 32, 32, 3)
    np.testing.assert_array_equal(S.render(base, 32), base_images)
    np.testing.assert_array_equal(S.render(base, 32, chunk=5), base_images)
    np.testing.assert_array_equal(S.render(base[3:4], 32, chunk=1)[0], base_images[3])
    assert len({img.tobytes() for img in base_images}) == len(base)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_supported_sizes(size, base):
    images = S.render(base[:2], size)
    assert images.shape == (2, size, size, 3) and images.dtype == np.uint8
    assert images.std() > 20  # a picture, not a flat colour


def test_sizes_agree_after_downsampling(base):
    small = S.render(base[:4], 32).astype(np.float32)
    large = S.render(base[:4], 64).astype(np.float32)
    pooled = large.reshape(4, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(pooled - small).mean() < 4.0


# ---------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize("task", list(S.TASKS))
def test_labels_are_balanced(task):
    labels = S.label_of(task, S.sample_factors(N_STATS, seed=5))
    assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1}
    assert 0.35 <= labels.mean() <= 0.65


def test_label_functions_are_the_documented_ones():
    f = S.sample_factors(N_STATS, seed=6)
    col = {name: f[:, _column(name)].astype(np.float64) for name in S.FACTOR_NAMES}
    old = 0.6 * col["wrinkles"] + 0.4 * col["hair_grey"] > 0.5
    dog = 0.5 * col["snout_length"] + 0.5 * (1 - col["ear_pointiness"]) > 0.5
    np.testing.assert_array_equal(S.label_of("synth-age", f), old.astype(np.int64))
    np.testing.assert_array_equal(S.label_of("synth-species", f), dog.astype(np.int64))


def test_label_noise_flips_about_the_asked_fraction_deterministically():
    f = S.sample_factors(N_STATS, seed=8)
    clean = S.label_of("synth-age", f)
    noisy = S.label_of("synth-age", f, label_noise=0.2, seed=8)
    assert 0.16 <= (noisy != clean).mean() <= 0.24
    np.testing.assert_array_equal(S.label_of("synth-age", f, label_noise=0.2, seed=8), noisy)
    np.testing.assert_array_equal(S.label_of("synth-age", f[:100], label_noise=0.2, seed=8), noisy[:100])
    assert not np.array_equal(S.label_of("synth-age", f, label_noise=0.2, seed=9), noisy)


# ---------------------------------------------------------------------------------------------
# Spurious planting


@pytest.mark.parametrize("task", list(S.TASKS))
@pytest.mark.parametrize("p", [0.9, 0.1])
def test_spurious_factor_is_planted_in_train_only(task, p):
    train = S.sample_factors(N_STATS, seed=9, split="train", task=task, spurious_p=p)
    test = S.sample_factors(N_STATS, seed=9, split="test", task=task, spurious_p=p)
    agree_train = S.spurious_agreement(task, train, S.label_of(task, train))
    agree_test = S.spurious_agreement(task, test, S.label_of(task, test))
    assert abs(agree_train - p) <= 0.05
    assert abs(agree_test - 0.5) <= 0.05
    # Planting touches only the spurious column.
    plain = S.sample_factors(N_STATS, seed=9, split="train")
    others = [i for i, name in enumerate(S.FACTOR_NAMES) if name != S.TASKS[task].spurious]
    np.testing.assert_array_equal(train[:, others], plain[:, others])


def test_spurious_p_one_half_plants_nothing():
    plain = S.sample_factors(300, seed=10)
    np.testing.assert_array_equal(S.sample_factors(300, seed=10, task="synth-age", spurious_p=0.5), plain)
    agree = S.spurious_agreement("synth-age", plain, S.label_of("synth-age", plain))
    assert 0.4 <= agree <= 0.6


# ---------------------------------------------------------------------------------------------
# Interventions


def test_intervene_changes_one_column_of_a_copy(base):
    before = base.copy()
    out = S.intervene(base, "wrinkles", 0.25)
    np.testing.assert_array_equal(base, before)
    col = _column("wrinkles")
    assert np.all(out[:, col] == 0.25)
    np.testing.assert_array_equal(np.delete(out, col, axis=1), np.delete(base, col, axis=1))
    per_row = S.intervene(base, "pos_x", np.linspace(-1, 1, len(base)))
    np.testing.assert_allclose(per_row[:, _column("pos_x")], np.linspace(-1, 1, len(base)), atol=1e-6)


@pytest.mark.parametrize("factor", [f for f in S.FACTORS if f.kind != "id"], ids=lambda f: f.name)
def test_every_factor_is_visible_at_32px(factor, base):
    # low -> middle -> high (the hues are cyclic: their two ends are the same colour)
    values = [factor.low, (factor.low + factor.high) / 2, factor.high]
    low, mid, high = (S.render(S.intervene(base[:4], factor.name, v), 32).astype(np.float32) for v in values)
    change = np.maximum(np.abs(mid - low), np.abs(high - mid)).max(axis=-1)
    changed = (change > 24).reshape(4, -1).sum(axis=1)  # pixels that clearly changed, per face
    assert changed.min() >= 4, factor.name


def test_an_intervention_undone_gives_back_the_same_pixels(base, base_images):
    for name in ("wrinkles", "ear_pointiness", "glasses", "scale", "detail_seed"):
        there = S.intervene(base, name, S.FACTORS[_column(name)].high)
        back = S.intervene(there, name, base[:, _column(name)])
        np.testing.assert_array_equal(S.render(back, 32), base_images)


def test_detail_seed_changes_only_fine_detail(base):
    images = S.render(S.intervene(base[:4], "detail_seed", [1.0, 2.0, 3.0, 4.0]), 32).astype(np.float32)
    reference = S.render(base[:4], 32).astype(np.float32)
    assert np.abs(images - reference).mean() < 6.0


def test_nuisance_interventions_keep_labels_and_causal_ones_flip_them(base):
    for task, spec in S.TASKS.items():
        labels = S.label_of(task, base)
        for f in S.FACTORS:
            if f.role.startswith("nuisance") or f.kind == "id":
                np.testing.assert_array_equal(S.label_of(task, S.intervene(base, f.name, f.high)), labels)
        mid = base
        for name in spec.causal:
            mid = S.intervene(mid, name, 0.5)
        first = spec.causal[0]
        low = S.label_of(task, S.intervene(mid, first, 0.0))
        high = S.label_of(task, S.intervene(mid, first, 1.0))
        assert np.all(low != high), task


# ---------------------------------------------------------------------------------------------
# Splits and the cache


def test_make_split_matches_the_parts():
    split = S.make_split("synth-species", "val", 6, 32, seed=3, label_noise=0.1)
    factors = S.sample_factors(6, seed=3, split="val")
    np.testing.assert_array_equal(split.factors, factors)
    np.testing.assert_array_equal(split.labels, S.label_of("synth-species", factors, 0.1, seed=3))
    assert split.images.shape == (6, 3, 32, 32) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.images, S.render(factors, 32).transpose(0, 3, 1, 2))


def test_cache_round_trip(tmp_path, monkeypatch):
    kwargs = dict(task="synth-age", split="train", n=600, size=32, seed=1, spurious_p=0.9,
                  cache_dir=tmp_path / "cache")
    first = S.make_split(**kwargs)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("synth-") and files[0].suffix == ".npz"

    def not_again(*args, **kwargs):
        raise AssertionError("a cached split was sampled or rendered again")

    with monkeypatch.context() as m:  # the second call reads the file: it renders nothing
        for name in ("sample_factors", "label_of", "render", "_render_iter"):
            m.setattr(S, name, not_again)
        second = S.make_split(**kwargs)
    for name in ("images", "labels", "factors"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    S.make_split(**{**kwargs, "spurious_p": 0.8})
    assert len(list((tmp_path / "cache").iterdir())) == 2  # a different parameter, a different file


# ---------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize("call, message", [
    (lambda: S.make_split("synth-color", "train", 4, 32), "synth-color"),
    (lambda: S.label_of("age", S.sample_factors(2, 0)), "age"),
    (lambda: S.sample_factors(2, 0, split="training"), "training"),
    (lambda: S.render(S.sample_factors(2, 0), 48), "size"),
    (lambda: S.make_split("synth-age", "train", 4, 48), "size"),
    (lambda: S.make_split("synth-age", "train", 4, 32, spurious_p=1.5), "spurious_p"),
    (lambda: S.sample_factors(4, 0, task="synth-age", spurious_p=-0.1), "spurious_p"),
    (lambda: S.sample_factors(4, 0, spurious_p=0.9), "spurious_p"),
    (lambda: S.make_split("synth-age", "train", 4, 32, label_noise=2.0), "label_noise"),
    (lambda: S.intervene(S.sample_factors(2, 0), "whiskers", 1.0), "whiskers"),
    (lambda: S.render(np.zeros((2, 3), np.float32), 32), "factors"),
])
def test_bad_inputs_raise_value_errors_that_name_them(call, message):
    with pytest.raises(ValueError, match=message):
        call()
