"""One reader per file format of digits: CSV (Kaggle's layout), `.npz`, `.npy` and PNG/JPEG
images (IDX, MNIST's own, is `mnist.idx`). Each names the file, and the row, column or array,
in its errors and hands back raw pixels (a `Split` where labelled); `as_images` turns numbers
in any accepted shape into (N, 28, 28) pixels.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mnist.errors import MnistError

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@dataclass(frozen=True)
class Split:
    """One split of raw data: images (N, 28, 28) in 0-255, labels (N,) or None; its source."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def targets(self) -> np.ndarray:
        """The labels of a split that must have them (training, test, added data)."""
        if self.labels is None:
            raise MnistError(f"{self.source}: no labels")
        return self.labels


def as_images(arr: np.ndarray, source: str) -> np.ndarray:
    """Numbers in any accepted shape -> (N, 28, 28), float32 or wider: a value just past 255 in
    float64 must not round into range before it is validated."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "uif":
        raise MnistError(f"{source}: expected numbers, found dtype {arr.dtype}")
    if arr.shape in ((IMAGE_SIZE, IMAGE_SIZE), (PIXELS,)):
        arr = arr[None]
    if arr.ndim >= 2 and arr[0].size == PIXELS:
        return arr.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.result_type(arr, np.float32))
    raise MnistError(f"{source}: shape {arr.shape} is not (N, 28, 28), (N, 784) or (28, 28)")


# ----------------------------------------------------------------------------- CSV


def read_csv(path: Path, labelled: bool = True) -> Split:
    """A Kaggle-style CSV: `label,pixel0..pixel783` (or the 784 pixels alone when unlabelled).

    Empty cells become NaN, for validation and the NaN policy to handle; cells that are not
    numbers, and rows of the wrong width, are errors naming the row and column.
    """
    want = PIXELS + int(labelled)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MnistError(f"{path}: cannot read CSV ({exc})") from exc
    for number, line in enumerate(text.splitlines(), 1):  # pandas pads short rows silently
        if line.strip() and (found := line.count(",") + 1) != want:
            raise MnistError(f"{path}: row {number} has {found} columns, expected {want}")
    try:
        frame = pd.read_csv(io.StringIO(text), header=None, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise MnistError(f"{path}: cannot parse CSV ({detail})") from exc
    if len(frame) and not any(_is_number(c) or c == "" for c in frame.iloc[0]):  # a header
        frame = frame.iloc[1:]
    if frame.empty:
        raise MnistError(f"{path}: no data rows")
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & frame.ne("") & ~frame.apply(lambda c: c.str.lower().eq("nan"))
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise MnistError(
            f"{path}: {int(bad.to_numpy().sum())} non-numeric cell(s), first at row {row + 1}, "
            f"column {col + 1}: {frame.iat[row, col]!r}"
        )
    arr = values.to_numpy(dtype=np.float64)
    if labelled:
        labels, pixels = arr[:, 0], arr[:, 1:]
        if np.isnan(labels).any():
            raise MnistError(f"{path}: {int(np.isnan(labels).sum())} row(s) with an empty label")
        labels = labels.astype(np.int64)
    else:
        labels, pixels = None, arr
    images = pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if not np.isnan(images).any() and np.all((images >= 0) & (images <= 255)):
        images = images.astype(np.uint8)
    return Split(images, labels, str(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_pixel_csv(path: Path) -> np.ndarray:
    """A CSV of images to predict: 784 pixel columns, or 785 with a leading label (ignored)."""
    try:
        with path.open("rb") as f:  # bytes: read_csv reports a file that is not text
            width = f.readline(1 << 20).count(b",") + 1
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    return as_images(read_csv(path, labelled=width == PIXELS + 1).images, str(path))


# ----------------------------------------------------------------------------- numpy


def read_npz(
    path: Path, names: Sequence[str] = (), one_of: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Arrays of an .npz file, read without pickles: every one of `names` (each missing one
    named in the error), or else the first of `one_of` the file holds, or else its first."""
    try:
        with np.load(path, allow_pickle=False) as z:
            found = list(z.keys())
            if names:
                missing = [k for k in names if k not in found]
                if missing:
                    raise MnistError(
                        f"{path}: missing array(s) {', '.join(missing)} (found "
                        f"{', '.join(found) or 'none'})"
                    )
                wanted = list(names)
            else:
                wanted = [k for k in one_of if k in found][:1] or found[:1]
                if not wanted:
                    raise MnistError(f"{path}: no arrays in .npz file")
            return {k: z[k] for k in wanted}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MnistError(f"{path}: not a readable .npz file ({exc})") from exc


def read_npy(path: Path) -> np.ndarray:
    """The one array of an .npy file, read without pickles."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MnistError(f"{path}: not a readable .npy file ({exc})") from exc


# ----------------------------------------------------------------------------- images


def read_image(path: Path) -> np.ndarray:
    """A grayscale digit image: 28x28 as it is, any other size prepared MNIST-style."""
    from mnist import digits  # PIL: only where images are read, not for every `mnist.data`

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    return digits.from_image_bytes(data, str(path))
