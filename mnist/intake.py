"""Labelled samples for `mnist data add`: read, prepared like `mnist predict`'s inputs, and
checked like training data.

Accepted inputs: PNG/JPEG files (all of one digit, given with `label`), a folder with
sub-folders `0/`..`9/` of images (the image-folder convention of Keras and torchvision), a CSV
`label,pixel0..pixel783`, and `.npz` with arrays `x` and `y`. Images of any size are prepared
MNIST-style (`mnist.digits`); every sample then goes through `mnist.validation` under the NaN
policy, so a blank, unreadable or invalid sample is named and never stored.

A labelling queue's folder (`mnist data queue --export`, `read(..., queue=True)`) is a folder
of digit folders too: its images are named `<prediction id>.png`, so each sample knows the
logged prediction it labels, and those still in `unlabelled/` are counted and left there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist.digits import BLANK, LABELS, blank
from mnist.errors import MnistError
from mnist.preprocess import RAW_RANGE, Arrays, one_hot
from mnist.readers import IMAGE_SIZE, IMAGE_SUFFIXES, as_images, read_csv, read_image, read_npz
from mnist.settings import NanPolicy
from mnist.validation import ValidationReport, validate


@dataclass
class Intake:
    """What `read` accepted (raw pixels and labels), what it rejected and why."""

    images: np.ndarray  # (N, 28, 28) float32 in 0-255, validated
    labels: np.ndarray  # (N,) int 0-9
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    report: ValidationReport | None = None
    files: list[str] = field(default_factory=list)  # per sample: its image file ("" for arrays)
    unlabelled: int = 0  # images left in a queue folder's unlabelled/ (`queue=True`)

    def counts(self) -> dict[int, int]:
        return {d: int((self.labels == d).sum()) for d in range(10)}

    def prediction_ids(self) -> list[int | None]:
        """Per sample, the logged prediction its file names (`<prediction id>.png`), or None."""
        return [prediction_id(f) for f in self.files]


UNLABELLED = "unlabelled"
"""The folder of a labelling queue's export that holds the images not yet sorted by digit."""


def prediction_id(file: str) -> int | None:
    """The prediction id a queue export's file name gives (`1234567.png`), or None."""
    path = Path(file)
    if path.suffix.lower() != ".png" or not path.stem.isdigit() or not path.stem.isascii():
        return None
    from mnist.datastore.predictions import MAX_ID

    number = int(path.stem)
    return number if 0 < number <= MAX_ID else None


def _images(files: list[Path], label: int, read: list, rejected: list) -> None:
    for path in files:
        try:
            image = read_image(path)
        except MnistError as exc:
            rejected.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        if blank(image[None])[0]:  # a 28x28 image is taken as it is, unprepared: check it here
            rejected.append((str(path), BLANK))
        else:
            read.append((image, label, str(path)))


def _folder(path: Path, read: list, rejected: list, queue: bool = False) -> int:
    """Read the digit folders of `path` (hidden files, a file manager's, left out); how many
    images a queue's unlabelled/ holds."""
    found, unlabelled = False, 0
    for item in sorted(path.iterdir()):
        if queue and item.is_dir() and item.name == UNLABELLED:
            unlabelled += sum(
                p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "." for p in item.iterdir()
            )
            found = True
        elif item.is_dir() and item.name in LABELS:
            files = sorted(p for p in item.iterdir() if p.is_file() and p.name[0] != ".")
            _images(
                [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES],
                int(item.name),
                read,
                rejected,
            )
            rejected += [
                (str(p), "not a PNG or JPEG file")
                for p in files
                if p.suffix.lower() not in IMAGE_SUFFIXES
            ]
            found = True
        elif not item.name.startswith("."):
            rejected.append((str(item), "not a digit folder 0-9"))
    if not found:
        raise MnistError(f"{path}: no sub-folders named 0 to 9 (one per digit, holding images)")
    return unlabelled


def _arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from a labelled CSV or an .npz with `x` and `y`."""
    if path.suffix.lower() == ".csv":
        split = read_csv(path, labelled=True)
        return as_images(split.images, str(path)), np.asarray(split.labels)
    arrays = read_npz(path, ("x", "y"))
    images, y = as_images(arrays["x"], f"{path}:x"), arrays["y"]
    if y.dtype.kind not in "uif" or y.shape != (len(images),):
        raise MnistError(
            f"{path}: 'y' must hold one number per image ({len(images)}), found shape {y.shape}"
        )
    return images, y


def read(
    paths: list[Path], label: int | None = None, policy: NanPolicy = "fail", queue: bool = False
) -> Intake:
    """Read, prepare and validate labelled samples; `label` is the digit of image files. With
    `queue`, folders are labelling queues: their `unlabelled/` is counted, not read."""
    read_: list[tuple[np.ndarray, float, str]] = []
    arrays: list[tuple[np.ndarray, np.ndarray]] = []
    rejected: list[tuple[str, str]] = []
    files: list[str] = []
    unlabelled = 0
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    if images and label is None:
        raise MnistError(f"{images[0]}: give the digit of image files with --label")
    if label is not None and len(images) != len(paths):
        raise MnistError("--label is for image files; folders, CSV and .npz carry their labels")
    for path in paths:
        if path.is_dir():
            unlabelled += _folder(path, read_, rejected, queue)
        elif not path.is_file():
            raise MnistError(f"{path}: no such file or folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            _images([path], label, read_, rejected)  # type: ignore[arg-type]
        elif path.suffix.lower() in (".csv", ".npz"):
            arrays.append(_arrays(path))
            files += [""] * len(arrays[-1][1])
        else:
            raise MnistError(f"{path}: unsupported type (use PNG/JPEG, a folder, .csv or .npz)")
    if read_:
        arrays.append((np.stack([r[0] for r in read_]), np.array([r[1] for r in read_])))
        files += [r[2] for r in read_]
    if rejected and policy == "fail":
        what, why = rejected[0]
        raise MnistError(
            f"{len(rejected)} input(s) rejected, first {what}: {why}; nothing was "
            "added (rerun with --nan-policy drop to add the rest)"
        )
    if not arrays:
        left = (
            f" ({unlabelled} image(s) still in {UNLABELLED}/: sort them first)"
            if unlabelled
            else ""
        )
        raise MnistError("no samples found in " + ", ".join(map(str, paths)) + left)
    x = np.concatenate([a[0] for a in arrays]).astype(np.float64)
    y = np.concatenate([np.asarray(a[1], np.float64) for a in arrays])
    whole = np.isfinite(y) & (y == np.round(y))  # 3.5 or NaN: an invalid label
    labelled = Arrays(x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), one_hot(np.where(whole, y, -1)))
    cleaned, report = validate({"added": labelled}, policy, RAW_RANGE)
    if report.problems:
        rejected.append((f"{report.splits['added'].bad_samples} sample(s)", report.summary()))
    kept = cleaned["added"]
    if (rows := report.splits["added"].kept) is not None:  # the samples the policy kept
        files = [files[i] for i in rows]
    empty = blank(kept.x)
    if empty.any():
        if policy == "fail":
            raise MnistError(
                f"{int(empty.sum())} blank sample(s) (no digit), first at index "
                f"{int(np.flatnonzero(empty)[0])}; nothing was added"
            )
        rejected.append((f"{int(empty.sum())} sample(s)", BLANK))
        kept = kept.take(np.flatnonzero(~empty))
        files = [f for f, e in zip(files, empty, strict=True) if not e]
    images = kept.x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return Intake(images, kept.labels, rejected, report, files, unlabelled)
