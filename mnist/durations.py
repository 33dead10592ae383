"""Durations as people write them in options and variables: `90s`, `30m`, `24h`, `7d`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

from mnist.errors import MnistError

PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*([smhdwSMHDW])\s*$"
"""A number and a unit: s, m, h, d or w (a settings field's `pattern`)."""
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse(text: str) -> timedelta:
    """The time span `text` names; MnistError for anything else, or for nothing (0)."""
    found = re.match(PATTERN, text)
    seconds = float(found[1]) * UNITS[found[2].lower()] if found else 0
    if not seconds:
        raise MnistError(f"expected a duration such as 30m, 24h or 7d, got {text!r}")
    return timedelta(seconds=seconds)
