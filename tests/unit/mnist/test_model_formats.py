"""`mnist.model_formats`: a copy moves into place without ever overwriting what is there (also
on file systems without hard links), and staging folders left by killed exports are swept."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pytest

from mnist.errors import MnistError
from mnist.model_formats import _move, _sweep


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_staging_folders_of_killed_exports_are_swept(tmp_path):
    target = tmp_path / "digits.onnx"
    dead = tmp_path / f".digits.onnx.export-{_dead_pid()}-abc"
    running = tmp_path / f".digits.onnx.export-{os.getpid()}-def"
    stale = tmp_path / f".digits.onnx.export-{os.getpid()}-ghi"
    other = tmp_path / f".other.onnx.export-{_dead_pid()}-jkl"
    for folder in (dead, running, stale, other):
        folder.mkdir()
        (folder / "digits.onnx").write_bytes(b"x" * 1000)
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    _sweep(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name])


def test_a_file_never_overwrites_the_target(tmp_path):
    written, target = tmp_path / "new", tmp_path / "target"
    written.write_bytes(b"copy")
    target.write_bytes(b"mine")
    with pytest.raises(MnistError, match=r"cannot write .*: File exists"):
        _move(written, target)
    assert target.read_bytes() == b"mine"
    _move(written, tmp_path / "fresh")
    assert (tmp_path / "fresh").read_bytes() == b"copy"


def test_without_hard_links_a_file_is_claimed_then_replaced(tmp_path, monkeypatch):
    """FAT and some FUSE file systems refuse `link` (EPERM): the copy still moves in, and an
    existing target is still never overwritten."""

    def no_links(source: object, destination: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    written, target = tmp_path / "new", tmp_path / "target"
    written.write_bytes(b"copy")
    target.write_bytes(b"mine")
    with pytest.raises(MnistError, match="File exists"):
        _move(written, target)
    assert target.read_bytes() == b"mine" and written.read_bytes() == b"copy"
    _move(written, tmp_path / "fresh")
    assert (tmp_path / "fresh").read_bytes() == b"copy" and not written.exists()


def test_a_directory_never_replaces_an_existing_one(tmp_path):
    """`rename` would replace an empty directory: the target is claimed by `mkdir` instead."""
    written = tmp_path / "new"
    (written / "variables").mkdir(parents=True)
    (written / "saved_model.pb").write_bytes(b"graph")
    taken = tmp_path / "taken"
    taken.mkdir()
    with pytest.raises(MnistError, match="File exists"):
        _move(written, taken)
    assert not list(taken.iterdir()) and (written / "saved_model.pb").is_file()
    _move(written, tmp_path / "fresh")
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == ["saved_model.pb", "variables"]
