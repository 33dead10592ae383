"""Prepare a picture of a digit the way MNIST's digits were prepared.

Crop to the digit's bounding box, scale it (keeping its aspect ratio) to fit 20x20, and place
it in a 28x28 frame so that its centre of mass is at the centre. Used for uploaded images, for
digits drawn on the web page, and by `mnist predict` for images that are not already 28x28.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnist.errors import MnistError

SIZE, BOX = 28, 20
MAX_PIXELS = 16_000_000
"""The largest image decoded (a 16-megapixel photo): checked from the header, before decoding,
so that a small compressed file cannot claim gigabytes."""
LABELS = tuple(str(d) for d in range(10))
"""The digits as text: folder names, form fields, options."""
BLANK = "the image is blank (no digit found)"
FORMATS = ("PNG", "JPEG")
"""The only decoders used: PIL's others (EPS runs Ghostscript, TIFF, PSD, ...) are refused."""


class ImageTooLarge(MnistError):
    """An image whose header claims more pixels than MAX_PIXELS."""


Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL refuses twice this in `open`, before any decoding
# ... and warns from MAX_PIXELS on, for images that `to_gray` refuses anyway.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def to_gray(data: bytes, name: str = "image") -> np.ndarray:
    """Decode PNG/JPEG bytes to a grayscale float array (alpha composited onto black)."""
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageTooLarge(
                    f"{name}: {width} x {height} pixels exceeds the limit of {MAX_PIXELS:,}"
                )
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, rgba)
            return np.asarray(img.convert("L"), dtype=np.float32)
    except Image.DecompressionBombError as exc:  # PIL's own refusal, from 2 x MAX_PIXELS on
        raise ImageTooLarge(f"{name}: {exc}") from exc
    except UnidentifiedImageError as exc:  # its message names an in-memory buffer object
        raise MnistError(f"{name}: not a readable PNG or JPEG image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise MnistError(f"{name}: not a readable PNG or JPEG image ({exc})") from exc


def mnist_style(gray: np.ndarray, name: str = "image") -> np.ndarray:
    """A grayscale digit of any size -> (28, 28) float32 in 0-255, MNIST-style.

    A light background (a dark digit on white paper) is inverted first."""
    img = np.asarray(gray, dtype=np.float32)
    if img.ndim != 2 or min(img.shape) == 0:
        raise MnistError(f"{name}: expected a 2-D grayscale image, got shape {img.shape}")
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if border.mean() > 127:
        img, border = 255.0 - img, 255.0 - border
    img = np.clip(img - np.median(border), 0, 255)
    rows, cols = np.nonzero(img > 0.1 * img.max()) if img.max() > 0 else (np.empty(0, int),) * 2
    if len(rows) == 0:
        raise MnistError(f"{name}: {BLANK}")
    crop = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    box = np.asarray(
        Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32
    ).clip(0, 255)
    box = np.clip(box * (255.0 / box.max()), 0, 255)  # the product can round above 255
    out = np.zeros((SIZE, SIZE), np.float32)
    total = box.sum()
    cy = (box.sum(axis=1) @ np.arange(box.shape[0])) / total
    cx = (box.sum(axis=0) @ np.arange(box.shape[1])) / total
    top = int(np.clip(round(SIZE / 2 - 0.5 - cy), 0, SIZE - box.shape[0]))
    left = int(np.clip(round(SIZE / 2 - 0.5 - cx), 0, SIZE - box.shape[1]))
    out[top : top + box.shape[0], left : left + box.shape[1]] = box
    return out


def blank(images: np.ndarray) -> np.ndarray:
    """Per image (N, ...), whether it holds no ink at all (every raw pixel below 1)."""
    return np.asarray(images).reshape(len(images), -1).max(axis=1, initial=0) < 1


def from_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """PNG/JPEG bytes -> (28, 28) float32 pixels; 28x28 images are taken as they are."""
    gray = to_gray(data, name)
    return gray if gray.shape == (SIZE, SIZE) else mnist_style(gray, name)
