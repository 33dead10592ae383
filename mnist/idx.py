"""The IDX format of MNIST's files (gzip or raw): read, parse and write, with errors that name
the file and what is wrong with it; and `atomic_write`, so no reader ever sees half a file.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from mnist.errors import MnistError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a file, gzip or raw, with clear errors for damaged files."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    if not raw:
        raise MnistError(f"{path}: file is empty")
    return decompress(raw, str(path))


def decompress(data: bytes, origin: str) -> bytes:
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
    arr = parse_idx(read_bytes(path), str(path))
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
    atomic_write(path, gzip.compress(body) if compress else body)
    return path


def atomic_write(path: Path, data: bytes) -> None:
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
