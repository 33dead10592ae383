"""MNIST as the pipeline uses it: the raw splits, their digest and the added data's snapshot,
loaded from IDX files (gzip or raw), a Kaggle-style CSV pair or Keras' mnist.npz.

Missing IDX files are downloaded into a cache from public mirrors, verified by the SHA-256 of
their decompressed bytes and written atomically, so the cache never holds a partial file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import numpy as np
import platformdirs

from mnist import readers
from mnist.errors import DownloadError, MnistError
from mnist.idx import atomic_write, decompress, parse_idx, read_idx, write_idx
from mnist.readers import IMAGE_SIZE, PIXELS, Split, read_csv

__all__ = [  # the readers' names too, where callers have always found them
    "FILES",
    "IMAGE_SIZE",
    "MIRRORS",
    "PIXELS",
    "Added",
    "Dataset",
    "Split",
    "default_cache_dir",
    "digest",
    "download",
    "fetch",
    "load",
    "load_idx_dir",
    "parse_idx",
    "read_csv",
    "read_idx",
    "read_keras_npz",
    "write_idx",
]

log = logging.getLogger(__name__)

# SHA-256 of the *decompressed* files: mirrors compress differently, the contents do not.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)


@dataclass(frozen=True)
class Dataset:
    """The raw train and test splits as read, before any preprocessing."""

    train: Split
    test: Split

    @cached_property
    def digest(self) -> str:
        """SHA-256 over every array, identifying exactly which data a model saw."""
        return digest(self.train.images, self.train.targets, self.test.images, self.test.targets)


def digest(*arrays: np.ndarray) -> str:
    """SHA-256 over arrays: their dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Added:
    """Labelled samples added by users (`mnist.datastore`): the training part, the holdout
    (with each sample's source) and the digest that names this snapshot exactly."""

    train: Split
    holdout: Split
    holdout_sources: np.ndarray
    digest: str  # "" when nothing was added
    batches: tuple[int, ...]

    @classmethod
    def nothing(cls) -> Added:
        empty = Split(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros(0, np.uint8), "")
        return cls(empty, empty, np.zeros(0, object), "", ())

    def __len__(self) -> int:
        return len(self.train) + len(self.holdout)


def default_cache_dir() -> Path:
    """Per-user cache for downloaded MNIST files."""
    return Path(platformdirs.user_cache_dir("mnist-pipeline")) / "mnist"


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: Path) -> Dataset:
    """Read the four IDX files of MNIST from one directory (each gzip or raw)."""
    paths = {}
    for name in FILES:
        path = _find(directory, name)
        if path is None:
            raise MnistError(f"{directory}: missing {name}.gz (or {name})")
        paths[name] = path

    def split(kind: str) -> Split:
        images = read_idx(paths[f"{kind}-images-idx3-ubyte"], ndim=3)
        labels = read_idx(paths[f"{kind}-labels-idx1-ubyte"], ndim=1)
        return Split(images, labels, str(paths[f"{kind}-images-idx3-ubyte"]))

    return Dataset(train=split("train"), test=split("t10k"))


# ----------------------------------------------------------------------------- download


def _verify(name: str, data: bytes, origin: str) -> None:
    digest = hashlib.sha256(decompress(data, origin)).hexdigest()
    if digest != FILES[name]:
        raise MnistError(
            f"{origin}: SHA-256 mismatch (got {digest[:12]}…, want {FILES[name][:12]}…)"
        )


def download(
    name: str,
    directory: Path,
    mirrors: Sequence[str] = MIRRORS,
    attempts: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Fetch `name`.gz into `directory`, trying each mirror up to `attempts` times."""
    target = directory / f"{name}.gz"
    errors: list[str] = []
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for attempt in range(attempts):
            for mirror in mirrors:
                url = mirror.rstrip("/") + f"/{name}.gz"
                try:
                    response = client.get(url)
                    response.raise_for_status()
                    _verify(name, response.content, url)
                except (httpx.HTTPError, MnistError) as exc:
                    errors.append(f"{url}: {exc}")
                    log.warning("download failed (attempt %d): %s: %s", attempt + 1, url, exc)
                    continue
                atomic_write(target, response.content)
                log.info("downloaded %s (%d bytes) to %s", url, len(response.content), target)
                return target
            if attempt + 1 < attempts:
                time.sleep(backoff * 2**attempt)
    raise DownloadError(
        f"could not download {name} into {directory} after {attempts} attempts; last error: "
        f"{errors[-1] if errors else 'no mirrors'}. Offline? Point --data-dir or MNIST_DATA_DIR "
        "at a directory holding the four MNIST files."
    )


def fetch(directory: Path, mirrors: Sequence[str] | None = None, **kwargs) -> Dataset:
    """Read MNIST from `directory`, first downloading whichever of the four files are missing."""
    mirrors = mirrors or _env_mirrors() or MIRRORS
    for name in FILES:
        if _find(directory, name) is None:
            download(name, directory, mirrors, **kwargs)
    return load_idx_dir(directory)


def _env_mirrors() -> list[str]:
    return [m for m in os.environ.get("MNIST_MIRRORS", "").split(",") if m.strip()]


# ----------------------------------------------------------------------------- load


def read_keras_npz(path: Path) -> Dataset:
    """Keras' mnist.npz: arrays `x_train, y_train, x_test, y_test`."""
    arrays = readers.read_npz(path, ("x_train", "y_train", "x_test", "y_test"))
    return Dataset(
        train=Split(arrays["x_train"], arrays["y_train"], f"{path}:x_train"),
        test=Split(arrays["x_test"], arrays["y_test"], f"{path}:x_test"),
    )


_CSV_PAIRS = (("mnist_train.csv", "mnist_test.csv"), ("train.csv", "test.csv"))


def where(data_dir: Path | None = None) -> Path:
    """Where `load` reads MNIST: `data_dir`, else MNIST_DATA_DIR, else the per-user cache."""
    if data_dir is None:
        env = os.environ.get("MNIST_DATA_DIR")
        data_dir = Path(env) if env else default_cache_dir()
    return Path(data_dir).expanduser().absolute()


def load(data_dir: Path | None = None) -> Dataset:
    """Load MNIST from `data_dir` (or MNIST_DATA_DIR, or the per-user cache, downloading).

    `data_dir` may be a directory of IDX files, a directory holding `mnist.npz` or a
    train/test CSV pair, or the path of an .npz file.
    """
    data_dir = where(data_dir)
    if data_dir.is_file():
        if data_dir.suffix == ".npz":
            return read_keras_npz(data_dir)
        raise MnistError(f"{data_dir}: expected a directory or an .npz file")
    if data_dir.is_dir():
        if all(_find(data_dir, name) for name in FILES):
            return load_idx_dir(data_dir)
        if (data_dir / "mnist.npz").is_file():
            return read_keras_npz(data_dir / "mnist.npz")
        for train, test in _CSV_PAIRS:
            if (data_dir / train).is_file() and (data_dir / test).is_file():
                return Dataset(read_csv(data_dir / train), read_csv(data_dir / test))
    try:
        return fetch(data_dir)
    except MnistError as exc:
        raise MnistError(
            f"no MNIST data in {data_dir} and it could not be downloaded ({exc}). Set --data-dir "
            "or MNIST_DATA_DIR to a directory holding the four IDX files, mnist.npz or "
            "train/test CSVs."
        ) from exc
