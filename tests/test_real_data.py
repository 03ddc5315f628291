"""Real-data loaders on tiny fixture folders in each real layout: labels, splits, decoding, the cache,
and a clear DataError (naming the path or line) for every kind of bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repro.data import real
from repro.data.real import DataError, ImageFileDataset, TensorImageSet, load_real, preprocess_to_tensor

R = 8  # output resolution for all tests


def write_image(path: Path, color=(200, 40, 40), size=(12, 12), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    image = image.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else image.convert(mode)
    image.save(path)
    return path


def make_afhq(root: Path) -> Path:
    counts = {("train", "cat"): 3, ("train", "dog"): 2, ("train", "wild"): 2,
              ("val", "cat"): 2, ("val", "dog"): 2, ("val", "wild"): 1}
    for (split, name), n in counts.items():
        for i in range(n):
            write_image(root / "afhq" / split / name / f"{name}_{i}.png", size=(16, 12))
    return root


CELEBA_NAMES = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Young"]
CELEBA_ROWS = {  # name: (attribute values, partition)
    "000001.jpg": ((1, -1, 1), 0), "000002.jpg": ((-1, 1, -1), 0), "000003.jpg": ((1, 1, -1), 0),
    "000004.jpg": ((-1, -1, 1), 0), "000005.jpg": ((1, -1, 1), 1), "000006.jpg": ((-1, -1, -1), 1),
    "000007.jpg": ((1, 1, 1), 2), "000008.jpg": ((-1, 1, -1), 2),
}


def make_celeba(base: Path, names=CELEBA_NAMES, rows=CELEBA_ROWS) -> Path:
    for name in rows:
        write_image(base / "img_align_celeba" / name, size=(18, 22))
    lines = [str(len(rows)), " ".join(names) + " "]
    lines += [f"{name}  " + " ".join(f"{v:2d}" for v in values) for name, (values, _) in rows.items()]
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, (_, p) in rows.items()))
    return base


def make_folder(root: Path, classes=("b_class", "a_class"), n=10, splits: bool = False) -> Path:
    for name in classes:
        for split in (("train", "val", "test") if splits else ("",)):
            for i in range(n):
                write_image(root / split / name / f"{name}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def afhq_root(tmp_path_factory) -> Path:
    return make_afhq(tmp_path_factory.mktemp("afhq_data"))


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory) -> Path:
    return make_celeba(tmp_path_factory.mktemp("celeba_data"))


# -- AFHQ --------------------------------------------------------------------------------------

def test_afhq_labels_splits_and_items(afhq_root):
    train = load_real("afhq", afhq_root, "train", R)
    assert isinstance(train, ImageFileDataset) and len(train) == 5  # wild ignored
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    assert all(p.parent.name in ("cat", "dog") for p in train.files)
    assert train.class_names == ("cat", "dog")
    val, test = load_real("afhq", afhq_root, "val", R), load_real("afhq", afhq_root, "test", R)
    assert val.files == test.files and val.labels.tolist() == [0, 0, 1, 1]  # AFHQ's test is its val
    image, label = train[3]
    assert image.shape == (3, R, R) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1 and label.dtype == torch.int64 and label.item() == 1


def test_afhq_root_may_be_the_afhq_folder_itself(afhq_root):
    assert load_real("afhq", afhq_root / "afhq", "train", R).files == load_real("afhq", afhq_root, "train", R).files


def test_afhq_missing_root(tmp_path):
    with pytest.raises(DataError, match="not found") as err:
        load_real("afhq", tmp_path / "nowhere", "train", R)
    assert str(tmp_path / "nowhere") in str(err.value)


def test_afhq_wrong_layout_lists_what_was_found(tmp_path):
    write_image(tmp_path / "afhq" / "train" / "cats" / "a.png")
    (tmp_path / "afhq" / "train" / "dog").mkdir()
    with pytest.raises(DataError) as err:
        load_real("afhq", tmp_path, "train", R)
    message = str(err.value)
    assert str(tmp_path / "afhq" / "train" / "cat") in message and "cats/" in message and "{cat,dog}" in message


def test_afhq_without_split_folder(tmp_path):
    write_image(tmp_path / "pictures" / "a.png")
    with pytest.raises(DataError, match="pictures/") as err:
        load_real("afhq", tmp_path, "train", R)
    assert str(tmp_path / "train") in str(err.value)


def test_afhq_empty_class_folder(tmp_path):
    write_image(tmp_path / "afhq" / "val" / "cat" / "a.png")
    (tmp_path / "afhq" / "val" / "dog").mkdir()
    (tmp_path / "afhq" / "val" / "dog" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images") as err:
        load_real("afhq", tmp_path, "test", R)
    assert str(tmp_path / "afhq" / "val" / "dog") in str(err.value)


# -- CelebA ------------------------------------------------------------------------------------

def test_celeba_labels_follow_young_and_the_partition(celeba_root):
    train = load_real("celeba", celeba_root, "train", R)
    assert [p.name for p in train.files] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert train.labels.tolist() == [0, 1, 1, 0]  # old = 1 where Young == -1
    assert load_real("celeba", celeba_root, "val", R).labels.tolist() == [0, 1]
    assert load_real("celeba", celeba_root, "test", R).labels.tolist() == [0, 1]
    image, _ = train[0]
    assert image.shape == (3, R, R) and -1 <= image.min() <= image.max() <= 1


def test_celeba_root_may_hold_a_celeba_folder(tmp_path):
    make_celeba(tmp_path / "celeba")
    assert len(load_real("celeba", tmp_path, "train", R)) == 4


@pytest.mark.parametrize("missing", ["list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba"])
def test_celeba_missing_files(tmp_path, missing):
    make_celeba(tmp_path)
    target = tmp_path / missing
    if target.is_dir():
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DataError, match="not found") as err:
        load_real("celeba", tmp_path, "train", R)
    assert str(target) in str(err.value)


@pytest.mark.parametrize("line_no, edit, expected", [
    (4, lambda line: line + " 1", "line 4: expected a file name and 3 values"),
    (6, lambda line: line.replace(" 1", " 0", 1), "line 6: attribute values must be 1 or -1"),
    (2, lambda line: line.replace("Young", "Old"), "line 2: no 'Young' column"),
    (1, lambda line: "many", "line 1: expected the number of images"),
    (1, lambda line: "9", "line 1 says 9 images but 8"),
])
def test_celeba_malformed_attribute_file(tmp_path, line_no, edit, expected):
    make_celeba(tmp_path)
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[line_no - 1] = edit(lines[line_no - 1])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=expected) as err:
        load_real("celeba", tmp_path, "train", R)
    assert str(path) in str(err.value)


def test_celeba_binary_attribute_file(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "list_attr_celeba.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="cannot read text file") as err:
        load_real("celeba", tmp_path, "train", R)
    assert str(tmp_path / "list_attr_celeba.txt") in str(err.value)


def test_celeba_malformed_partition_names_the_line(tmp_path):
    make_celeba(tmp_path)
    path = tmp_path / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000003.jpg 0", "000003.jpg 7"))
    with pytest.raises(DataError, match="line 3: expected 'file.jpg 0|1|2'") as err:
        load_real("celeba", tmp_path, "train", R)
    assert str(path) in str(err.value)


def test_celeba_partition_names_missing_image(tmp_path):
    make_celeba(tmp_path)
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="missing from") as err:
        load_real("celeba", tmp_path, "train", R)
    assert "000002.jpg" in str(err.value) and str(tmp_path / "img_align_celeba") in str(err.value)
    assert len(load_real("celeba", tmp_path, "val", R)) == 2  # other splits are unaffected


def test_celeba_partition_and_attributes_disagree(tmp_path):
    make_celeba(tmp_path)
    path = tmp_path / "list_eval_partition.txt"
    path.write_text(path.read_text() + "000099.jpg 0\n")
    with pytest.raises(DataError, match="disagree") as err:
        load_real("celeba", tmp_path, "train", R)
    assert "000099.jpg" in str(err.value) and str(path) in str(err.value)


# -- FFHQ --------------------------------------------------------------------------------------

def test_ffhq_nested_unlabelled_and_split_by_sorted_order(tmp_path):
    for i in range(14):
        write_image(tmp_path / f"{i // 10 * 1000:05d}" / f"{i:05d}.png")
    train = load_real("ffhq", tmp_path, "train", R)
    val, test = load_real("ffhq", tmp_path, "val", R), load_real("ffhq", tmp_path, "test", R)
    assert len(train) == 12 and len(val) == 2 and val.files == test.files  # 6:1 below train_count
    assert [p.stem for p in train.files + val.files] == [f"{i:05d}" for i in range(14)]
    assert train.labels.tolist() == [-1] * 12 and train[0][1].item() == -1 and train.class_names is None
    assert len(real.load_ffhq(tmp_path, "train", R, train_count=10)) == 10
    assert len(real.load_ffhq(tmp_path, "val", R, train_count=10)) == 4


def test_ffhq_with_no_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="holds 0 image") as err:
        load_real("ffhq", tmp_path, "train", R)
    assert str(tmp_path) in str(err.value)


# -- generic two-class folder ------------------------------------------------------------------

def test_folder_with_split_folders(tmp_path):
    make_folder(tmp_path, n=3, splits=True)
    data = load_real("folder", tmp_path, "val", R)
    assert data.class_names == ("a_class", "b_class") and data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(p.parent.parent.name == "val" for p in data.files)


def test_folder_without_split_folders_is_split_80_10_10_deterministically(tmp_path):
    make_folder(tmp_path, n=10)
    parts = {s: load_real("folder", tmp_path, s, R) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [16, 2, 2]
    files = [f for s in parts for f in parts[s].files]
    assert len(set(files)) == 20  # disjoint and complete
    assert parts["test"].labels.tolist() == [0, 1]
    assert load_real("folder", tmp_path, "train", R).files == parts["train"].files


def test_folder_needs_at_least_two_classes(tmp_path):
    make_folder(tmp_path, classes=("only",), n=10)
    with pytest.raises(DataError, match="at least two class folders") as err:
        load_real("folder", tmp_path, "train", R)
    assert str(tmp_path) in str(err.value)


def test_folder_of_three_classes_labels_them_in_name_order(tmp_path):
    make_folder(tmp_path, classes=("c", "a", "b"), n=10)
    train = load_real("folder", tmp_path, "train", R)
    assert train.class_names == ("a", "b", "c")
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]
    assert real.folder_classes(tmp_path) == ["a", "b", "c"]
    assert all(f.parent.name == train.class_names[y] for f, y in zip(train.files, train.labels.tolist()))


def test_folder_split_seed_moves_the_split_and_seed_0_keeps_the_old_one(tmp_path):
    make_folder(tmp_path, n=20)
    unseeded = load_real("folder", tmp_path, "test", R).files
    assert load_real("folder", tmp_path, "test", R, seed=0).files == unseeded
    seeded = [load_real("folder", tmp_path, s, R, seed=7).files for s in ("train", "val", "test")]
    assert seeded[2] != unseeded and len(set(sum(seeded, []))) == 40  # another split, still disjoint and complete
    assert load_real("folder", tmp_path, "test", R, seed=7).files == seeded[2]  # and reproducible


def test_folder_split_folders_must_agree_and_exist(tmp_path):
    make_folder(tmp_path, n=2, splits=True)
    write_image(tmp_path / "val" / "c_class" / "x.png")
    with pytest.raises(DataError, match="disagree on the classes"):
        load_real("folder", tmp_path, "train", R)
    other = make_folder(tmp_path / "other", n=2)
    write_image(other / "train" / "a" / "x.png")
    with pytest.raises(DataError, match="no split folder") as err:
        load_real("folder", other, "test", R)
    assert str(other / "test") in str(err.value)


def test_folder_too_small_for_the_automatic_split(tmp_path):
    make_folder(tmp_path, n=3)
    with pytest.raises(DataError, match="leaves 'test' empty") as err:
        load_real("folder", tmp_path, "test", R)
    assert str(tmp_path / "a_class") in str(err.value)


# -- decoding ----------------------------------------------------------------------------------

def test_non_square_images_are_centre_cropped_then_resized(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = (255, 0, 0)
    image[:, 10:30] = (0, 255, 0)
    image[:, 30:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "wide.png")
    x, _ = ImageFileDataset([tmp_path / "wide.png"], None, R)[0]
    assert x.shape == (3, R, R)
    assert torch.allclose(x, torch.tensor([-1.0, 1.0, -1.0]).view(3, 1, 1).expand(3, R, R), atol=0.02)


def test_colour_modes_become_rgb(tmp_path):
    files = [write_image(tmp_path / f"{mode}.png", (90, 90, 90), mode=mode) for mode in ("L", "LA", "RGBA", "P", "1")]
    palette = Image.new("P", (12, 12), 0)
    palette.putpalette([90, 90, 90] * 256)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "P_transparent.png", transparency=0)
    files.append(tmp_path / "P_transparent.png")
    files.append(write_image(tmp_path / "cmyk.jpg", (90, 90, 90), mode="CMYK"))
    Image.fromarray(np.full((12, 12), 90 * 257, np.uint16)).save(tmp_path / "grey16.png")
    files.append(tmp_path / "grey16.png")
    data = ImageFileDataset(files, None, R)
    for index, path in enumerate(files):
        x, _ = data[index]
        assert x.shape == (3, R, R), path
        if path.stem not in ("1",):  # 1-bit dithers grey to black and white
            assert torch.allclose(x, torch.full_like(x, 90 / 127.5 - 1), atol=0.05), path


def test_non_image_files_are_skipped_counted_and_warned_once(tmp_path, caplog):
    make_folder(tmp_path, n=10)
    for name in ("notes.txt", ".DS_Store", "Thumbs.db", "._a_class_00.png"):
        (tmp_path / "a_class" / name).write_bytes(b"junk")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with caplog.at_level(logging.WARNING, logger="repro.data.real"):
        data = load_real("folder", tmp_path, "train", R)
    assert data.skipped_files == 4 and len(data) == 16
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 4 non-image file(s)" in warnings[0]


@pytest.mark.parametrize("content", [b"not an image at all", "truncated"])
def test_undecodable_image_names_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    if content == "truncated":
        write_image(path, size=(64, 64))
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="cannot decode image") as err:
        ImageFileDataset([path], [0], R)[0]
    assert str(path) in str(err.value)


# -- preprocessing cache -----------------------------------------------------------------------

def test_preprocess_cache_round_trip(afhq_root, tmp_path, monkeypatch):
    lazy = load_real("afhq", afhq_root, "train", R)
    cache = tmp_path / "cache" / "afhq.pt"
    first = preprocess_to_tensor(lazy, cache, progress=False)
    assert isinstance(first, TensorImageSet) and first.images.dtype == torch.uint8
    assert first.images.shape == (5, 3, R, R) and torch.equal(first.labels, lazy.labels)
    for i in range(len(lazy)):
        assert torch.equal(first[i][0], lazy[i][0]) and first[i][1] == lazy[i][1]
    assert [p.name for p in cache.parent.iterdir()] == ["afhq.pt"]  # no temporary file left

    def no_decoding(*args):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(real, "load_image", no_decoding)
    second = preprocess_to_tensor(lazy, cache, progress=False)
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert second.class_names == ("cat", "dog")


def test_preprocess_rebuilds_a_stale_or_corrupt_cache(afhq_root, tmp_path):
    cache = tmp_path / "c.pt"
    preprocess_to_tensor(load_real("afhq", afhq_root, "val", R), cache, progress=False)
    rebuilt = preprocess_to_tensor(load_real("afhq", afhq_root, "train", 4), cache, progress=False)
    assert rebuilt.images.shape == (5, 3, 4, 4)
    cache.write_bytes(b"corrupt")
    again = preprocess_to_tensor(load_real("afhq", afhq_root, "train", 4), cache, progress=False)
    assert torch.equal(again.images, rebuilt.images)


def test_preprocess_bad_image_raises_or_is_skipped(tmp_path):
    files = [write_image(tmp_path / f"{i}.png") for i in range(3)]
    (tmp_path / "1.png").write_bytes(b"broken")
    data = ImageFileDataset(files, [0, 1, 0], R, skipped_files=2)
    with pytest.raises(DataError, match="cannot decode") as err:
        preprocess_to_tensor(data, tmp_path / "cache.pt", progress=False)
    assert str(tmp_path / "1.png") in str(err.value)
    kept = preprocess_to_tensor(data, tmp_path / "cache.pt", progress=False, skip_bad=True)
    assert len(kept) == 2 and kept.labels.tolist() == [0, 0] and kept.skipped_files == 3
    with pytest.raises(DataError, match="cannot decode"):  # a cache with left-out files needs skip_bad
        preprocess_to_tensor(data, tmp_path / "cache.pt", progress=False)


def test_load_real_with_cache_dir(afhq_root, tmp_path):
    data = load_real("afhq", afhq_root, "val", R, cache_dir=tmp_path)
    assert isinstance(data, TensorImageSet) and len(data) == 4 and data.resolution == R
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert len(list(tmp_path.glob("afhq-val-8px-*.pt"))) == 1
    assert torch.equal(load_real("afhq", afhq_root, "val", R, cache_dir=tmp_path).images, data.images)


def test_load_real_rejects_bad_arguments(afhq_root):
    with pytest.raises(ValueError, match="unknown real dataset 'imagenet'"):
        load_real("imagenet", afhq_root, "train", R)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_real("afhq", afhq_root, "dev", R)
    with pytest.raises(ValueError, match="skip_bad=True needs a cache_dir"):
        load_real("afhq", afhq_root, "train", R, skip_bad=True)
