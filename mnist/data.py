"""Reading MNIST: IDX files (gzip or raw), Kaggle-style CSV and Keras' mnist.npz.

Missing IDX files are downloaded into a cache from public mirrors, verified by the SHA-256 of
their decompressed bytes and written atomically, so the cache never holds a partial file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import struct
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import platformdirs

from mnist.errors import DownloadError, MnistError

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
PIXELS = IMAGE_SIZE * IMAGE_SIZE

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
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Split:
    """One split of raw data: images (N, 28, 28) in 0-255, labels (N,) or None; its source."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Dataset:
    """The raw train and test splits as read, before any preprocessing."""

    train: Split
    test: Split

    @cached_property
    def digest(self) -> str:
        """SHA-256 over every array, identifying exactly which data a model saw."""
        return digest(self.train.images, self.train.labels, self.test.images, self.test.labels)


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


# ----------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a file, gzip or raw, with clear errors for damaged files."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    if not raw:
        raise MnistError(f"{path}: file is empty")
    return _decompress(raw, str(path))


def _decompress(data: bytes, origin: str) -> bytes:
    """Gzip data decompressed (anything else as it is); damage is an error naming `origin`."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise MnistError(f"{origin}: truncated or corrupt gzip data ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (magic 0x0000TTDD, big-endian dims, then the values)."""
    if len(data) < 4:
        raise MnistError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise MnistError(f"{name}: not an IDX file (magic number 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistError(f"{name}: IDX header truncated ({len(data)} bytes, {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise MnistError(
            f"{name}: IDX dimensions {shape} need {expected} bytes of data, file has "
            f"{len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip or raw); `ndim` checks the number of dimensions."""
    arr = parse_idx(_read_bytes(path), str(path))
    if ndim is not None and arr.ndim != ndim:
        raise MnistError(f"{path}: expected {ndim} IDX dimensions, found {arr.ndim} {arr.shape}")
    return arr


def write_idx(path: Path, arr: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as IDX (gzip when the name ends in .gz); the inverse of `read_idx`."""
    codes = {np.dtype(v).str: k for k, v in _IDX_DTYPES.items()}
    a = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">") if arr.itemsize > 1 else None)
    code = codes.get(a.dtype.str) or codes[np.dtype(arr.dtype).str]
    body = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    compress = path.suffix == ".gz" if compress is None else compress
    _atomic_write(path, gzip.compress(body) if compress else body)
    return path


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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify(name: str, data: bytes, origin: str) -> None:
    digest = hashlib.sha256(_decompress(data, origin)).hexdigest()
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
                _atomic_write(target, response.content)
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


# ----------------------------------------------------------------------------- CSV and npz


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


def read_npz(path: Path) -> Dataset:
    """Keras' mnist.npz: arrays `x_train, y_train, x_test, y_test`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
            if missing:
                raise MnistError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except (OSError, ValueError, EOFError) as exc:
        raise MnistError(f"{path}: not a readable .npz file ({exc})") from exc
    return Dataset(
        train=Split(arrays["x_train"], arrays["y_train"], f"{path}:x_train"),
        test=Split(arrays["x_test"], arrays["y_test"], f"{path}:x_test"),
    )


_CSV_PAIRS = (("mnist_train.csv", "mnist_test.csv"), ("train.csv", "test.csv"))


def load(data_dir: Path | None = None) -> Dataset:
    """Load MNIST from `data_dir` (or MNIST_DATA_DIR, or the per-user cache, downloading).

    `data_dir` may be a directory of IDX files, a directory holding `mnist.npz` or a
    train/test CSV pair, or the path of an .npz file.
    """
    if data_dir is None:
        env = os.environ.get("MNIST_DATA_DIR")
        data_dir = Path(env) if env else default_cache_dir()
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        if data_dir.suffix == ".npz":
            return read_npz(data_dir)
        raise MnistError(f"{data_dir}: expected a directory or an .npz file")
    if data_dir.is_dir():
        if all(_find(data_dir, name) for name in FILES):
            return load_idx_dir(data_dir)
        if (data_dir / "mnist.npz").is_file():
            return read_npz(data_dir / "mnist.npz")
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
