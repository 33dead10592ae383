"""Digits written as PNG files for a person to look at or sort: a batch under review
(`mnist data review --export`) and the labelling queue (`mnist data queue --export`).

An export is whole or absent: the files are written into a temporary folder beside the
destination, then moved into it; an existing file is never overwritten (the export is refused
before anything is written), and an error on the way leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from mnist.errors import MnistError

SIZE = 28


def png(image: np.ndarray) -> bytes:
    """A (28, 28) digit in 0-255 as an 8-bit grayscale PNG, white on black as MNIST; read back
    by `mnist.readers.read_image` pixel for pixel."""
    from PIL import Image  # only where images are written

    pixels = np.asarray(image)
    if pixels.shape != (SIZE, SIZE):
        raise MnistError(f"expected a 28x28 image, got shape {pixels.shape}")
    out = io.BytesIO()
    Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8), mode="L").save(out, "PNG")
    return out.getvalue()


def write(dest: Path, images: Mapping[str, np.ndarray], folders: Iterable[str] = ()) -> None:
    """Write each image of `images` (a path relative to `dest` -> a 28x28 digit) as a PNG under
    `dest`, and create the (empty) `folders`. Refused with nothing written when `dest` is a
    file or one of the files exists; all or nothing on error."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise MnistError(f"{dest}: exists and is not a folder")
    clashes = [rel for rel in images if (dest / rel).exists()]
    if clashes:
        raise MnistError(
            f"{dest / clashes[0]} exists ({len(clashes)} file(s) would be overwritten): nothing "
            "was written; export into a new or empty folder"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise MnistError(f"{dest}: cannot write ({exc.strerror or exc})") from exc
    try:
        for folder in folders:
            (staging / folder).mkdir(parents=True, exist_ok=True)
        for rel, image in images.items():
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).write_bytes(png(image))
        if not dest.exists():
            staging.rename(dest)  # one step: the whole export appears at once
        else:
            _merge(staging, dest, list(images), list(folders))
    except OSError as exc:
        raise MnistError(
            f"{dest}: cannot write ({exc.strerror or exc}); nothing was written"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(staging: Path, dest: Path, files: list[str], folders: list[str]) -> None:
    """Move the staged export into the existing `dest`: hard links, which refuse to replace a
    file that appeared meanwhile; undone whole when one fails."""
    made: list[Path] = []  # folders and links made, to undo in reverse
    try:
        for rel in [*folders, *sorted({str(Path(f).parent) for f in files} - {"."})]:
            for parent in reversed([dest / rel, *(dest / rel).parents]):
                if parent.is_relative_to(dest) and not parent.exists():
                    parent.mkdir()
                    made.append(parent)
        for rel in files:
            os.link(staging / rel, dest / rel)
            made.append(dest / rel)
    except OSError:
        for path in reversed(made):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        raise
