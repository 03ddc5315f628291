"""Real-data loaders: AFHQ (cat vs dog), CelebA (old vs young), FFHQ (unlabelled) and any folder of K classes.

One call, :func:`load_real`, turns a data set on disk into a ``torch.utils.data.Dataset`` whose items
are ``(image float32 [3, R, R] in [-1, 1], label int64)``, the label being -1 where the data set has
none (FFHQ). Expected layouts (``ROOT`` is the ``root`` argument):

- ``afhq``: ``ROOT/afhq/{train,val}/{cat,dog}/*`` (or ``ROOT`` is the ``afhq`` folder itself);
  cat = 0, dog = 1, ``wild`` is ignored. AFHQ has no test split: ``test`` is ``val``.
- ``celeba``: ``ROOT/img_align_celeba/*.jpg``, ``ROOT/list_attr_celeba.txt`` and
  ``ROOT/list_eval_partition.txt`` (or the three under ``ROOT/celeba/``); the official partition
  (0/1/2 = train/val/test); old = 1 where ``Young`` is -1, young = 0.
- ``ffhq``: every image below ``ROOT`` (subfolders such as the thumbnails' ``00000/`` included),
  unlabelled. FFHQ has no official split: in sorted path order the first ``train_count`` (60,000)
  images are ``train`` and the rest are both ``val`` and ``test``; a folder with no more than
  ``train_count`` images is split 6:1 in the same order instead.
- ``folder``: a task of your own with K >= 2 classes, ``ROOT/{train,val,test}/<class>/*`` or
  ``ROOT/<class>/*``; the class folders, sorted by name, are labels 0..K-1. Without split folders
  each class is split 80/10/10 in the order of a hash of each file's name and the split seed
  (``DataConfig.seed``; seed 0 hashes the name alone), so the split is deterministic, recorded in
  the run's configuration, and does not move when files are added elsewhere.

Listing and label files are checked when a data set is built; images are decoded lazily, one per
item, or all at once by :func:`preprocess_to_tensor` (what :func:`load_real` does when given a
``cache_dir``). Every problem with the data raises :class:`DataError`, whose message names the
offending path (and line, for text files) and what was expected. Files that are not images (by
extension, and hidden files such as ``.DS_Store`` or ``._x.png``) are skipped, counted in
``skipped_files`` and reported in one logged warning. An image that cannot be decoded raises
:class:`DataError` when it is read, unless ``skip_bad=True`` is given to the preprocessing, which
then leaves it out and counts it instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from repro.config import SPLITS
from repro.utils import atomic_write, tqdm

log = logging.getLogger(__name__)

REAL_DATASETS = ("afhq", "celeba", "ffhq", "folder")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
AFHQ_CLASSES = ("cat", "dog")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_PARTITION_IDS = {"train": "0", "val": "1", "test": "2"}
CACHE_FORMAT = 1
MAX_BAD_SHARE = 0.05  # your own folder: undecodable images are left out up to this share of a split


class DataError(ValueError):
    """A data set on disk is missing, laid out wrongly, or holds a file that cannot be used."""


# -- datasets ----------------------------------------------------------------------------------

class ImageFileDataset(Dataset):
    """Images decoded from files on demand, resized to ``resolution`` and scaled to [-1, 1].

    Non-square images are centre-cropped to a square, then resized with Lanczos filtering; any
    colour mode (grey, palette, RGBA, CMYK, 16-bit) is converted to RGB (alpha is dropped).

    Parameters:
        files: the image files, in item order.
        labels: one class index per file, or ``None`` for an unlabelled set (labels become -1).
        resolution: side length R of the square output images.
        class_names: the name of each class index, when the set is labelled.
        skipped_files: how many non-image files were skipped while listing (for reporting only).
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int] | None,
        resolution: int,
        *,
        class_names: Sequence[str] | None = None,
        skipped_files: int = 0,
    ) -> None:
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        if labels is not None and len(labels) != len(files):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = [Path(f) for f in files]
        self.labels = torch.full((len(self.files),), -1, dtype=torch.int64) if labels is None \
            else torch.as_tensor(list(labels), dtype=torch.int64)
        self.resolution = resolution
        self.class_names = None if class_names is None else tuple(class_names)
        self.skipped_files = skipped_files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = torch.from_numpy(load_image(self.files[index], self.resolution))
        return _to_float(pixels.permute(2, 0, 1)), self.labels[index]

    def fingerprint(self) -> str:
        """A hash of the resolution, file paths and labels: what a preprocessing cache must match.

        File contents and times are not hashed (that would cost a read or stat per file); change
        the file list or delete the cache after editing images in place.
        """
        digest = hashlib.sha256(f"{self.resolution}\n".encode())
        for path, label in zip(self.files, self.labels.tolist()):
            digest.update(f"{path}\t{label}\n".encode())
        return digest.hexdigest()


class TensorImageSet(Dataset):
    """A whole split held in memory as uint8, giving the same items as :class:`ImageFileDataset`.

    Parameters:
        images: uint8 [N, 3, R, R].
        labels: int64 [N]; -1 where unlabelled.
        class_names: the name of each class index, when the set is labelled.
        skipped_files: non-image files skipped while listing plus undecodable images left out.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        class_names: Sequence[str] | None = None,
        skipped_files: int = 0,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, R, R], got {images.dtype} {list(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape [{images.shape[0]}], got {list(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.class_names = None if class_names is None else tuple(class_names)
        self.skipped_files = skipped_files

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_float(self.images[index]), self.labels[index]


def _to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1] (the same formula as ``repro.data.ImageSet.batch``)."""
    return pixels.float() / 127.5 - 1.0


# -- decoding ----------------------------------------------------------------------------------

def load_image(path: Path, resolution: int) -> np.ndarray:
    """Decode one image file to uint8 [R, R, 3]: RGB, centre-cropped to a square, Lanczos-resized.

    Raises :class:`DataError` naming the file when it cannot be decoded (unreadable, truncated,
    not an image).
    """
    try:
        with Image.open(path) as image:
            image.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale >= R
            image.load()
            image = _to_rgb(image)
        width, height = image.size
        side = min(width, height)
        if width != height:
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
        if side != resolution:
            image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
        return np.array(image, dtype=np.uint8)  # a writable copy, for torch.from_numpy
    except Exception as err:  # PIL raises many types for bad files; all mean "this file is unusable"
        raise DataError(f"cannot decode image {path}: {type(err).__name__}: {err}. Replace or delete the "
                        f"file, or preprocess with skip_bad=True to leave undecodable images out") from err


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; 16-bit grey is scaled to 8 bits rather than clipped."""
    if image.mode.startswith("I"):
        values = np.asarray(image, dtype=np.float64)
        if values.max() > 255:
            values = values * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


# -- listing -----------------------------------------------------------------------------------

def _describe(folder: Path, limit: int = 12) -> str:
    """What a folder holds, for error messages: ``a/, b/, c.txt`` (folders end with ``/``)."""
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
    except OSError as err:
        return f"(cannot list: {err})"
    if not names:
        return "nothing (the folder is empty)"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


ROOT_HINT = ("give the right folder: load_real's root (DataConfig.root) is that folder itself; the "
             "command line's --data-root is the folder holding afhq/, celeba/ and ffhq/ "
             "(README.md, 'Real data', says where to download them)")


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}; {ROOT_HINT}")
    if not path.is_dir():
        raise DataError(f"{what} {path} is a file, not a folder; {ROOT_HINT}")
    return path


ROOT_NAMES = {"afhq": "AFHQ root folder", "celeba": "CelebA root folder", "ffhq": "FFHQ root folder",
              "folder": "image folder root"}


def require_root(dataset: str, root: str | Path) -> Path:
    """``root`` as a Path if it is an existing folder, else a :class:`DataError` naming it and the fix."""
    if dataset not in ROOT_NAMES:
        raise ValueError(f"unknown real dataset {dataset!r}; choose one of: {', '.join(REAL_DATASETS)}")
    return _require_dir(Path(root), ROOT_NAMES[dataset])


def _subfolders(folder: Path) -> list[str]:
    """Sorted names of the visible subfolders of ``folder``."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> tuple[list[Path], int]:
    """All image files below ``folder`` (hidden folders excluded), sorted by relative path.

    Returns the files and the number of non-image files skipped. One ``scandir`` per folder and no
    per-file ``stat``, so listing 70k files is quick.
    """
    found: list[tuple[str, Path]] = []
    skipped = 0
    pending = [(folder, "")]
    while pending:
        current, prefix = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.is_dir():
                    if not entry.name.startswith("."):
                        pending.append((Path(entry.path), prefix + entry.name + "/"))
                elif _is_image_name(entry.name):
                    found.append((prefix + entry.name, Path(entry.path)))
                else:
                    skipped += 1
    found.sort(key=lambda item: item[0])
    return [path for _, path in found], skipped


def _class_images(folder: Path, expected: str) -> tuple[list[Path], int]:
    """The images of one class folder; an empty one is an error."""
    _require_dir(folder, "class folder")
    files, skipped = list_images(folder)
    if not files:
        raise DataError(f"class folder {folder} holds no images ({expected}); found: {_describe(folder)}")
    return files, skipped


def _read_lines(path: Path) -> list[str]:
    """The lines of a text file; a binary or unreadable file is a :class:`DataError`."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read text file {path}: {err}") from err


def _warn_skipped(skipped: int, root: Path) -> None:
    if skipped:
        log.warning("skipped %d non-image file(s) under %s", skipped, root)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


# -- AFHQ --------------------------------------------------------------------------------------

def load_afhq(root: str | Path, split: str, resolution: int) -> ImageFileDataset:
    """AFHQ cat (0) vs dog (1); ``root`` holds ``afhq/`` or is it. ``test`` is ``val`` (no test split)."""
    _check_split(split)
    root = require_root("afhq", root)
    base = root / "afhq" if (root / "afhq").is_dir() else root
    layout = "afhq/{train,val}/{cat,dog}/*.png"
    split_dir = base / ("train" if split == "train" else "val")
    if not split_dir.is_dir():
        raise DataError(f"no AFHQ split folder {split_dir}: expected the layout {layout} "
                        f"under {root}; found in {base}: {_describe(base)}")
    files: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(AFHQ_CLASSES):
        if not (split_dir / name).is_dir():
            raise DataError(f"no AFHQ class folder {split_dir / name}: expected {layout}; "
                            f"found in {split_dir}: {_describe(split_dir)}")
        class_files, class_skipped = _class_images(split_dir / name, f"expected {layout}")
        files += class_files
        labels += [label] * len(class_files)
        skipped += class_skipped
    _warn_skipped(skipped, split_dir)
    return ImageFileDataset(files, labels, resolution, class_names=AFHQ_CLASSES, skipped_files=skipped)


# -- CelebA ------------------------------------------------------------------------------------

def _celeba_base(root: Path) -> Path:
    """The folder holding the CelebA files: ``root`` itself or ``root/celeba``."""
    if not (root / CELEBA_IMAGES).exists() and (root / "celeba").is_dir():
        return root / "celeba"
    return root


def parse_celeba_attributes(path: Path, attribute: str = "Young") -> dict[str, int]:
    """``list_attr_celeba.txt`` -> {file name: value of ``attribute`` (1 or -1)}.

    Format: line 1 the image count, line 2 the attribute names, then ``name v1 ... vK`` with every
    value 1 or -1. Any departure raises :class:`DataError` naming the file and line.
    """
    if not path.is_file():
        raise DataError(f"CelebA attribute file not found: {path} (expected {CELEBA_ATTRIBUTES}, "
                        f"line 1 a count, line 2 the 40 attribute names, then 'file.jpg 1 -1 ...')")
    lines = _read_lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count on line 1 and attribute names on line 2, "
                        f"found {len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}, line 1: expected the number of images, found {lines[0].strip()!r}") from None
    names = lines[1].split()
    if attribute not in names:
        raise DataError(f"{path}, line 2: no {attribute!r} column among the attribute names {names}")
    column = names.index(attribute) + 1
    width = len(names) + 1
    allowed = {"1", "-1"}
    values: dict[str, int] = {}
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != width:
            raise DataError(f"{path}, line {number}: expected a file name and {len(names)} values, "
                            f"found {len(parts)} column(s)")
        if not allowed.issuperset(parts[1:]):
            bad = next(p for p in parts[1:] if p not in allowed)
            raise DataError(f"{path}, line {number}: attribute values must be 1 or -1, found {bad!r}")
        if parts[0] in values:
            raise DataError(f"{path}, line {number}: {parts[0]} is listed twice")
        values[parts[0]] = int(parts[column])
    if len(values) != count:
        raise DataError(f"{path}: line 1 says {count} images but {len(values)} are listed")
    return values


def parse_celeba_partition(path: Path) -> dict[str, str]:
    """``list_eval_partition.txt`` -> {file name: '0' | '1' | '2'} (train / val / test)."""
    if not path.is_file():
        raise DataError(f"CelebA partition file not found: {path} "
                        f"(expected {CELEBA_PARTITION} with lines 'file.jpg 0|1|2')")
    partition: dict[str, str] = {}
    allowed = set(CELEBA_PARTITION_IDS.values())
    for number, line in enumerate(_read_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in allowed:
            raise DataError(f"{path}, line {number}: expected 'file.jpg 0|1|2', found {line.strip()!r}")
        partition[parts[0]] = parts[1]
    return partition


def load_celeba(root: str | Path, split: str, resolution: int) -> ImageFileDataset:
    """CelebA old (1, ``Young`` = -1) vs young (0) on the official partition.

    File names come from the partition file, so nothing in the image folder is skipped; every
    name of the split must have attributes and an image file.
    """
    _check_split(split)
    root = require_root("celeba", root)
    base = _celeba_base(root)
    image_dir = base / CELEBA_IMAGES
    if not image_dir.is_dir():
        raise DataError(f"CelebA image folder not found: {image_dir} (expected {CELEBA_IMAGES}/*.jpg, "
                        f"{CELEBA_ATTRIBUTES} and {CELEBA_PARTITION} in {root} or {root / 'celeba'}); "
                        f"found in {base}: {_describe(base)}")
    young = parse_celeba_attributes(base / CELEBA_ATTRIBUTES)
    partition = parse_celeba_partition(base / CELEBA_PARTITION)
    unknown = [name for name in partition if name not in young]
    if unknown:
        raise DataError(f"{base / CELEBA_PARTITION} and {base / CELEBA_ATTRIBUTES} disagree: "
                        f"{len(unknown)} partition entries have no attributes, e.g. {unknown[:3]}")
    wanted = CELEBA_PARTITION_IDS[split]
    names = sorted(name for name, part in partition.items() if part == wanted)
    if not names:
        raise DataError(f"{base / CELEBA_PARTITION} lists no images for split {split!r} (id {wanted})")
    present = set(os.listdir(image_dir))
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(f"{len(missing)} image(s) of split {split!r} listed in {base / CELEBA_PARTITION} "
                        f"are missing from {image_dir}, e.g. {missing[:3]}")
    labels = [1 if young[name] == -1 else 0 for name in names]
    return ImageFileDataset([image_dir / name for name in names], labels, resolution,
                            class_names=("young", "old"))


# -- FFHQ --------------------------------------------------------------------------------------

def load_ffhq(root: str | Path, split: str, resolution: int, *, train_count: int = 60_000) -> ImageFileDataset:
    """FFHQ, unlabelled (labels -1): the first ``train_count`` images in sorted path order are
    ``train``, the rest are ``val`` and also ``test``. With no more than ``train_count`` images,
    the first 6/7 are ``train`` instead.
    """
    _check_split(split)
    if train_count <= 0:
        raise ValueError(f"train_count must be positive, got {train_count}")
    root = require_root("ffhq", root)
    files, skipped = list_images(root)
    if len(files) < 2:
        raise DataError(f"FFHQ folder {root} holds {len(files)} image(s); expected a folder of images "
                        f"(subfolders allowed) with at least 2; found: {_describe(root)}")
    if len(files) > train_count:
        boundary = train_count
    else:
        boundary = min(len(files) - 1, max(1, round(len(files) * 6 / 7)))
    files = files[:boundary] if split == "train" else files[boundary:]
    _warn_skipped(skipped, root)
    return ImageFileDataset(files, None, resolution, skipped_files=skipped)


# -- a folder of K >= 2 classes ---------------------------------------------------------------

FOLDER_LAYOUT = "ROOT/{train,val,test}/<class>/* or ROOT/<class>/*, with 2 or more class folders"
FOLDER_FRACTIONS = (0.8, 0.1, 0.1)


def _classes(folder: Path) -> list[str]:
    classes = _subfolders(folder)
    if len(classes) < 2:
        raise DataError(f"{folder} must hold at least two class folders ({FOLDER_LAYOUT}); found "
                        f"{len(classes)}: {_describe(folder)}. Put each class's images in a folder named after it")
    return classes


def folder_classes(root: str | Path) -> list[str]:
    """The class names of an image folder (its split folders' classes where it has split folders), sorted."""
    root = require_root("folder", root)
    split_dirs = [name for name in SPLITS if (root / name).is_dir()]
    return _classes(root / split_dirs[0] if split_dirs else root)


def _hash_split(files: list[Path], class_dir: Path, split: str, seed: int = 0) -> list[Path]:
    """This split's share (80/10/10) of one class, ordered by a hash of each file's relative path
    (prefixed by ``seed`` unless it is 0, the unseeded order of earlier versions)."""
    prefix = "" if seed == 0 else f"{seed}\0"

    def key(path: Path) -> str:
        return hashlib.sha1((prefix + path.relative_to(class_dir).as_posix()).encode()).hexdigest()

    ordered = sorted(files, key=key)
    n = len(ordered)
    cut_train = round(n * FOLDER_FRACTIONS[0])
    cut_val = round(n * (FOLDER_FRACTIONS[0] + FOLDER_FRACTIONS[1]))
    share = {"train": ordered[:cut_train], "val": ordered[cut_train:cut_val], "test": ordered[cut_val:]}[split]
    if not share:
        raise DataError(f"class folder {class_dir} has only {n} image(s): its 80/10/10 split leaves "
                        f"{split!r} empty; add images or give split folders ({FOLDER_LAYOUT})")
    return sorted(share)


def load_folder(root: str | Path, split: str, resolution: int, *, seed: int = 0) -> ImageFileDataset:
    """An image folder of K >= 2 classes; labels follow the sorted class folder names.

    With any of ``train/``, ``val/``, ``test/`` in ``root`` the split folders are used (each must
    hold the same classes); otherwise each class is split 80/10/10 by a hash of file name and ``seed``.
    """
    _check_split(split)
    root = require_root("folder", root)
    split_dirs = [name for name in SPLITS if (root / name).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise DataError(f"no split folder {root / split} (expected {FOLDER_LAYOUT}); found: {_describe(root)}")
        classes = _classes(root / split)
        for other in split_dirs:
            if _subfolders(root / other) != classes:
                raise DataError(f"split folders disagree on the classes: {root / split} holds {classes}, "
                                f"{root / other} holds {_subfolders(root / other)}")
        class_root = root / split
    else:
        classes = _classes(root)
        class_root = root
    files: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, name in enumerate(classes):
        class_files, class_skipped = _class_images(class_root / name, f"expected {FOLDER_LAYOUT}")
        if not split_dirs:
            class_files = _hash_split(class_files, class_root / name, split, seed)
        files += class_files
        labels += [label] * len(class_files)
        skipped += class_skipped
    _warn_skipped(skipped, class_root)
    return ImageFileDataset(files, labels, resolution, class_names=classes, skipped_files=skipped)


# -- preprocessing cache -----------------------------------------------------------------------

def _check_bad_share(bad_files: Sequence[str], total: int, max_bad_share: float) -> None:
    """Warn about undecodable images left out, or refuse the split when they are more than ``max_bad_share``."""
    if not bad_files:
        return
    share = len(bad_files) / max(total, 1)
    if share > max_bad_share:
        raise DataError(f"{len(bad_files)} of {total} images ({share:.0%}) cannot be decoded, more than the "
                        f"{max_bad_share:.0%} that are left out with a warning, e.g. {', '.join(bad_files[:3])}; "
                        f"replace or delete the broken files")
    message = f"left out {len(bad_files)} of {total} undecodable image(s), e.g. {bad_files[0]}"
    log.warning(message)
    warnings.warn(message, stacklevel=3)


def _read_cache(cache_path: Path, fingerprint: str, resolution: int, skip_bad: bool,
                max_bad_share: float = 1.0) -> TensorImageSet | None:
    """The cached set if ``cache_path`` holds one made from the same files, labels and resolution."""
    try:
        payload = torch.load(cache_path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", cache_path, err)
        return None
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT \
            or payload.get("fingerprint") != fingerprint or payload.get("resolution") != resolution:
        log.info("cache %s was made from other files or settings; rebuilding it", cache_path)
        return None
    if payload["bad_files"] and not skip_bad:
        return None  # rebuilding raises DataError on the first bad file, as an uncached load would
    _check_bad_share(payload["bad_files"], len(payload["bad_files"]) + payload["images"].shape[0], max_bad_share)
    return TensorImageSet(payload["images"], payload["labels"], class_names=payload["class_names"],
                          skipped_files=payload["skipped_files"] + len(payload["bad_files"]))


def _save_atomically(payload: dict, cache_path: Path) -> None:
    """``torch.save`` to ``cache_path`` with :func:`repro.utils.atomic_write`."""
    with atomic_write(cache_path) as f:
        torch.save(payload, f)


def _decode_or_error(path: Path, resolution: int) -> np.ndarray | DataError:
    try:
        return load_image(path, resolution)
    except DataError as err:
        return err


def preprocess_to_tensor(
    dataset: ImageFileDataset,
    cache_path: str | Path,
    progress: bool = True,
    *,
    skip_bad: bool = False,
    num_workers: int | None = None,
    max_bad_share: float = 1.0,
) -> TensorImageSet:
    """Decode every image of ``dataset`` once into a uint8 tensor, cached at ``cache_path``.

    The cache stores a fingerprint of the file list, labels and resolution and is reused only when
    they match (it is rebuilt otherwise, or when unreadable). It is written atomically, so an
    interrupted run never leaves a half-written cache. Decoding runs on ``num_workers`` threads
    (PIL releases the GIL; default: the CPU count, at most 8). An undecodable image raises
    :class:`DataError`, or with ``skip_bad`` is left out, counted in ``skipped_files`` and warned
    about, unless more than ``max_bad_share`` of the images are undecodable (a :class:`DataError`).
    """
    cache_path = Path(cache_path)
    fingerprint = dataset.fingerprint()
    resolution = dataset.resolution
    if cache_path.is_file():
        cached = _read_cache(cache_path, fingerprint, resolution, skip_bad, max_bad_share)
        if cached is not None:
            return cached
    images = torch.empty((len(dataset), 3, resolution, resolution), dtype=torch.uint8)
    kept: list[int] = []
    bad_files: list[str] = []
    pool = ThreadPoolExecutor(max_workers=num_workers or min(8, os.cpu_count() or 1))
    try:
        decoded = pool.map(lambda path: _decode_or_error(path, resolution), dataset.files)
        for index, result in enumerate(tqdm(decoded, total=len(dataset), desc=f"decoding {cache_path.name}",
                                            enabled=progress)):
            if isinstance(result, DataError):
                if not skip_bad:
                    raise result
                bad_files.append(str(dataset.files[index]))
                continue
            images[len(kept)] = torch.from_numpy(result).permute(2, 0, 1)
            kept.append(index)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, do not decode the rest first
    if not kept:
        raise DataError(f"no image of {len(dataset)} could be decoded, e.g. {bad_files[:3]}")
    _check_bad_share(bad_files, len(dataset), max_bad_share)
    images = images[: len(kept)].clone() if bad_files else images
    labels = dataset.labels[torch.tensor(kept, dtype=torch.int64)]
    _save_atomically({
        "format": CACHE_FORMAT, "fingerprint": fingerprint, "resolution": resolution,
        "images": images, "labels": labels, "bad_files": bad_files, "skipped_files": dataset.skipped_files,
        "class_names": list(dataset.class_names) if dataset.class_names is not None else None,
    }, cache_path)
    return TensorImageSet(images, labels, class_names=dataset.class_names,
                          skipped_files=dataset.skipped_files + len(bad_files))


# -- entry point -------------------------------------------------------------------------------

def load_real(
    dataset: str,
    root: str | Path,
    split: str,
    resolution: int,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    skip_bad: bool = False,
    max_bad_share: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """One split of a real data set: ``dataset`` is one of ``afhq``, ``celeba``, ``ffhq``, ``folder``.

    Without ``cache_dir`` this is a lazy :class:`ImageFileDataset`; with it, a
    :class:`TensorImageSet` decoded once and cached as
    ``cache_dir/{dataset}-{split}-{R}px-{fingerprint}.pt``. ``skip_bad`` (leave out undecodable
    images) needs ``cache_dir``, since only preprocessing decodes everything up front; with it, more
    than ``max_bad_share`` undecodable images refuse the split. ``seed``: the ``folder`` split seed.
    """
    loaders = {"afhq": load_afhq, "celeba": load_celeba, "ffhq": load_ffhq, "folder": load_folder}
    if dataset not in loaders:
        raise ValueError(f"unknown real dataset {dataset!r}; choose one of: {', '.join(REAL_DATASETS)}")
    files = load_folder(root, split, resolution, seed=seed) if dataset == "folder" \
        else loaders[dataset](root, split, resolution)
    if cache_dir is None:
        if skip_bad:
            raise ValueError("skip_bad=True needs a cache_dir: a lazy dataset cannot leave out images")
        return files
    cache_path = Path(cache_dir) / f"{dataset}-{split}-{resolution}px-{files.fingerprint()[:16]}.pt"
    return preprocess_to_tensor(files, cache_path, progress, skip_bad=skip_bad, max_bad_share=max_bad_share)
