"""`mnist predict` (`app/cli/predict.py`) refusing what it cannot read, in one line: hostile
files, missing models."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    return path


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of image data: what
    a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_missing_model_path(tmp_path, png, capsys):
    assert main(["predict", "--model", str(tmp_path / "none.keras"), str(png)]) == 1
    assert "no such .keras file or MLflow model directory" in capsys.readouterr().err


def test_unreadable_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    assert main(["predict", "--model", "runs:/x/model", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mnist: error: {bad}: not a readable PNG or JPEG image")


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (5_000, "5000 x 5000 pixels exceeds the limit of 16,000,000"),
        (13_300, "Image size (176890000 pixels) exceeds limit of 32000000 pixels"),
    ],
)
def test_predict_refuses_a_decompression_bomb_in_one_line(tmp_path, capsys, side, message):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(side, side))
    assert main(["predict", "--model", "runs:/x/model", str(bomb)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mnist: error: {bomb}: {message}") and "\n" not in err


def test_a_binary_file_named_csv_is_one_line(tmp_path, capsys):
    fake = tmp_path / "data.csv"
    fake.write_bytes(bytes(range(256)) * 10)
    assert main(["predict", "--model", "runs:/x/model", str(fake)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mnist: error: {fake}: cannot read CSV") and "\n" not in err
