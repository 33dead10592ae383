"""The stack's secrets: generated once into a 0600 file, and written atomically, so that a
kill mid-write never leaves half a secret."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600, atomically (a temp file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def kept_secret(path: Path, name: str) -> str:
    """The secret `name` of the `NAME=value` file `path`, generated and added the first time."""
    text = path.read_text() if path.exists() else ""
    kept = {
        key: value for key, _, value in (line.partition("=") for line in text.splitlines() if line)
    }
    if name not in kept:
        kept[name] = secrets.token_urlsafe(24)
        write_private(path, "".join(f"{k}={v}\n" for k, v in kept.items()))
    return kept[name]
